//! One backend's circuit breaker, kept in the registry so that it outlives a config:
//! closed → open → half-open → closed.
//!
//! - **Closed**: every request goes through; each outcome counts. `consecutive_failures` in a
//!   row, or a `failure_rate` of at least `min_requests` requests in the rolling `window`, opens
//!   the breaker.
//! - **Open**: no request goes through until `open_duration` has passed since it opened; the
//!   first request after that turns it half-open.
//! - **Half-open**: at most `half_open_requests` trials at once, each a claim (a compare-and-swap
//!   on the state word, never a plain read). One failed trial re-opens the breaker; once
//!   `half_open_requests` trials have succeeded it closes. (A *trial* is a real request sent to
//!   test the backend: what the logs and the manual call a half-open probe, which is no active
//!   health check's probe.)
//!
//! The request path reads the state with one atomic load and records outcomes with atomic
//! read-modify-writes: no lock anywhere. The state word packs the state, the trials in flight,
//! the trials that succeeded and a *cycle* number that every half-open period bumps, so that the
//! outcome of a trial from an earlier cycle cannot close or re-open a later one. The rolling
//! window is [`SLOTS`] counters, each one slot of `window / SLOTS`, stamped with its slot number
//! so that a stale slot reads as empty.
//!
//! Every method takes the config it runs under (a reload may change it) and the time as an
//! argument, so that tests drive it with paused time. Transitions are returned, not logged: the
//! caller names the backend and logs each once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

/// Slots of the rolling window.
pub const SLOTS: usize = 10;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

// State word: state (2 bits) | trials in flight (15) | trial successes (15) | cycle (32).
const TRIALS_SHIFT: u32 = 2;
const SUCCESSES_SHIFT: u32 = 17;
const CYCLE_SHIFT: u32 = 32;
const COUNT_MASK: u64 = (1 << 15) - 1;

// Window slot: slot number (24 bits) | requests (20) | failures (20).
const STAMP_MASK: u64 = (1 << 24) - 1;
const TALLY_MASK: u64 = (1 << 20) - 1;

/// What the breaker looks like from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

impl Circuit {
    /// 0 closed, 1 open, 2 half-open (the `fulcrum_circuit_state` gauge's values).
    pub fn code(self) -> u8 {
        match self {
            Circuit::Closed => 0,
            Circuit::Open => 1,
            Circuit::HalfOpen => 2,
        }
    }
}

/// Why a breaker opened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trip {
    /// This many failures in a row.
    Consecutive(u32),
    /// `failures` of `requests` in the window failed.
    Rate { failures: u32, requests: u32 },
    /// A half-open trial failed.
    TrialFailed,
}

impl std::fmt::Display for Trip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Trip::Consecutive(n) => write!(f, "{n} consecutive failures"),
            Trip::Rate { failures, requests } => write!(
                f,
                "{failures} of {requests} requests failed ({:.0} %) within the window",
                f64::from(failures) * 100.0 / f64::from(requests)
            ),
            Trip::TrialFailed => write!(f, "a half-open probe failed"),
        }
    }
}

/// A change of state, for the caller to log once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BreakerTransition {
    Opened(Trip),
    HalfOpened,
    /// After this many successful trials.
    Closed(u32),
}

/// What a request may do with a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Closed: go ahead, no claim to give back.
    Pass,
    /// Half-open: one of the trial places of this cycle is yours until you report or release it.
    Trial(u32),
    /// Open, or every trial place is taken.
    Refused,
}

#[derive(Debug)]
pub struct BreakerState {
    word: AtomicU64,
    /// When the breaker last opened, in nanoseconds since `base`.
    opened_at: AtomicU64,
    consecutive: AtomicU32,
    slots: [AtomicU64; SLOTS],
    base: Instant,
}

impl Default for BreakerState {
    fn default() -> Self {
        BreakerState {
            word: AtomicU64::new(CLOSED),
            opened_at: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            slots: Default::default(),
            base: Instant::now(),
        }
    }
}

fn state(w: u64) -> u64 {
    w & 3
}
fn trials(w: u64) -> u64 {
    (w >> TRIALS_SHIFT) & COUNT_MASK
}
fn successes(w: u64) -> u64 {
    (w >> SUCCESSES_SHIFT) & COUNT_MASK
}
fn cycle(w: u64) -> u32 {
    (w >> CYCLE_SHIFT) as u32
}
fn word(state: u64, trials: u64, successes: u64, cycle: u32) -> u64 {
    state | trials << TRIALS_SHIFT | successes << SUCCESSES_SHIFT | u64::from(cycle) << CYCLE_SHIFT
}

impl BreakerState {
    /// The state now. One atomic load.
    pub fn circuit(&self) -> Circuit {
        match state(self.word.load(Ordering::Acquire)) {
            CLOSED => Circuit::Closed,
            OPEN => Circuit::Open,
            _ => Circuit::HalfOpen,
        }
    }

    /// Whether a request could go to the backend now: closed, half-open with a free trial
    /// place, or open for `open_duration` already. A read: [`BreakerState::claim`] decides.
    pub fn admits(&self, config: &BreakerConfig) -> bool {
        let w = self.word.load(Ordering::Acquire);
        match state(w) {
            CLOSED => true,
            OPEN => self.open_elapsed(config, Instant::now()),
            _ => trials(w) < u64::from(config.half_open_requests),
        }
    }

    /// Claims the right to send one request (see [`Claim`]). The first claim after
    /// `open_duration` turns an open breaker half-open.
    pub fn claim(
        &self,
        config: &BreakerConfig,
        now: Instant,
    ) -> (Claim, Option<BreakerTransition>) {
        let max = u64::from(config.half_open_requests);
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            let (next, transition) = match state(w) {
                CLOSED => return (Claim::Pass, None),
                OPEN if !self.open_elapsed(config, now) => return (Claim::Refused, None),
                OPEN => {
                    let cycle = cycle(w).wrapping_add(1);
                    (
                        word(HALF_OPEN, 1, 0, cycle),
                        Some(BreakerTransition::HalfOpened),
                    )
                }
                _ if trials(w) >= max => return (Claim::Refused, None),
                _ => (w + (1 << TRIALS_SHIFT), None),
            };
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (Claim::Trial(cycle(next)), transition),
                Err(now_w) => w = now_w,
            }
        }
    }

    /// Gives back a trial place whose request ended without an outcome (the client went away).
    pub fn release(&self, cycle_of_trial: u32) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (state(w) == HALF_OPEN && cycle(w) == cycle_of_trial && trials(w) > 0)
                    .then(|| w - (1 << TRIALS_SHIFT))
            });
    }

    /// Records how a request went (`ok` = no connect error, timeout, broken response or status
    /// of the breaker's `failure_status`). `trial` is the
    /// cycle of the trial place the request claimed, if it claimed one.
    pub fn record(
        &self,
        config: &BreakerConfig,
        ok: bool,
        trial: Option<u32>,
        now: Instant,
    ) -> Option<BreakerTransition> {
        match trial {
            Some(c) => self.record_trial(config, ok, c, now),
            None => self.record_closed(config, ok, now),
        }
    }

    fn record_trial(
        &self,
        config: &BreakerConfig,
        ok: bool,
        trial: u32,
        now: Instant,
    ) -> Option<BreakerTransition> {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            if state(w) != HALF_OPEN || cycle(w) != trial {
                return None;
            }
            let done = successes(w) + 1;
            let (next, transition) = if !ok {
                self.opened_at.store(self.nanos(now), Ordering::Release);
                (
                    word(OPEN, 0, 0, trial),
                    BreakerTransition::Opened(Trip::TrialFailed),
                )
            } else if done >= u64::from(config.half_open_requests) {
                (
                    word(CLOSED, 0, 0, trial),
                    BreakerTransition::Closed(done as u32),
                )
            } else {
                let next = word(HALF_OPEN, trials(w).saturating_sub(1), done, trial);
                match self
                    .word
                    .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return None,
                    Err(now_w) => {
                        w = now_w;
                        continue;
                    }
                }
            };
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.clear_counts();
                    return Some(transition);
                }
                Err(now_w) => w = now_w,
            }
        }
    }

    fn record_closed(
        &self,
        config: &BreakerConfig,
        ok: bool,
        now: Instant,
    ) -> Option<BreakerTransition> {
        if state(self.word.load(Ordering::Acquire)) != CLOSED {
            // Admitted before the breaker opened: its outcome is old news.
            return None;
        }
        let consecutive = if ok {
            self.consecutive.store(0, Ordering::Relaxed);
            0
        } else {
            self.consecutive.fetch_add(1, Ordering::Relaxed) + 1
        };
        let slot = self.slot_number(config, now);
        let (requests, failures) = if config.failure_rate.is_some() {
            self.count(slot, ok);
            self.window_totals(slot)
        } else {
            (0, 0)
        };
        if ok {
            return None;
        }
        let trip = if config.consecutive_failures > 0 && consecutive >= config.consecutive_failures
        {
            Trip::Consecutive(consecutive)
        } else if config.failure_rate.is_some_and(|rate| {
            requests >= config.min_requests && f64::from(failures) >= rate * f64::from(requests)
        }) {
            Trip::Rate { failures, requests }
        } else {
            return None;
        };
        self.opened_at.store(self.nanos(now), Ordering::Release);
        let w = self.word.load(Ordering::Acquire);
        if state(w) != CLOSED {
            return None;
        }
        let opened = word(OPEN, 0, 0, cycle(w));
        self.word
            .compare_exchange(w, opened, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        self.clear_counts();
        Some(BreakerTransition::Opened(trip))
    }

    fn open_elapsed(&self, config: &BreakerConfig, now: Instant) -> bool {
        let opened = self.opened_at.load(Ordering::Acquire);
        self.nanos(now).saturating_sub(opened) >= config.open_duration.as_nanos() as u64
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn slot_number(&self, config: &BreakerConfig, now: Instant) -> u64 {
        let width = (config.window / SLOTS as u32).max(Duration::from_nanos(1));
        self.nanos(now) / width.as_nanos() as u64
    }

    fn count(&self, slot_number: u64, ok: bool) {
        let stamp = slot_number & STAMP_MASK;
        let fail = u64::from(!ok);
        let slot = &self.slots[(slot_number % SLOTS as u64) as usize];
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let (requests, failures) = if v >> 40 == stamp {
                ((v >> 20) & TALLY_MASK, v & TALLY_MASK)
            } else {
                (0, 0)
            };
            let requests = (requests + 1).min(TALLY_MASK);
            let failures = (failures + fail).min(TALLY_MASK);
            Some(stamp << 40 | requests << 20 | failures)
        });
    }

    /// (requests, failures) in the slots of the window that ends in slot `slot_number`.
    fn window_totals(&self, slot_number: u64) -> (u32, u32) {
        let now = slot_number & STAMP_MASK;
        self.slots.iter().fold((0, 0), |(r, f), slot| {
            let v = slot.load(Ordering::Acquire);
            let age = now.wrapping_sub(v >> 40) & STAMP_MASK;
            if v == 0 || age >= SLOTS as u64 {
                return (r, f);
            }
            (
                r + ((v >> 20) & TALLY_MASK) as u32,
                f + (v & TALLY_MASK) as u32,
            )
        })
    }

    fn clear_counts(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        for slot in &self.slots {
            slot.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_rate: None,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_duration: Duration::from_secs(30),
            half_open_requests: 2,
            failure_status: crate::config::StatusSet::EMPTY,
        }
    }

    fn fail(b: &BreakerState, c: &BreakerConfig, n: usize) -> Vec<BreakerTransition> {
        (0..n)
            .filter_map(|_| b.record(c, false, None, Instant::now()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_it_and_a_success_resets_the_count() {
        let (b, c) = (BreakerState::default(), config());
        assert!(fail(&b, &c, 2).is_empty());
        assert_eq!(b.record(&c, true, None, Instant::now()), None);
        assert!(
            fail(&b, &c, 2).is_empty(),
            "the success started the count over"
        );
        assert_eq!(
            fail(&b, &c, 1),
            vec![BreakerTransition::Opened(Trip::Consecutive(3))]
        );
        assert_eq!(b.circuit(), Circuit::Open);
        assert!(!b.admits(&c));
        assert_eq!(b.claim(&c, Instant::now()).0, Claim::Refused);
        assert!(fail(&b, &c, 5).is_empty(), "late outcomes change nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_after_open_duration_admits_exactly_the_trial_places() {
        let (b, c) = (BreakerState::default(), config());
        fail(&b, &c, 3);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!b.admits(&c));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.admits(&c), "open_duration is over");
        let now = Instant::now();
        let (first, t) = b.claim(&c, now);
        assert_eq!(t, Some(BreakerTransition::HalfOpened));
        let Claim::Trial(cycle) = first else {
            panic!("expected a trial, got {first:?}")
        };
        assert_eq!(b.claim(&c, now), (Claim::Trial(cycle), None));
        assert_eq!(b.claim(&c, now).0, Claim::Refused, "two places, both taken");
        assert!(!b.admits(&c));
        b.release(cycle);
        assert!(b.admits(&c), "a released place is free again");
        assert_eq!(b.claim(&c, now).0, Claim::Trial(cycle));
    }

    #[tokio::test(start_paused = true)]
    async fn all_trials_must_succeed_to_close() {
        let (b, c) = (BreakerState::default(), config());
        fail(&b, &c, 3);
        tokio::time::advance(c.open_duration).await;
        let now = Instant::now();
        let (Claim::Trial(cycle), _) = b.claim(&c, now) else {
            panic!("no trial")
        };
        b.claim(&c, now);
        assert_eq!(b.record(&c, true, Some(cycle), now), None);
        assert_eq!(b.circuit(), Circuit::HalfOpen);
        assert_eq!(
            b.record(&c, true, Some(cycle), now),
            Some(BreakerTransition::Closed(2))
        );
        assert_eq!(b.circuit(), Circuit::Closed);
        assert!(
            fail(&b, &c, 2).is_empty(),
            "closing cleared the failure count"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_failed_trial_reopens_for_another_open_duration() {
        let (b, c) = (BreakerState::default(), config());
        fail(&b, &c, 3);
        tokio::time::advance(c.open_duration).await;
        let now = Instant::now();
        let (Claim::Trial(cycle), _) = b.claim(&c, now) else {
            panic!("no trial")
        };
        let (second, _) = b.claim(&c, now);
        assert_eq!(
            b.record(&c, false, Some(cycle), now),
            Some(BreakerTransition::Opened(Trip::TrialFailed))
        );
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(
            b.record(&c, true, Some(cycle), now),
            None,
            "the other trial of that cycle cannot close it"
        );
        assert_eq!(second, Claim::Trial(cycle));
        tokio::time::advance(c.open_duration - Duration::from_millis(1)).await;
        assert!(!b.admits(&c));
        tokio::time::advance(Duration::from_millis(1)).await;
        let (next, t) = b.claim(&c, Instant::now());
        assert_eq!(t, Some(BreakerTransition::HalfOpened));
        assert_eq!(next, Claim::Trial(cycle + 1), "a new cycle");
        b.release(cycle);
        assert_eq!(b.claim(&c, Instant::now()).0, Claim::Trial(cycle + 1));
        assert_eq!(
            b.claim(&c, Instant::now()).0,
            Claim::Refused,
            "releasing an old cycle's place frees nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_needs_min_requests_within_the_window() {
        let c = BreakerConfig {
            consecutive_failures: 0,
            failure_rate: Some(0.5),
            ..config()
        };
        let b = BreakerState::default();
        let now = Instant::now;
        // 9 requests, 5 failed, alternating: never 2 in a row, under min_requests.
        for i in 0..9 {
            assert_eq!(b.record(&c, i % 2 == 1, None, now()), None);
        }
        assert_eq!(
            b.record(&c, false, None, now()),
            Some(BreakerTransition::Opened(Trip::Rate {
                failures: 6,
                requests: 10
            }))
        );

        let b = BreakerState::default();
        for _ in 0..6 {
            b.record(&c, false, None, now());
        }
        // The failures leave the window: 7 of 11 would trip, 1 of 5 does not.
        tokio::time::advance(c.window).await;
        for _ in 0..4 {
            b.record(&c, true, None, now());
        }
        assert_eq!(
            b.record(&c, false, None, now()),
            None,
            "1 of 5 in the window"
        );
        assert_eq!(b.circuit(), Circuit::Closed);
    }

    #[test]
    fn trip_reasons_read_well() {
        let rate = Trip::Rate {
            failures: 31,
            requests: 50,
        };
        assert_eq!(
            rate.to_string(),
            "31 of 50 requests failed (62 %) within the window"
        );
        assert_eq!(Trip::Consecutive(5).to_string(), "5 consecutive failures");
    }
}
