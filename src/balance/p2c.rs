//! `balance = "p2c"`: power of two random choices (Envoy's LEAST_REQUEST): draw two distinct
//! backends in service at random and take the one with fewer in-flight requests relative to its
//! weight.
//! O(1); reads the shared per-backend in-flight counters, so it sees every request, including
//! those picked before a config reload.

use std::sync::Arc;

use super::in_service::InService;
use super::{Balancer, Pick};
use crate::registry::BackendState;

#[derive(Debug)]
pub struct PowerOfTwo {
    weights: Vec<u64>,
    states: Vec<Arc<BackendState>>,
    in_service: InService,
}

impl PowerOfTwo {
    pub fn new(weights: &[u32], states: Vec<Arc<BackendState>>) -> PowerOfTwo {
        assert_eq!(weights.len(), states.len(), "one state per backend");
        let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
        PowerOfTwo {
            in_service: InService::new(&weights),
            weights,
            states,
        }
    }

    /// Whether `a` is less loaded than `b` relative to weight (in-flight / weight).
    fn lighter(&self, a: usize, b: usize) -> bool {
        let (la, lb) = (self.states[a].in_flight(), self.states[b].in_flight());
        la * self.weights[b] <= lb * self.weights[a]
    }
}

/// Draws before falling back to a uniform choice among the eligible backends.
const DRAWS: usize = 8;

impl Balancer for PowerOfTwo {
    fn pick(&self, pick: &Pick<'_>) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        // Draws are uniform over the backends in service (the partner over the other m - 1), so
        // the first eligible pair is a uniform pair: skipping others favours no one.
        let in_service = &self.in_service.table().backends;
        let m = in_service.len();
        let first = (0..if m > 0 { DRAWS } else { 0 })
            .map(|_| fastrand::usize(..m))
            .find(|&k| (pick.eligible)(in_service[k] as usize));
        if let Some(k) = first {
            let a = in_service[k] as usize;
            if m == 1 {
                return Some(a);
            }
            let partner = (0..DRAWS)
                .map(|_| in_service[(k + 1 + fastrand::usize(..m - 1)) % m] as usize)
                .find(|&b| (pick.eligible)(b));
            return Some(match partner {
                Some(b) if !self.lighter(a, b) => b,
                _ => a,
            });
        }
        // Mostly ineligible pool: uniform among the eligible ones.
        let eligible = (0..n).filter(|&i| (pick.eligible)(i)).count();
        if eligible == 0 {
            return None;
        }
        let k = fastrand::usize(..eligible);
        (0..n).filter(|&i| (pick.eligible)(i)).nth(k)
    }

    fn sync(&self, in_service: &dyn Fn(usize) -> bool) {
        self.in_service.sync(in_service);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn p2c(weights: &[u32]) -> (PowerOfTwo, Vec<Arc<BackendState>>) {
        let states = states(weights.len());
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
    fn skipping_a_run_of_backends_favours_none_of_the_others() {
        let (b, _) = p2c(&[1; 10]);
        let counts = shares(&b, 10, 100_000, &|i| i >= 8);
        assert_eq!(counts[..8].iter().sum::<usize>(), 0);
        let share = counts[8] as f64 / 100_000.0;
        assert!(
            (share - 0.5).abs() < 0.02,
            "backend 8 got {share:.3} of the picks, backend 9 the rest"
        );
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
