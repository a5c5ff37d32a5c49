//! Load-balancing strategies behind one small trait, one file per strategy with its tests at the
//! bottom. [`build`] picks one from the config.
//!
//! Every strategy asks [`Pick::eligible`] before choosing a backend and, when it says no, moves
//! on to the strategy's own next choice, so skipping a backend does not bias the others.

mod consistent_hash;
mod in_service;
mod key;
mod least_connections;
mod p2c;
mod random;
mod ring;
mod round_robin;
mod smooth_weighted;

pub use consistent_hash::ConsistentHash;
pub use key::extract_key;
pub use least_connections::LeastConnections;
pub use p2c::PowerOfTwo;
pub use random::WeightedRandom;
pub use ring::Ring;
pub use round_robin::turns;
pub use smooth_weighted::SmoothWeighted;

use std::sync::Arc;

use crate::config::{BalanceKind, UpstreamConfig};
use crate::registry::BackendState;

/// What a strategy may consult for one pick.
pub struct Pick<'a> {
    /// Whether backend `i` may receive this attempt: false for backends this request failed to
    /// connect to, and (with health checks) for unhealthy ones.
    pub eligible: &'a dyn Fn(usize) -> bool,
    /// The request's hash key (hash strategies); `None` when the request has none.
    pub key: Option<&'a [u8]>,
    /// How many backends health considers available (all of them in panic mode): the
    /// denominator of load averages. May exceed the number of backends.
    pub available: usize,
}

/// A balancing strategy over one upstream's backends, indexed `0..n` in config order.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Called on the request path for every attempt (the first try and each retry). Returns an
    /// eligible backend, or `None` when no backend is eligible.
    fn pick(&self, pick: &Pick<'_>) -> Option<usize>;

    /// Called when a request that `pick` sent to `backend` ends (its [`Lease`] is dropped), for
    /// strategies that track their own load. Default: nothing.
    fn release(&self, _backend: usize) {}

    /// Called before a pick, at most once per change, when the backends in service changed
    /// (health, ejection, panic mode) or when requests picked under an earlier config ended
    /// (their in-flight counts moved without this balancer's `release`). `in_service(i)` says
    /// whether backend `i` is in service now. Strategies that keep an index of their own bring it
    /// up to date from `in_service` and the registry's in-flight counts, so that an outage does not
    /// make every pick step over the same backends; [`Pick::eligible`] stays the authority.
    /// Default: nothing.
    fn sync(&self, _in_service: &dyn Fn(usize) -> bool) {}
}

/// The strategy the config asks for. `states[i]` is backend `i`'s registry state (in-flight
/// counts for the load-aware strategies).
pub fn build(config: &UpstreamConfig, states: &[Arc<BackendState>]) -> Arc<dyn Balancer> {
    let weights: Vec<u32> = config.backends.iter().map(|b| b.weight).collect();
    match config.balance {
        // Weighted in both spellings: a weight is never silently ignored.
        BalanceKind::RoundRobin | BalanceKind::WeightedRoundRobin => Arc::from(turns(&weights)),
        BalanceKind::LeastConnections => Arc::new(LeastConnections::new(&weights, states.to_vec())),
        BalanceKind::P2c => Arc::new(PowerOfTwo::new(&weights, states.to_vec())),
        BalanceKind::Random => Arc::new(WeightedRandom::new(&weights)),
        BalanceKind::IpHash | BalanceKind::ConsistentHash => {
            let addrs: Vec<_> = config.backends.iter().map(|b| (b.addr, b.weight)).collect();
            let bound = config
                .hash_balance_factor
                .map(|factor| (factor, states.to_vec()));
            Arc::new(ConsistentHash::new(Ring::new(&addrs), bound))
        }
    }
}

/// One request's claim on a backend: counted in flight from [`Lease::new`] until dropped,
/// which happens on success, error and cancellation alike (it lives in the request context).
#[derive(Debug)]
pub struct Lease {
    state: Arc<BackendState>,
    balancer: Arc<dyn Balancer>,
    backend: usize,
    /// The generation of the snapshot whose balancer picked the backend.
    generation: u64,
}

impl Lease {
    /// Counts a request on `backend` (index `i` of `balancer`), picked under snapshot
    /// `generation`.
    pub fn new(
        state: &Arc<BackendState>,
        balancer: &Arc<dyn Balancer>,
        backend: usize,
        generation: u64,
    ) -> Lease {
        state.start();
        Lease {
            state: Arc::clone(state),
            balancer: Arc::clone(balancer),
            backend,
            generation,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.state.end();
        self.balancer.release(self.backend);
        // Picked under an older config: the balancer serving now counted this request when it
        // synced from the registry, and hears of its end only through the epoch.
        let upstream = self.state.upstream();
        if upstream.generation() != self.generation {
            upstream.bump_epoch();
        }
    }
}

/// Backends a set holds in its inline bitmap; larger indices go to a list.
const INLINE_BACKENDS: usize = 1024;

/// A set of backend indices: O(1) and without allocating for the first `INLINE_BACKENDS` (1 024).
#[derive(Debug, Clone)]
pub struct BackendSet {
    bits: [u64; INLINE_BACKENDS / 64],
    len: usize,
    high: Vec<usize>,
}

impl Default for BackendSet {
    fn default() -> Self {
        BackendSet {
            bits: [0; INLINE_BACKENDS / 64],
            len: 0,
            high: Vec::new(),
        }
    }
}

impl BackendSet {
    pub fn insert(&mut self, i: usize) {
        if i < INLINE_BACKENDS {
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            if self.bits[word] & bit == 0 {
                self.bits[word] |= bit;
                self.len += 1;
            }
        } else if !self.high.contains(&i) {
            self.high.push(i);
            self.len += 1;
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        if i < INLINE_BACKENDS {
            self.bits[i / 64] & (1 << (i % 64)) != 0
        } else {
            self.high.contains(&i)
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// A backend drawn by weight among the eligible ones (O(n)): the exact fallback of the
/// strategies whose usual draw keeps missing. `None` when none is eligible.
fn weighted_among_eligible(weights: &[u64], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
    let total: u64 = (0..weights.len())
        .filter(|&i| eligible(i))
        .map(|i| weights[i])
        .sum();
    if total == 0 {
        return None;
    }
    let mut point = fastrand::u64(..total);
    (0..weights.len()).filter(|&i| eligible(i)).find(|&i| {
        if point < weights[i] {
            return true;
        }
        point -= weights[i];
        false
    })
}

/// Greatest common divisor of the weights (1 for an empty list), to keep tables small.
fn weight_gcd(weights: &[u32]) -> u32 {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    weights.iter().copied().fold(0, gcd).max(1)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the strategies' tests.
    use super::*;

    pub fn all(_: usize) -> bool {
        true
    }

    /// Registry states for `n` backends of one upstream (nothing in flight).
    pub fn states(n: usize) -> Vec<Arc<BackendState>> {
        let r = crate::registry::Registry::default();
        let u = r.upstream("u");
        (0..n)
            .map(|i| r.backend(&u, ([127, 0, 0, 1], 1000 + i as u16).into()))
            .collect()
    }

    /// `n` picks with no key, every backend eligible.
    pub fn picks(b: &dyn Balancer, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                b.pick(&Pick {
                    eligible: &all,
                    key: None,
                    available: usize::MAX,
                })
                .expect("a pick")
            })
            .collect()
    }

    /// How many of `n` picks each backend got (releasing each pick at once).
    pub fn shares(
        b: &dyn Balancer,
        backends: usize,
        n: usize,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut counts = vec![0; backends];
        for _ in 0..n {
            let i = b
                .pick(&Pick {
                    eligible,
                    key: None,
                    available: usize::MAX,
                })
                .expect("a pick");
            counts[i] += 1;
            b.release(i);
        }
        counts
    }

    /// Asserts each share is within `tolerance` (a fraction of `n`) of its weight's share.
    pub fn assert_weighted(counts: &[usize], weights: &[u32], tolerance: f64) {
        let n: usize = counts.iter().sum();
        let total: u32 = weights.iter().sum();
        for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
            let want = w as f64 / total as f64;
            let got = c as f64 / n as f64;
            assert!(
                (got - want).abs() <= tolerance,
                "backend {i}: share {got:.4}, want {want:.4} ± {tolerance}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_set_spans_past_64() {
        let mut t = BackendSet::default();
        for i in [0, 63, 64, 1000, 1023, 1024, 5000] {
            assert!(!t.contains(i));
            t.insert(i);
            assert!(t.contains(i));
        }
        t.insert(1000);
        t.insert(5000);
        assert_eq!(t.len(), 7);
        assert!(!t.contains(1));
    }

    #[test]
    fn gcd_of_weights() {
        assert_eq!(weight_gcd(&[4, 6, 10]), 2);
        assert_eq!(weight_gcd(&[5, 1, 1]), 1);
        assert_eq!(weight_gcd(&[]), 1);
    }
}
