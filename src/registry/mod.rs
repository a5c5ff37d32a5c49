//! State that outlives a config, keyed by upstream name + backend address (health, ejection,
//! circuit breaker, in-flight counts, the upstream's admitted requests) or by route name + limit
//! (rate-limit buckets).
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

pub mod breaker;
mod buckets;
mod health;

pub use breaker::{BreakerState, Circuit};
pub use buckets::{ceil_seconds, Buckets, Decision};
pub use health::{HealthChange, HealthState};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::config::{RateKey, RateQuota};

/// What fulcrum knows about one upstream beyond its config.
#[derive(Debug)]
pub struct UpstreamState {
    name: Arc<str>,
    /// Requests in flight across all backends of the upstream.
    in_flight: AtomicU64,
    /// Requests admitted to the upstream and not finished (retries included once), for
    /// `max_inflight`.
    admitted: AtomicU64,
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
            admitted: AtomicU64::new(0),
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

    /// Requests admitted and not finished, across every config.
    #[cfg(test)]
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Admits one request unless `limit` are in already: a check-and-increment, so parallel
    /// requests never overshoot. The request counts until the [`Admission`] is dropped.
    pub fn admit(self: &Arc<Self>, limit: Option<u32>) -> Option<Admission> {
        match limit {
            None => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
            }
            Some(limit) => {
                self.admitted
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n < u64::from(limit)).then_some(n + 1)
                    })
                    .ok()?;
            }
        }
        Some(Admission(Arc::clone(self)))
    }

    /// Held while a health decision counts members (so that `max_ejected_percent` holds
    /// exactly under concurrent failures).
    pub fn decisions(&self) -> MutexGuard<'_, ()> {
        self.decisions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One request counted against its upstream's `max_inflight` until dropped.
#[derive(Debug)]
pub struct Admission(Arc<UpstreamState>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What fulcrum knows about one backend of one upstream beyond its config.
#[derive(Debug)]
pub struct BackendState {
    upstream: Arc<UpstreamState>,
    addr: SocketAddr,
    /// Active and passive health.
    pub health: HealthState,
    pub breaker: BreakerState,
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

/// Every upstream, backend and bucket state some snapshot or request still refers to.
#[derive(Debug, Default)]
pub struct Registry {
    upstreams: Mutex<HashMap<Arc<str>, Entry>>,
    buckets: Mutex<HashMap<BucketsKey, Weak<Buckets>>>,
}

/// Route name, its limit and what it is keyed by: a route whose limit changes gets new buckets.
type BucketsKey = (Arc<str>, RateQuota, RateKey);

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
            breaker: BreakerState::default(),
            in_flight: AtomicU64::new(0),
        });
        entry.backends.insert(addr, Arc::downgrade(&state));
        state
    }

    fn bucket_entries(&self) -> MutexGuard<'_, HashMap<BucketsKey, Weak<Buckets>>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The buckets of route `route` for limit `quota` keyed by `key`: the live ones, or new
    /// (full) ones. Buckets of the same route under another limit are left alone.
    pub fn buckets(&self, route: &str, quota: RateQuota, key: &RateKey) -> Arc<Buckets> {
        let mut entries = self.bucket_entries();
        let id = (Arc::from(route), quota, key.clone());
        if let Some(live) = entries.get(&id).and_then(Weak::upgrade) {
            return live;
        }
        let buckets = Arc::new(Buckets::new(quota, *key != RateKey::Global));
        entries.insert(id, Arc::downgrade(&buckets));
        buckets
    }

    /// Every live set of buckets, for pruning.
    pub fn live_buckets(&self) -> Vec<Arc<Buckets>> {
        self.bucket_entries()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Forgets entries nothing refers to any more.
    pub fn prune(&self) {
        let mut entries = self.entries();
        entries.retain(|_, e| {
            e.backends.retain(|_, b| b.strong_count() > 0);
            e.state.strong_count() > 0
        });
        drop(entries);
        self.bucket_entries().retain(|_, b| b.strong_count() > 0);
    }

    /// (upstreams, backends) with live state.
    #[cfg(test)]
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
    fn admission_never_overshoots_and_ends_with_its_guard() {
        let r = Registry::default();
        let u = r.upstream("u");
        let held: Vec<_> = (0..3).filter_map(|_| u.admit(Some(3))).collect();
        assert_eq!(held.len(), 3);
        assert!(u.admit(Some(3)).is_none());
        assert_eq!(u.admitted(), 3);
        drop(held);
        assert_eq!(u.admitted(), 0);
        let unlimited = u.admit(None);
        assert!(unlimited.is_some() && u.admitted() == 1);

        // Parallel admissions: exactly `limit` get in.
        let u2 = r.upstream("parallel");
        let got = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Some(a) = u2.admit(Some(50)) {
                            got.lock().unwrap().push(a);
                        }
                    }
                });
            }
        });
        assert_eq!(got.lock().unwrap().len(), 50);
    }

    #[test]
    fn buckets_are_kept_per_route_and_limit() {
        let r = Registry::default();
        let q = RateQuota {
            rate: 1,
            per: std::time::Duration::from_secs(60),
            burst: 1,
        };
        let a = r.buckets("a", q, &RateKey::ClientIp);
        assert!(matches!(a.check(1), Decision::Allowed { .. }));
        let again = r.buckets("a", q, &RateKey::ClientIp);
        assert!(
            Arc::ptr_eq(&a, &again),
            "same route, same limit: same buckets"
        );
        let changed = r.buckets("a", RateQuota { burst: 2, ..q }, &RateKey::ClientIp);
        assert!(!Arc::ptr_eq(&a, &changed));
        let rekeyed = r.buckets("a", q, &RateKey::Global);
        assert!(!Arc::ptr_eq(&a, &rekeyed));
        assert!(
            Arc::ptr_eq(&a, &r.buckets("a", q, &RateKey::ClientIp)),
            "a changed limit did not replace the live one"
        );
        assert_eq!(r.live_buckets().len(), 3);
        drop((a, again, changed));
        r.prune();
        assert_eq!(r.live_buckets().len(), 1);
        assert_eq!(r.bucket_entries().len(), 1);
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
