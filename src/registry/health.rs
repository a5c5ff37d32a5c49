//! One backend's health, kept in the registry so that it outlives a config. The request path
//! reads one atomic flags word; probes and passive outcomes move it through its states.
//!
//! Whether a backend is actively checked is a property of the config, not of this state: a
//! snapshot asks [`HealthState::in_service`] with its own answer, so a reload that adds or
//! removes a check changes nothing here.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The last active check of a backend, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastProbe {
    pub at: SystemTime,
    /// Why it failed; `None` when it passed.
    pub error: Option<String>,
}

/// No active check has answered yet (every backend starts so).
const UNKNOWN: u32 = 1;
/// Active check says unhealthy.
const DOWN: u32 = 2;
/// Passively ejected.
const EJECTED: u32 = 4;
/// Back from an ejection on trial: one request may try it ([`HealthState::claim_trial`]); its
/// success ends the trial, its failure ejects the backend again at once.
const TRIAL: u32 = 8;
/// The trial request is under way: no other request goes there meanwhile.
const TRIAL_TAKEN: u32 = 16;

/// The state bits of the flags word; above them, the readmission cycle (bumped by each
/// [`HealthState::readmit`]), which names a trial so that a stale one's outcome is ignored.
const STATE: u32 = 0xff;
const CYCLE_SHIFT: u32 = 8;

/// Whether flags `f` say in service, under a config that does (`checked`) or does not actively
/// check the backend. A trial does not matter here.
fn serving(f: u32, checked: bool) -> bool {
    let f = f & STATE & !(TRIAL | TRIAL_TAKEN);
    if checked {
        f == 0
    } else {
        f & EJECTED == 0
    }
}

/// What one active health-check result did to a backend's health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// Its state stays as it was.
    Unchanged,
    /// It became healthy.
    Up,
    /// It became unhealthy.
    Down,
}

#[derive(Debug, Default)]
struct Ejections {
    /// Ejections in a row: the ejection-time multiplier.
    count: u32,
    /// When the last ejection ended.
    returned: Option<Instant>,
    /// When the current ejection ends (kept here so a new monitor can pick it up).
    until: Option<Instant>,
}

#[derive(Debug)]
pub struct HealthState {
    flags: AtomicU32,
    successes: AtomicU32,
    failures: AtomicU32,
    passive_failures: AtomicU32,
    ejections: Mutex<Ejections>,
    last_probe: Mutex<Option<LastProbe>>,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            flags: AtomicU32::new(UNKNOWN),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            passive_failures: AtomicU32::new(0),
            ejections: Mutex::default(),
            last_probe: Mutex::default(),
        }
    }
}

impl HealthState {
    /// Whether the backend may take traffic under a config that does (`checked`) or does not
    /// actively check it: not ejected and, when checked, probed healthy. One atomic load.
    /// A backend on trial is in service (whether a request may go there now is
    /// [`HealthState::takes_request`]).
    pub fn in_service(&self, checked: bool) -> bool {
        serving(self.flags.load(Ordering::Relaxed), checked)
    }

    /// [`HealthState::in_service`], and not on a trial another request has taken. One atomic
    /// load.
    pub fn takes_request(&self, checked: bool) -> bool {
        let f = self.flags.load(Ordering::Relaxed);
        f & TRIAL_TAKEN == 0 && serving(f, checked)
    }

    /// Whether the backend is back from an ejection on trial.
    pub fn on_trial(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & TRIAL != 0
    }

    /// Takes the trial for one request and returns its readmission cycle: `None` if the
    /// backend is not on trial or another request has it.
    pub fn claim_trial(&self) -> Option<u32> {
        self.flags
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |f| {
                (f & (TRIAL | TRIAL_TAKEN) == TRIAL).then_some(f | TRIAL_TAKEN)
            })
            .ok()
            .map(|f| f >> CYCLE_SHIFT)
    }

    /// Whether the trial of readmission `cycle` is still going (not settled, not ended by an
    /// ejection or an active check, not an earlier readmission's).
    pub fn trial_current(&self, cycle: u32) -> bool {
        let f = self.flags.load(Ordering::Relaxed);
        f & TRIAL != 0 && f >> CYCLE_SHIFT == cycle
    }

    /// Gives the taken trial of readmission `cycle` back unsettled (its request ended without
    /// an outcome); a stale cycle's is ignored, so it cannot free a later trial.
    pub fn release_trial(&self, cycle: u32) {
        let _ = self
            .flags
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |f| {
                (f & TRIAL_TAKEN != 0 && f >> CYCLE_SHIFT == cycle).then_some(f & !TRIAL_TAKEN)
            });
    }

    /// Ends the trial of readmission `cycle`, which succeeded: the backend is fully back. False
    /// (and nothing done) if that trial is over already.
    pub fn pass_trial(&self, cycle: u32) -> bool {
        let passed = self
            .flags
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |f| {
                (f & TRIAL != 0 && f >> CYCLE_SHIFT == cycle).then_some(f & !(TRIAL | TRIAL_TAKEN))
            })
            .is_ok();
        if passed {
            self.clear_passive_failures();
        }
        passed
    }

    /// "healthy", "unhealthy", "unknown" or "ejected", for logs and status.
    pub fn describe(&self, checked: bool) -> &'static str {
        let f = self.flags.load(Ordering::Relaxed);
        if f & EJECTED != 0 {
            "ejected"
        } else if !checked {
            "healthy"
        } else if f & DOWN != 0 {
            "unhealthy"
        } else if f & UNKNOWN != 0 {
            "unknown"
        } else {
            "healthy"
        }
    }

    /// Notes when the last probe ran and how it went (`error`: why it failed).
    pub fn note_probe(&self, error: Option<&str>) {
        let last = LastProbe {
            at: SystemTime::now(),
            error: error.map(str::to_owned),
        };
        *self.last_probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(last);
    }

    /// The last probe, if any ran since the backend appeared or its check was removed.
    pub fn last_probe(&self) -> Option<LastProbe> {
        self.last_probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether no active check has answered since the backend appeared or its check was removed.
    pub fn is_unknown(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & UNKNOWN != 0
    }

    /// Drops what active checks learnt: the backend is unknown again and must pass a probe
    /// before a checked config sends it traffic. Called when its check is removed, so that a
    /// check added back later does not trust an old result.
    pub fn forget_probes(&self) {
        *self.last_probe.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.successes.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.flags.fetch_or(UNKNOWN, Ordering::Relaxed);
        self.flags.fetch_and(!DOWN, Ordering::Relaxed);
    }

    /// Applies one probe result. The first result of an unknown backend decides at once; later
    /// ones need `rise` successes or `fall` failures in a row to change the state. Rising also
    /// ends a passive ejection.
    pub fn on_probe(&self, ok: bool, rise: u32, fall: u32) -> HealthChange {
        let flags = self.flags.load(Ordering::Relaxed);
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            let n = self
                .successes
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if flags & UNKNOWN != 0 || (flags & DOWN != 0 && n >= rise) {
                // The active check saw it come back: a passive ejection (from the failures
                // that took it down) ends too, as Envoy's
                // `successful_active_health_check_uneject_host`.
                if flags & EJECTED != 0 {
                    let mut e = self.ejections.lock().unwrap_or_else(|p| p.into_inner());
                    e.returned = Some(Instant::now());
                    e.until = None;
                    self.passive_failures.store(0, Ordering::Relaxed);
                }
                self.flags.fetch_and(
                    !(UNKNOWN | DOWN | EJECTED | TRIAL | TRIAL_TAKEN),
                    Ordering::Relaxed,
                );
                return HealthChange::Up;
            }
        } else {
            self.successes.store(0, Ordering::Relaxed);
            let n = self
                .failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if flags & UNKNOWN != 0 || (flags & DOWN == 0 && n >= fall) {
                self.flags.fetch_or(DOWN, Ordering::Relaxed);
                self.flags.fetch_and(!UNKNOWN, Ordering::Relaxed);
                return HealthChange::Down;
            }
        }
        HealthChange::Unchanged
    }

    /// Counts a real response: `true` once `threshold` failures have come in a row.
    pub fn on_response(&self, ok: bool, threshold: u32) -> bool {
        if ok {
            self.clear_passive_failures();
            false
        } else {
            self.passive_failures.fetch_add(1, Ordering::Relaxed) + 1 >= threshold
        }
    }

    /// Zeroes the consecutive-failure count, writing it only when it is not zero already: every
    /// success of every upstream comes here (ejection is on by default), and a store on each
    /// would keep taking the cache line that every pick reads the flags from.
    fn clear_passive_failures(&self) {
        if self.passive_failures.load(Ordering::Relaxed) != 0 {
            self.passive_failures.store(0, Ordering::Relaxed);
        }
    }

    pub fn is_ejected(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & EJECTED != 0
    }

    /// Ejects the backend and returns for how long: `base × ejections in a row`, capped at
    /// `max`. The multiplier starts over once the backend has stayed in for `max` since its
    /// last return.
    pub fn eject(&self, base: Duration, max: Duration, now: Instant) -> Duration {
        let mut e = self.ejections.lock().unwrap_or_else(|p| p.into_inner());
        if e.returned
            .is_some_and(|r| now.saturating_duration_since(r) >= max)
        {
            e.count = 0;
        }
        e.count = e.count.saturating_add(1);
        let time = base.saturating_mul(e.count).min(max);
        e.until = Some(now + time);
        self.flags.fetch_or(EJECTED, Ordering::Relaxed);
        self.flags
            .fetch_and(!(TRIAL | TRIAL_TAKEN), Ordering::Relaxed);
        time
    }

    /// Ends an ejection, or a trial after one, at once and with no trial: passive ejection was
    /// turned off. True if the backend was ejected or on trial (its upstream's epoch must move).
    pub fn end_ejection(&self) -> bool {
        let mut e = self.ejections.lock().unwrap_or_else(|p| p.into_inner());
        let f = self
            .flags
            .fetch_and(!(EJECTED | TRIAL | TRIAL_TAKEN), Ordering::AcqRel);
        if f & EJECTED != 0 {
            e.returned = Some(Instant::now());
        }
        e.until = None;
        f & (EJECTED | TRIAL) != 0
    }

    /// When the current ejection ends, if the backend is ejected.
    pub fn ejected_until(&self) -> Option<Instant> {
        let e = self.ejections.lock().unwrap_or_else(|p| p.into_inner());
        e.until.filter(|_| self.is_ejected())
    }

    /// Ends an ejection: the backend is back on trial (one request tries it; see
    /// [`HealthState::claim_trial`]) with a clean failure count.
    pub fn readmit(&self, now: Instant) {
        let mut e = self.ejections.lock().unwrap_or_else(|p| p.into_inner());
        e.returned = Some(now);
        e.until = None;
        self.passive_failures.store(0, Ordering::Relaxed);
        let _ = self
            .flags
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |f| {
                Some((f.wrapping_add(1 << CYCLE_SHIFT) | TRIAL) & !EJECTED)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked() -> HealthState {
        HealthState::default()
    }

    #[test]
    fn unknown_until_the_first_probe_which_decides_at_once() {
        let h = checked();
        assert!(!h.in_service(true));
        assert!(h.in_service(false), "unknown is fine where nothing checks");
        assert_eq!(h.on_probe(true, 2, 3), HealthChange::Up);
        assert!(h.in_service(true));
        let h = checked();
        assert_eq!(h.on_probe(false, 2, 3), HealthChange::Down);
        assert_eq!(h.describe(true), "unhealthy");
        assert_eq!(h.describe(false), "healthy");
    }

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let h = checked();
        h.on_probe(true, 2, 3);
        assert_eq!(h.on_probe(false, 2, 3), HealthChange::Unchanged);
        assert_eq!(h.on_probe(false, 2, 3), HealthChange::Unchanged);
        assert!(h.in_service(true));
        assert_eq!(h.on_probe(false, 2, 3), HealthChange::Down);
        assert!(!h.in_service(true));
        assert_eq!(
            h.on_probe(false, 2, 3),
            HealthChange::Unchanged,
            "logged once"
        );
        assert_eq!(h.on_probe(true, 2, 3), HealthChange::Unchanged);
        assert_eq!(
            h.on_probe(false, 2, 3),
            HealthChange::Unchanged,
            "a failure restarts the count"
        );
        assert_eq!(h.on_probe(true, 2, 3), HealthChange::Unchanged);
        assert_eq!(h.on_probe(true, 2, 3), HealthChange::Up);
        assert!(h.in_service(true));
    }

    #[test]
    fn forgetting_probes_makes_a_backend_unknown_again() {
        let h = checked();
        h.on_probe(false, 1, 1);
        assert!(!h.in_service(true) && h.in_service(false));
        h.forget_probes();
        assert!(h.is_unknown() && !h.in_service(true));
        assert_eq!(
            h.on_probe(true, 2, 3),
            HealthChange::Up,
            "first probe decides"
        );
        h.eject(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Instant::now(),
        );
        h.forget_probes();
        assert!(!h.in_service(false), "forgetting probes keeps an ejection");
    }

    #[test]
    fn passive_failures_count_in_a_row() {
        let h = HealthState::default();
        assert!(!h.on_response(false, 3));
        assert!(!h.on_response(false, 3));
        assert!(!h.on_response(true, 3));
        assert!(!h.on_response(false, 3));
        assert!(!h.on_response(false, 3));
        assert!(h.on_response(false, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn rising_on_active_checks_ends_a_passive_ejection() {
        let h = checked();
        h.on_probe(true, 2, 1);
        let base = Duration::from_secs(30);
        h.eject(base, base, Instant::now());
        assert_eq!(
            h.on_probe(true, 2, 1),
            HealthChange::Unchanged,
            "up already: stays ejected"
        );
        assert!(h.is_ejected());
        assert_eq!(h.on_probe(false, 2, 1), HealthChange::Down);
        h.on_probe(true, 2, 1);
        assert_eq!(h.on_probe(true, 2, 1), HealthChange::Up);
        assert!(!h.is_ejected() && h.in_service(true) && h.ejected_until().is_none());
    }

    #[test]
    fn a_readmitted_backend_takes_one_request_on_trial() {
        let h = HealthState::default();
        let (base, now) = (Duration::from_secs(1), Instant::now());
        h.eject(base, base, now);
        assert!(h.claim_trial().is_none(), "no trial while ejected");
        h.readmit(now);
        assert!(h.on_trial() && h.in_service(false) && h.takes_request(false));
        let c = h.claim_trial().expect("a trial");
        assert!(h.trial_current(c));
        assert!(h.claim_trial().is_none(), "one request at a time");
        assert!(h.in_service(false) && !h.takes_request(false));
        h.release_trial(c);
        assert!(
            h.claim_trial().is_some(),
            "an unsettled trial is free again"
        );
        h.eject(base, base, now);
        assert!(
            !h.on_trial() && !h.in_service(false) && !h.trial_current(c),
            "a failed trial ejects again"
        );
        h.readmit(now);
        let c = h.claim_trial().expect("a new trial");
        assert!(h.pass_trial(c));
        assert!(!h.on_trial() && h.takes_request(false) && h.claim_trial().is_none());
        assert!(!h.pass_trial(c), "settled once");
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_ejections_and_resets_after_max() {
        let (base, max) = (Duration::from_secs(30), Duration::from_secs(100));
        let h = HealthState::default();
        let t0 = Instant::now();
        assert_eq!(h.eject(base, max, t0), Duration::from_secs(30));
        assert!(!h.in_service(false) && h.is_ejected());
        h.readmit(t0 + Duration::from_secs(30));
        assert!(h.in_service(false));
        assert_eq!(
            h.eject(base, max, t0 + Duration::from_secs(40)),
            Duration::from_secs(60)
        );
        h.readmit(t0 + Duration::from_secs(100));
        assert_eq!(
            h.eject(base, max, t0 + Duration::from_secs(110)),
            Duration::from_secs(90)
        );
        h.readmit(t0 + Duration::from_secs(200));
        assert_eq!(
            h.eject(base, max, t0 + Duration::from_secs(210)),
            Duration::from_secs(100),
            "capped"
        );
        h.readmit(t0 + Duration::from_secs(310));
        assert_eq!(
            h.eject(base, max, t0 + Duration::from_secs(410)),
            base,
            "in for max: starts over"
        );
    }
}
