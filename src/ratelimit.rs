//! Per-route rate limiting, the first thing a routed request meets: a GCRA token bucket
//! (governor) per client IP, per header value or for the whole route. Over the limit the client
//! gets 429 with `Retry-After` and the IETF draft headers `RateLimit-Policy` and `RateLimit`;
//! allowed responses carry them too unless the route says `headers = false`.
//!
//! The buckets live in the [`Registry`] (keyed by route name + limit), so a reload that keeps a
//! route's limit keeps every bucket; this module holds what a snapshot precomputes (the policy
//! header, the key kind) and the [`Pruner`], the background task that forgets idle keys.
//!
//! A check allocates nothing: the bucket key is a seeded 64-bit hash of the client IP or of the
//! header's bytes, looked up in a map that does not hash again, and the verdict is two
//! integers; the `RateLimit` value is formatted only when a response carries it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::config::{RateKey, RateLimitConfig};
use crate::registry::{ceil_seconds, Buckets, Decision, Registry};

/// How often idle keys are forgotten. A key is dropped at the first prune after its bucket has
/// been full again for one token interval.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(5);

/// Sets the seed of client-IP keys apart from header keys, which share the map when a request
/// lacks the header.
const IP_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// A route's limit as one snapshot runs it (on the real clock but in tests).
#[derive(Debug)]
pub struct RouteLimit<C: Clock = DefaultClock> {
    buckets: Arc<Buckets<C>>,
    key: RateKey,
    /// Whether allowed responses carry the headers.
    pub headers: bool,
    /// `"<route>";q=<rate>;w=<seconds>`
    pub policy: HeaderValue,
    /// `"<route>";r=`, the start of every `RateLimit` value.
    state_prefix: Vec<u8>,
    /// `t` of an allowed response that took the last token: the token interval, rounded up.
    refill: u64,
}

/// What a route's limit said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through; `state` is what the response's `RateLimit` says, when it carries one.
    Allowed { state: Option<RateState> },
    /// Over the limit: 429 after `retry_after` seconds.
    Limited { retry_after: u64, state: RateState },
}

/// The numbers of a `RateLimit` value: `r` tokens remaining, `t` seconds until a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub remaining: u32,
    pub t: u64,
}

impl RouteLimit {
    /// The limit of route `name`, with its buckets from `registry` (the live ones if the limit
    /// did not change). Changes no live state.
    pub fn new(name: &str, config: &RateLimitConfig, registry: &Registry) -> RouteLimit {
        RouteLimit::with_buckets(
            name,
            config,
            registry.buckets(name, config.quota, &config.key),
        )
    }
}

impl<C: Clock> RouteLimit<C> {
    /// The limit of route `name` over `buckets`.
    pub fn with_buckets(
        name: &str,
        config: &RateLimitConfig,
        buckets: Arc<Buckets<C>>,
    ) -> RouteLimit<C> {
        let q = config.quota;
        let quoted = sf_string(name);
        let policy = format!("{quoted};q={};w={}", q.rate, q.per.as_secs());
        RouteLimit {
            buckets,
            key: config.key.clone(),
            headers: config.headers,
            policy: HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            state_prefix: format!("{quoted};r=").into_bytes(),
            refill: ceil_seconds(q.interval()),
        }
    }

    /// Takes a token for this request. `client` is the request's client IP (trusted-proxy
    /// aware), the key of `client_ip` limits and the fallback of `header:` limits.
    pub fn check(&self, req: &RequestHeader, client: Option<IpAddr>) -> Verdict {
        let seed = self.buckets.seed();
        let key = match &self.key {
            RateKey::Global => 0,
            RateKey::Header(name) => match req.headers.get(name).filter(|v| !v.is_empty()) {
                Some(v) => xxh3_64_with_seed(v.as_bytes(), seed),
                None => ip_key(client, seed),
            },
            RateKey::ClientIp => ip_key(client, seed),
        };
        match self.buckets.check(key) {
            Decision::Allowed { remaining } => Verdict::Allowed {
                state: self.headers.then_some(RateState {
                    remaining,
                    t: if remaining > 0 { 0 } else { self.refill },
                }),
            },
            Decision::Limited { wait } => {
                let retry_after = ceil_seconds(wait).max(1);
                Verdict::Limited {
                    retry_after,
                    state: RateState {
                        remaining: 0,
                        t: retry_after,
                    },
                }
            }
        }
    }

    /// `"<route>";r=<remaining>;t=<seconds until a token>`: two integers after a prefix built
    /// once per snapshot, formatted only for a response that carries it.
    pub fn header(&self, state: RateState) -> HeaderValue {
        let (mut r, mut s) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (r, t) = (
            r.format(state.remaining).as_bytes(),
            s.format(state.t).as_bytes(),
        );
        let mut v = Vec::with_capacity(self.state_prefix.len() + r.len() + 3 + t.len());
        v.extend_from_slice(&self.state_prefix);
        v.extend_from_slice(r);
        v.extend_from_slice(b";t=");
        v.extend_from_slice(t);
        HeaderValue::from_maybe_shared(Bytes::from(v)).unwrap_or(HeaderValue::from_static(""))
    }
}

fn ip_key(client: Option<IpAddr>, seed: u64) -> u64 {
    let seed = seed ^ IP_SEED;
    match client {
        Some(IpAddr::V4(ip)) => xxh3_64_with_seed(&ip.octets(), seed),
        Some(IpAddr::V6(ip)) => xxh3_64_with_seed(&ip.octets(), seed),
        None => xxh3_64_with_seed(&[], seed),
    }
}

/// A structured-field string: quoted, `"` and `\` escaped, anything outside printable ASCII
/// replaced by `_` (route names are free text; header values are not).
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            ' '..='~' => out.push(ch),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

/// Forgets idle keys of every live set of buckets, every [`PRUNE_INTERVAL`], so that memory
/// follows the clients active now rather than every client ever seen.
pub struct Pruner {
    registry: Arc<Registry>,
}

impl Pruner {
    pub fn new(registry: Arc<Registry>) -> Pruner {
        Pruner { registry }
    }
}

#[async_trait]
impl BackgroundService for Pruner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    for buckets in self.registry.live_buckets() {
                        let left = buckets.prune();
                        tracing::trace!(?buckets, left, "rate-limit keys pruned");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateQuota;
    use governor::clock::FakeRelativeClock;

    /// A limit on a clock that moves only when the test says.
    fn limit(key: RateKey, rate: u32, per: u64, burst: u32) -> RouteLimit<FakeRelativeClock> {
        let keyed = !matches!(key, RateKey::Global);
        let config = RateLimitConfig {
            quota: RateQuota {
                rate,
                per: Duration::from_secs(per),
                burst,
            },
            key,
            headers: true,
        };
        let clock = FakeRelativeClock::default();
        let buckets = Arc::new(Buckets::with_clock(config.quota, keyed, clock));
        RouteLimit::with_buckets("api \"v1\"", &config, buckets)
    }

    fn req(header: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(v) = header {
            r.insert_header("x-api-key", v).unwrap();
        }
        r
    }

    #[test]
    fn headers_follow_the_draft() {
        let l = limit(RateKey::Global, 100, 60, 2);
        assert_eq!(l.policy, r#""api \"v1\"";q=100;w=60"#);
        let state = |v: Verdict| match v {
            Verdict::Allowed { state } => l.header(state.unwrap()),
            Verdict::Limited { state, .. } => l.header(state),
        };
        assert_eq!(state(l.check(&req(None), None)), r#""api \"v1\"";r=1;t=0"#);
        // The last token: the next one comes back in 600 ms, said as 1 s.
        assert_eq!(state(l.check(&req(None), None)), r#""api \"v1\"";r=0;t=1"#);
        match l.check(&req(None), None) {
            Verdict::Limited { retry_after, state } => {
                assert_eq!(retry_after, 1);
                assert_eq!(l.header(state), r#""api \"v1\"";r=0;t=1"#);
            }
            v => panic!("expected 429, got {v:?}"),
        }
    }

    #[test]
    fn header_keys_fall_back_to_the_client_ip() {
        let l = limit(
            RateKey::Header(http::HeaderName::from_static("x-api-key")),
            1,
            60,
            1,
        );
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let allowed = |v: Verdict| matches!(v, Verdict::Allowed { .. });
        assert!(allowed(l.check(&req(Some("a")), ip("10.0.0.1"))));
        assert!(
            !allowed(l.check(&req(Some("a")), ip("10.0.0.2"))),
            "same key, other IP"
        );
        assert!(allowed(l.check(&req(Some("b")), ip("10.0.0.1"))));
        assert!(
            allowed(l.check(&req(None), ip("10.0.0.1"))),
            "no header: the IP's bucket"
        );
        assert!(!allowed(l.check(&req(None), ip("10.0.0.1"))));
        assert!(allowed(l.check(&req(None), ip("10.0.0.2"))));
        assert!(
            !allowed(l.check(&req(Some("")), ip("10.0.0.2"))),
            "an empty header is no key: the IP's bucket"
        );
    }

    #[test]
    fn non_ascii_route_names_still_make_a_header() {
        assert_eq!(sf_string("café/\\"), r#""caf_/\\""#);
    }
}
