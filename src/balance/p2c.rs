//! `balance = "p2c"`: power of two random choices (Envoy's LEAST_REQUEST): draw two distinct
//! backends at random and take the one with fewer in-flight requests relative to its weight.
//! O(1); reads the shared per-backend in-flight counters, so it sees every request, including
//! those picked before a config reload.

use std::sync::Arc;

use super::{Balancer, Pick};
use crate::registry::BackendState;

#[derive(Debug)]
pub struct PowerOfTwo {
    weights: Vec<u64>,
    states: Vec<Arc<BackendState>>,
}

impl PowerOfTwo {
    pub fn new(weights: &[u32], states: Vec<Arc<BackendState>>) -> PowerOfTwo {
        assert_eq!(weights.len(), states.len(), "one state per backend");
        PowerOfTwo {
            weights: weights.iter().map(|&w| u64::from(w)).collect(),
            states,
        }
    }

    /// Whether `a` is less loaded than `b` relative to weight (in-flight / weight).
    fn lighter(&self, a: usize, b: usize) -> bool {
        let (la, lb) = (self.states[a].in_flight(), self.states[b].in_flight());
        la * self.weights[b] <= lb * self.weights[a]
    }
}

impl Balancer for PowerOfTwo {
    fn pick(&self, pick: &Pick<'_>) -> Option<usize> {
        let n = self.weights.len();
        match n {
            0 => return None,
            1 => return (pick.eligible)(0).then_some(0),
            _ => {}
        }
        let a = fastrand::usize(..n);
        let b = (a + 1 + fastrand::usize(..n - 1)) % n;
        match ((pick.eligible)(a), (pick.eligible)(b)) {
            (true, true) => Some(if self.lighter(a, b) { a } else { b }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            // Both drawn backends are out: the next eligible one after a random start.
            (false, false) => {
                let start = fastrand::usize(..n);
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| (pick.eligible)(i))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::registry::Registry;

    fn p2c(weights: &[u32]) -> (PowerOfTwo, Vec<Arc<BackendState>>) {
        let r = Registry::default();
        let states: Vec<_> = (0..weights.len())
            .map(|i| r.backend("u", ([127, 0, 0, 1], 1000 + i as u16).into()))
            .collect();
        (PowerOfTwo::new(weights, states.clone()), states)
    }

    #[test]
    fn with_two_backends_the_less_loaded_always_wins() {
        let (b, states) = p2c(&[1, 1]);
        for _ in 0..5 {
            states[0].start();
        }
        assert!(picks(&b, 200).iter().all(|&i| i == 1));
    }

    #[test]
    fn load_is_relative_to_weight() {
        let (b, states) = p2c(&[4, 1]);
        for _ in 0..3 {
            states[0].start();
        }
        states[1].start();
        // 3/4 < 1/1: the heavier-weighted backend is still the lighter one.
        assert!(picks(&b, 100).iter().all(|&i| i == 0));
    }

    #[test]
    fn idle_pool_spreads_evenly() {
        let (b, _) = p2c(&[1, 1, 1, 1]);
        let counts = shares(&b, 4, 40_000, &all);
        assert_weighted(&counts, &[1, 1, 1, 1], 0.02);
    }

    #[test]
    fn skips_ineligible_backends() {
        let (b, _) = p2c(&[1, 1, 1]);
        let counts = shares(&b, 3, 3000, &|i| i == 2);
        assert_eq!(counts, vec![0, 0, 3000]);
        let never = |_| false;
        assert_eq!(
            b.pick(&Pick {
                eligible: &never,
                key: None,
                available: usize::MAX,
            }),
            None
        );
    }
}
