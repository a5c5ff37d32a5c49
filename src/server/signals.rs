//! Signals: SIGTERM = graceful drain, SIGINT = exit now, SIGQUIT = graceful upgrade (hand the
//! listening sockets to a new process, then drain). SIGHUP (reload) belongs to the reloader.
//!
//! pingora sleeps through a whole grace period after SIGTERM even when nothing is in flight.
//! We hand pingora the signal and start a watcher that, once pingora has stopped accepting,
//! exits the process the moment the last in-flight request is done, or when the grace period of
//! the config serving at that moment is over.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

use super::drain::Drain;
use super::linger::LINGER;
use crate::access_log::AccessLog;
use crate::snapshot::SharedSnapshot;

/// How often the drain watcher looks at the in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(20);

pub struct Signals {
    drain: Arc<Drain>,
    snapshot: SharedSnapshot,
    access_log: Arc<AccessLog>,
    phases: std::sync::Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
    /// Listening sockets (proxy and admin) a graceful upgrade hands over.
    listeners: usize,
    /// Where a new process waits for them; `None`: graceful upgrade is off (no private
    /// directory for the socket).
    upgrade_sock: Option<PathBuf>,
}

impl Signals {
    /// `phases` is the server's execution-phase feed: the drain starts when shutdown does.
    pub fn new(
        drain: Arc<Drain>,
        snapshot: SharedSnapshot,
        access_log: Arc<AccessLog>,
        phases: broadcast::Receiver<ExecutionPhase>,
        listeners: usize,
        upgrade_sock: Option<PathBuf>,
    ) -> Signals {
        Signals {
            drain,
            snapshot,
            access_log,
            phases: std::sync::Mutex::new(Some(phases)),
            listeners,
            upgrade_sock,
        }
    }

    /// Whether a SIGQUIT can hand the listeners over: a new process listens at the upgrade
    /// socket. Looked at with `lstat` only (pingora's new process accepts one connection).
    /// Otherwise says why in an error, and the process keeps serving.
    fn can_hand_over(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        let Some(path) = &self.upgrade_sock else {
            tracing::error!("SIGQUIT: graceful upgrade is off (no private runtime directory for the upgrade socket; set [server] upgrade_sock); still serving");
            return false;
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => true,
            Ok(_) => {
                tracing::error!(upgrade_sock = %path.display(), "SIGQUIT: the upgrade socket is not a socket; no new process waits for the listeners; still serving");
                false
            }
            Err(e) => {
                tracing::error!(upgrade_sock = %path.display(), error = %e, "SIGQUIT: no new process waits for the listeners (start one with `fulcrum run --upgrade` and wait for its socket); still serving");
                false
            }
        }
    }

    /// Starts the thread that ends the process once shutdown has begun and requests are done.
    fn watch_drain(&self) {
        self.drain.start_draining();
        let phases = self.phases.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(phases) = phases else { return };
        let (drain, snapshot) = (Arc::clone(&self.drain), Arc::clone(&self.snapshot));
        let log = Arc::clone(&self.access_log);
        let listeners = self.listeners;
        std::thread::spawn(move || exit_when_drained(phases, &drain, &snapshot, &log, listeners));
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (mut term, mut int, mut quit) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) {
            (Ok(t), Ok(i), Ok(q)) => (t, i, q),
            _ => {
                tracing::error!("cannot install signal handlers; shutting down");
                return ShutdownSignal::FastShutdown;
            }
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    let grace = self.snapshot.load().grace_period;
                    let n = self.drain.in_flight();
                    tracing::info!("SIGTERM: shutting down: draining {n} requests in flight for at most {grace:?}");
                    self.watch_drain();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: exiting now");
                    return ShutdownSignal::FastShutdown;
                }
                _ = quit.recv() => {
                    if !self.can_hand_over() {
                        continue;
                    }
                    // Said once the sockets are handed over, with the grace period then in force.
                    tracing::debug!("SIGQUIT: handing the listeners to the new process");
                    self.watch_drain();
                    return ShutdownSignal::GracefulUpgrade;
                }
            }
        }
    }
}

/// Waits until pingora starts shutting down (after a SIGQUIT, that is after the listeners were
/// handed over and both processes accepted for a while), then exits once nothing is in flight or
/// the grace period is over. Connections accepted just before the listeners closed get [`LINGER`]
/// to deliver their request first.
fn exit_when_drained(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    drain: &Drain,
    snapshot: &SharedSnapshot,
    access_log: &AccessLog,
    listeners: usize,
) -> ! {
    loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownStarted) | Err(broadcast::error::RecvError::Closed) => break,
            // pingora sent the sockets (it logs an error if that failed) and accepts on them
            // for a few more seconds, side by side with the new process.
            Ok(ExecutionPhase::GracefulUpgradeCloseTimeout) => {
                let grace = snapshot.load().grace_period;
                tracing::info!(
                    "handed {listeners} listeners to the new process; draining for at most {grace:?}"
                );
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
        }
    }
    let deadline = Instant::now() + snapshot.load().grace_period;
    // Let the listeners close, and requests accepted just before be read, before trusting a
    // zero count.
    std::thread::sleep(LINGER + DRAIN_POLL);
    loop {
        let n = drain.in_flight();
        if n == 0 {
            tracing::info!("drained: no request in flight; exiting");
            access_log.flush();
            std::process::exit(0);
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                in_flight = n,
                "grace period over; exiting with requests in flight"
            );
            access_log.flush();
            std::process::exit(0);
        }
        std::thread::sleep(DRAIN_POLL);
    }
}
