//! Signals: SIGTERM = graceful drain, SIGINT = exit now, SIGQUIT = pingora's graceful upgrade.
//!
//! pingora sleeps through the whole grace period after SIGTERM even when nothing is in flight.
//! We hand pingora the signal (so it stops accepting) and start a watcher that exits the process
//! the moment the last in-flight request is done, or when the grace period is over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use super::drain::Drain;

/// How often the drain watcher looks at the in-flight count.
const DRAIN_POLL: Duration = Duration::from_millis(20);

pub struct Signals {
    drain: Arc<Drain>,
    grace: Duration,
}

impl Signals {
    pub fn new(drain: Arc<Drain>, grace: Duration) -> Signals {
        Signals { drain, grace }
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
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(grace = ?self.grace, in_flight = self.drain.in_flight(), "SIGTERM: draining");
                let drain = Arc::clone(&self.drain);
                let deadline = Instant::now() + self.grace;
                std::thread::spawn(move || exit_when_drained(&drain, deadline));
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: exiting now");
                ShutdownSignal::FastShutdown
            }
            _ = quit.recv() => {
                tracing::info!("SIGQUIT: handing listeners to the new process");
                ShutdownSignal::GracefulUpgrade
            }
        }
    }
}

fn exit_when_drained(drain: &Drain, deadline: Instant) -> ! {
    // Let the listeners close before trusting a zero count.
    std::thread::sleep(DRAIN_POLL);
    loop {
        let n = drain.in_flight();
        if n == 0 {
            tracing::info!("drained: no request in flight; exiting");
            std::process::exit(0);
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                in_flight = n,
                "grace period over; exiting with requests in flight"
            );
            std::process::exit(0);
        }
        std::thread::sleep(DRAIN_POLL);
    }
}
