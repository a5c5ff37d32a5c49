//! `balance = "least_connections"`: the backend with the fewest in-flight requests relative to
//! its weight (in-flight / weight); ties go round-robin.
//!
//! A pick must not scan every backend, so backends are kept in bucket queues: one per distinct
//! weight ("class"), each an array of FIFO lists indexed by in-flight count. The least-loaded
//! backend of a class is the head of its lowest non-empty list, so a pick compares one candidate
//! per class (usually one or a few classes) and moves the winner one list up; a release moves it
//! one list down. Both are O(classes) under one short lock. Within a list, FIFO order is
//! round-robin; across classes, ties go to the backend picked least recently.
//!
//! Backends out of service are parked outside the lists (see [`Balancer::sync`]), so that an
//! outage does not make every pick step over them.
//!
//! The registry's per-backend in-flight counts are the truth; the lists follow them. A pick and
//! a release through this balancer move a backend one list up or down; [`Balancer::sync`] (on
//! the first pick of a new config, and whenever a request picked under an older config ends)
//! moves every backend whose list no longer matches its registry count. So a reload keeps the
//! load of requests still in flight, and their end frees their backends in the new balancer.
//! A sync that races a pick may miss that one request until the next sync.

use std::sync::{Arc, Mutex};

use super::{Balancer, Pick};
use crate::registry::BackendState;

const NIL: u32 = u32::MAX;

#[derive(Debug)]
pub struct LeastConnections {
    index: Mutex<Index>,
    states: Vec<Arc<BackendState>>,
}

#[derive(Debug)]
struct Index {
    load: Vec<u32>,
    class_of: Vec<u32>,
    prev: Vec<u32>,
    next: Vec<u32>,
    /// When each backend was last picked (a logical clock), for ties across classes.
    last_pick: Vec<u64>,
    /// Out of service: in no list.
    parked: Vec<bool>,
    clock: u64,
    classes: Vec<Class>,
}

#[derive(Debug)]
struct Class {
    weight: u64,
    /// (head, tail) of the list of members with in-flight count = index.
    lists: Vec<(u32, u32)>,
    /// Members not parked; a class with none is skipped without looking at its lists.
    active: usize,
    /// A lower bound of the lowest in-flight count with a non-empty list: removing a member
    /// never lowers the true minimum, adding one lowers this bound when needed, and each pick
    /// raises it to the first non-empty list it finds.
    min: usize,
}

impl LeastConnections {
    /// `states[i]` is backend `i`'s registry state, read by [`Balancer::sync`].
    pub fn new(weights: &[u32], states: Vec<Arc<BackendState>>) -> LeastConnections {
        assert_eq!(weights.len(), states.len(), "one state per backend");
        let n = weights.len();
        let mut index = Index {
            load: vec![0; n],
            class_of: vec![0; n],
            prev: vec![NIL; n],
            next: vec![NIL; n],
            last_pick: (0..n as u64).collect(),
            parked: vec![false; n],
            clock: n as u64,
            classes: Vec::new(),
        };
        for (i, &w) in weights.iter().enumerate() {
            let c = match index.classes.iter().position(|c| c.weight == u64::from(w)) {
                Some(c) => c,
                None => {
                    index.classes.push(Class {
                        weight: u64::from(w),
                        lists: vec![(NIL, NIL)],
                        min: 0,
                        active: 0,
                    });
                    index.classes.len() - 1
                }
            };
            index.class_of[i] = c as u32;
            index.classes[c].active += 1;
            index.push_back(i, 0);
        }
        LeastConnections {
            index: Mutex::new(index),
            states,
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Index {
    fn push_back(&mut self, i: usize, level: usize) {
        let class = &mut self.classes[self.class_of[i] as usize];
        if class.lists.len() <= level {
            class.lists.resize(level + 1, (NIL, NIL));
        }
        let (head, tail) = class.lists[level];
        self.prev[i] = tail;
        self.next[i] = NIL;
        if tail == NIL {
            class.lists[level] = (i as u32, i as u32);
        } else {
            self.next[tail as usize] = i as u32;
            class.lists[level] = (head, i as u32);
        }
        if level < class.min {
            class.min = level;
        }
    }

    fn unlink(&mut self, i: usize) {
        let level = self.load[i] as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        let class = &mut self.classes[self.class_of[i] as usize];
        let (mut head, mut tail) = class.lists[level];
        if p == NIL {
            head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        class.lists[level] = (head, tail);
    }

    /// The least-loaded eligible member of class `c`: (load, backend). Tightens the class's
    /// `min` bound to the first non-empty list on the way.
    fn candidate(&mut self, c: usize, eligible: &dyn Fn(usize) -> bool) -> Option<(u64, usize)> {
        let class = &mut self.classes[c];
        if class.active == 0 {
            return None;
        }
        let mut tightened = false;
        for level in class.min..class.lists.len() {
            let mut i = class.lists[level].0;
            if i != NIL && !tightened {
                class.min = level;
                tightened = true;
            }
            while i != NIL {
                if eligible(i as usize) {
                    return Some((level as u64, i as usize));
                }
                i = self.next[i as usize];
            }
        }
        None
    }

    fn pick(&mut self, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(u64, u64, usize)> = None; // (load, weight, backend)
        for c in 0..self.classes.len() {
            let Some((load, i)) = self.candidate(c, eligible) else {
                continue;
            };
            let weight = self.classes[c].weight;
            let better = match best {
                None => true,
                // load / weight < best_load / best_weight, without division
                Some((bl, bw, b)) => {
                    let (lhs, rhs) = (load * bw, bl * weight);
                    lhs < rhs || (lhs == rhs && self.last_pick[i] < self.last_pick[b])
                }
            };
            if better {
                best = Some((load, weight, i));
            }
        }
        let (_, _, i) = best?;
        self.unlink(i);
        self.load[i] += 1;
        self.push_back(i, self.load[i] as usize);
        self.last_pick[i] = self.clock;
        self.clock += 1;
        Some(i)
    }

    fn release(&mut self, i: usize) {
        if i >= self.load.len() || self.load[i] == 0 {
            return;
        }
        if self.parked[i] {
            self.load[i] -= 1;
            return;
        }
        self.unlink(i);
        self.load[i] -= 1;
        self.push_back(i, self.load[i] as usize);
    }

    /// Puts backend `i` in the list its `load` and availability say, if it is not there yet.
    fn set(&mut self, i: usize, available: bool, load: u32) {
        if self.parked[i] != available && self.load[i] == load {
            return;
        }
        let class = self.class_of[i] as usize;
        if !self.parked[i] {
            self.unlink(i);
            self.classes[class].active -= 1;
        }
        self.load[i] = load;
        self.parked[i] = !available;
        if available {
            self.classes[class].active += 1;
            self.push_back(i, load as usize);
        }
    }
}

impl Balancer for LeastConnections {
    fn pick(&self, pick: &Pick<'_>) -> Option<usize> {
        self.index().pick(pick.eligible)
    }

    fn release(&self, backend: usize) {
        self.index().release(backend);
    }

    fn sync(&self, in_service: &dyn Fn(usize) -> bool) {
        let mut index = self.index();
        for (i, state) in self.states.iter().enumerate() {
            let load = u32::try_from(state.in_flight()).unwrap_or(u32::MAX);
            index.set(i, in_service(i), load);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn lc(weights: &[u32]) -> LeastConnections {
        LeastConnections::new(weights, states(weights.len()))
    }

    fn pick(lc: &LeastConnections) -> usize {
        lc.pick(&Pick {
            eligible: &all,
            key: None,
            available: usize::MAX,
        })
        .unwrap()
    }

    #[test]
    fn idle_backends_take_turns() {
        let lc = lc(&[1, 1, 1]);
        let order: Vec<usize> = (0..6)
            .map(|_| {
                let i = pick(&lc);
                lc.release(i);
                i
            })
            .collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn busiest_backend_is_avoided_until_it_frees_up() {
        let lc = lc(&[1, 1, 1]);
        let held: Vec<usize> = (0..3).map(|_| pick(&lc)).collect();
        assert_eq!(held, vec![0, 1, 2]);
        lc.release(1);
        assert_eq!(pick(&lc), 1, "only backend 1 has a free slot");
        lc.release(2);
        lc.release(0);
        assert_eq!(pick(&lc), 2, "0 and 2 tie; 2 was picked longer ago");
    }

    #[test]
    fn load_is_relative_to_weight() {
        // Holding every pick: in-flight grows 3:1 for weights 3:1.
        let lc = lc(&[3, 1]);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[pick(&lc)] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn ineligible_backends_are_skipped() {
        let lc = lc(&[1, 1, 2]);
        let counts = shares(&lc, 3, 100, &|i| i != 0);
        assert_eq!(counts[0], 0);
        assert_eq!(counts[1] + counts[2], 100);
        let never = |_| false;
        assert_eq!(
            lc.pick(&Pick {
                eligible: &never,
                key: None,
                available: usize::MAX,
            }),
            None
        );
    }

    #[test]
    fn parked_backends_are_not_picked_and_return_with_their_load() {
        let lc = lc(&[1, 1, 1]);
        let held = pick(&lc);
        assert_eq!(held, 0);
        lc.sync(&|i| i != 0);
        lc.sync(&|i| i != 0);
        let order: Vec<usize> = (0..4)
            .map(|_| {
                let i = pick(&lc);
                lc.release(i);
                i
            })
            .collect();
        assert_eq!(order, vec![1, 2, 1, 2]);
        lc.release(held);
        lc.sync(&|_| true);
        lc.sync(&|_| true);
        // Back with its load released: it joins the end of the rotation.
        let order: Vec<usize> = (0..3)
            .map(|_| {
                let i = pick(&lc);
                lc.release(i);
                i
            })
            .collect();
        assert_eq!(order, vec![1, 2, 0]);
        let never = |_| false;
        lc.sync(&|i| i != 1);
        let none = Pick {
            eligible: &never,
            key: None,
            available: usize::MAX,
        };
        assert_eq!(lc.pick(&none), None);
    }

    /// Random picks, releases, parks and unparks (as a sync): every pick has the least in-flight
    /// / weight of the unparked eligible backends, and loads match a plain model.
    #[test]
    fn model_check_against_brute_force() {
        fastrand::seed(11);
        for _ in 0..300 {
            let n = fastrand::usize(1..9);
            let weights: Vec<u32> = (0..n).map(|_| fastrand::u32(1..4)).collect();
            let states = states(n);
            let lc = LeastConnections::new(&weights, states.clone());
            let mut load = vec![0u64; n];
            let mut parked = vec![false; n];
            let mut held: Vec<usize> = Vec::new();
            for _ in 0..200 {
                match fastrand::u8(..10) {
                    0..=4 => {
                        let mask: Vec<bool> = (0..n).map(|_| fastrand::u8(..5) > 0).collect();
                        let eligible = |i: usize| mask[i];
                        let got = lc.pick(&Pick {
                            eligible: &eligible,
                            key: None,
                            available: n,
                        });
                        let candidates: Vec<usize> =
                            (0..n).filter(|&i| mask[i] && !parked[i]).collect();
                        match got {
                            None => {
                                assert!(candidates.is_empty(), "no pick but {candidates:?} free")
                            }
                            Some(i) => {
                                assert!(mask[i] && !parked[i], "picked {i}: ineligible or parked");
                                let ratio = |j: usize| load[j] as f64 / weights[j] as f64;
                                let best = candidates
                                    .iter()
                                    .map(|&j| ratio(j))
                                    .fold(f64::MAX, f64::min);
                                assert_eq!(ratio(i), best, "picked {i} with loads {load:?}, weights {weights:?}, parked {parked:?}");
                                load[i] += 1;
                                states[i].start();
                                held.push(i);
                            }
                        }
                    }
                    5..=7 if !held.is_empty() => {
                        let i = held.swap_remove(fastrand::usize(..held.len()));
                        lc.release(i);
                        states[i].end();
                        load[i] -= 1;
                    }
                    _ => {
                        let i = fastrand::usize(..n);
                        parked[i] = fastrand::bool();
                        lc.sync(&|j| !parked[j]);
                    }
                }
            }
        }
    }

    #[test]
    fn sync_follows_requests_picked_by_an_earlier_balancer() {
        let states = states(2);
        let new = LeastConnections::new(&[1, 1], states.clone());
        // A pick through `new`, counted in the registry as a lease would.
        let take = || {
            let i = pick(&new);
            states[i].start();
            i
        };
        // Two requests picked under the old config, still in flight on backend 0.
        states[0].start();
        states[0].start();
        new.sync(&|_| true);
        let order: Vec<usize> = (0..3).map(|_| take()).collect();
        assert_eq!(order, vec![1, 1, 0], "backend 0 carries the old load");
        // The old ones end (released on the old balancer); the next sync frees backend 0 here.
        states[0].end();
        states[0].end();
        new.sync(&|_| true);
        // In flight now: 1 on backend 0, 2 on backend 1.
        assert_eq!(take(), 0);
    }

    #[test]
    fn stray_release_is_ignored() {
        let lc = lc(&[1, 1]);
        lc.release(0);
        lc.release(7);
        assert_eq!(pick(&lc), 0);
    }
}
