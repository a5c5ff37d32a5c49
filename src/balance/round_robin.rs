//! `balance = "round_robin"`: equal turns, weights ignored.

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
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.len;
        (0..self.len)
            .map(|offset| (start + offset) % self.len)
            .find(|&i| (pick.eligible)(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(rr: &RoundRobin, n: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        (0..n).filter_map(|_| rr.pick(&Pick { eligible })).collect()
    }

    #[test]
    fn takes_equal_turns_in_order() {
        let rr = RoundRobin::new(3);
        assert_eq!(picks(&rr, 7, &|_| true), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn skips_ineligible_backends() {
        let rr = RoundRobin::new(3);
        assert_eq!(picks(&rr, 4, &|i| i != 1), vec![0, 2, 2, 0]);
    }

    #[test]
    fn none_when_nothing_is_eligible() {
        assert_eq!(
            RoundRobin::new(3).pick(&Pick {
                eligible: &|_| false
            }),
            None
        );
        assert_eq!(
            RoundRobin::new(0).pick(&Pick {
                eligible: &|_| true
            }),
            None
        );
    }
}
