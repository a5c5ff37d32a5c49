//! Circuit breaking on the request path: a backend's breaker (its state machine lives in
//! [`registry::breaker`](crate::registry::breaker), so it survives reloads) is claimed before a
//! request is sent, told how the request went, and each transition is logged once, with its
//! reason, by the request that caused it.
//!
//! How it differs from passive outlier ejection (`health::outlier`): ejection takes a backend
//! out for a growing time and puts it back with full traffic, never more than
//! `max_ejected_percent` of the pool; a breaker opens on consecutive failures *or* a failure rate,
//! lets only `half_open_requests` trials through before closing, and has no cap: when every
//! breaker of an upstream is open the client gets a fast 503. A backend takes traffic only when
//! both allow it.

use std::sync::Arc;

use tokio::time::Instant;

use crate::config::BreakerConfig;
use crate::registry::breaker::{BreakerTransition, Claim};
use crate::registry::BackendState;

/// What one attempt holds on a backend it tries out, until its outcome is known: a half-open
/// breaker's trial place, the trial of a backend back from an ejection, or both. Dropped
/// without an outcome (the client went away, pingora retries a dead pooled connection), it
/// frees them for another request.
#[derive(Debug)]
pub struct Trial {
    state: Arc<BackendState>,
    /// The breaker's half-open cycle whose place this is.
    breaker_cycle: Option<u32>,
    /// The readmission cycle of the backend's trial after an ejection, if this attempt holds it
    /// ([`HealthState::claim_trial`]).
    ///
    /// [`HealthState::claim_trial`]: crate::registry::HealthState::claim_trial
    readmission: Option<u32>,
}

impl Trial {
    /// Adds the trial of `state`'s backend, which the caller has claimed for readmission
    /// `cycle`, to `trial`.
    pub fn with_readmission(trial: Option<Trial>, state: &Arc<BackendState>, cycle: u32) -> Trial {
        let mut trial = trial.unwrap_or_else(|| Trial {
            state: Arc::clone(state),
            breaker_cycle: None,
            readmission: None,
        });
        trial.readmission = Some(cycle);
        trial
    }

    /// The outcome is being recorded: the breaker's half-open cycle and the readmission cycle,
    /// for [`record`] and the outlier detector to settle.
    pub fn settle(mut self) -> (Option<u32>, Option<u32>) {
        (self.breaker_cycle.take(), self.readmission.take())
    }
}

impl Drop for Trial {
    /// Gives back what was not settled.
    fn drop(&mut self) {
        if let Some(cycle) = self.breaker_cycle {
            self.state.breaker.release(cycle);
        }
        if let Some(cycle) = self.readmission {
            self.state.health.release_trial(cycle);
        }
    }
}

/// Claims the right to send one request to `state`'s backend: `None` if its breaker refuses,
/// `Some(None)` if it is closed, `Some(Some(trial))` for a half-open trial place.
pub fn claim(state: &Arc<BackendState>, config: &BreakerConfig) -> Option<Option<Trial>> {
    let (claim, transition) = state.breaker.claim(config, Instant::now());
    if let Some(t) = transition {
        log(state, t);
    }
    match claim {
        Claim::Pass => Some(None),
        Claim::Refused => None,
        Claim::Trial(cycle) => Some(Some(Trial {
            state: Arc::clone(state),
            breaker_cycle: Some(cycle),
            readmission: None,
        })),
    }
}

/// Tells `state`'s breaker how a request went (`ok`: not a connect error, timeout, broken
/// response or one of `failure_status`); `cycle` is the half-open cycle of its trial place.
pub fn record(state: &BackendState, config: &BreakerConfig, ok: bool, cycle: Option<u32>) {
    if let Some(t) = state.breaker.record(config, ok, cycle, Instant::now()) {
        log(state, t);
    }
}

fn log(state: &BackendState, t: BreakerTransition) {
    let (upstream, backend) = (state.upstream().name(), state.addr());
    match t {
        BreakerTransition::Opened(reason) => {
            tracing::warn!(%upstream, %backend, %reason, "circuit breaker opened")
        }
        BreakerTransition::HalfOpened => {
            tracing::info!(%upstream, %backend, "circuit breaker half-open: probing")
        }
        BreakerTransition::Closed(trials) => {
            tracing::info!(%upstream, %backend, probes = trials, "circuit breaker closed: probes succeeded")
        }
    }
}
