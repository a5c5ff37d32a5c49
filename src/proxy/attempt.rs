//! One attempt of a request on a backend, from the pick of the backend to its outcome: what it
//! holds there (its place in the in-flight count, a trial) and the one call that records how it
//! went. [`Attempt::finish`] consumes the attempt, so an outcome is recorded at most once per
//! attempt by construction. An attempt dropped unfinished (the client went away, pingora retries
//! a dead pooled connection) gives its trial back unsettled.

use std::time::{Duration, Instant};

use crate::balance::Lease;
use crate::circuit::Trial;
use crate::outcome::AttemptOutcome;
use crate::upstream::{Choice, Upstream};

/// One attempt of a request on a backend, until its outcome is recorded.
#[derive(Debug)]
pub(crate) struct Attempt {
    /// The backend's index in its upstream.
    backend: usize,
    /// Counts the request in flight on the backend.
    lease: Lease,
    /// A half-open breaker's trial place, an ejected backend's trial, or both.
    trial: Option<Trial>,
    /// When the backend was picked.
    started: Instant,
}

impl Attempt {
    /// Starts an attempt on the backend `choice` picked in `upstream`: counts it in flight there.
    pub(crate) fn start(upstream: &Upstream, choice: Choice) -> Attempt {
        Attempt {
            backend: choice.backend,
            lease: upstream.lease(choice.backend),
            trial: choice.trial,
            started: Instant::now(),
        }
    }

    /// The backend's index in its upstream.
    pub(crate) fn backend(&self) -> usize {
        self.backend
    }

    /// Whether it tries its backend out (a half-open breaker's trial place, an ejected backend's
    /// trial): then its outcome is due at the response header.
    pub(crate) fn is_trial(&self) -> bool {
        self.trial.is_some()
    }

    /// The time since the backend was picked.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Tells `upstream`'s passive health and breaker how the attempt went, settling its trial.
    /// Returns its lease: a response judged at its header (an upgrade, a failing status, a
    /// trial) streams on, and counts in flight until the caller drops the lease.
    #[must_use = "the lease counts the request in flight until it is dropped"]
    pub(crate) fn finish(self, upstream: &Upstream, outcome: AttemptOutcome) -> Lease {
        upstream.record(self.backend, outcome, self.trial);
        self.lease
    }

    /// Ends the attempt without an outcome: its trial is given back unsettled, for another
    /// request. Returns its lease, for the caller to hold until the next attempt has its own.
    #[must_use = "the lease counts the request in flight until it is dropped"]
    pub(crate) fn abandon(self) -> Lease {
        self.lease
    }
}

/// What is known of a request's last attempt, for the access log (and for a retry, which
/// avoids its backend): its backend, its times to a connection and to the backend's response
/// header (from the pick of the backend), and the status the backend sent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AttemptReport {
    pub(crate) backend: Option<usize>,
    pub(crate) connect: Option<Duration>,
    pub(crate) header: Option<Duration>,
    pub(crate) status: Option<u16>,
}

impl AttemptReport {
    /// The report of an attempt just started on `backend`.
    pub(crate) fn started(backend: usize) -> AttemptReport {
        AttemptReport {
            backend: Some(backend),
            ..AttemptReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::BackendSet;
    use crate::config::BalanceKind;
    use crate::registry::Circuit;
    use crate::upstream::tests::breaker_upstream;

    /// An attempt on a half-open breaker's one trial place: abandoned, it frees the place;
    /// finished, it settles it (the breaker closes). Either way its lease counts it in flight
    /// until the caller drops the lease.
    #[tokio::test(start_paused = true)]
    async fn an_attempt_settles_or_frees_its_trial_and_hands_its_lease_on() {
        let u = breaker_upstream(1, 1, BalanceKind::RoundRobin);
        let (none, state) = (BackendSet::default(), &u.backends[0].state);
        u.record(0, AttemptOutcome::Connect, None);
        tokio::time::advance(Duration::from_secs(5)).await;
        let attempt = Attempt::start(&u, u.select(&none, None).unwrap());
        assert!(attempt.is_trial() && attempt.backend() == 0);
        assert_eq!(state.in_flight(), 1);
        assert!(
            u.select(&none, None).is_err(),
            "the one trial place is taken"
        );
        let lease = attempt.abandon();
        assert_eq!(state.in_flight(), 1, "the lease outlives the attempt");
        drop(lease);
        assert_eq!(state.in_flight(), 0);
        let attempt = Attempt::start(&u, u.select(&none, None).expect("the place is free"));
        let lease = attempt.finish(&u, AttemptOutcome::Status(200));
        assert_eq!(u.circuit(0), Circuit::Closed, "the trial succeeded");
        assert_eq!(state.in_flight(), 1);
        drop(lease);
        assert_eq!(state.in_flight(), 0);
    }
}
