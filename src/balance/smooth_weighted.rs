//! `balance = "weighted_round_robin"`: nginx's smooth weighted round-robin. Weights 5,1,1 give
//! a a b a c a a, not a a a a a b c.
//!
//! Each step adds every backend's weight to its `current`, picks the largest `current` (the
//! first on ties) and subtracts the total weight from it. The sequence repeats every
//! `total weight` picks, so it is computed once per config into a table and a pick is one
//! atomic increment and one load. Pools too big for a table (backends × total weight above
//! [`MAX_TABLE_WORK`]) run the same steps live under a lock instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{weight_gcd, Balancer, Pick};

/// Most step work spent building a table at config load (backends × total weight).
pub const MAX_TABLE_WORK: u64 = 1 << 26;

#[derive(Debug)]
pub struct SmoothWeighted {
    len: usize,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Table {
        order: Box<[u32]>,
        cursor: AtomicUsize,
    },
    Live(Mutex<State>),
}

/// nginx's per-backend `current_weight`s.
#[derive(Debug)]
struct State {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl State {
    fn new(weights: &[u32]) -> State {
        let gcd = weight_gcd(weights);
        let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / gcd)).collect();
        State {
            total: weights.iter().sum(),
            current: vec![0; weights.len()],
            weights,
        }
    }

    fn step(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

impl SmoothWeighted {
    pub fn new(weights: &[u32]) -> SmoothWeighted {
        let mut state = State::new(weights);
        let len = weights.len();
        let work = len as u64 * state.total as u64;
        let mode = if len == 0 || work > MAX_TABLE_WORK {
            Mode::Live(Mutex::new(state))
        } else {
            let order = (0..state.total).map(|_| state.step() as u32).collect();
            Mode::Table {
                order,
                cursor: AtomicUsize::new(0),
            }
        };
        SmoothWeighted { len, mode }
    }
}

impl Balancer for SmoothWeighted {
    fn pick(&self, pick: &Pick<'_>) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        match &self.mode {
            // A skipped backend passes its turn on, like round-robin: the next entry of the
            // sequence, so the others keep their relative shares.
            Mode::Table { order, cursor } => (0..order.len())
                .map(|_| order[cursor.fetch_add(1, Ordering::Relaxed) % order.len()] as usize)
                .find(|&i| (pick.eligible)(i)),
            Mode::Live(state) => {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                let steps = s.total as usize;
                (0..steps).map(|_| s.step()).find(|&i| (pick.eligible)(i))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn weights_5_1_1_interleave_smoothly() {
        let got = picks(&SmoothWeighted::new(&[5, 1, 1]), 14);
        assert_eq!(got, vec![0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_are_round_robin() {
        assert_eq!(
            picks(&SmoothWeighted::new(&[2, 2, 2]), 6),
            vec![0, 1, 2, 0, 1, 2]
        );
    }

    #[test]
    fn live_mode_gives_the_same_sequence_as_the_table() {
        let weights = [3, 7, 1, 4];
        let table = SmoothWeighted::new(&weights);
        let live = SmoothWeighted {
            len: 4,
            mode: Mode::Live(Mutex::new(State::new(&weights))),
        };
        assert_eq!(picks(&table, 60), picks(&live, 60));
    }

    #[test]
    fn shares_follow_weights_within_3_percent_over_100k_picks() {
        let weights = [5, 3, 1, 1];
        let counts = shares(&SmoothWeighted::new(&weights), 4, 100_000, &all);
        assert_weighted(&counts, &weights, 0.03);
    }

    #[test]
    fn skipping_keeps_the_others_relative_shares() {
        let weights = [4, 2, 1, 1];
        let counts = shares(&SmoothWeighted::new(&weights), 4, 80_000, &|i| i != 0);
        assert_eq!(counts[0], 0);
        assert_weighted(&counts[1..], &weights[1..], 0.01);
    }
}
