//! Process lifecycle: builds the pingora server from a validated config (proxy listeners, admin
//! listener, every timeout set), runs it, and shuts it down on signals.

pub mod drain;
mod signals;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use pingora::services::background::background_service;

use crate::admin::AdminApp;
use crate::config::Config;
use crate::health::{HealthService, UpstreamHealth};
use crate::proxy::Proxy;
use crate::registry::Registry;
use crate::snapshot;
use drain::Drain;

/// Requests served on one client connection before it is closed (nginx's `keepalive_requests`).
pub const KEEPALIVE_REQUEST_LIMIT: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Probes every checked backend once, before the listeners open, so that no backend gets
/// traffic before its first check. Takes at most the longest health-check timeout.
fn first_health_round(upstreams: &[Arc<UpstreamHealth>]) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot run the first health checks; backends stay unknown until the monitor probes them");
            return;
        }
    };
    runtime.block_on(async {
        let mut rounds = tokio::task::JoinSet::new();
        for u in upstreams {
            let u = Arc::clone(u);
            rounds.spawn(async move { u.first_round().await });
        }
        while let Some(done) = rounds.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "first health round failed");
            }
        }
    });
}

/// Serves `config` until a shutdown signal: SIGTERM drains (in-flight requests finish within
/// `grace_period`, then exit), SIGINT exits at once.
pub fn run(config: &Config) -> Result<(), ServerError> {
    let s = &config.server;
    // pingora reports a failed bind deep in a worker thread; check first to fail clearly.
    for &addr in s.listen.iter().chain(s.admin_listen.iter()) {
        TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    }

    let conf = ServerConf {
        threads: s.threads,
        // Our drain watcher exits as soon as requests are done or the grace period is over;
        // this is pingora's own upper bound, in case the watcher could not run.
        grace_period_seconds: Some(s.grace_period.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let drain = Arc::new(Drain::default());
    let registry = Registry::default();
    let shared = snapshot::shared(config, &registry);
    let health = shared.load().health();
    first_health_round(&health);
    server.add_service(background_service(
        "health checks",
        HealthService::new(health),
    ));
    let proxy = Proxy::new(shared, Arc::clone(&drain));
    let mut service =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, proxy, "fulcrum proxy");
    if let Some(app) = service.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.keepalive_request_limit = Some(KEEPALIVE_REQUEST_LIMIT);
        app.server_options = Some(options);
    }
    for addr in &s.listen {
        service.add_tcp(&addr.to_string());
    }
    server.add_service(service);

    if let Some(addr) = s.admin_listen {
        let mut admin = Service::new("fulcrum admin".to_owned(), AdminApp);
        admin.add_tcp(&addr.to_string());
        admin.threads = Some(1);
        server.add_service(admin);
    }

    tracing::info!(listen = ?s.listen, admin = ?s.admin_listen, threads = s.threads, "fulcrum serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(signals::Signals::new(drain, s.grace_period)),
    });
    Ok(())
}
