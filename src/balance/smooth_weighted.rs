//! `balance = "weighted_round_robin"`: nginx's smooth weighted round-robin. Weights 5,1,1 give
//! a a b a c a a, not a a a a a b c.
//!
//! nginx adds every backend's weight to its `current` at each step, picks the largest `current`
//! (the first on ties) and subtracts the total weight from it. After `k` steps a backend that was
//! picked `p` times has `current = k × weight − total × p`, so backends of equal weight always
//! take their turns in index order: a step only compares one candidate per distinct weight.
//!
//! The sequence repeats every `total weight` picks, so it is computed once per config into a
//! table, and a pick is one atomic increment and one load. A pool whose table would cost more
//! than [`MAX_TABLE_WORK`] steps × distinct weights to build runs the same steps live under a
//! lock; there a pick that meets [`LIVE_STEPS`] ineligible steps in a row draws by weight among
//! the eligible backends instead of walking the whole cycle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{weight_gcd, weighted_among_eligible, Balancer, Pick};

/// Most work spent building a table at config load (total weight × distinct weights).
pub const MAX_TABLE_WORK: u64 = 1 << 26;
/// In live mode, ineligible steps in a row before drawing by weight among the eligible.
const LIVE_STEPS: usize = 16;

#[derive(Debug)]
pub struct SmoothWeighted {
    weights: Vec<u64>,
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

/// Backends of one weight, in index order, and how often the group was picked this cycle.
#[derive(Debug)]
struct Group {
    weight: i64,
    members: Vec<usize>,
    picks: u64,
}

/// The position in nginx's cycle.
#[derive(Debug)]
struct State {
    groups: Vec<Group>,
    total: i64,
    /// Steps taken in this cycle.
    step: i64,
}

impl State {
    fn new(weights: &[u32]) -> State {
        let gcd = weight_gcd(weights);
        let mut groups: Vec<Group> = Vec::new();
        for (i, &w) in weights.iter().enumerate() {
            let w = i64::from(w / gcd);
            match groups.iter_mut().find(|g| g.weight == w) {
                Some(g) => g.members.push(i),
                None => groups.push(Group {
                    weight: w,
                    members: vec![i],
                    picks: 0,
                }),
            }
        }
        State {
            total: weights.iter().map(|&w| i64::from(w / gcd)).sum(),
            groups,
            step: 0,
        }
    }

    /// The next backend of the cycle: the largest `current`, the lowest index on ties.
    fn next(&mut self) -> usize {
        self.step += 1;
        let mut best: Option<(i64, usize, usize)> = None; // (current, backend, group)
        for (g, group) in self.groups.iter().enumerate() {
            let n = group.members.len() as u64;
            let candidate = group.members[(group.picks % n) as usize];
            let current = self.step * group.weight - self.total * (group.picks / n) as i64;
            if best.is_none_or(|(c, b, _)| current > c || (current == c && candidate < b)) {
                best = Some((current, candidate, g));
            }
        }
        let (_, backend, g) = best.expect("a state has at least one group");
        self.groups[g].picks += 1;
        if self.step == self.total {
            // Every `current` is back to zero: the cycle starts over.
            self.step = 0;
            self.groups.iter_mut().for_each(|g| g.picks = 0);
        }
        backend
    }
}

impl SmoothWeighted {
    pub fn new(weights: &[u32]) -> SmoothWeighted {
        let mut state = State::new(weights);
        let work = state.total as u64 * state.groups.len() as u64;
        let mode = if weights.is_empty() || work > MAX_TABLE_WORK {
            Mode::Live(Mutex::new(state))
        } else {
            let order = (0..state.total).map(|_| state.next() as u32).collect();
            Mode::Table {
                order,
                cursor: AtomicUsize::new(0),
            }
        };
        SmoothWeighted {
            weights: weights.iter().map(|&w| u64::from(w)).collect(),
            mode,
        }
    }
}

impl Balancer for SmoothWeighted {
    fn pick(&self, pick: &Pick<'_>) -> Option<usize> {
        if self.weights.is_empty() {
            return None;
        }
        match &self.mode {
            // A skipped backend passes its turn on, like round-robin: the next entry of the
            // sequence, so the others keep their relative shares.
            Mode::Table { order, cursor } => (0..order.len())
                .map(|_| order[cursor.fetch_add(1, Ordering::Relaxed) % order.len()] as usize)
                .find(|&i| (pick.eligible)(i)),
            Mode::Live(state) => {
                let found = {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    (0..LIVE_STEPS)
                        .map(|_| s.next())
                        .find(|&i| (pick.eligible)(i))
                };
                found.or_else(|| weighted_among_eligible(&self.weights, pick.eligible))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// nginx's algorithm as written: O(backends) per step.
    fn nginx(weights: &[i64], n: usize) -> Vec<usize> {
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        (0..n)
            .map(|_| {
                let mut best = 0;
                for i in 0..weights.len() {
                    current[i] += weights[i];
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= total;
                best
            })
            .collect()
    }

    #[test]
    fn weights_5_1_1_interleave_smoothly() {
        let got = picks(&SmoothWeighted::new(&[5, 1, 1]), 14);
        assert_eq!(got, vec![0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn grouped_steps_give_exactly_nginx_sequence() {
        fastrand::seed(7);
        for _ in 0..200 {
            let n = fastrand::usize(1..12);
            let weights: Vec<u32> = (0..n).map(|_| fastrand::u32(1..7)).collect();
            let gcd = weight_gcd(&weights);
            let reduced: Vec<i64> = weights.iter().map(|&w| i64::from(w / gcd)).collect();
            let mut state = State::new(&weights);
            let steps = 3 * reduced.iter().sum::<i64>() as usize;
            let ours: Vec<usize> = (0..steps).map(|_| state.next()).collect();
            assert_eq!(ours, nginx(&reduced, steps), "weights {weights:?}");
        }
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
            weights: weights.iter().map(|&w| u64::from(w)).collect(),
            mode: Mode::Live(Mutex::new(State::new(&weights))),
        };
        assert_eq!(picks(&table, 60), picks(&live, 60));
    }

    #[test]
    fn live_mode_with_nothing_eligible_answers_at_once() {
        let weights: Vec<u32> = (1..=1000).collect();
        let live = SmoothWeighted::new(&weights);
        assert!(
            matches!(live.mode, Mode::Live(_)),
            "500 500 total weight x 1000 groups is over the table budget"
        );
        let never = |_| false;
        assert_eq!(
            live.pick(&Pick {
                eligible: &never,
                key: None,
                available: 0
            }),
            None
        );
        let only = |i| i == 3;
        assert_eq!(
            live.pick(&Pick {
                eligible: &only,
                key: None,
                available: 1
            }),
            Some(3)
        );
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
