//! Passive outlier ejection, on by default: consecutive failures of real requests (connect
//! errors, timeouts, broken responses, a `failure_status`) take a backend out for
//! `base_ejection × ejections in a row` (capped at `max_ejection`), never more than
//! `max_ejected_percent` of the pool at once. The readmission is scheduled with the
//! [`SupervisorHandle`], which outlives every config; it puts the backend back on trial: one
//! request tries it, and if that one fails the backend is out again at once, for longer (nginx's
//! `max_fails`/`fail_timeout`).

use std::sync::Arc;

use tokio::time::Instant;

use super::SupervisorHandle;
use crate::config::OutlierConfig;
use crate::outcome::AttemptOutcome;
use crate::registry::BackendState;

/// One upstream's passive detector, built with each snapshot.
#[derive(Debug)]
pub struct Outlier {
    config: OutlierConfig,
    supervisor: SupervisorHandle,
}

impl Outlier {
    pub fn new(config: OutlierConfig, supervisor: SupervisorHandle) -> Outlier {
        Outlier { config, supervisor }
    }

    /// Records the outcome of a real request on `members[i]` (`members` is the upstream's pool
    /// in the requesting snapshot) and ejects the backend when the rules say so; `trial` is the
    /// readmission cycle of the backend's trial if the request held it, which it settles. A
    /// stale trial (an ejection, a readmission or an active check ended it since) counts as a
    /// plain outcome.
    pub fn record(
        &self,
        members: &[Arc<BackendState>],
        i: usize,
        attempt: AttemptOutcome,
        trial: Option<u32>,
    ) {
        let o = &self.config;
        let state = &members[i];
        let ok = !attempt.failed(&o.failure_status);
        let cycle = trial.filter(|&c| state.health.trial_current(c));
        let trial = cycle.is_some();
        if let (Some(cycle), true) = (cycle, ok) {
            if state.health.pass_trial(cycle) {
                let upstream = state.upstream();
                tracing::info!(upstream = %upstream.name(), backend = %state.addr(), "backend back in rotation after its trial");
            }
            return;
        }
        if !trial && !state.health.on_response(ok, o.consecutive_failures)
            || state.health.is_ejected()
        {
            return;
        }
        let upstream = state.upstream();
        let _deciding = upstream.decisions();
        if state.health.is_ejected() {
            return;
        }
        // A backend on trial counts as out: its trial may fail at any moment, and it must not
        // then be forced fully back for want of room while a healthy peer is ejected.
        let ejected = members
            .iter()
            .enumerate()
            .filter(|&(j, m)| m.health.is_ejected() || (j != i && m.health.on_trial()))
            .count();
        let backend = state.addr();
        if (ejected + 1) * 100 > o.max_ejected_percent as usize * members.len() {
            tracing::debug!(upstream = %upstream.name(), %backend, ejected, "not ejecting: max_ejected_percent reached");
            if let Some(cycle) = cycle {
                state.health.pass_trial(cycle);
            }
            return;
        }
        let now = Instant::now();
        let time = state.health.eject(o.base_ejection, o.max_ejection, now);
        upstream.bump_epoch();
        tracing::warn!(
            upstream = %upstream.name(),
            %backend,
            time = ?time,
            reason = %Reason { trial, failures: o.consecutive_failures },
            "backend ejected"
        );
        if !self.supervisor.readmit_at(Arc::clone(state), now + time) {
            tracing::error!(upstream = %upstream.name(), %backend, "health supervisor is gone; readmitting at once");
            state.health.readmit(now);
            upstream.bump_epoch();
        }
    }
}

/// Why a backend was ejected, for its log line.
struct Reason {
    trial: bool,
    failures: u32,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.trial {
            f.write_str("its trial request after an ejection failed")
        } else {
            write!(f, "{} consecutive failures", self.failures)
        }
    }
}
