//! `balance = "round_robin"`: equal turns, weights ignored.
//!
//! A skipped (ineligible) backend advances the shared cursor too: the turn passes on exactly as
//! if the backend were absent, so its successor does not inherit its share.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, Pick};

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
