//! A runtime upstream: its backends, its balancer and the pingora peer template of each backend.
//! Built once per config; the request path only reads it. Per-backend state that outlives the
//! config (in-flight counts) comes from the [`Registry`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use crate::balance::{self, BackendSet, Balancer, Lease, Pick};
use crate::config::{HashKey, UpstreamConfig};
use crate::health::UpstreamHealth;
use crate::registry::{BackendState, Registry};

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub backends: Vec<Backend>,
    balancer: Arc<dyn Balancer>,
    hash_key: Option<HashKey>,
    health: Arc<UpstreamHealth>,
}

#[derive(Debug)]
pub struct Backend {
    /// As written in the config, for logs.
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Connection settings with every timeout set; cloned per attempt.
    peer: HttpPeer,
    /// Shared with every snapshot that has this backend in this upstream.
    pub state: Arc<BackendState>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, registry: &Registry) -> Upstream {
        let backends = config
            .backends
            .iter()
            .map(|b| {
                let mut peer = HttpPeer::new(b.addr, false, String::new());
                let o = &mut peer.options;
                o.connection_timeout = Some(config.connect_timeout);
                o.total_connection_timeout = Some(config.connect_timeout);
                o.read_timeout = Some(config.read_timeout);
                o.write_timeout = Some(config.write_timeout);
                o.idle_timeout = Some(config.idle_timeout);
                Backend {
                    name: b.name.clone(),
                    addr: b.addr,
                    weight: b.weight,
                    peer,
                    state: registry.backend(&config.name, b.addr),
                }
            })
            .collect::<Vec<_>>();
        let states: Vec<_> = backends
            .iter()
            .map(|b: &Backend| Arc::clone(&b.state))
            .collect();
        let balancer = balance::build(config, &states);
        Upstream {
            name: config.name.clone(),
            health: Arc::new(UpstreamHealth::new(config, &states, Arc::clone(&balancer))),
            balancer,
            backends,
            hash_key: config.hash_key.clone(),
        }
    }

    /// What this upstream's strategy hashes, if it hashes.
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }

    /// The upstream's health view (eligibility, outlier ejection, panic mode).
    pub fn health(&self) -> &Arc<UpstreamHealth> {
        &self.health
    }

    /// Chooses an available backend that is not in `excluded`, for a request with hash key
    /// `key`. `None`: no backend is available.
    pub fn select(&self, excluded: &BackendSet, key: Option<&[u8]>) -> Option<usize> {
        self.balancer.pick(&Pick {
            eligible: &|i| !excluded.contains(i) && self.health.eligible(i),
            key,
            available: self.health.available(),
        })
    }

    /// Counts a request in flight on backend `i` until the lease is dropped.
    pub fn lease(&self, i: usize) -> Lease {
        Lease::new(&self.backends[i].state, &self.balancer, i)
    }

    /// Whether a retry could go anywhere.
    pub fn has_untried(&self, excluded: &BackendSet) -> bool {
        (0..self.backends.len()).any(|i| !excluded.contains(i) && self.health.eligible(i))
    }

    /// The peer for backend `i`, with read/write/connect deadlines capped at `remaining` so that
    /// the route's whole-request timeout holds.
    pub fn peer(&self, i: usize, remaining: Duration) -> Box<HttpPeer> {
        let mut peer = Box::new(self.backends[i].peer.clone());
        let o = &mut peer.options;
        for t in [
            &mut o.connection_timeout,
            &mut o.total_connection_timeout,
            &mut o.read_timeout,
            &mut o.write_timeout,
        ] {
            *t = t.map(|t| t.min(remaining));
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, BalanceKind};

    fn upstream(n: u16) -> Upstream {
        let registry = Registry::default();
        Upstream::new(
            &UpstreamConfig {
                name: "u".into(),
                balance: BalanceKind::RoundRobin,
                hash_key: None,
                hash_balance_factor: None,
                panic_threshold: 0,
                health_check: None,
                outlier: None,
                backends: (0..n)
                    .map(|i| BackendConfig {
                        name: format!("b{i}"),
                        addr: SocketAddr::from(([127, 0, 0, 1], 9000 + i)),
                        weight: 1,
                    })
                    .collect(),
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(30),
                write_timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(60),
            },
            &registry,
        )
    }

    #[test]
    fn select_never_repeats_a_tried_backend() {
        let u = upstream(3);
        let mut tried = BackendSet::default();
        let mut seen = Vec::new();
        while let Some(i) = u.select(&tried, None) {
            tried.insert(i);
            seen.push(i);
        }
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
        assert!(!u.has_untried(&tried));
    }

    #[test]
    fn peer_timeouts_are_capped_by_the_remaining_deadline() {
        let u = upstream(1);
        let p = u.peer(0, Duration::from_millis(500));
        assert_eq!(
            p.options.connection_timeout,
            Some(Duration::from_millis(500))
        );
        assert_eq!(p.options.read_timeout, Some(Duration::from_millis(500)));
        assert_eq!(p.options.idle_timeout, Some(Duration::from_secs(60)));
        let p = u.peer(0, Duration::from_secs(100));
        assert_eq!(p.options.read_timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn lease_counts_in_flight_until_dropped() {
        let u = upstream(2);
        let lease = u.lease(1);
        assert_eq!(
            (
                u.backends[0].state.in_flight(),
                u.backends[1].state.in_flight()
            ),
            (0, 1)
        );
        drop(lease);
        assert_eq!(u.backends[1].state.in_flight(), 0);
    }
}
