//! The background work of health checking: for each upstream, one probe loop per backend (so a
//! slow or hung backend never delays the others' checks) and the readmission of ejected
//! backends. Started from one place, [`HealthService`], and stopped by the server's shutdown.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{probe, Readmission, UpstreamHealth};
use crate::config::HealthCheckConfig;

/// Runs every upstream's health monitor until shutdown.
pub struct HealthService {
    upstreams: Vec<Arc<UpstreamHealth>>,
}

impl HealthService {
    pub fn new(upstreams: Vec<Arc<UpstreamHealth>>) -> HealthService {
        HealthService { upstreams }
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let mut monitors = JoinSet::new();
        for u in &self.upstreams {
            monitors.spawn(monitor(Arc::clone(u), shutdown.clone()));
        }
        while let Some(done) = monitors.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "health monitor task failed");
            }
        }
    }
}

/// One upstream's monitor: runs until `shutdown` turns true; its probe loops end with it.
async fn monitor(health: Arc<UpstreamHealth>, mut shutdown: ShutdownWatch) {
    let taken = health
        .readmit_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(mut readmissions) = taken else {
        tracing::error!(upstream = %health.name, "health monitor started twice");
        return;
    };
    let mut probes = JoinSet::new();
    if let Some(check) = &health.check {
        for i in 0..health.members.len() {
            probes.spawn(probe_loop(Arc::clone(&health), i, check.clone()));
        }
    }
    // Ejections that began under an earlier config end as they were scheduled.
    let mut pending: Vec<Readmission> = health
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            Some(Readmission {
                backend: i,
                at: m.state.health.ejected_until()?,
            })
        })
        .collect();
    loop {
        let next = pending.iter().map(|r| r.at).min();
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
            Some(r) = readmissions.recv() => pending.push(r),
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                pending.retain(|r| {
                    if r.at <= now {
                        health.readmit(r.backend);
                        false
                    } else {
                        true
                    }
                });
            }
        }
    }
    probes.abort_all();
}

/// Probes backend `i` every `interval` (± jitter), forever; an unknown backend at once.
async fn probe_loop(health: Arc<UpstreamHealth>, i: usize, check: HealthCheckConfig) {
    let (addr, host) = (health.members[i].addr, health.probe_host(i));
    loop {
        if !health.members[i].state.health.is_unknown() {
            tokio::time::sleep(jittered(check.interval, check.jitter)).await;
        }
        let result = probe::probe(&check, addr, &host).await;
        health.apply_probe(i, result, &check);
    }
}

/// `interval` spread uniformly by ± `jitter` (a fraction) so that checks do not run in lockstep.
fn jittered(interval: Duration, jitter: f64) -> Duration {
    let spread = jitter * (2.0 * fastrand::f64() - 1.0);
    interval.mul_f64(1.0 + spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_band() {
        let base = Duration::from_millis(1000);
        for _ in 0..1000 {
            let d = jittered(base, 0.1);
            assert!(
                d >= Duration::from_millis(900) && d <= Duration::from_millis(1100),
                "{d:?}"
            );
        }
        assert_eq!(jittered(base, 0.0), base);
    }
}
