//! Process lifecycle: builds the pingora server from a validated config (proxy listeners, admin
//! listener, every timeout set), starts the background services (health supervisor, reloader,
//! rate-limit pruning), runs it, and shuts it down on signals.

pub(crate) mod drain;
pub(crate) mod guard;
mod linger;
mod signals;
pub(crate) mod tls;
mod upgrade_sock;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::access_log::AccessLog;
use crate::admin::AdminApp;
use crate::config::units::MAX_DURATION;
use crate::config::Config;
use crate::health::Supervisor;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::ratelimit::Pruner;
pub use crate::reload::{LogControl, Source, SourceError};
use crate::reload::{Reloader, Runtime};
use drain::Drain;
use guard::GuardApp;
use linger::Linger;
use tls::TlsApp;

/// Requests served on one client connection before it is closed (nginx's `keepalive_requests`).
const KEEPALIVE_REQUEST_LIMIT: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `run --upgrade` with nothing to take over: every listen address could be bound.
    #[error("no running fulcrum is listening on {addr}, or on any other listen address of this config, to hand its sockets over (each could be bound); start without --upgrade, or start the new process while the old one serves and then send the old one SIGQUIT")]
    NothingToUpgrade { addr: SocketAddr },
    // The cause is the error's source: `{:#}` prints it once, after this.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start: {0}")]
    Startup(std::io::Error),
    #[error("{0}")]
    AccessLog(crate::config::ConfigError),
    #[error("cannot run --upgrade: {0}")]
    UpgradeSock(String),
}

/// How to run, beyond the config.
#[derive(Default)]
pub struct RunOptions {
    /// The config file ([`Source::load`] reads it and gives the config to run), reloaded on
    /// change, SIGHUP and `POST /reload`; `None` for a config given in code (the demo, an
    /// embedder), which never reloads.
    pub source: Option<Source>,
    /// The flag every SIGHUP sets, from [`sighup_flag`]; the reloader takes it. Registered
    /// before anything else listens for SIGHUP (`main` does it first thing, so that a SIGHUP
    /// while starting is neither fatal nor lost); `None`: `run` registers one itself.
    pub sighup: Option<Arc<AtomicBool>>,
    /// Take the listening sockets over from a running fulcrum (it hands them over when it gets
    /// SIGQUIT) instead of binding them.
    pub upgrade: bool,
    /// Applies a reloaded `log_level`.
    pub log: Option<LogControl>,
}

/// What pingora's own log lines are held to unless `log_level` asks for them: its errors only,
/// and not the error it logs every second while `run --upgrade` waits for the old process's
/// sockets (an expected wait; fulcrum says when it took them over, or why it could not).
pub const PINGORA_LOG: &str = "pingora=error,pingora_core::server::transfer_fd=off";

/// The `tracing` filter for a `log_level`: as written when it names a pingora target (e.g.
/// `"info,pingora=info"`) or asks for `debug` or `trace` everywhere; otherwise with pingora's
/// lines held to [`PINGORA_LOG`], so that the default level shows fulcrum's own lines.
pub fn log_filter(log_level: &str) -> String {
    let verbose = log_level.split(',').any(|d| {
        let d = d.trim();
        !d.contains('=') && matches!(d.to_ascii_lowercase().as_str(), "debug" | "trace")
    });
    if verbose || log_level.contains("pingora") {
        log_level.to_owned()
    } else if log_level.trim().is_empty() {
        PINGORA_LOG.to_owned()
    } else {
        format!("{log_level},{PINGORA_LOG}")
    }
}

/// A flag that every SIGHUP sets from now on. Registering it also means a SIGHUP no longer ends
/// the process (its default action).
pub fn sighup_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&flag))?;
    Ok(flag)
}

/// Serves `config` until a shutdown signal: SIGTERM drains (in-flight requests finish within
/// `grace_period`, then exit), SIGINT exits at once, SIGQUIT hands the listeners to a new process
/// started with `upgrade` and then drains, SIGHUP reloads.
pub fn run(config: Config, options: RunOptions) -> Result<(), ServerError> {
    let sighup = options.sighup.or_else(|| match sighup_flag() {
        Ok(flag) => Some(flag),
        Err(e) => {
            tracing::error!(error = %e, "cannot register a SIGHUP flag; every SIGHUP wake-up reloads");
            None
        }
    });
    let s = config.server.clone();
    if !options.upgrade {
        // pingora reports a failed bind deep in a worker thread; check first to fail clearly.
        for addr in s.proxy_listeners().chain(s.admin_listen) {
            TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
        }
    } else {
        // An old fulcrum holds the addresses it listens on; the new config may add or move
        // some (pingora binds those afresh). Only when every address, proxy, TLS and admin, can
        // be bound is there nothing to take over: say so now rather than after pingora's six
        // seconds of retries. The binds are held until all are tried, so that two entries for
        // one address do not both look free.
        let addrs: Vec<SocketAddr> = s.proxy_listeners().chain(s.admin_listen).collect();
        let bound: Vec<TcpListener> = addrs
            .iter()
            .map_while(|a| TcpListener::bind(a).ok())
            .collect();
        if bound.len() == addrs.len() {
            if let Some(&addr) = addrs.first() {
                return Err(ServerError::NothingToUpgrade { addr });
            }
        }
    }
    // The default is looked for (and its directory made) only when `upgrade_sock` is not set.
    // With no private directory there is no hand-off: a fixed name in a shared directory could
    // be created first by any local user, who would then be sent the listening sockets.
    let upgrade_sock = match &s.upgrade_sock {
        Some(path) => Ok(path.clone()),
        None => upgrade_sock::default_path(),
    };
    let upgrade_sock = match upgrade_sock {
        Ok(path) => Some(path),
        Err(why) if options.upgrade => return Err(ServerError::UpgradeSock(why)),
        Err(why) => {
            tracing::warn!("graceful upgrade is off: {why}");
            None
        }
    };
    if let (true, Some(path)) = (options.upgrade, &upgrade_sock) {
        upgrade_sock::restrict_when_made(path.clone(), std::time::Duration::from_secs(10));
    }
    let conf = ServerConf {
        threads: s.threads,
        // Our drain watcher exits as soon as requests are done or the (reloadable) grace period
        // is over; pingora's own wait is only a backstop, longer than any grace_period allowed.
        grace_period_seconds: Some(MAX_DURATION.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(0),
        // With hand-off off, SIGQUIT never asks pingora to send; a path under a file that no
        // one can create is given anyway.
        upgrade_sock: upgrade_sock.as_deref().map_or_else(
            || "/dev/null/fulcrum-upgrade-off".to_owned(),
            |p| p.to_string_lossy().into_owned(),
        ),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    let metrics = Metrics::register(&prometheus::Registry::new());
    let access_log = AccessLog::start(&s.access_log, metrics.access_log_dropped.clone())
        .map(Arc::new)
        .map_err(|e| {
            let file = options.source.as_ref().map(|s| s.path());
            ServerError::AccessLog(crate::access_log::open_error(&config.places, file, &e))
        })?;
    let (supervisor, health) = Supervisor::new();

    // The first config is built and its checked backends probed before any listener serves.
    let startup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Startup)?;
    let runtime = startup.block_on(Runtime::start(
        config,
        options.source,
        health,
        options.log,
        Arc::clone(&metrics),
        Some(Arc::clone(&access_log)),
    ));
    drop(startup);
    // With `upgrade`, this waits for the old process's listening sockets.
    server.bootstrap();
    let listeners = s.proxy_listeners().count() + usize::from(s.admin_listen.is_some());
    if let (true, Some(path)) = (options.upgrade, &upgrade_sock) {
        tracing::info!(
            upgrade_sock = %path.display(),
            "took over {listeners} listeners from the running fulcrum"
        );
    }

    let drain = Arc::new(Drain::default());
    server.add_service(background_service("health checks", supervisor));
    server.add_service(background_service(
        "rate-limit pruning",
        Pruner::new(Arc::clone(runtime.registry())),
    ));
    let (reloader, reload) = Reloader::new(Arc::clone(&runtime), sighup);
    server.add_service(background_service("config reload", reloader));

    let proxy = Proxy::new(
        Arc::clone(runtime.snapshot()),
        Arc::clone(&drain),
        Arc::clone(&access_log),
    );
    let mut app = pingora::proxy::http_proxy(&server.configuration, proxy);
    let mut server_options = HttpServerOptions::default();
    server_options.keepalive_request_limit = Some(KEEPALIVE_REQUEST_LIMIT);
    server_options.h2c = s.h2c;
    // Past its preface an HTTP/2 connection's frames are not a header for the guard to scan:
    // its idle limit is pingora's.
    server_options.h2_idle_timeout = Some(s.client.keepalive_timeout);
    app.server_options = Some(server_options);
    let app = GuardApp::new(
        app,
        Arc::clone(runtime.snapshot()),
        &metrics.refused,
        Some(Arc::clone(&access_log)),
    );
    let app = TlsApp::new(
        app,
        &s.tls,
        Arc::clone(runtime.snapshot()),
        &metrics.tls_handshakes,
    );
    let app = Linger::new(
        app,
        Arc::clone(runtime.snapshot()),
        metrics.connections.clone(),
        &metrics.refused,
    );
    let mut service = Service::new("fulcrum proxy".to_owned(), app);
    // TLS listeners are plain TCP to pingora: `TlsApp` terminates TLS on their connections.
    for addr in s.proxy_listeners() {
        // No L4 read buffer: pingora's HTTP/1 reader and rustls have their own, so the default
        // 64 KiB one per client connection only adds a copy of every read and memory per idle
        // connection.
        let buffers = L4BufferSettings::default().read(0);
        service.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(buffers));
    }
    server.add_service(service);

    if let Some(addr) = s.admin_listen {
        let refused = metrics.refused.clone();
        let app = AdminApp::new(reload, Arc::clone(&runtime), metrics, Arc::clone(&drain));
        let app = GuardApp::new(app, Arc::clone(runtime.snapshot()), &refused, None);
        let mut admin = Service::new("fulcrum admin".to_owned(), app);
        admin.add_tcp(&addr.to_string());
        admin.threads = Some(1);
        server.add_service(admin);
    }

    let list = |addrs: Vec<SocketAddr>| {
        let addrs: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
        addrs.join(", ")
    };
    let mut listening = Vec::new();
    if !s.listen.is_empty() {
        listening.push(list(s.listen.clone()));
    }
    if !s.tls.is_empty() {
        listening.push(format!(
            "TLS on {}",
            list(s.tls.iter().map(|t| t.listen).collect())
        ));
    }
    if let Some(admin) = s.admin_listen {
        listening.push(format!("admin on {admin}"));
    }
    tracing::info!(
        "fulcrum serving: listening on {} ({} worker threads)",
        listening.join("; "),
        s.threads
    );
    let phases = server.watch_execution_phase();
    server.run(RunArgs {
        shutdown_signal: Box::new(signals::Signals::new(
            drain,
            Arc::clone(runtime.snapshot()),
            access_log,
            phases,
            listeners,
            upgrade_sock,
        )),
    });
    Ok(())
}

#[cfg(test)]
mod log_filter_tests {
    use super::*;

    #[test]
    fn pingora_is_held_back_unless_asked_for() {
        assert_eq!(log_filter("info"), format!("info,{PINGORA_LOG}"));
        assert_eq!(
            log_filter("warn,fulcrum=debug"),
            format!("warn,fulcrum=debug,{PINGORA_LOG}")
        );
        assert_eq!(log_filter("info,pingora=info"), "info,pingora=info");
        assert_eq!(log_filter("debug"), "debug");
        assert_eq!(log_filter("TRACE"), "TRACE");
    }
}
