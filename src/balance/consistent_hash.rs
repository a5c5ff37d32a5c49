//! `balance = "consistent_hash"` and `balance = "ip_hash"`: the request's key (a header, cookie,
//! query parameter, the path, or the client IP) picks its owner on a [`Ring`]; an ineligible
//! owner hands the key to the next backend clockwise. A request without a key is balanced
//! round-robin by weight ([`turns`]).
//!
//! With `hash_balance_factor = c`, this is consistent hashing with bounded loads (Mirrokni et
//! al.), weighted: no backend takes a request while it has `c ×` its weight's share of the
//! in-flight requests or more; the key walks on clockwise to the first backend under the bound.
//! Backend `i`'s bound is `ceil(c × (in-flight of the upstream + 1) × w_i / W)`, where `W` is
//! the pool's total weight scaled to the backends available (`Σw × available / backends`), so
//! with equal weights it is `c ×` the average and some available backend is always under it;
//! should concurrent picks race past it, the least-loaded one wins.

use std::sync::Arc;

use super::{turns, BackendSet, Balancer, Pick, Ring};
use crate::registry::BackendState;

#[derive(Debug)]
pub struct ConsistentHash {
    ring: Ring,
    /// For requests without a key: weighted round-robin.
    fallback: Box<dyn Balancer>,
    /// (factor, per-backend state) when loads are bounded.
    bound: Option<(f64, Vec<Arc<BackendState>>)>,
    /// Each backend's weight × backends / total weight (1 for all with equal weights), computed
    /// once: its bound is this many times the unweighted one.
    shares: Vec<f64>,
    len: usize,
}

impl ConsistentHash {
    pub fn new(ring: Ring, bound: Option<(f64, Vec<Arc<BackendState>>)>) -> ConsistentHash {
        let len = ring.backends();
        let total: f64 = ring.weights().iter().map(|&w| f64::from(w)).sum();
        let shares = ring
            .weights()
            .iter()
            .map(|&w| f64::from(w) * len as f64 / total.max(1.0))
            .collect();
        ConsistentHash {
            shares,
            fallback: turns(ring.weights()),
            ring,
            bound,
            len,
        }
    }

    /// `c ×` the average in-flight requests over the backends health considers available: a
    /// backend of weight share `s` may already have `ceil(s × this) - 1` and still take one more.
    fn bound(&self, factor: f64, states: &[Arc<BackendState>], available: usize) -> f64 {
        let total = states.first().map_or(0, |s| s.upstream_in_flight());
        factor * (total + 1) as f64 / available.clamp(1, self.len.max(1)) as f64
    }

    /// Most in-flight requests backend `i` may already have and still take this one, under
    /// `bound` ([`ConsistentHash::bound`]).
    fn limit(&self, bound: f64, i: usize) -> u64 {
        ((bound * self.shares[i]).ceil() as u64).saturating_sub(1)
    }
}

impl Balancer for ConsistentHash {
    fn pick(&self, pick: &Pick<'_>) -> Option<usize> {
        let Some(key) = pick.key else {
            return self.fallback.pick(pick);
        };
        let start = self.ring.first_point(Ring::hash(key))?;
        let limit = self
            .bound
            .as_ref()
            .map(|(f, s)| (self.bound(*f, s, pick.available), s));
        // (in-flight, backend): the least-loaded eligible backend found over the bound.
        let mut lightest: Option<(u64, usize)> = None;
        let mut take = |i: usize| {
            if !(pick.eligible)(i) {
                return false;
            }
            match limit {
                Some((bound, states)) if states[i].in_flight() > self.limit(bound, i) => {
                    let load = states[i].in_flight();
                    if lightest.is_none_or(|(l, _)| load < l) {
                        lightest = Some((load, i));
                    }
                    false
                }
                _ => true,
            }
        };
        let mut walk = self.ring.walk(start);
        let owner = walk.next()?;
        if take(owner) {
            return Some(owner);
        }
        // Past the owner: remember who was seen, to stop after one look at every backend.
        let mut seen = BackendSet::default();
        seen.insert(owner);
        for i in walk {
            if seen.len() == self.len {
                break;
            }
            if seen.contains(i) {
                continue;
            }
            seen.insert(i);
            if take(i) {
                return Some(i);
            }
        }
        // Only reachable when every eligible backend is over the bound (concurrent picks raced
        // past it): the least-loaded of them.
        lightest.map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use std::net::SocketAddr;

    fn addrs(n: u16) -> Vec<(SocketAddr, u32)> {
        (0..n)
            .map(|i| (SocketAddr::from(([10, 0, 0, 2], 9000 + i)), 1))
            .collect()
    }

    fn pick_key(b: &ConsistentHash, key: &str, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        b.pick(&Pick {
            eligible,
            key: Some(key.as_bytes()),
            available: usize::MAX,
        })
    }

    #[test]
    fn same_key_same_backend() {
        let b = ConsistentHash::new(Ring::new(&addrs(5)), None);
        for k in ["alice", "bob", "carol"] {
            let first = pick_key(&b, k, &all);
            assert!((0..50).all(|_| pick_key(&b, k, &all) == first));
        }
    }

    #[test]
    fn ineligible_owner_hands_keys_to_the_next_backend_only() {
        let b = ConsistentHash::new(Ring::new(&addrs(5)), None);
        for i in 0..2000 {
            let k = format!("k{i}");
            let owner = pick_key(&b, &k, &all).unwrap();
            let other = pick_key(&b, &k, &|j| j != 3).unwrap();
            assert_ne!(other, 3);
            if owner != 3 {
                assert_eq!(owner, other, "a key of a healthy backend moved");
            }
        }
        let never = |_| false;
        assert_eq!(pick_key(&b, "x", &never), None);
    }

    #[test]
    fn no_key_falls_back_to_round_robin() {
        let b = ConsistentHash::new(Ring::new(&addrs(3)), None);
        assert_eq!(picks(&b, 6), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn bounded_load_never_exceeds_the_factor() {
        let list = addrs(8);
        let states = states(list.len());
        let factor = 1.25;
        let b = ConsistentHash::new(Ring::new(&list), Some((factor, states.clone())));
        // Every request has the same key and stays in flight: the worst case for hashing.
        for n in 1..=400u64 {
            let i = pick_key(&b, "hot-key", &all).unwrap();
            states[i].start();
            let max = states.iter().map(|s| s.in_flight()).max().unwrap();
            let bound = (factor * n as f64 / 8.0).ceil() as u64;
            assert!(
                max <= bound,
                "after {n} requests: a backend has {max} > {bound}"
            );
        }
    }

    #[test]
    fn bounded_load_holds_when_half_the_backends_are_down() {
        let list = addrs(10);
        let states = states(list.len());
        let factor = 1.25;
        let b = ConsistentHash::new(Ring::new(&list), Some((factor, states.clone())));
        let up = |i: usize| i % 2 == 0;
        for n in 1..=1000u64 {
            let i = b
                .pick(&Pick {
                    eligible: &up,
                    key: Some(b"hot-key"),
                    available: 5,
                })
                .unwrap();
            assert!(up(i));
            states[i].start();
            let max = states.iter().map(|s| s.in_flight()).max().unwrap();
            let bound = (factor * n as f64 / 5.0).ceil() as u64;
            assert!(
                max <= bound,
                "after {n} requests: a backend has {max} > {bound}"
            );
        }
    }

    #[test]
    fn bounded_load_keeps_the_owner_while_under_the_bound() {
        let list = addrs(4);
        let states = states(list.len());
        // Two in flight everywhere: average (8 + 1) / 4, bound ceil(1.5 × 2.25) = 4 > 2 + 1.
        for s in &states {
            s.start();
            s.start();
        }
        let plain = ConsistentHash::new(Ring::new(&list), None);
        let bounded = ConsistentHash::new(Ring::new(&list), Some((1.5, states.clone())));
        for i in 0..500 {
            let k = format!("k{i}");
            assert_eq!(pick_key(&plain, &k, &all), pick_key(&bounded, &k, &all));
        }
        // One backend over the bound (5 in flight; bound ceil(1.5 × 12 / 4) = 5, so at most 4
        // before taking another): its keys, and only its keys, move.
        let hot = pick_key(&plain, "k0", &all).unwrap();
        for _ in 0..3 {
            states[hot].start();
        }
        for i in 0..500 {
            let k = format!("k{i}");
            let (p, q) = (
                pick_key(&plain, &k, &all).unwrap(),
                pick_key(&bounded, &k, &all).unwrap(),
            );
            assert_eq!(
                p == hot,
                q != p,
                "key {k}: plain {p}, bounded {q}, hot {hot}"
            );
        }
    }

    /// Under bounded loads, weights 5:1 give about 5/6 of keyed traffic to the heavy backend
    /// (an unweighted bound held it at 375 of 600).
    #[test]
    fn bounded_load_honours_weight() {
        let list = vec![
            (SocketAddr::from(([10, 0, 0, 2], 9000)), 5),
            (SocketAddr::from(([10, 0, 0, 2], 9001)), 1),
        ];
        let states = states(2);
        let b = ConsistentHash::new(Ring::new(&list), Some((1.25, states.clone())));
        let plain = ConsistentHash::new(Ring::new(&list), None);
        let mut plain_heavy = 0;
        for k in 0..600 {
            let key = format!("user-{k}");
            let i = pick_key(&b, &key, &all).unwrap();
            states[i].start();
            if pick_key(&plain, &key, &all) == Some(0) {
                plain_heavy += 1;
            }
        }
        let heavy = states[0].in_flight();
        assert!(
            heavy >= 450,
            "heavy backend holds {heavy} of 600 in flight (unbounded ring: {plain_heavy})"
        );
    }
}
