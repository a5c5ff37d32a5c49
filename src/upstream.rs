//! A runtime upstream: its backends, its balancer and the pingora peer template of each backend.
//! Built once per config; the request path only reads it.

use std::net::SocketAddr;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use crate::balance::{self, Balancer, Pick};
use crate::config::UpstreamConfig;

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub backends: Vec<Backend>,
    balancer: Box<dyn Balancer>,
}

#[derive(Debug)]
pub struct Backend {
    /// As written in the config, for logs.
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Connection settings with every timeout set; cloned per attempt.
    peer: HttpPeer,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Upstream {
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
                }
            })
            .collect();
        Upstream {
            name: config.name.clone(),
            backends,
            balancer: balance::build(config.balance, &config.backends),
        }
    }

    /// Chooses a backend that is not in `tried`.
    pub fn select(&self, tried: &Tried) -> Option<usize> {
        self.balancer.pick(&Pick {
            eligible: &|i| !tried.contains(i),
        })
    }

    /// Whether a retry could go anywhere.
    pub fn has_untried(&self, tried: &Tried) -> bool {
        (0..self.backends.len()).any(|i| !tried.contains(i))
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

/// The backends one request has tried, without allocating for the first 64.
#[derive(Debug, Default)]
pub struct Tried {
    low: u64,
    high: Vec<usize>,
}

impl Tried {
    pub fn insert(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else if !self.high.contains(&i) {
            self.high.push(i);
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.low & (1 << i) != 0
        } else {
            self.high.contains(&i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, BalanceKind};

    fn upstream(n: u16) -> Upstream {
        Upstream::new(&UpstreamConfig {
            name: "u".into(),
            balance: BalanceKind::RoundRobin,
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
        })
    }

    #[test]
    fn select_never_repeats_a_tried_backend() {
        let u = upstream(3);
        let mut tried = Tried::default();
        let mut seen = Vec::new();
        while let Some(i) = u.select(&tried) {
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
    fn tried_set_spans_past_64() {
        let mut t = Tried::default();
        for i in [0, 63, 64, 1000] {
            assert!(!t.contains(i));
            t.insert(i);
            assert!(t.contains(i));
        }
        assert!(!t.contains(1));
    }
}
