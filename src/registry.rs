//! State that must outlive one config: per-backend counters keyed by upstream name + backend
//! address. A snapshot resolves the entries it needs once, when it is built; a reload that keeps
//! an upstream and a backend keeps their state (in-flight counts, health).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::health::BackendHealth;

/// Everything fulcrum knows about one backend of one upstream, beyond the config.
#[derive(Debug, Default)]
pub struct BackendState {
    /// Active and passive health.
    pub health: BackendHealth,
    in_flight: AtomicU64,
    /// In-flight requests of the whole upstream (shared by all its backends).
    upstream_in_flight: Arc<AtomicU64>,
}

impl BackendState {
    /// Requests being served by this backend now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests being served by the backend's upstream now, across all its backends.
    pub fn upstream_in_flight(&self) -> u64 {
        self.upstream_in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.upstream_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.upstream_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    backends: HashMap<(String, SocketAddr), Arc<BackendState>>,
    upstreams: HashMap<String, Arc<AtomicU64>>,
}

impl Registry {
    /// The state of `addr` in `upstream`, created on first use.
    pub fn backend(&self, upstream: &str, addr: SocketAddr) -> Arc<BackendState> {
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = e.backends.get(&(upstream.to_owned(), addr)) {
            return Arc::clone(s);
        }
        let total = Arc::clone(e.upstreams.entry(upstream.to_owned()).or_default());
        let state = Arc::new(BackendState {
            health: BackendHealth::default(),
            in_flight: AtomicU64::new(0),
            upstream_in_flight: total,
        });
        e.backends
            .insert((upstream.to_owned(), addr), Arc::clone(&state));
        state
    }

    /// Forgets backends no snapshot and no request refers to any more.
    pub fn prune(&self) {
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        e.backends.retain(|_, s| Arc::strong_count(s) > 1);
        e.upstreams.retain(|_, t| Arc::strong_count(t) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_upstream_and_address_share_state_across_lookups() {
        let r = Registry::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = r.backend("api", addr);
        a.start();
        assert_eq!(r.backend("api", addr).in_flight(), 1);
        assert_eq!(r.backend("web", addr).in_flight(), 0);
        let b = r.backend("api", "127.0.0.1:2".parse().unwrap());
        b.start();
        assert_eq!(a.upstream_in_flight(), 2);
        a.end();
        assert_eq!(b.upstream_in_flight(), 1);
    }

    #[test]
    fn prune_keeps_what_is_still_referenced() {
        let r = Registry::default();
        let kept = r.backend("api", "127.0.0.1:1".parse().unwrap());
        drop(r.backend("api", "127.0.0.1:2".parse().unwrap()));
        r.prune();
        assert_eq!(r.inner.lock().unwrap().backends.len(), 1);
        kept.start();
        assert_eq!(
            r.backend("api", "127.0.0.1:1".parse().unwrap()).in_flight(),
            1
        );
    }
}
