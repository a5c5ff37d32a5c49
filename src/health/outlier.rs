//! Passive outlier ejection: consecutive failures of real requests (connect errors, timeouts,
//! 5xx) take a backend out for `base_ejection × ejections in a row` (capped at `max_ejection`),
//! never more than `max_ejected_percent` of the pool at once. The readmission is scheduled with
//! the [`SupervisorHandle`], which outlives every config.

use std::sync::Arc;

use tokio::time::Instant;

use super::SupervisorHandle;
use crate::config::OutlierConfig;
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
    /// in the requesting snapshot) and ejects the backend when the rules say so.
    pub fn record(&self, members: &[Arc<BackendState>], i: usize, ok: bool) {
        let o = &self.config;
        let state = &members[i];
        if !state.health.on_response(ok, o.consecutive_failures) || state.health.is_ejected() {
            return;
        }
        let upstream = state.upstream();
        let _deciding = upstream.decisions();
        if state.health.is_ejected() {
            return;
        }
        let ejected = members.iter().filter(|m| m.health.is_ejected()).count();
        let backend = state.addr();
        if (ejected + 1) * 100 > o.max_ejected_percent as usize * members.len() {
            tracing::debug!(upstream = %upstream.name(), %backend, ejected, "not ejecting: max_ejected_percent reached");
            return;
        }
        let now = Instant::now();
        let time = state.health.eject(o.base_ejection, o.max_ejection, now);
        upstream.bump_epoch();
        tracing::warn!(
            upstream = %upstream.name(),
            %backend,
            time = ?time,
            reason = %format!("{} consecutive failures", o.consecutive_failures),
            "backend ejected"
        );
        if !self.supervisor.readmit_at(Arc::clone(state), now + time) {
            tracing::error!(upstream = %upstream.name(), %backend, "health supervisor is gone; readmitting at once");
            state.health.readmit(now);
            upstream.bump_epoch();
        }
    }
}
