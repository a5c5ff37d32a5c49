//! Equal turns: what `balance = "round_robin"` (and its synonym `weighted_round_robin`) does
//! when every weight is the same. It yields exactly the sequence of [`SmoothWeighted`] over
//! equal weights (and skips the same way), without its table; [`turns`] picks one of the two.
//!
//! A skipped (ineligible) backend advances the shared cursor too: the turn passes on exactly as
//! if the backend were absent, so its successor does not inherit its share.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, Pick, SmoothWeighted};

/// `balance = "round_robin"` or `"weighted_round_robin"` over backends of these weights:
/// nginx's smooth weighted round-robin, as plain turns when the weights are all equal.
pub fn turns(weights: &[u32]) -> Box<dyn Balancer> {
    if weights.windows(2).all(|w| w[0] == w[1]) {
        Box::new(RoundRobin::new(weights.len()))
    } else {
        Box::new(SmoothWeighted::new(weights))
    }
}

#[derive(Debug)]
pub struct RoundRobin {
    len: usize,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(len: usize) -> RoundRobin {
        RoundRobin {
            len,
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, pick: &Pick<'_>) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        (0..self.len)
            .map(|_| self.next.fetch_add(1, Ordering::Relaxed) % self.len)
            .find(|&i| (pick.eligible)(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn takes_equal_turns_in_order() {
        assert_eq!(picks(&RoundRobin::new(3), 7), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn equal_weights_take_the_same_turns_as_smooth_weighted() {
        for n in 2..6 {
            let weights = vec![3; n];
            let smooth = SmoothWeighted::new(&weights);
            let plain = turns(&weights);
            assert_eq!(picks(&*plain, 4 * n + 1), picks(&smooth, 4 * n + 1));
            let skip = |i| i != n / 2;
            assert_eq!(shares(&*plain, n, 60, &skip), shares(&smooth, n, 60, &skip));
        }
    }

    #[test]
    fn unequal_weights_are_honoured() {
        assert_eq!(picks(&*turns(&[5, 1]), 6), vec![0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn skipping_does_not_favour_the_successor() {
        let rr = RoundRobin::new(3);
        let counts = shares(&rr, 3, 3000, &|i| i != 1);
        assert_eq!(counts, vec![1500, 0, 1500]);
    }

    #[test]
    fn none_when_nothing_is_eligible() {
        let never = |_| false;
        assert_eq!(
            RoundRobin::new(3).pick(&Pick {
                eligible: &never,
                key: None,
                available: usize::MAX,
            }),
            None
        );
        assert_eq!(
            RoundRobin::new(0).pick(&Pick {
                eligible: &all,
                key: None,
                available: usize::MAX,
            }),
            None
        );
    }
}
