//! The immutable snapshot the request path reads: routes, router and upstreams built from one
//! validated config. A new config becomes a new snapshot, published with one `ArcSwap::store`;
//! requests in flight keep the snapshot they started with.
//!
//! Building a snapshot has no side effects: it looks backend state up in the [`Registry`] and
//! changes none of it, so a snapshot that is built and then thrown away leaves everything as it
//! was. Publishing is the job of the one owner of reloads (`reload::Runtime`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::access_log::Style;
use crate::cert_set::CertSet;
use crate::config::runtime::ClientLimits;
use crate::config::{Config, RouteConfig};
use crate::health::{SupervisorHandle, Target};
use crate::metrics::{Keep, Metrics, RouteMetrics};
use crate::ratelimit::RouteLimit;
use crate::registry::Registry;
use crate::router::Router;
use crate::upstream::Upstream;

#[derive(Debug)]
pub struct Snapshot {
    /// Counts published snapshots, from 1.
    pub generation: u64,
    pub router: Router,
    /// In config order; the router returns indices into it.
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    pub trusted_proxies: Vec<IpNet>,
    /// Bytes.
    pub max_request_body: u64,
    /// How long SIGTERM waits for requests in flight.
    pub grace_period: Duration,
    /// Where requests that match no route are counted.
    pub unrouted: RouteMetrics,
    /// How access-log lines are written.
    pub access_log: Style,
    /// Client-side limits, taken by each new connection.
    pub client: ClientLimits,
    pub max_connections: usize,
    pub merge_slashes: bool,
    /// Each TLS listener's certificates.
    pub tls: Vec<Arc<CertSet>>,
    /// With `redirect_http_to_https`, the port plain-HTTP requests are sent to (the first TLS
    /// listener's).
    pub https_redirect: Option<u16>,
}

impl Snapshot {
    /// Builds snapshot `generation` of `config`; backend state comes from (and stays in)
    /// `registry`, passive health schedules readmissions with `supervisor`, and metric handles
    /// are resolved in `metrics` (series a snapshot that is never published leaves behind go at
    /// the next [`Metrics::retain`]).
    pub fn build(
        config: &Config,
        registry: &Registry,
        generation: u64,
        supervisor: &SupervisorHandle,
        metrics: &Metrics,
    ) -> Snapshot {
        Snapshot {
            generation,
            router: Router::new(&config.routes),
            routes: config
                .routes
                .iter()
                .map(|r| Route {
                    limit: r
                        .rate_limit
                        .as_ref()
                        .map(|l| RouteLimit::new(&r.name, l, registry)),
                    metrics: metrics.route(&r.name, &config.upstreams[r.upstream].name),
                    config: r.clone(),
                })
                .collect(),
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Upstream::new(u, registry, generation, supervisor, metrics))
                .collect(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            max_request_body: config.server.max_request_body,
            grace_period: config.server.grace_period,
            unrouted: metrics.unrouted(),
            access_log: Style {
                format: config.server.access_log_format,
                query: config.server.access_log_query,
            },
            client: config.server.client,
            max_connections: config.server.max_connections,
            merge_slashes: config.server.merge_slashes,
            tls: config
                .server
                .tls
                .iter()
                .map(|t| Arc::new(CertSet::new(t)))
                .collect(),
            https_redirect: config
                .server
                .tls
                .first()
                .filter(|_| config.server.redirect_http_to_https)
                .map(|t| t.listen.port()),
        }
    }

    /// Makes the TLS side follow the listeners that run, which a reload cannot add, move or
    /// remove (it says a restart is needed): each `running` listener gets the certificates the
    /// config gives its address, or keeps those it had in `old` when the config no longer names
    /// it; the redirect goes to the first running TLS listener.
    pub fn keep_listeners(&mut self, running: &[SocketAddr], old: &Snapshot) {
        let set = |snap: &Snapshot, addr: SocketAddr| {
            snap.tls.iter().find(|s| s.listen == addr).map(Arc::clone)
        };
        self.tls = running
            .iter()
            .filter_map(|&addr| set(self, addr).or_else(|| set(old, addr)))
            .collect();
        self.https_redirect = self
            .https_redirect
            .and(running.first())
            .map(SocketAddr::port);
    }

    /// The metric label sets this snapshot uses, for [`Metrics::retain`].
    pub fn metric_labels(&self) -> Keep<'_> {
        let mut keep = Keep::default();
        keep.routes.reserve(self.routes.len());
        for r in &self.routes {
            let upstream = &self.upstreams[r.config.upstream].name;
            keep.routes.insert(&r.config.name, upstream);
        }
        for u in &self.upstreams {
            keep.upstreams.insert(&u.name);
            for b in &u.backends {
                keep.backends.insert((&u.name, &b.name));
            }
        }
        keep
    }

    /// Retires the request counters of this (replaced) snapshot's routes whose label set `keep`,
    /// the new snapshot's, no longer has: see [`crate::metrics::RequestCounters::retire`].
    pub fn retire_metrics(&self, keep: &Keep) {
        for r in &self.routes {
            let upstream = &self.upstreams[r.config.upstream].name;
            if !keep.route(&r.config.name, upstream) {
                r.metrics.requests.retire();
            }
        }
    }

    /// Every backend an active check watches, for the health supervisor.
    pub fn probe_targets(&self) -> Vec<Target> {
        self.upstreams
            .iter()
            .flat_map(Upstream::probe_targets)
            .collect()
    }
}

/// A route as the request path runs it: its config and what is built from it once per snapshot.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    /// Its rate limit, with the buckets it shares with every snapshot that kept the limit.
    pub limit: Option<RouteLimit>,
    pub metrics: RouteMetrics,
}

/// The current snapshot, shared by every worker.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;
