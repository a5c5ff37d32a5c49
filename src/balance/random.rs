//! `balance = "random"`: weighted random. A pick draws a point in [0, total weight) of the
//! backends in service and finds its backend by binary search over cumulative weights
//! (O(log n)). An ineligible draw is redrawn (rejection sampling keeps the other backends'
//! relative shares exact); after a few misses the draw is made over the eligible backends only.

use super::in_service::InService;
use super::{weighted_among_eligible, Balancer, Pick};

/// Redraws before falling back to an exact draw over the eligible backends.
const REDRAWS: usize = 8;

#[derive(Debug)]
pub struct WeightedRandom {
    weights: Vec<u64>,
    in_service: InService,
}

impl WeightedRandom {
    pub fn new(weights: &[u32]) -> WeightedRandom {
        let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
        WeightedRandom {
            in_service: InService::new(&weights),
            weights,
        }
    }
}

impl Balancer for WeightedRandom {
    fn pick(&self, pick: &Pick<'_>) -> Option<usize> {
        let table = self.in_service.table();
        for _ in 0..REDRAWS {
            let Some(i) = table.draw_weighted() else {
                break;
            };
            if (pick.eligible)(i) {
                return Some(i);
            }
        }
        weighted_among_eligible(&self.weights, pick.eligible)
    }

    fn sync(&self, in_service: &dyn Fn(usize) -> bool) {
        self.in_service.sync(in_service);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn shares_follow_weights_within_3_percent_over_100k_picks() {
        let weights = [5, 3, 1, 1];
        let counts = shares(&WeightedRandom::new(&weights), 4, 100_000, &all);
        assert_weighted(&counts, &weights, 0.03);
    }

    #[test]
    fn skipping_keeps_relative_shares() {
        let weights = [6, 3, 1];
        // Mostly-ineligible pool: exercises the exact fallback too.
        let counts = shares(&WeightedRandom::new(&weights), 3, 60_000, &|i| i != 0);
        assert_eq!(counts[0], 0);
        assert_weighted(&counts[1..], &weights[1..], 0.02);
    }

    #[test]
    fn none_when_nothing_is_eligible() {
        let never = |_| false;
        assert_eq!(
            WeightedRandom::new(&[1, 2]).pick(&Pick {
                eligible: &never,
                key: None,
                available: usize::MAX,
            }),
            None
        );
        assert_eq!(
            WeightedRandom::new(&[]).pick(&Pick {
                eligible: &all,
                key: None,
                available: usize::MAX,
            }),
            None
        );
    }
}
