//! Circuit breaking on the request path: a backend's breaker (its state machine lives in
//! [`registry::breaker`](crate::registry::breaker), so it survives reloads) is claimed before a
//! request is sent, told how the request went, and each transition is logged once, with its
//! reason, by the request that caused it.
//!
//! How it differs from passive outlier ejection (`health::outlier`): ejection takes a backend
//! out for a growing time and puts it back with full traffic, never more than
//! `max_ejected_percent` of the pool; a breaker opens on consecutive failures *or* a failure rate,
//! lets only `half_open_requests` probes through before closing, and has no cap: when every
//! breaker of an upstream is open the client gets a fast 503. A backend takes traffic only when
//! both allow it.

use std::sync::Arc;

use tokio::time::Instant;

use crate::config::BreakerConfig;
use crate::registry::breaker::{Claim, Transition};
use crate::registry::BackendState;

/// One half-open probe place, held by the request that claimed it. Dropped without an outcome
/// (the client went away), it frees the place for another probe.
#[derive(Debug)]
pub struct Probe {
    state: Arc<BackendState>,
    cycle: u32,
    reported: bool,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if !self.reported {
            self.state.breaker.release(self.cycle);
        }
    }
}

/// Claims the right to send one request to `state`'s backend: `None` if its breaker refuses,
/// `Some(None)` if it is closed, `Some(Some(probe))` for a half-open probe.
pub fn claim(state: &Arc<BackendState>, config: &BreakerConfig) -> Option<Option<Probe>> {
    let (claim, transition) = state.breaker.claim(config, Instant::now());
    if let Some(t) = transition {
        log(state, t);
    }
    match claim {
        Claim::Pass => Some(None),
        Claim::Refused => None,
        Claim::Probe(cycle) => Some(Some(Probe {
            state: Arc::clone(state),
            cycle,
            reported: false,
        })),
    }
}

/// Tells `state`'s breaker how a request went (`ok` = no connect error, timeout or 5xx).
pub fn record(state: &BackendState, config: &BreakerConfig, ok: bool, probe: Option<Probe>) {
    let cycle = probe.map(|mut p| {
        p.reported = true;
        p.cycle
    });
    if let Some(t) = state.breaker.record(config, ok, cycle, Instant::now()) {
        log(state, t);
    }
}

fn log(state: &BackendState, t: Transition) {
    let (upstream, backend) = (state.upstream().name(), state.addr());
    match t {
        Transition::Opened(reason) => {
            tracing::warn!(%upstream, %backend, %reason, "circuit breaker opened")
        }
        Transition::HalfOpened => {
            tracing::info!(%upstream, %backend, "circuit breaker half-open: probing")
        }
        Transition::Closed(probes) => {
            tracing::info!(%upstream, %backend, probes, "circuit breaker closed: probes succeeded")
        }
    }
}
