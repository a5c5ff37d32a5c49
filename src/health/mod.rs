//! Backend health: active checks (HTTP/TCP probes with rise/fall thresholds) and passive outlier
//! ejection from real traffic.
//!
//! Every result is written into the backend's registry state
//! ([`HealthState`](crate::registry::HealthState)) and announced by bumping its upstream's epoch.
//! Nothing here knows a snapshot: eligibility and panic mode are derived by each snapshot's
//! upstream, which knows its own members (see `upstream`).
//!
//! - `probe`: one HTTP or TCP probe, bounded by its timeout.
//! - `supervisor`: the one long-lived owner of background health work: a probe task per checked
//!   (upstream, backend), reconciled with every applied config, and the readmission of ejected
//!   backends.
//! - `outlier`: passive ejection, on the request path.

mod outlier;
mod probe;

pub use probe::ProbeTls;
mod supervisor;

pub use outlier::Outlier;
pub use supervisor::{Supervisor, SupervisorHandle};

use std::sync::Arc;

use crate::config::HealthCheckConfig;
use crate::metrics::CheckCounters;
use crate::registry::{BackendState, HealthChange};

/// One backend an active check watches.
#[derive(Debug, Clone)]
pub struct Target {
    pub state: Arc<BackendState>,
    pub check: Arc<HealthCheckConfig>,
    /// `Host` of an HTTP probe: the check's `host`, or the backend's `addr` as written.
    pub host: Arc<str>,
    /// `fulcrum_health_checks_total` of this backend.
    pub counters: Option<CheckCounters>,
    /// For a backend reached over HTTPS.
    pub tls: Option<probe::ProbeTls>,
}

impl Target {
    /// Whether `other` watches the same backend state the same way (a running probe task for
    /// `self` can go on serving `other`).
    fn same_as(&self, other: &Target) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
            && self.check == other.check
            && self.host == other.host
            && self.tls == other.tls
    }

    async fn probe(&self) -> Result<(), String> {
        probe::probe(
            &self.check,
            self.state.addr(),
            &self.host,
            self.tls.as_ref(),
        )
        .await
    }

    /// Applies a probe result, logging a transition once with its reason and announcing it.
    fn apply(&self, result: Result<(), String>) {
        if let Some(c) = &self.counters {
            match result {
                Ok(()) => c.success.inc(),
                Err(_) => c.failure.inc(),
            }
        }
        self.state
            .health
            .note_probe(result.as_ref().err().map(String::as_str));
        let (check, health) = (&self.check, &self.state.health);
        let first = health.is_unknown();
        let upstream = self.state.upstream();
        let backend = self.state.addr();
        match health.on_probe(
            result.is_ok(),
            check.healthy_threshold,
            check.unhealthy_threshold,
        ) {
            HealthChange::Up => {
                upstream.bump_epoch();
                let reason = if first {
                    "first check passed".to_owned()
                } else {
                    format!("{} checks passed in a row", check.healthy_threshold)
                };
                tracing::info!(upstream = %upstream.name(), %backend, %reason, "backend healthy");
            }
            HealthChange::Down => {
                upstream.bump_epoch();
                let reason = result.err().unwrap_or_default();
                tracing::warn!(upstream = %upstream.name(), %backend, %reason, "backend unhealthy");
            }
            HealthChange::Unchanged => {
                if let Err(reason) = result {
                    tracing::debug!(upstream = %upstream.name(), %backend, %reason, "health check failed");
                }
            }
        }
    }
}

/// Probes every target whose health is unknown, all at once, and waits for the results (each
/// bounded by its check's timeout). Run before a config is published, so that no backend gets
/// traffic before its first probe.
pub async fn first_round(targets: &[Target]) {
    let mut probes = tokio::task::JoinSet::new();
    for t in targets.iter().filter(|t| t.state.health.is_unknown()) {
        let t = t.clone();
        probes.spawn(async move {
            let result = t.probe().await;
            t.apply(result);
        });
    }
    while let Some(done) = probes.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "health probe task failed");
        }
    }
}
