//! Hot reload: the one owner that applies a config, and the one task that decides when.
//!
//! - [`Runtime`] (this file): the running state (registry, published snapshot, health
//!   supervisor) and the one way a config is applied, for [`Runtime::reload`] and
//!   [`Runtime::refresh_dns`] alike: build the new snapshot without side effects → probe the
//!   backends no check has answered for yet → publish with one `store` → tell the registry and
//!   the supervisor → prune state nothing refers to.
//! - `source`: the config file a process starts from ([`Source::load`]).
//! - `reloader`: the background task every trigger feeds (a change of the file, SIGHUP,
//!   `POST /reload`); reloads never run concurrently and a burst coalesces into one.
//! - `watch`: the config file's directory, watched with `notify`.
//! - `metrics`: reload and DNS refresh counters on the admin listener.
//!
//! A DNS refresh ([`Runtime::refresh_dns`]) is not a reload: it resolves the backend names of
//! the running config's [`Prepared`] again, reads and parses nothing, and
//! publishes through the same apply only when the addresses changed.
//!
//! Keys a reload cannot change in place (`server.listen`, `admin_listen`, `threads`,
//! `upgrade_sock`) are reported with a clear message and the rest of the file is applied.

mod metrics;
mod reloader;
mod source;
mod watch;

pub use reloader::{ReloadHandle, Reloader};
pub use source::{Source, SourceError};

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Something changed in the config file's directory: reload only if the file's text did.
    FileChanged,
    Sighup,
    /// `POST /reload` (this many requests, coalesced).
    Request(usize),
}

/// What a DNS refresh did, as `fulcrum_dns_refreshes_total` counts it. A failed lookup does not
/// decide it: its name keeps the addresses it had (so, alone, it is `Unchanged`), and
/// `fulcrum_dns_lookup_failures_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRefresh {
    /// The addresses changed and the new ones were published.
    Changed,
    /// Nothing to publish: every name has the addresses it had.
    Unchanged,
    /// The new addresses could not be applied, or the resolution did not finish; the previous
    /// addresses keep serving.
    Failure,
}

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use xxhash_rust::xxh3::xxh3_128;

use crate::access_log::{self, AccessLog};
use crate::config::file::{Limit, Reader};
use crate::config::{
    self, AccessLogTarget, Config, ConfigError, Note, NoteKind, Prepared, Resolve, ServerConfig,
};
use crate::health::{self, SupervisorHandle};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::snapshot::{SharedSnapshot, Snapshot};
use metrics::ReloadMetrics;

/// Applies a new `log_level` (a `tracing` filter directive); `Err` says why it could not.
pub type LogControl = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The whole file is in effect.
    Applied { summary: String },
    /// The file is in effect except for keys only a restart (or a graceful upgrade) changes.
    Partial {
        summary: String,
        restart: Vec<ConfigError>,
    },
    /// Nothing was applied; the previous config keeps serving.
    Rejected { errors: Vec<ConfigError> },
}

impl Outcome {
    /// Whether the file on disk is now what runs.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Applied { .. })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Applied { summary } => write!(f, "{summary}"),
            Outcome::Partial { summary, restart } => {
                write!(f, "{summary}; not applied:")?;
                restart.iter().try_for_each(|e| write!(f, "\n{e}"))
            }
            Outcome::Rejected { errors } => {
                write!(f, "config rejected, previous config still serving:")?;
                errors.iter().try_for_each(|e| write!(f, "\n{e}"))
            }
        }
    }
}

/// The running proxy's state and the one place a config is applied.
pub struct Runtime {
    registry: Arc<Registry>,
    snapshot: SharedSnapshot,
    supervisor: SupervisorHandle,
    /// The config file; `None` for a config given in code (the demo's, an embedder's).
    path: Option<PathBuf>,
    /// `[server]` as the process started: what a reload cannot change.
    fixed: ServerConfig,
    log: Option<LogControl>,
    metrics: Arc<Metrics>,
    /// The access log's writer, whose destination a reload may change.
    access_log: Option<Arc<AccessLog>>,
    /// Reads the config file off the async workers, within a timeout.
    reader: Reader,
    /// Answers for the backend names at every reload and DNS refresh.
    resolver: Arc<dyn Resolve>,
    reloads: ReloadMetrics,
    last: Mutex<LastLoad>,
    /// Held for a whole reload or DNS refresh: each reads the running state, works off the
    /// async workers, then applies, and none may start from a state another is replacing.
    owner: tokio::sync::Mutex<()>,
    /// Held for a whole apply, so that applies never overlap.
    applied: tokio::sync::Mutex<Applied>,
}

/// The last config load (start or reload), for `/status`.
#[derive(Debug, Clone)]
pub struct LastLoad {
    pub at: SystemTime,
    pub success: bool,
    /// The outcome as `POST /reload` says it.
    pub message: String,
}

struct Applied {
    generation: u64,
    log_level: String,
    access_log: AccessLogTarget,
    /// A hash of the file as last read (applied or not), to skip events that did not change it.
    read: Option<u128>,
    /// A hash of the text wholly in effect now (the start, or the last reload that applied
    /// the whole file): a file that reads the same again describes the running config.
    in_effect: Option<u128>,
    /// A hash of the text whose reload failed last (`None`: the last failure, if any, was not
    /// about a text read, e.g. the file could not be read). A file that again reads as the
    /// running text clears a failure only when that failure was about another text (or the
    /// file's absence): a failure of the running text itself (say, its certificate file went
    /// bad) still stands.
    failed_text: Option<u128>,
    /// The config running now, prepared (the file may hold a newer, rejected one): what a DNS
    /// refresh resolves again. Set at start and by every reload that published, if only in part.
    prepared: Option<Arc<Prepared>>,
    /// The largest file the next reload reads: `max_config_size` of the config running now.
    max_config_size: u64,
    /// What the backend names resolved to in the applied config, and how often to look again.
    dns: Vec<(String, Vec<SocketAddr>)>,
    dns_refresh: Option<std::time::Duration>,
    /// The backend names the last resolution warned about, and why: a DNS refresh logs a
    /// name's note when this changes, not at every refresh.
    noted: HashMap<String, Noted>,
}

/// Why a backend name was warned about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noted {
    /// Its lookup failed.
    LookupFailed,
    /// It has no address.
    NoAddress,
}

impl Noted {
    fn of(kind: &NoteKind) -> Noted {
        match kind {
            NoteKind::Kept { .. } | NoteKind::Failed { .. } => Noted::LookupFailed,
            NoteKind::NoAddress => Noted::NoAddress,
        }
    }
}

impl Runtime {
    /// Builds, probes and publishes the first config, read from `source` (`None`: a built-in
    /// config, which never reloads).
    pub async fn start(
        config: Config,
        source: Option<Source>,
        supervisor: SupervisorHandle,
        log: Option<LogControl>,
        metrics: Arc<Metrics>,
        access_log: Option<Arc<AccessLog>>,
    ) -> Arc<Runtime> {
        let registry = Arc::new(Registry::default());
        let snapshot = prepare(&config, &registry, 1, &supervisor, &metrics).await;
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let notes = source.as_ref().map_or(&[][..], |s| &s.notes[..]);
        let noted = noted(notes);
        let reloads = ReloadMetrics::register(metrics.registry());
        reloads.lookup_failures(notes);
        let runtime = Runtime {
            snapshot,
            registry,
            supervisor,
            path: source.as_ref().map(|s| s.path.clone()),
            fixed: config.server.clone(),
            log,
            reloads,
            metrics,
            access_log,
            reader: Reader::default(),
            resolver: match &source {
                Some(s) => Arc::clone(&s.resolver),
                None => Arc::new(config::SystemResolver),
            },
            last: Mutex::new(LastLoad {
                at: SystemTime::now(),
                success: true,
                message: "started".to_owned(),
            }),
            owner: tokio::sync::Mutex::new(()),
            applied: tokio::sync::Mutex::new(Applied {
                generation: 0,
                log_level: config.server.log_level.clone(),
                access_log: config.server.access_log.clone(),
                read: source.as_ref().map(|s| xxh3_128(s.text.as_bytes())),
                in_effect: source.as_ref().map(|s| xxh3_128(s.text.as_bytes())),
                failed_text: None,
                prepared: source.map(|s| s.prepared),
                max_config_size: config.server.max_config_size,
                dns: config.dns.clone(),
                dns_refresh: config.dns_refresh(),
                noted,
            }),
        };
        runtime.published(&mut *runtime.applied.lock().await, 1, None);
        Arc::new(runtime)
    }

    /// How often backend names are resolved again (`None`: no backend is given by name).
    pub async fn dns_refresh(&self) -> Option<std::time::Duration> {
        self.applied.lock().await.dns_refresh
    }

    /// Whether the config comes from a file (and so can be reloaded).
    pub fn has_file(&self) -> bool {
        self.path.is_some()
    }

    /// The published snapshot, for the request path.
    pub fn snapshot(&self) -> &SharedSnapshot {
        &self.snapshot
    }

    /// The config file, if the config comes from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The proxy's listen addresses, plain and TLS (fixed for the life of the process).
    pub fn listen(&self) -> Vec<SocketAddr> {
        self.fixed.proxy_listeners().collect()
    }

    /// The last config load and how it went.
    pub fn last_load(&self) -> LastLoad {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The state every snapshot points into, for background upkeep (rate-limit pruning).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Reads the config file again and applies it. For [`Cause::FileChanged`], a file whose text
    /// is what was read last time is left alone (`None`). File IO, parsing and DNS run on a
    /// blocking thread, off the async workers; the file is read as [`config::file`] says (a
    /// regular file, at most the running config's `max_config_size`, within a timeout). Logs the
    /// outcome and every warning of the config it applied.
    pub async fn reload(&self, cause: Cause) -> Option<Outcome> {
        let _owner = self.owner.lock().await;
        let Some(path) = self.path.clone() else {
            let message = "this process runs a config given at start, not a config file: there is nothing to reload (`fulcrum run --config FILE` runs from a file, and reloads it)";
            return Some(self.record(Outcome::Rejected {
                errors: vec![ConfigError::at(Path::new("-"), "", None, "", message)],
            }));
        };
        let (last, in_effect, last_dns, limit) = {
            let a = self.applied.lock().await;
            (a.read, a.in_effect, a.dns.clone(), a.max_config_size)
        };
        let (reader, resolver) = (self.reader.clone(), Arc::clone(&self.resolver));
        let read = tokio::task::spawn_blocking(move || {
            let text = reader
                .read(&path, Limit::Running(limit))
                .map_err(|e| e.at(&path))?;
            let digest = xxh3_128(text.as_bytes());
            if cause == Cause::FileChanged && in_effect == Some(digest) {
                // The file is again the text that runs (say, put back after a `rm`): nothing to
                // reload, but a failure recorded meanwhile no longer describes it.
                return Ok(Some(Read::Matches(digest)));
            }
            if cause == Cause::FileChanged && last == Some(digest) {
                return Ok(None);
            }
            let loaded = config::prepare(&text, &path).map(|prepared| {
                let resolved = prepared.resolve(&*resolver, &last_dns);
                (Arc::new(prepared), resolved)
            });
            Ok(Some(Read::Changed(digest, Box::new(loaded))))
        })
        .await;
        if let Ok(Ok(Some(Read::Matches(digest)))) = read {
            return self.matches_again(digest).await;
        }
        match (&read, cause) {
            (Ok(Ok(None)), _) => return None,
            (_, Cause::FileChanged) => tracing::info!("config file changed; reloading"),
            (_, Cause::Sighup) => tracing::info!("reload requested by SIGHUP"),
            (_, Cause::Request(requests)) => {
                tracing::info!(requests, "reload requested by POST /reload")
            }
        }
        let outcome = match read {
            Ok(Ok(None)) => return None,
            Ok(Ok(Some(Read::Matches(_)))) => return None,
            Ok(Ok(Some(Read::Changed(digest, loaded)))) => {
                self.applied.lock().await.read = Some(digest);
                let outcome = match *loaded {
                    Ok((prepared, resolved)) => {
                        self.reloads.lookup_failures(&resolved.notes);
                        let warnings = resolved.config.warnings.clone();
                        let noted_now = noted(&resolved.notes);
                        let again = resolved_again(&self.applied.lock().await.noted, &resolved);
                        let outcome = self.publish(resolved.config, By::Reload).await;
                        // Published, if only in part (keys that need a restart aside): what a
                        // DNS refresh starts from. Only a text applied whole is what runs.
                        if !matches!(outcome, Outcome::Rejected { .. }) {
                            for w in &warnings {
                                tracing::warn!("{w}");
                            }
                            let mut applied = self.applied.lock().await;
                            log_resolved_again(&again);
                            applied.noted = noted_now;
                            applied.prepared = Some(prepared);
                            applied.in_effect = outcome.is_success().then_some(digest);
                        }
                        outcome
                    }
                    Err(errors) => Outcome::Rejected { errors: errors.0 },
                };
                let failed = matches!(outcome, Outcome::Rejected { .. });
                self.applied.lock().await.failed_text = failed.then_some(digest);
                outcome
            }
            Ok(Err(e)) => {
                // The file as last read is unknown now: putting the same text back reads it
                // again, and the state then says what that text does.
                let mut applied = self.applied.lock().await;
                applied.read = None;
                applied.failed_text = None;
                Outcome::Rejected { errors: vec![e] }
            }
            Err(e) => Outcome::Rejected {
                errors: vec![ConfigError::at(
                    Path::new("-"),
                    "",
                    None,
                    "",
                    format!("config load failed: {e}"),
                )],
            },
        };
        Some(self.record(outcome))
    }

    /// Resolves the backend names of the running config again (blocking lookups run off the
    /// async workers) and, when the addresses changed, publishes them through the same apply as
    /// a reload. Reads and parses nothing, and is not a reload: the reload counters, `/status`'s
    /// last load, the config's warnings and the keys only a restart changes are left alone. A
    /// name whose lookup fails keeps its addresses; a name's warning is logged when it starts
    /// (or changes), and an info line when it resolves again. `None` when there is nothing to
    /// refresh (no config file).
    pub async fn refresh_dns(&self) -> Option<DnsRefresh> {
        let _owner = self.owner.lock().await;
        let (prepared, previous) = {
            let a = self.applied.lock().await;
            (a.prepared.clone()?, a.dns.clone())
        };
        let resolver = Arc::clone(&self.resolver);
        let resolved = tokio::task::spawn_blocking(move || {
            let resolved = prepared.resolve(&*resolver, &previous);
            (resolved, previous)
        })
        .await;
        let (resolved, previous) = match resolved {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "DNS refresh failed; the previous addresses keep serving");
                self.reloads.dns_refresh(DnsRefresh::Failure);
                return Some(DnsRefresh::Failure);
            }
        };
        self.reloads.lookup_failures(&resolved.notes);
        // A name's warning is true whatever the publish does; that it resolves again, and the
        // state the next refresh compares with, only once its addresses are in effect.
        let before = self.applied.lock().await.noted.clone();
        let mut warned = HashSet::new();
        for n in &resolved.notes {
            if before.get(&n.name) != Some(&Noted::of(&n.kind)) && warned.insert(&n.name) {
                tracing::warn!("{n}");
            }
        }
        let again = resolved_again(&before, &resolved);
        let noted_now = noted(&resolved.notes);
        let result = if resolved.config.dns == previous {
            DnsRefresh::Unchanged
        } else {
            tracing::info!("backend names resolve differently; applying the new addresses");
            match self.publish(resolved.config, By::DnsRefresh).await {
                Outcome::Rejected { errors } => {
                    for e in &errors {
                        tracing::error!("{e}");
                    }
                    tracing::error!("DNS refresh not applied; the previous addresses keep serving");
                    DnsRefresh::Failure
                }
                // Keys only a restart changes were reported by the reload that brought them.
                Outcome::Applied { summary } | Outcome::Partial { summary, .. } => {
                    tracing::info!("{summary}");
                    DnsRefresh::Changed
                }
            }
        };
        if result != DnsRefresh::Failure {
            log_resolved_again(&again);
            self.applied.lock().await.noted = noted_now;
        }
        self.reloads.dns_refresh(result);
        Some(result)
    }

    /// Applies a validated config: builds its snapshot (no side effects), probes the backends no
    /// check has answered for yet (each probe bounded by its check's timeout), publishes it with
    /// one store, then makes the registry and the health supervisor follow. Requests already
    /// routed finish on the snapshot they started with. Logs nothing of the config's warnings:
    /// who loaded the config reports it. (Reloads and refreshes go through [`Runtime::reload`]
    /// and [`Runtime::refresh_dns`]; this is for tests and the reload benchmark. A later refresh
    /// starts from the last reload's config, not from this one.)
    #[cfg(any(test, feature = "internals"))]
    pub async fn apply(&self, config: Config) -> Outcome {
        let _owner = self.owner.lock().await;
        self.publish(config, By::Reload).await
    }

    /// [`Runtime::apply`], its summary worded for `by`.
    async fn publish(&self, config: Config, by: By) -> Outcome {
        let mut applied = self.applied.lock().await;
        let restart = fixed_changes(&self.fixed, &config, self.path.as_deref());
        // A new access-log file is opened before anything is published: if it cannot be
        // opened, nothing of this config applies.
        let opened = match &self.access_log {
            Some(_) if config.server.access_log != applied.access_log => {
                match AccessLog::open(&config.server.access_log) {
                    Ok(opened) => Some(opened),
                    Err(e) => {
                        return Outcome::Rejected {
                            errors: vec![access_log::open_error(
                                &config.places,
                                self.path.as_deref(),
                                &e,
                            )],
                        }
                    }
                }
            }
            _ => None,
        };
        let generation = applied.generation + 1;
        let mut snapshot = prepare(
            &config,
            &self.registry,
            generation,
            &self.supervisor,
            &self.metrics,
        )
        .await;
        let old = self.snapshot.load_full();
        let running: Vec<SocketAddr> = self.fixed.tls.iter().map(|t| t.listen).collect();
        snapshot.keep_listeners(&running, &old);
        applied.dns = config.dns.clone();
        applied.dns_refresh = config.dns_refresh();
        applied.max_config_size = config.server.max_config_size;
        let (added, removed) = backend_changes(&old, &snapshot);
        self.snapshot.store(Arc::new(snapshot));
        self.published(&mut applied, generation, Some(&old));
        forget_dropped_checks(&old, &self.snapshot.load());
        end_dropped_ejections(&self.snapshot.load());

        if config.server.log_level != applied.log_level {
            self.set_log_level(&config.server.log_level);
            applied.log_level = config.server.log_level.clone();
        }
        if let (Some(log), Some(opened)) = (&self.access_log, opened) {
            let log = Arc::clone(log);
            // switch() may wait for room in the writer's channel: not on an async worker.
            match tokio::task::spawn_blocking(move || log.switch(opened)).await {
                Ok(()) => {
                    tracing::info!(access_log = ?config.server.access_log, "access log moved")
                }
                Err(e) => tracing::error!(error = %e, "access log switch failed"),
            }
            applied.access_log = config.server.access_log.clone();
        }
        let what = match by {
            By::Reload => format!(
                "reloaded {}",
                self.path
                    .as_deref()
                    .map_or_else(|| "config".into(), |p| p.display().to_string()),
            ),
            By::DnsRefresh => "DNS refresh applied".to_owned(),
        };
        let summary = format!(
            "{what} (generation {generation}): {} routes, {} upstreams, {} backends ({added} added, {removed} removed)",
            config.routes.len(),
            config.upstreams.len(),
            config
                .upstreams
                .iter()
                .map(|u| u.backends.len())
                .sum::<usize>(),
        );
        if restart.is_empty() {
            Outcome::Applied { summary }
        } else {
            Outcome::Partial { summary, restart }
        }
    }

    /// After snapshot `generation` was stored: tells each of its upstreams' registry state that
    /// this generation serves it (requests picked under older ones announce their end), bumps
    /// their epochs (views and balancers re-read the registry), hands the probe targets to the
    /// supervisor and forgets state nothing refers to, metric series of removed routes included
    /// (`old`, the snapshot replaced, stops making them first).
    fn published(&self, applied: &mut Applied, generation: u64, old: Option<&Snapshot>) {
        let snapshot = self.snapshot.load();
        for u in &snapshot.upstreams {
            u.state().set_generation(generation);
            u.state().bump_epoch();
        }
        self.supervisor.reconcile(snapshot.probe_targets());
        applied.generation = generation;
        self.registry.prune();
        let keep = snapshot.metric_labels();
        if let Some(old) = old {
            old.retire_metrics(&keep);
        }
        self.metrics.retain(&keep);
    }

    fn set_log_level(&self, level: &str) {
        match &self.log {
            Some(set) => match set(level) {
                Ok(()) => tracing::info!(log_level = level, "log level changed"),
                Err(e) => {
                    tracing::error!(log_level = level, error = %e, "cannot change the log level")
                }
            },
            None => {
                tracing::info!(
                    log_level = level,
                    "log_level changed in the file; RUST_LOG is set and wins"
                )
            }
        }
    }

    /// The config file reads as the text that runs now. If the last load failed (the file was
    /// gone, or held a rejected edit), that failure no longer describes the file: the state
    /// says success again. Not a reload: nothing is applied and no reload is counted.
    async fn matches_again(&self, digest: u128) -> Option<Outcome> {
        let (generation, failed_text) = {
            let mut applied = self.applied.lock().await;
            applied.read = Some(digest);
            (applied.generation, applied.failed_text)
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.success {
            return None;
        }
        if failed_text == Some(digest) {
            tracing::info!(
                "the config file again reads as the running config, but its last reload failed on this same text (a file it names, say); that failure still stands"
            );
            return None;
        }
        let message = format!(
            "{} again matches the running config (generation {generation}); nothing reloaded",
            self.path
                .as_deref()
                .map_or_else(|| "the config file".into(), |p| p.display().to_string()),
        );
        tracing::info!("{message}");
        self.reloads.restored();
        *last = LastLoad {
            at: SystemTime::now(),
            success: true,
            message,
        };
        None
    }

    /// Logs and counts a reload's outcome.
    fn record(&self, outcome: Outcome) -> Outcome {
        match &outcome {
            Outcome::Applied { summary } => tracing::info!("{summary}"),
            Outcome::Partial { summary, restart } => {
                tracing::info!("{summary}");
                for e in restart {
                    tracing::error!("{e}");
                }
            }
            Outcome::Rejected { errors } => {
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    problems = errors.len(),
                    "config reload rejected; the previous config keeps serving"
                );
            }
        }
        self.reloads.record(outcome.is_success());
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = LastLoad {
            at: SystemTime::now(),
            success: outcome.is_success(),
            message: outcome.to_string(),
        };
        outcome
    }
}

/// Who applies a config: a reload, or a DNS refresh of the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Reload,
    DnsRefresh,
}

/// Each name `notes` warn about, and why.
fn noted(notes: &[Note]) -> HashMap<String, Noted> {
    notes
        .iter()
        .map(|n| (n.name.clone(), Noted::of(&n.kind)))
        .collect()
}

/// The names warned about `before` that `resolved` still has and no longer warns about: they
/// resolve again. Sorted.
fn resolved_again(before: &HashMap<String, Noted>, resolved: &config::Resolved) -> Vec<String> {
    let noted: HashSet<&str> = resolved.notes.iter().map(|n| n.name.as_str()).collect();
    let mut again: Vec<String> = (resolved.config.dns.iter())
        .map(|(name, _)| name.as_str())
        .filter(|name| before.contains_key(*name) && !noted.contains(name))
        .map(str::to_owned)
        .collect();
    again.sort_unstable();
    again.dedup();
    again
}

fn log_resolved_again(names: &[String]) {
    for name in names {
        tracing::info!("backend name {name} resolves again");
    }
}

/// What a reload read from the file.
enum Read {
    /// The text that runs now: nothing to reload.
    Matches(u128),
    /// Another text's digest, and the text prepared and resolved, or why not (boxed: a `Config`
    /// is large).
    Changed(
        u128,
        Box<Result<(Arc<Prepared>, config::Resolved), config::ConfigErrors>>,
    ),
}

/// Makes the backends `old` checked and `new` does not check any more unknown again, so that a
/// check added back by a later reload probes them before trusting an old result. Done here, by
/// the one owner of reloads and before the next apply, not later by the supervisor.
fn forget_dropped_checks(old: &Snapshot, new: &Snapshot) {
    let checked: HashSet<*const crate::registry::BackendState> = new
        .probe_targets()
        .iter()
        .map(|t| Arc::as_ptr(&t.state))
        .collect();
    for t in old.probe_targets() {
        if !checked.contains(&Arc::as_ptr(&t.state)) {
            t.state.health.forget_probes();
            t.state.upstream().bump_epoch();
        }
    }
}

/// Puts back at once the backends ejected (or on trial) under an upstream whose new config
/// turns passive ejection off (`enabled = false`), rather than at their scheduled readmission.
fn end_dropped_ejections(new: &Snapshot) {
    for u in new.upstreams.iter().filter(|u| !u.ejects()) {
        for b in &u.backends {
            if b.state.health.end_ejection() {
                tracing::info!(upstream = %u.name, backend = %b.state.addr(), "backend back in rotation: passive ejection is off");
                b.state.upstream().bump_epoch();
            }
        }
    }
}

/// Builds snapshot `generation` of `config` and probes its backends that no check has answered
/// for yet, so that none gets traffic before its first probe.
async fn prepare(
    config: &Config,
    registry: &Registry,
    generation: u64,
    supervisor: &SupervisorHandle,
    metrics: &Metrics,
) -> Snapshot {
    let snapshot = Snapshot::build(config, registry, generation, supervisor, metrics);
    health::first_round(&snapshot.probe_targets()).await;
    snapshot
}

/// The keys of `config` that differ from how the process started and that only a restart or a
/// graceful upgrade can change, each as a located error.
fn fixed_changes(running: &ServerConfig, config: &Config, file: Option<&Path>) -> Vec<ConfigError> {
    let new = &config.server;
    let changed = [
        ("server.listen", running.listen != new.listen),
        (
            "server.admin_listen",
            running.admin_listen != new.admin_listen,
        ),
        ("server.threads", running.threads != new.threads),
        (
            "server.upgrade_sock",
            running.upgrade_sock != new.upgrade_sock,
        ),
        // A TLS listener's address, ALPN and versions; its certificates reload.
        ("server.tls", tls_listeners(running) != tls_listeners(new)),
        ("server.h2c", running.h2c != new.h2c),
    ];
    changed
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(field, _)| {
            let message = format!("{field} changed: restart, or run a graceful upgrade, to apply");
            config
                .places
                .error(file, field, message)
                .kind(config::Kind::RestartOnly)
        })
        .collect()
}

/// What a restart must apply of each TLS listener.
/// In address order: listing them in another order changes nothing.
fn tls_listeners(server: &ServerConfig) -> Vec<(SocketAddr, bool, crate::config::TlsVersion)> {
    let mut listeners: Vec<_> = server
        .tls
        .iter()
        .map(|t| (t.listen, t.http2, t.min_version))
        .collect();
    listeners.sort_by_key(|l| l.0);
    listeners
}

/// Backends (upstream, address) in `new` but not in `old`, and the other way round.
fn backend_changes(old: &Snapshot, new: &Snapshot) -> (usize, usize) {
    let keys = |s: &Snapshot| -> HashSet<(String, SocketAddr)> {
        s.upstreams
            .iter()
            .flat_map(|u| u.backends.iter().map(|b| (u.name.clone(), b.addr)))
            .collect()
    };
    let (old, new) = (keys(old), keys(new));
    (new.difference(&old).count(), old.difference(&new).count())
}

#[cfg(test)]
mod tests;
