//! The immutable snapshot the request path reads: routes, router and upstreams built from one
//! validated config. A new config becomes a new snapshot, published with one `ArcSwap::store`;
//! requests in flight keep the snapshot they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::config::{Config, RouteConfig};
use crate::registry::Registry;
use crate::router::Router;
use crate::upstream::Upstream;

#[derive(Debug)]
pub struct Snapshot {
    pub router: Router,
    pub routes: Vec<RouteConfig>,
    pub upstreams: Vec<Upstream>,
    pub trusted_proxies: Vec<IpNet>,
    /// Bytes.
    pub max_request_body: u64,
}

impl Snapshot {
    /// Builds the snapshot; backend state comes from (and stays in) `registry`.
    pub fn build(config: &Config, registry: &Registry) -> Snapshot {
        Snapshot {
            router: Router::new(&config.routes),
            routes: config.routes.clone(),
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Upstream::new(u, registry))
                .collect(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            max_request_body: config.server.max_request_body,
        }
    }
}

impl Snapshot {
    /// Every upstream's health view, for the health monitors.
    pub fn health(&self) -> Vec<Arc<crate::health::UpstreamHealth>> {
        self.upstreams
            .iter()
            .map(|u| Arc::clone(u.health()))
            .collect()
    }
}

/// The current snapshot, shared by every worker.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

pub fn shared(config: &Config, registry: &Registry) -> SharedSnapshot {
    Arc::new(ArcSwap::from_pointee(Snapshot::build(config, registry)))
}
