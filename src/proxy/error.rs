//! Every way a proxied request can fail, and the one place that maps a failure to the status
//! code and short body the client sees: a 4xx for what the client did, a 5xx for the rest.

use std::time::Duration;

use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorSource, ErrorType};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for this host and path")]
    NoRoute,
    #[error("request body larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("malformed request")]
    BadRequest,
    /// A request refused by the edge checks, with the reason.
    #[error("bad request: {0}")]
    Invalid(&'static str),
    #[error("request header too large: {0}")]
    HeaderTooLarge(&'static str),
    #[error("request body not received in time")]
    ClientTimeout,
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited {
        retry_after: u64,
        /// `RateLimit-Policy` and `RateLimit` values.
        policy: HeaderValue,
        state: HeaderValue,
    },
    /// `unresolved`: backends whose host name did not resolve (empty, or "; ..." naming them).
    #[error("no healthy backend in upstream {upstream}{unresolved}")]
    NoBackend {
        upstream: String,
        unresolved: String,
    },
    #[error("circuit breaker open for every backend of upstream {upstream}")]
    CircuitOpen { upstream: String },
    #[error("upstream {upstream} is at its limit of {limit} requests in flight")]
    Overloaded { upstream: String, limit: u32 },
    #[error("upstream request timed out")]
    UpstreamTimeout,
    #[error("route timeout of {0:?} exceeded")]
    Deadline(Duration),
    #[error("upstream failed")]
    UpstreamFailed,
    /// The backend's response is not one fulcrum can pass on, with the reason.
    #[error("invalid response from upstream: {0}")]
    UpstreamInvalid(&'static str),
    #[error("internal error")]
    Internal,
}

impl ProxyError {
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::NoRoute => 404,
            ProxyError::BodyTooLarge { .. } => 413,
            ProxyError::BadRequest | ProxyError::Invalid(_) => 400,
            ProxyError::ClientTimeout => 408,
            ProxyError::HeaderTooLarge(_) => 431,
            ProxyError::RateLimited { .. } => 429,
            ProxyError::NoBackend { .. }
            | ProxyError::CircuitOpen { .. }
            | ProxyError::Overloaded { .. } => 503,
            ProxyError::UpstreamTimeout | ProxyError::Deadline(_) => 504,
            ProxyError::UpstreamFailed | ProxyError::UpstreamInvalid(_) => 502,
            ProxyError::Internal => 500,
        }
    }

    /// Whether the client caused it (its status is a 4xx): it says nothing of the backend.
    pub fn by_client(&self) -> bool {
        (400..500).contains(&self.status())
    }

    /// Adds the headers that explain this failure to its response.
    pub fn headers(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        match self {
            ProxyError::RateLimited {
                retry_after,
                policy,
                state,
            } => {
                resp.insert_header(http::header::RETRY_AFTER, *retry_after)?;
                resp.insert_header("ratelimit-policy", policy)?;
                resp.insert_header("ratelimit", state)?;
            }
            ProxyError::CircuitOpen { .. } => resp.insert_header("x-fulcrum-circuit", "open")?,
            ProxyError::Overloaded { .. } => resp.insert_header("x-fulcrum-overloaded", "true")?,
            _ => {}
        }
        Ok(())
    }

    /// Classifies an error pingora reports. `None` means the client went away: nothing to send.
    pub fn from_pingora(e: &Error) -> Option<ProxyError> {
        use ErrorType::*;
        match (e.esource(), e.etype()) {
            (_, HTTPStatus(413)) => Some(ProxyError::BodyTooLarge { limit: 0 }),
            (_, HTTPStatus(408)) => Some(ProxyError::ClientTimeout),
            (_, HTTPStatus(code)) if (400..500).contains(code) => Some(ProxyError::BadRequest),
            (ErrorSource::Upstream, ConnectTimedout | ReadTimedout | WriteTimedout) => {
                Some(ProxyError::UpstreamTimeout)
            }
            (ErrorSource::Upstream, _) => Some(ProxyError::UpstreamFailed),
            (ErrorSource::Downstream, ReadTimedout) => Some(ProxyError::ClientTimeout),
            (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => None,
            (ErrorSource::Downstream, _) => Some(ProxyError::BadRequest),
            (_, ConnectTimedout) => Some(ProxyError::UpstreamTimeout),
            (_, ConnectRefused | ConnectError | ConnectNoRoute | ConnectionClosed) => {
                Some(ProxyError::UpstreamFailed)
            }
            _ => Some(ProxyError::Internal),
        }
    }

    /// The pingora error that carries this failure through the proxy phases.
    pub fn to_pingora(&self) -> Box<Error> {
        Error::explain(ErrorType::HTTPStatus(self.status()), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(ProxyError::NoRoute.status(), 404);
        assert_eq!(ProxyError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(
            ProxyError::NoBackend {
                upstream: "a".into(),
                unresolved: String::new(),
            }
            .status(),
            503
        );
        assert_eq!(ProxyError::Deadline(Duration::from_secs(1)).status(), 504);
        let open = ProxyError::CircuitOpen {
            upstream: "a".into(),
        };
        assert_eq!(open.status(), 503);
        let mut resp = ResponseHeader::build(503, None).unwrap();
        open.headers(&mut resp).unwrap();
        assert_eq!(resp.headers["x-fulcrum-circuit"], "open");
        assert_eq!(ProxyError::UpstreamFailed.status(), 502);
        assert!(ProxyError::ClientTimeout.by_client() && ProxyError::NoRoute.by_client());
        assert!(!ProxyError::UpstreamTimeout.by_client() && !ProxyError::Internal.by_client());
    }

    #[test]
    fn pingora_errors_map_by_source_and_type() {
        let up = |t| ProxyError::from_pingora(&Error::new_up(t));
        assert_eq!(
            up(ErrorType::ConnectTimedout),
            Some(ProxyError::UpstreamTimeout)
        );
        assert_eq!(
            up(ErrorType::ReadTimedout),
            Some(ProxyError::UpstreamTimeout)
        );
        assert_eq!(
            up(ErrorType::ConnectRefused),
            Some(ProxyError::UpstreamFailed)
        );
        let gone = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(ProxyError::from_pingora(&gone), None);
    }
}
