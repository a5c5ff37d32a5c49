//! State that outlives a config, keyed by upstream name + backend address: health, ejection,
//! in-flight counts, and (in later features) anything else a reload must keep.
//!
//! This module imports no feature module: health writes into these types, balancers and the
//! request path read them, and a snapshot only points into them. The registry holds **weak**
//! references, so an entry lives exactly as long as some snapshot or in-flight request refers
//! to it: a backend a reload removes keeps its state while its last requests finish, then the
//! state is dropped; a reload that keeps an upstream and an address keeps their state.
//!
//! Looking an entry up never changes an existing one. A new entry is reachable only through the
//! snapshot that asked for it, so building a snapshot that is then thrown away changes no live
//! state (it leaves a dead weak entry behind, which [`Registry::prune`] removes).
//!
//! Change notification: whatever changes a member's availability, or ends a request picked under
//! an older config, bumps its upstream's [`UpstreamState::epoch`]. A snapshot notices a new
//! epoch with one atomic load and brings its derived views (panic mode, balancer indexes) up to
//! date; nothing pushes into a particular snapshot.

mod health;

pub use health::{HealthState, Transition};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// What fulcrum knows about one upstream beyond its config.
#[derive(Debug)]
pub struct UpstreamState {
    name: Arc<str>,
    /// Requests in flight across all backends of the upstream.
    in_flight: AtomicU64,
    /// Bumped on every change a snapshot's derived views depend on (see the module doc).
    epoch: AtomicU64,
    /// The generation of the snapshot that serves this upstream now.
    generation: AtomicU64,
    /// Serializes health decisions that look at several members at once (ejection limits).
    decisions: Mutex<()>,
}

impl UpstreamState {
    fn new(name: &str) -> UpstreamState {
        UpstreamState {
            name: Arc::from(name),
            in_flight: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            decisions: Mutex::new(()),
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Requests being served by the upstream now, across all its backends and configs.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The change counter (see the module doc). Acquire: a reader that sees a new epoch sees
    /// the change that bumped it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Announces a change; called after the change is made.
    pub fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// The generation of the snapshot serving this upstream now (0 before the first one).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that snapshot `generation` serves this upstream from now on. Called by the one
    /// owner of reloads, after the snapshot is published.
    pub fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Release);
    }

    /// Held while a health decision counts members (so that `max_ejected_percent` holds
    /// exactly under concurrent failures).
    pub fn decisions(&self) -> MutexGuard<'_, ()> {
        self.decisions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What fulcrum knows about one backend of one upstream beyond its config.
#[derive(Debug)]
pub struct BackendState {
    upstream: Arc<UpstreamState>,
    addr: SocketAddr,
    /// Active and passive health.
    pub health: HealthState,
    in_flight: AtomicU64,
}

impl BackendState {
    pub fn upstream(&self) -> &Arc<UpstreamState> {
        &self.upstream
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests being served by this backend now, picked under any config.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests being served by the backend's upstream now, across all its backends.
    pub fn upstream_in_flight(&self) -> u64 {
        self.upstream.in_flight()
    }

    /// Counts a request that starts on this backend.
    pub fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.upstream.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that ended on this backend.
    pub fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.upstream.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every upstream and backend state some snapshot or request still refers to.
#[derive(Debug, Default)]
pub struct Registry {
    upstreams: Mutex<HashMap<Arc<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    state: Weak<UpstreamState>,
    backends: HashMap<SocketAddr, Weak<BackendState>>,
}

impl Registry {
    fn entries(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.upstreams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state of upstream `name`: the live one, or a new one.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamState> {
        let mut entries = self.entries();
        if let Some(state) = entries.get(name).and_then(|e| e.state.upgrade()) {
            return state;
        }
        let state = Arc::new(UpstreamState::new(name));
        let entry = entries.entry(Arc::clone(&state.name)).or_insert(Entry {
            state: Weak::new(),
            backends: HashMap::new(),
        });
        entry.state = Arc::downgrade(&state);
        // Backends of a dead upstream state are dead too (each held its upstream alive).
        entry.backends.clear();
        state
    }

    /// The state of backend `addr` of `upstream`: the live one, or a new one (health unknown,
    /// nothing in flight).
    pub fn backend(&self, upstream: &Arc<UpstreamState>, addr: SocketAddr) -> Arc<BackendState> {
        let mut entries = self.entries();
        let entry = entries
            .entry(Arc::clone(&upstream.name))
            .or_insert_with(|| Entry {
                state: Arc::downgrade(upstream),
                backends: HashMap::new(),
            });
        if let Some(state) = entry.backends.get(&addr).and_then(Weak::upgrade) {
            if Arc::ptr_eq(&state.upstream, upstream) {
                return state;
            }
        }
        let state = Arc::new(BackendState {
            upstream: Arc::clone(upstream),
            addr,
            health: HealthState::default(),
            in_flight: AtomicU64::new(0),
        });
        entry.backends.insert(addr, Arc::downgrade(&state));
        state
    }

    /// Forgets entries nothing refers to any more.
    pub fn prune(&self) {
        let mut entries = self.entries();
        entries.retain(|_, e| {
            e.backends.retain(|_, b| b.strong_count() > 0);
            e.state.strong_count() > 0
        });
    }

    /// (upstreams, backends) with live state, for tests and metrics.
    pub fn len(&self) -> (usize, usize) {
        let entries = self.entries();
        let live = entries.values().filter(|e| e.state.strong_count() > 0);
        let backends = live
            .clone()
            .map(|e| e.backends.values().filter(|b| b.strong_count() > 0).count())
            .sum();
        (live.count(), backends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn same_upstream_and_address_share_state_across_lookups() {
        let r = Registry::default();
        let api = r.upstream("api");
        let a = r.backend(&api, addr(1));
        a.start();
        assert_eq!(r.backend(&r.upstream("api"), addr(1)).in_flight(), 1);
        let web = r.upstream("web");
        assert_eq!(r.backend(&web, addr(1)).in_flight(), 0);
        let b = r.backend(&api, addr(2));
        b.start();
        assert_eq!(a.upstream_in_flight(), 2);
        a.end();
        assert_eq!(b.upstream_in_flight(), 1);
        assert_eq!(web.in_flight(), 0);
    }

    #[test]
    fn state_lives_while_referenced_and_no_longer() {
        let r = Registry::default();
        let api = r.upstream("api");
        let kept = r.backend(&api, addr(1));
        kept.start();
        drop(r.backend(&api, addr(2)));
        assert_eq!(r.len(), (1, 1));
        r.prune();
        assert_eq!(r.entries()["api"].backends.len(), 1);
        assert_eq!(r.backend(&api, addr(1)).in_flight(), 1);
        // The dropped backend comes back as a new, unknown one.
        assert!(r.backend(&api, addr(2)).health.is_unknown());

        drop((api, kept));
        assert_eq!(r.len(), (0, 0));
        r.prune();
        assert!(r.entries().is_empty());
    }

    #[test]
    fn a_new_upstream_state_starts_with_new_backend_states() {
        let r = Registry::default();
        let api = r.upstream("api");
        let b = r.backend(&api, addr(1));
        b.health.on_probe(true, 1, 1);
        // Only `b` refers to the upstream state now: looking the upstream up finds it alive.
        drop(api);
        let again = r.upstream("api");
        assert!(Arc::ptr_eq(&again, b.upstream()));
        assert!(!r.backend(&again, addr(1)).health.is_unknown());
    }

    #[test]
    fn epoch_and_generation() {
        let r = Registry::default();
        let u = r.upstream("u");
        let e = u.epoch();
        u.bump_epoch();
        assert_eq!(u.epoch(), e + 1);
        u.set_generation(7);
        assert_eq!(u.generation(), 7);
    }
}
