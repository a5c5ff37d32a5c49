//! How a request ended, beside the status code it carried: the access log's `outcome` field
//! and the `outcome` label of `fulcrum_requests_total`; and how one attempt on a backend
//! ended, as passive health and the breaker judge it ([`AttemptOutcome`]).
//!
//! A status alone cannot say it: a backend may send `200` and a `Content-Length` and then reset
//! the connection, and the client got a `200` header and half a body. Such a response is
//! [`Outcome::Aborted`]: logged with the status that was sent (as nginx, HAProxy and Envoy do)
//! and this outcome (HAProxy's `SD` termination state, Envoy's `UPE`/`UC` flags), counted as a
//! failure of the backend by passive health and the breaker, and the client's connection is
//! closed so that it cannot take the truncated body for a whole one.

use crate::config::StatusSet;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response went to the client whole: the backend's (any status), or a redirect.
    Ok,
    /// fulcrum answered with an error of its own (no route, 429, 502, 503, 504, 408, …) before
    /// any response of a backend was sent.
    Error,
    /// A backend's response was started and then cut short: the backend reset or closed the
    /// connection, or a deadline ran out while its body streamed.
    Aborted,
    /// The client went away before its response was whole (`499` when it got none of it).
    ClientClosed,
}

impl Outcome {
    /// Its label value and access-log text.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Aborted => "aborted",
            Outcome::ClientClosed => "client_closed",
        }
    }

    /// Its index among [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Aborted,
        Outcome::ClientClosed,
    ];
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one attempt on a backend went, for passive health and the breaker, which judge it each
/// against its own `failure_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// No connection to the backend could be made.
    Connect,
    /// The backend took longer than a timeout to answer.
    Timeout,
    /// Its response was invalid or cut short.
    Broken,
    /// It answered with this status (and, when judged at the end, the response ended whole).
    Status(u16),
}

impl AttemptOutcome {
    /// Whether this counts as a failure where `failure_status` are the failing statuses:
    /// connect errors, timeouts and broken responses always do.
    pub fn failed(self, failure_status: &StatusSet) -> bool {
        match self {
            AttemptOutcome::Status(status) => failure_status.contains(status),
            AttemptOutcome::Connect | AttemptOutcome::Timeout | AttemptOutcome::Broken => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_place_in_all() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{o}");
        }
    }
}
