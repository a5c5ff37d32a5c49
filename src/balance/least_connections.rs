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
//! Backends health takes out of service are parked outside the lists (see
//! [`Balancer::set_available`]), so that an outage does not make every pick step over them.
//!
//! The counts are those of requests picked through this balancer. After a config reload, the
//! new balancer starts at zero while the previous one's requests finish (the shared per-backend
//! counters in the registry, used by metrics, p2c and bounded load, keep counting them).

use std::sync::Mutex;

use super::{Balancer, Pick};

const NIL: u32 = u32::MAX;

#[derive(Debug)]
pub struct LeastConnections {
    index: Mutex<Index>,
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
    pub fn new(weights: &[u32]) -> LeastConnections {
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

    fn set_available(&mut self, i: usize, available: bool) {
        if i >= self.parked.len() || self.parked[i] != available {
            return;
        }
        let class = self.class_of[i] as usize;
        if available {
            self.parked[i] = false;
            self.classes[class].active += 1;
            self.push_back(i, self.load[i] as usize);
        } else {
            self.unlink(i);
            self.parked[i] = true;
            self.classes[class].active -= 1;
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

    fn set_available(&self, backend: usize, available: bool) {
        self.index().set_available(backend, available);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
        let lc = LeastConnections::new(&[1, 1, 1]);
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
        let lc = LeastConnections::new(&[1, 1, 1]);
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
        let lc = LeastConnections::new(&[3, 1]);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[pick(&lc)] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn ineligible_backends_are_skipped() {
        let lc = LeastConnections::new(&[1, 1, 2]);
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
        let lc = LeastConnections::new(&[1, 1, 1]);
        let held = pick(&lc);
        assert_eq!(held, 0);
        lc.set_available(0, false);
        lc.set_available(0, false);
        let order: Vec<usize> = (0..4)
            .map(|_| {
                let i = pick(&lc);
                lc.release(i);
                i
            })
            .collect();
        assert_eq!(order, vec![1, 2, 1, 2]);
        lc.release(held);
        lc.set_available(0, true);
        lc.set_available(0, true);
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
        lc.set_available(1, false);
        let none = Pick {
            eligible: &never,
            key: None,
            available: usize::MAX,
        };
        assert_eq!(lc.pick(&none), None);
    }

    /// Random picks, releases, parks and unparks: every pick has the least in-flight / weight of
    /// the unparked eligible backends, and loads match a plain model.
    #[test]
    fn model_check_against_brute_force() {
        fastrand::seed(11);
        for _ in 0..300 {
            let n = fastrand::usize(1..9);
            let weights: Vec<u32> = (0..n).map(|_| fastrand::u32(1..4)).collect();
            let lc = LeastConnections::new(&weights);
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
                                held.push(i);
                            }
                        }
                    }
                    5..=7 if !held.is_empty() => {
                        let i = held.swap_remove(fastrand::usize(..held.len()));
                        lc.release(i);
                        load[i] -= 1;
                    }
                    _ => {
                        let i = fastrand::usize(..n);
                        let available = fastrand::bool();
                        lc.set_available(i, available);
                        parked[i] = !available;
                    }
                }
            }
        }
    }

    #[test]
    fn stray_release_is_ignored() {
        let lc = LeastConnections::new(&[1, 1]);
        lc.release(0);
        lc.release(7);
        assert_eq!(pick(&lc), 0);
    }
}
