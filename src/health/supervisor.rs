//! The one long-lived owner of background health work. It outlives every config:
//!
//! - one probe task per checked (upstream, backend address), so a slow or hung backend never
//!   delays the others' checks. Each applied config is reconciled against the running tasks:
//!   tasks of removed backends stop, new backends get a task, a changed check (interval, path,
//!   thresholds, ...) restarts the backend's task, and an unchanged one keeps running untouched.
//! - the readmission of ejected backends, scheduled by [`Outlier`](super::Outlier) under whatever
//!   snapshot the ejection happened.
//!
//! It runs as a pingora background service; everything else talks to it through a
//! [`SupervisorHandle`], which never blocks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::probe::AbortOnDrop;
use super::Target;
use crate::registry::BackendState;

enum Command {
    /// The probe targets of a config that was just published.
    Reconcile(Vec<Target>),
    /// End the ejection of a backend at a time.
    Readmit {
        state: Arc<BackendState>,
        at: Instant,
    },
}

/// Talks to the [`Supervisor`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Reconcile(t) => write!(f, "Reconcile({} targets)", t.len()),
            Command::Readmit { state, at } => write!(f, "Readmit({}, {at:?})", state.addr()),
        }
    }
}

impl SupervisorHandle {
    /// Makes the probe tasks follow `targets` (the checked backends of the published config).
    pub fn reconcile(&self, targets: Vec<Target>) {
        if self.tx.send(Command::Reconcile(targets)).is_err() {
            tracing::error!("health supervisor is gone; health checks do not follow the config");
        }
    }

    /// Schedules the end of an ejection. `false` when the supervisor is gone.
    pub fn readmit_at(&self, state: Arc<BackendState>, at: Instant) -> bool {
        self.tx.send(Command::Readmit { state, at }).is_ok()
    }
}

/// The background service; see the module doc.
pub struct Supervisor {
    commands: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

impl Supervisor {
    pub fn new() -> (Supervisor, SupervisorHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            commands: Mutex::new(Some(rx)),
        };
        (supervisor, SupervisorHandle { tx })
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut commands) = taken else {
            tracing::error!("health supervisor started twice");
            return;
        };
        let mut work = Work::default();
        loop {
            let next = work.next_readmission();
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Reconcile(targets)) => work.reconcile(targets),
                    Some(Command::Readmit { state, at }) => work.pending.push((at, state)),
                    None => break,
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    work.readmit_due(Instant::now());
                }
            }
        }
        // Dropping `work` aborts every probe task.
    }
}

type Key = (Arc<str>, SocketAddr);

/// A probe task and what it watches; dropping it stops the task.
struct Running {
    target: Target,
    _task: AbortOnDrop<()>,
}

#[derive(Default)]
struct Work {
    running: HashMap<Key, Running>,
    /// (when, whom): ejections to end.
    pending: Vec<(Instant, Arc<BackendState>)>,
}

impl Work {
    fn reconcile(&mut self, targets: Vec<Target>) {
        let mut next = HashMap::with_capacity(targets.len());
        let (mut started, mut kept) = (0, 0);
        for t in targets {
            let key = (Arc::clone(t.state.upstream().name()), t.state.addr());
            let running = match self.running.remove(&key) {
                Some(r) if r.target.same_as(&t) => {
                    kept += 1;
                    r
                }
                _ => {
                    started += 1;
                    Running {
                        _task: AbortOnDrop(tokio::spawn(probe_loop(t.clone()))),
                        target: t,
                    }
                }
            };
            next.insert(key, running);
        }
        // What is left lost its check (or its backend): dropping its task stops it. (The reload
        // owner already made it unknown again, before any later reload could probe it.)
        let stopped = self.running.len();
        self.running = next;
        tracing::debug!(started, kept, stopped, "health checks reconciled");
    }

    fn next_readmission(&self) -> Option<Instant> {
        self.pending.iter().map(|(at, _)| *at).min()
    }

    /// Ends the ejections due at `now`.
    fn readmit_due(&mut self, now: Instant) {
        self.pending.retain(|(at, state)| {
            if *at > now {
                return true;
            }
            // Only the ejection this entry was scheduled for (not a later one).
            if state.health.ejected_until().is_some_and(|until| until <= now) {
                state.health.readmit(now);
                state.upstream().bump_epoch();
                tracing::info!(upstream = %state.upstream().name(), backend = %state.addr(), "backend readmitted after ejection");
            }
            false
        });
    }
}

/// Probes one backend every `interval` (± jitter), until aborted; an unknown backend at once.
async fn probe_loop(t: Target) {
    loop {
        if !t.state.health.is_unknown() {
            tokio::time::sleep(jittered(t.check.interval, t.check.jitter)).await;
        }
        let result = t.probe().await;
        t.apply(result);
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
    use crate::config::{HealthCheckConfig, ProbeKind, StatusMatch};
    use crate::registry::Registry;

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

    fn check(interval_ms: u64) -> Arc<HealthCheckConfig> {
        Arc::new(HealthCheckConfig {
            kind: ProbeKind::Tcp,
            path: "/".into(),
            host: None,
            expect_status: vec![StatusMatch::Class(2)],
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(100),
            jitter: 0.0,
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        })
    }

    fn target(state: &Arc<BackendState>, check: &Arc<HealthCheckConfig>) -> Target {
        Target {
            state: Arc::clone(state),
            check: Arc::clone(check),
            host: Arc::from("h"),
            counters: None,
            tls: None,
        }
    }

    #[tokio::test]
    async fn reconcile_keeps_unchanged_tasks_restarts_changed_ones_and_stops_removed_ones() {
        let r = Registry::default();
        let u = r.upstream("u");
        // Nothing listens on port 1: probes fail, which is all this test needs.
        let (a, b) = (
            r.backend(&u, "127.0.0.1:1".parse().unwrap()),
            r.backend(&u, "127.0.0.2:1".parse().unwrap()),
        );
        let slow = check(60_000);
        let mut work = Work::default();
        work.reconcile(vec![target(&a, &slow), target(&b, &slow)]);
        assert_eq!(work.running.len(), 2);
        let key_a = (Arc::clone(u.name()), a.addr());
        let task_a = work.running[&key_a]._task.0.id();

        // Same config again: the very same task goes on.
        work.reconcile(vec![
            target(&a, &Arc::new((*slow).clone())),
            target(&b, &slow),
        ]);
        assert_eq!(work.running[&key_a]._task.0.id(), task_a);

        // A changed interval restarts the task; a backend left out stops.
        work.reconcile(vec![target(&a, &check(30_000))]);
        assert_ne!(work.running[&key_a]._task.0.id(), task_a);
        assert_eq!(work.running.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn readmits_each_ejection_when_due_and_only_that_one() {
        let r = Registry::default();
        let u = r.upstream("u");
        let a = r.backend(&u, "127.0.0.1:1".parse().unwrap());
        let t0 = Instant::now();
        let mut work = Work::default();
        let time = a
            .health
            .eject(Duration::from_secs(10), Duration::from_secs(60), t0);
        work.pending.push((t0 + time, Arc::clone(&a)));
        assert_eq!(work.next_readmission(), Some(t0 + time));
        let epoch = u.epoch();
        work.readmit_due(t0 + Duration::from_secs(9));
        assert!(a.health.is_ejected());
        work.readmit_due(t0 + Duration::from_secs(10));
        assert!(!a.health.is_ejected());
        assert!(u.epoch() > epoch, "readmission is announced");
        assert!(work.pending.is_empty());

        // A stale entry (its ejection already ended; a new, longer one is on) readmits nothing.
        let time = a.health.eject(
            Duration::from_secs(10),
            Duration::from_secs(60),
            t0 + Duration::from_secs(11),
        );
        work.pending
            .push((t0 + Duration::from_secs(12), Arc::clone(&a)));
        work.readmit_due(t0 + Duration::from_secs(12));
        assert!(a.health.is_ejected(), "ejected for {time:?} from 11 s");
    }
}
