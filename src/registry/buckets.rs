//! One route's token buckets (governor's GCRA), kept in the registry so that they outlive a
//! config: a reload that leaves a route's limit as it was keeps every client's bucket.
//!
//! Keys are `u64`s the caller derives from the request (a seeded hash of the client IP or of a
//! header value), so a check allocates nothing and the map hashes nothing again (its hasher
//! passes the key through). Idle keys — whose bucket is full again, so that forgetting them
//! changes no decision — are dropped by [`Buckets::prune`], which a background task calls.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use nohash_hasher::BuildNoHashHasher;

use crate::config::RateQuota;

type Keyed<C> =
    RateLimiter<u64, DashMapStateStore<u64, BuildNoHashHasher<u64>>, C, StateInformationMiddleware>;
type Global<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// What the bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let through; `remaining` more would be let through right now.
    Allowed { remaining: u32 },
    /// Over the limit; a token comes back after `wait`.
    Limited { wait: Duration },
}

/// The buckets of one route's limit: one per key, or one for everybody.
pub struct Buckets<C: Clock = DefaultClock> {
    quota: RateQuota,
    /// Seeds the hash that turns a request's key into a bucket key: random per set of buckets,
    /// so that nobody can compute offline which keys share a bucket.
    seed: u64,
    store: Store<C>,
    clock: C,
}

enum Store<C: Clock> {
    Keyed(Keyed<C>),
    Global(Global<C>),
}

impl<C: Clock> std::fmt::Debug for Buckets<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buckets")
            .field("quota", &self.quota)
            .field("keys", &self.len())
            .finish()
    }
}

impl Buckets {
    /// Buckets on the real clock; `keyed` = one per key, else one shared by every request.
    pub fn new(quota: RateQuota, keyed: bool) -> Buckets {
        Buckets::with_clock(quota, keyed, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Buckets<C> {
    pub fn with_clock(quota: RateQuota, keyed: bool, clock: C) -> Buckets<C> {
        let q = governor_quota(quota);
        let store = if keyed {
            Store::Keyed(
                RateLimiter::dashmap_with_clock_and_hasher(q, clock.clone(), Default::default())
                    .with_middleware::<StateInformationMiddleware>(),
            )
        } else {
            Store::Global(
                RateLimiter::direct_with_clock(q, clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
            )
        };
        Buckets {
            quota,
            seed: fastrand::u64(..),
            store,
            clock,
        }
    }
}

impl<C: Clock> Buckets<C> {
    /// The seed for bucket keys (see the field).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Takes a token from `key`'s bucket (the key is ignored when the buckets are global).
    pub fn check(&self, key: u64) -> Decision {
        let outcome = match &self.store {
            Store::Keyed(l) => l.check_key(&key),
            Store::Global(l) => l.check(),
        };
        match outcome {
            Ok(state) => Decision::Allowed {
                remaining: state.remaining_burst_capacity(),
            },
            Err(not_until) => Decision::Limited {
                wait: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// Forgets keys whose bucket is full again (they decide nothing a fresh bucket would not)
    /// and gives their memory back to the map. Returns how many keys are left.
    pub fn prune(&self) -> usize {
        let Store::Keyed(l) = &self.store else {
            return 1;
        };
        let before = l.len();
        l.retain_recent();
        let after = l.len();
        // Shrinking rehashes the whole map: only worth it when much of it went.
        if after < before / 2 {
            l.shrink_to_fit();
        }
        after
    }

    /// Keys with a bucket (1 for global buckets).
    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::Keyed(l) => l.len(),
            Store::Global(_) => 1,
        }
    }
}

/// `rate` per `per`, `burst` at once: one token every `per / rate`, a bucket of `burst`.
fn governor_quota(q: RateQuota) -> Quota {
    let interval = q.interval().max(Duration::from_nanos(1));
    let burst = std::num::NonZeroU32::new(q.burst).unwrap_or(std::num::NonZeroU32::MIN);
    Quota::with_period(interval)
        .unwrap_or_else(|| Quota::per_second(std::num::NonZeroU32::MAX))
        .allow_burst(burst)
}

/// Whole seconds, rounded up: what `Retry-After` and the `RateLimit` header's `t` say.
pub fn ceil_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn buckets(
        rate: u32,
        per: u64,
        burst: u32,
        keyed: bool,
    ) -> (Buckets<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let quota = RateQuota {
            rate,
            per: Duration::from_secs(per),
            burst,
        };
        (Buckets::with_clock(quota, keyed, clock.clone()), clock)
    }

    fn allowed(b: &Buckets<FakeRelativeClock>, key: u64, n: usize) -> usize {
        (0..n)
            .filter(|_| matches!(b.check(key), Decision::Allowed { .. }))
            .count()
    }

    #[test]
    fn a_full_bucket_lets_burst_through_then_one_per_interval() {
        let (b, clock) = buckets(10, 1, 5, true);
        assert_eq!(b.check(1), Decision::Allowed { remaining: 4 });
        assert_eq!(allowed(&b, 1, 10), 4);
        assert_eq!(
            b.check(1),
            Decision::Limited {
                wait: Duration::from_millis(100)
            }
        );
        clock.advance(Duration::from_millis(40));
        assert_eq!(
            b.check(1),
            Decision::Limited {
                wait: Duration::from_millis(60)
            }
        );
        clock.advance(Duration::from_millis(60));
        assert_eq!(b.check(1), Decision::Allowed { remaining: 0 });
        assert!(matches!(b.check(1), Decision::Limited { .. }));
    }

    #[test]
    fn over_a_long_window_allowed_is_burst_plus_rate_times_time() {
        let (b, clock) = buckets(100, 1, 50, true);
        let mut allowed_total = 0;
        // A client sending every millisecond from 0 to 9.999 s: 50 + 100 × 9.999 = 1049.9, and
        // the tokens come back one every 10 ms, so 1049 requests.
        for _ in 0..10_000 {
            allowed_total += allowed(&b, 7, 1);
            clock.advance(Duration::from_millis(1));
        }
        assert_eq!(allowed_total, 1049);
    }

    #[test]
    fn keys_have_their_own_buckets_and_global_buckets_are_shared() {
        let (b, _) = buckets(1, 60, 3, true);
        assert_eq!(allowed(&b, 1, 5), 3);
        assert_eq!(allowed(&b, 2, 5), 3, "another key, another bucket");
        assert_eq!(b.len(), 2);
        let (g, _) = buckets(1, 60, 3, false);
        assert_eq!(allowed(&g, 1, 2) + allowed(&g, 2, 5), 3);
    }

    #[test]
    fn pruning_forgets_only_keys_whose_bucket_is_full_again() {
        let (b, clock) = buckets(10, 1, 2, true);
        for key in 0..1000 {
            b.check(key);
        }
        b.check(0);
        b.check(0);
        assert_eq!(b.len(), 1000);
        // governor forgets a key one token interval after its bucket is full again: at 250 ms
        // the keys used once (full at 100 ms) go, key 0 (two tokens used, full at 200 ms) stays.
        clock.advance(Duration::from_millis(250));
        assert_eq!(b.prune(), 1);
        assert_eq!(b.check(0), Decision::Allowed { remaining: 1 });
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.prune(), 0);
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_seconds(Duration::ZERO), 0);
        assert_eq!(ceil_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ceil_seconds(Duration::from_secs(1)), 1);
        assert_eq!(ceil_seconds(Duration::from_millis(59_001)), 60);
    }
}
