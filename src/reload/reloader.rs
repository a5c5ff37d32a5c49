//! The one task that decides when to reload. Three triggers feed it: a change in the config
//! file's directory (debounced: it waits for [`QUIET`] without events, at most [`MAX_WAIT`]),
//! SIGHUP, and `POST /reload` on the admin listener (through a [`ReloadHandle`]). It runs one
//! reload at a time; triggers that arrive meanwhile coalesce into the next one, and every
//! `POST /reload` waiting gets that reload's outcome. Between reloads it resolves the backend
//! names again `dns_refresh` after they were last resolved (by a refresh, or by a reload that
//! applied): [`Runtime::refresh_dns`], not a reload. A reload due at the same time runs first.
//!
//! Triggers that came while the process was starting (before this task listened) are not lost:
//! every SIGHUP sets a flag (from the start of the process), which this task reads first, and an
//! edit then made the file differ from the text the process started with, which this task checks
//! first. The flag also makes one SIGHUP one reload: tokio's wake-up for a SIGHUP whose flag an
//! earlier reload already took (one that came just as this task started) is ignored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{watch, Cause, Outcome, Runtime};

/// A file change reloads once the directory has been quiet this long.
pub const QUIET: Duration = Duration::from_millis(200);
/// ... or at the latest this long after the first event of a burst.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// Asks the [`Reloader`] for a reload; cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    requests: mpsc::UnboundedSender<oneshot::Sender<Outcome>>,
}

impl ReloadHandle {
    /// Reloads the config file and returns the outcome; `None` when the reloader is gone
    /// (shutting down).
    pub async fn reload(&self) -> Option<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).ok()?;
        rx.await.ok()
    }
}

/// The background service; see the module doc.
pub struct Reloader {
    runtime: Arc<Runtime>,
    requests: Mutex<Option<mpsc::UnboundedReceiver<oneshot::Sender<Outcome>>>>,
    /// Set by every SIGHUP, taken by the reload that answers it; `None` where it could not be
    /// registered (then each wake-up for SIGHUP reloads).
    sighup: Option<Arc<AtomicBool>>,
}

impl Reloader {
    /// `sighup` is the flag every SIGHUP sets, registered before this task listens for SIGHUP
    /// (signal-hook runs a signal's handlers in the order they were registered, so the flag is
    /// set before tokio's wake-up comes).
    pub fn new(runtime: Arc<Runtime>, sighup: Option<Arc<AtomicBool>>) -> (Reloader, ReloadHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let reloader = Reloader {
            runtime,
            requests: Mutex::new(Some(rx)),
            sighup,
        };
        (reloader, ReloadHandle { requests: tx })
    }
}

/// What asked for the next reload.
#[derive(Default)]
struct Triggers {
    signal: bool,
    /// The config file's directory changed.
    file: bool,
    /// `POST /reload` callers waiting for the outcome.
    waiting: Vec<oneshot::Sender<Outcome>>,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut requests) = taken else {
            tracing::error!("reloader started twice");
            return;
        };
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload by editing the file or with POST /reload");
                None
            }
        };
        let (file_tx, mut file_events) = mpsc::unbounded_channel();
        let _watcher = self.runtime.path.as_deref().and_then(|path| {
            match watch::watch(path, file_tx) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot watch the config file; reload with SIGHUP or POST /reload");
                    None
                }
            }
        });
        // Now that nothing is missed any more, catch up with what came during startup: a SIGHUP,
        // or an edit (a reload that finds the file as it was at startup does nothing).
        // Names are resolved again `dns_refresh` after they were last resolved (by a refresh, or a
        // reload that applied), however many file events that change nothing come in between.
        let mut resolved_at = Instant::now();
        if self.runtime.has_file() {
            let t = Triggers {
                signal: self.sighup_pending(false),
                file: true,
                ..Triggers::default()
            };
            if self.run(t).await {
                resolved_at = Instant::now();
            }
        }
        loop {
            let mut t = Triggers::default();
            let mut dns = false;
            // Backend names are resolved again every dns_refresh (from the applied config).
            let dns_refresh = match self.runtime.has_file() {
                true => self.runtime.dns_refresh().await,
                false => None,
            };
            let dns_due = async {
                match dns_refresh {
                    Some(every) => tokio::time::sleep_until(resolved_at + every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                    continue;
                }
                Some(()) = recv_signal(&mut hangup) => t.signal = self.sighup_pending(true),
                Some(waiter) = requests.recv() => t.waiting.push(waiter),
                Some(()) = file_events.recv() => {
                    settle(&mut file_events).await;
                    t.file = true;
                }
                () = dns_due => dns = true,
            }
            // Coalesce whatever else is already pending.
            while let Ok(waiter) = requests.try_recv() {
                t.waiting.push(waiter);
            }
            while file_events.try_recv().is_ok() {
                t.file = true;
            }
            if let Some(h) = hangup.as_mut() {
                while matches!(
                    tokio::time::timeout(Duration::ZERO, h.recv()).await,
                    Ok(Some(()))
                ) {
                    t.signal |= self.sighup_pending(true);
                }
            }
            if self.due(t, dns).await {
                resolved_at = Instant::now();
            }
        }
    }
}

impl Triggers {
    fn is_empty(&self) -> bool {
        !self.signal && !self.file && self.waiting.is_empty()
    }

    /// What the one reload for all of them is logged as: each reads the file and resolves its
    /// names, a request before a signal before a file change.
    fn cause(&self) -> Cause {
        if !self.waiting.is_empty() {
            Cause::Request(self.waiting.len())
        } else if self.signal {
            Cause::Sighup
        } else {
            Cause::FileChanged
        }
    }
}

impl Reloader {
    /// Whether a SIGHUP came since the last reload that answered one; takes it. Without a
    /// flag: `woken`, whether tokio reported a SIGHUP.
    fn sighup_pending(&self, woken: bool) -> bool {
        match &self.sighup {
            Some(flag) => flag.swap(false, Ordering::AcqRel),
            None => woken,
        }
    }

    /// Reloads for `t` (unless it is empty: a SIGHUP an earlier reload already answered), then
    /// refreshes the names if `dns` says a refresh is due; whether the names were resolved. A
    /// reload first: one that applies resolves the names too, and the refresh due then would
    /// only repeat it (and must not start from the config it replaced).
    async fn due(&self, t: Triggers, dns: bool) -> bool {
        if !t.is_empty() && self.run(t).await {
            return true;
        }
        if dns {
            self.runtime.refresh_dns().await;
        }
        dns
    }

    /// Reloads for `t`; whether the names of the config that runs now were resolved by it: a
    /// config applied (not a rejected one, nor a file event that left the text as it was).
    async fn run(&self, t: Triggers) -> bool {
        let cause = t.cause();
        let Some(outcome) = self.runtime.reload(cause).await else {
            if cause == Cause::FileChanged {
                tracing::debug!("config file touched; its text did not change");
            }
            return false;
        };
        let resolved = !matches!(outcome, Outcome::Rejected { .. });
        for waiter in t.waiting {
            if waiter.send(outcome.clone()).is_err() {
                tracing::debug!("POST /reload caller went away before the outcome");
            }
        }
        resolved
    }
}

async fn recv_signal(s: &mut Option<Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until the directory has been quiet for [`QUIET`], or [`MAX_WAIT`] has passed.
async fn settle(events: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = Instant::now() + MAX_WAIT;
    loop {
        let quiet_until = (Instant::now() + QUIET).min(deadline);
        match tokio::time::timeout_at(quiet_until, events.recv()).await {
            Ok(Some(())) if Instant::now() < deadline => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesced_triggers_are_one_reload_named_by_the_most_direct() {
        let t = |signal, file, waiting: usize| Triggers {
            signal,
            file,
            waiting: (0..waiting).map(|_| oneshot::channel().0).collect(),
        };
        assert_eq!(t(false, true, 0).cause(), Cause::FileChanged);
        assert_eq!(t(true, true, 0).cause(), Cause::Sighup);
        assert_eq!(t(true, true, 2).cause(), Cause::Request(2));
        assert!(t(false, false, 0).is_empty());
    }

    /// Answers every name with 127.0.0.1 and counts the resolutions.
    #[derive(Debug, Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl crate::config::Resolve for Counting {
        fn answer(&self, hosts: &[&str]) -> crate::config::Answers {
            self.0.fetch_add(1, Ordering::SeqCst);
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            hosts
                .iter()
                .map(|&h| (h.to_owned(), Ok(vec![ip])))
                .collect()
        }
    }

    #[tokio::test]
    async fn a_reload_that_applies_takes_the_place_of_the_refresh_due_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        let text = |limit: u32| {
            format!("[server]\nlisten = [\"127.0.0.1:1\"]\nthreads = 1\nmax_request_body = {limit}\n[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"svc.test:1\" }}]\n")
        };
        std::fs::write(&path, text(1)).unwrap();
        let resolver = Arc::new(Counting::default());
        let (config, source) =
            crate::reload::Source::from_text(&path, text(1), resolver.clone()).unwrap();
        let (_, handle) = crate::health::Supervisor::new();
        let metrics = crate::metrics::Metrics::detached();
        let runtime = Runtime::start(config, Some(source), handle, None, metrics, None).await;
        let (reloader, _) = Reloader::new(Arc::clone(&runtime), None);
        let resolutions = || resolver.0.load(Ordering::SeqCst);
        let signal = || Triggers {
            signal: true,
            ..Triggers::default()
        };
        assert_eq!(resolutions(), 1);

        // A reload that applies and a refresh due: one resolution, the reload's.
        std::fs::write(&path, text(2)).unwrap();
        assert!(reloader.due(signal(), true).await);
        assert_eq!(resolutions(), 2);
        assert_eq!(runtime.snapshot().load().generation, 2);
        // A rejected reload resolves nothing: the refresh due runs.
        std::fs::write(&path, "[server\nbroken").unwrap();
        assert!(reloader.due(signal(), true).await);
        assert_eq!(resolutions(), 3);
        // A refresh alone, and nothing at all.
        assert!(reloader.due(Triggers::default(), true).await);
        assert_eq!(resolutions(), 4);
        assert!(!reloader.due(Triggers::default(), false).await);
        assert_eq!(resolutions(), 4);
    }
}
