//! Backend health: active checks (HTTP/TCP probes with rise/fall thresholds), passive outlier
//! ejection from real traffic, and panic mode.
//!
//! - `state`: one backend's health, kept in the registry across configs; the request path reads
//!   a single atomic word through [`UpstreamHealth::eligible`].
//! - `probe`: one HTTP or TCP probe, bounded by its timeout.
//! - `monitor`: the background work of one upstream (a probe loop per backend, readmission of
//!   ejected backends), stopped by the server's shutdown signal.
//!
//! Panic mode: when fewer than `panic_threshold` percent of an upstream's backends are available,
//! every backend is eligible again (Envoy's panic routing). It is a flag recomputed on each
//! state change, so the request path never counts.

mod monitor;
mod probe;
mod state;

pub use monitor::HealthService;
pub use state::{BackendHealth, Transition};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::balance::Balancer;
use crate::config::{HealthCheckConfig, OutlierConfig, UpstreamConfig};
use crate::registry::BackendState;

/// A backend as the health module sees it.
#[derive(Debug)]
struct Member {
    /// `addr` as written: for logs and the probe's default `Host`.
    name: String,
    addr: SocketAddr,
    state: Arc<BackendState>,
}

/// A request to end an ejection at a time.
#[derive(Debug, Clone, Copy)]
struct Readmission {
    backend: usize,
    at: Instant,
}

/// The health view of one upstream, built with each snapshot.
#[derive(Debug)]
pub struct UpstreamHealth {
    name: String,
    members: Vec<Member>,
    check: Option<HealthCheckConfig>,
    outlier: Option<OutlierConfig>,
    panic_threshold: u32,
    panic: AtomicBool,
    /// Backends available now (all of them in panic mode), for load averages.
    available: AtomicUsize,
    /// Serializes state changes (ejections, transitions) so that `max_ejected_percent` holds
    /// exactly and the panic flag and `available` follow the last change. Holds what the
    /// balancer was last told about each backend.
    changing: Mutex<Vec<bool>>,
    /// Told when a backend goes out of service or comes back.
    balancer: Arc<dyn Balancer>,
    readmit_tx: mpsc::UnboundedSender<Readmission>,
    readmit_rx: Mutex<Option<mpsc::UnboundedReceiver<Readmission>>>,
}

impl UpstreamHealth {
    /// `states[i]` is backend `i`'s registry state; `balancer` hears of availability changes.
    pub fn new(
        config: &UpstreamConfig,
        states: &[Arc<BackendState>],
        balancer: Arc<dyn Balancer>,
    ) -> UpstreamHealth {
        let (tx, rx) = mpsc::unbounded_channel();
        let members = config
            .backends
            .iter()
            .zip(states)
            .map(|(b, s)| {
                s.health.set_checked(config.health_check.is_some());
                Member {
                    name: b.name.clone(),
                    addr: b.addr,
                    state: Arc::clone(s),
                }
            })
            .collect();
        let h = UpstreamHealth {
            name: config.name.clone(),
            members,
            check: config.health_check.clone(),
            outlier: config.outlier.clone(),
            panic_threshold: config.panic_threshold,
            panic: AtomicBool::new(false),
            available: AtomicUsize::new(config.backends.len()),
            changing: Mutex::new(vec![true; config.backends.len()]),
            balancer,
            readmit_tx: tx,
            readmit_rx: Mutex::new(Some(rx)),
        };
        h.update_panic();
        h
    }

    /// Whether backend `i` may take traffic now (always, in panic mode).
    pub fn eligible(&self, i: usize) -> bool {
        self.panic.load(Ordering::Relaxed) || self.members[i].state.health.available()
    }

    pub fn in_panic(&self) -> bool {
        self.panic.load(Ordering::Relaxed)
    }

    /// How many backends may take traffic now (every backend in panic mode).
    pub fn available(&self) -> usize {
        self.available.load(Ordering::Relaxed)
    }

    /// Records the outcome of a real request on backend `i` (a connect error, a timeout or a
    /// 5xx is a failure) and ejects the backend when the outlier rules say so.
    pub fn record(&self, i: usize, ok: bool) {
        let Some(o) = &self.outlier else { return };
        let health = &self.members[i].state.health;
        if health.on_response(ok, o.consecutive_failures) && !health.is_ejected() {
            self.eject(i, o);
        }
    }

    fn eject(&self, i: usize, o: &OutlierConfig) {
        let mut told = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let m = &self.members[i];
        if m.state.health.is_ejected() {
            return;
        }
        let ejected = self
            .members
            .iter()
            .filter(|m| m.state.health.is_ejected())
            .count();
        if (ejected + 1) * 100 > o.max_ejected_percent as usize * self.members.len() {
            tracing::debug!(upstream = %self.name, backend = %m.name, ejected, "not ejecting: max_ejected_percent reached");
            return;
        }
        let now = Instant::now();
        let time = m.state.health.eject(o.base_ejection, o.max_ejection, now);
        tracing::warn!(
            upstream = %self.name,
            backend = %m.name,
            time = ?time,
            reason = %format!("{} consecutive failures", o.consecutive_failures),
            "backend ejected"
        );
        if self
            .readmit_tx
            .send(Readmission {
                backend: i,
                at: now + time,
            })
            .is_err()
        {
            tracing::error!(upstream = %self.name, "health monitor is gone; readmitting at once");
            m.state.health.readmit(now);
        }
        self.update_panic_locked(&mut told);
    }

    fn readmit(&self, i: usize) {
        let m = &self.members[i];
        m.state.health.readmit(Instant::now());
        tracing::info!(upstream = %self.name, backend = %m.name, "backend readmitted after ejection");
        self.update_panic();
    }

    /// Applies a probe result to backend `i`, logging a transition once with its reason.
    fn apply_probe(&self, i: usize, result: Result<(), String>, check: &HealthCheckConfig) {
        let m = &self.members[i];
        let first = m.state.health.is_unknown();
        let ok = result.is_ok();
        match m
            .state
            .health
            .on_probe(ok, check.healthy_threshold, check.unhealthy_threshold)
        {
            Transition::Up => {
                let reason = if first {
                    "first check passed".to_owned()
                } else {
                    format!("{} checks passed in a row", check.healthy_threshold)
                };
                tracing::info!(upstream = %self.name, backend = %m.name, %reason, "backend healthy");
                self.update_panic();
            }
            Transition::Down => {
                let reason = result.err().unwrap_or_default();
                tracing::warn!(upstream = %self.name, backend = %m.name, %reason, "backend unhealthy");
                self.update_panic();
            }
            Transition::None => {
                if let Err(reason) = result {
                    tracing::debug!(upstream = %self.name, backend = %m.name, %reason, "health check failed");
                }
            }
        }
    }

    /// Recomputes panic mode and the available count; logs when panic mode changes.
    fn update_panic(&self) {
        let mut told = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        self.update_panic_locked(&mut told);
    }

    /// [`Self::update_panic`] with the `changing` lock held (`told` is its content); also tells
    /// the balancer which backends went out of service or came back.
    fn update_panic_locked(&self, told: &mut [bool]) {
        let n = self.members.len();
        let available = self
            .members
            .iter()
            .filter(|m| m.state.health.available())
            .count();
        let panic = self.panic_threshold > 0 && available * 100 < self.panic_threshold as usize * n;
        self.available
            .store(if panic { n } else { available }, Ordering::Relaxed);
        for (i, m) in self.members.iter().enumerate() {
            let now = panic || m.state.health.available();
            if told[i] != now {
                told[i] = now;
                self.balancer.set_available(i, now);
            }
        }
        if self.panic.swap(panic, Ordering::Relaxed) != panic {
            if panic {
                tracing::warn!(upstream = %self.name, available, backends = n, threshold = self.panic_threshold, "panic mode: balancing across all backends");
            } else {
                tracing::info!(upstream = %self.name, available, backends = n, "panic mode over");
            }
        }
    }

    /// Probes every backend whose state is unknown, all at once, and waits for the results
    /// (each bounded by the check's timeout). Run before the listeners open, so that a backend
    /// is probed before it is given traffic.
    pub async fn first_round(self: &Arc<Self>) {
        let Some(check) = &self.check else { return };
        let mut probes = tokio::task::JoinSet::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.state.health.is_unknown() {
                let (check, addr, host) = (check.clone(), m.addr, self.probe_host(i));
                probes.spawn(async move { (i, probe::probe(&check, addr, &host).await) });
            }
        }
        while let Some(done) = probes.join_next().await {
            match done {
                Ok((i, result)) => self.apply_probe(i, result, check),
                Err(e) => {
                    tracing::error!(upstream = %self.name, error = %e, "health probe task failed")
                }
            }
        }
    }

    fn probe_host(&self, i: usize) -> String {
        self.check
            .as_ref()
            .and_then(|c| c.host.clone())
            .unwrap_or_else(|| self.members[i].name.clone())
    }
}
