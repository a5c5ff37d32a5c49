//! A runtime upstream: its backends, its balancer, the pingora peer template of each backend,
//! the one eligibility predicate and `max_inflight` admission. Built once per config; the request
//! path only reads it. Per-backend state that outlives the config (health, ejection, breaker,
//! in-flight counts) lives in the [`Registry`]; this type only points into it.
//!
//! What depends on both the state and this config's pool (panic mode, the number of backends in
//! service, the balancer's own index) is a *view*, brought up to date when the upstream's epoch
//! moves: one atomic load per pick when nothing changed, one pass over the pool when something
//! did.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;

use crate::balance::{self, BackendSet, Balancer, Lease, Pick};
use crate::circuit::{self, Trial};
use crate::config::{
    BackendConfig, BalanceKind, BreakerConfig, HashKey, HealthCheckConfig, StatusSet,
    UpstreamConfig, UpstreamTls,
};
use crate::health::{Outlier, ProbeTls, SupervisorHandle, Target};
use crate::metrics::{BackendMetrics, CheckCounters, Metrics, UpstreamMetrics};
use crate::outcome::AttemptOutcome;
use crate::registry::{Admission, BackendState, Circuit, Registry, UpstreamState};
use rustls::pki_types::ServerName;

/// The backend chosen for one attempt.
#[derive(Debug)]
pub struct Choice {
    pub backend: usize,
    /// What the attempt holds on its backend: a half-open breaker's trial place, the trial of a
    /// backend back from an ejection, or both.
    pub trial: Option<Trial>,
}

/// Why no backend was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every backend this request may still try has its breaker open.
    CircuitOpen,
    /// No backend is eligible (health, ejection, or all tried).
    NoBackend,
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    /// Empty, or "; NAME:PORT does not resolve (yet)" for the backends whose host name did not
    /// resolve at the last load: what a 503 for want of a backend says.
    pub unresolved: String,
    pub backends: Vec<Backend>,
    /// `backends[i].state` as one slice, for the balancer and the outlier detector.
    states: Vec<Arc<BackendState>>,
    state: Arc<UpstreamState>,
    /// The generation of the snapshot this upstream belongs to.
    generation: u64,
    balancer: Arc<dyn Balancer>,
    strategy: BalanceKind,
    hash_key: Option<HashKey>,
    check: Option<Arc<HealthCheckConfig>>,
    outlier: Option<Outlier>,
    breaker: Option<BreakerConfig>,
    /// The statuses the outlier detector or the breaker counts as failures.
    failure_status: StatusSet,
    max_inflight: Option<u32>,
    /// Percent; 0 = off.
    panic_threshold: u32,
    view: View,
    pub metrics: UpstreamMetrics,
}

#[derive(Debug)]
pub struct Backend {
    /// As written in the config, for logs and the probe's default `Host`.
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Connection settings with every timeout set; cloned per attempt.
    peer: HttpPeer,
    /// Shared with every snapshot that has this backend in this upstream.
    pub state: Arc<BackendState>,
    pub metrics: BackendMetrics,
    /// `fulcrum_health_checks_total` of this backend, when it is checked.
    checks: Option<CheckCounters>,
    /// How its health checks speak TLS, for an HTTPS upstream.
    probe_tls: Option<ProbeTls>,
}

/// What this config's pool looks like given the registry's state, as of epoch `synced`.
#[derive(Debug)]
struct View {
    /// `u64::MAX` until the first sync.
    synced: AtomicU64,
    panic: AtomicBool,
    /// Backends in service (every backend in panic mode), for load averages.
    available: AtomicUsize,
    syncing: Mutex<()>,
}

/// A backend reached over HTTPS: SNI and the name verified are `sni`, else the host of its
/// `addr` as written (an IP literal is verified against the certificate's IP SANs).
/// Its health checks use the same name.
fn https_peer(b: &BackendConfig, tls: &UpstreamTls) -> (HttpPeer, Option<ProbeTls>) {
    let sni = tls
        .sni
        .clone()
        .unwrap_or_else(|| host_of(&b.name).to_ascii_lowercase());
    let probe = tls.probe.as_ref().and_then(|config| {
        Some(ProbeTls {
            config: Arc::clone(config),
            name: ServerName::try_from(sni.clone()).ok()?,
            verify: tls.verify,
            trust: tls.trust,
        })
    });
    let mut peer = HttpPeer::new(b.addr, true, sni);
    peer.options.verify_cert = tls.verify;
    peer.options.verify_hostname = tls.verify;
    peer.options.ca = tls.roots.clone();
    // A connection verified against a ca_file is not one verified without it.
    peer.group_key = tls.trust;
    (peer, probe)
}

/// `host` of `host:port` (`[v6]:port` → `v6`).
fn host_of(addr: &str) -> &str {
    let host = crate::router::without_port(addr);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

impl Upstream {
    /// Builds the upstream of snapshot `generation`. Looks states up in `registry` and changes
    /// none of them; resolves its metric handles in `metrics`.
    pub fn new(
        config: &UpstreamConfig,
        registry: &Registry,
        generation: u64,
        supervisor: &SupervisorHandle,
        metrics: &Metrics,
    ) -> Upstream {
        let state = registry.upstream(&config.name);
        let backends: Vec<Backend> = config
            .backends
            .iter()
            .map(|b| {
                let (mut peer, probe_tls) = match &config.tls {
                    None => (HttpPeer::new(b.addr, false, String::new()), None),
                    Some(tls) => https_peer(b, tls),
                };
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
                    state: registry.backend(&state, b.addr),
                    metrics: metrics.backend(&config.name, &b.name),
                    checks: config
                        .health_check
                        .as_ref()
                        .map(|_| metrics.health_checks(&config.name, &b.name)),
                    probe_tls,
                }
            })
            .collect();
        let states: Vec<_> = backends.iter().map(|b| Arc::clone(&b.state)).collect();
        Upstream {
            name: config.name.clone(),
            unresolved: match config.unresolved.as_slice() {
                [] => String::new(),
                names => format!("; {} does not resolve (yet)", names.join(", ")),
            },
            balancer: balance::build(config, &states),
            states,
            backends,
            state,
            generation,
            strategy: config.balance,
            hash_key: config.hash_key.clone(),
            check: config.health_check.clone().map(Arc::new),
            outlier: config
                .outlier
                .clone()
                .map(|o| Outlier::new(o, supervisor.clone())),
            breaker: config.circuit_breaker.clone(),
            failure_status: [
                config.outlier.as_ref().map(|o| o.failure_status),
                config.circuit_breaker.as_ref().map(|b| b.failure_status),
            ]
            .into_iter()
            .flatten()
            .fold(StatusSet::EMPTY, StatusSet::union),
            max_inflight: config.max_inflight,
            panic_threshold: config.panic_threshold,
            view: View {
                synced: AtomicU64::new(u64::MAX),
                panic: AtomicBool::new(false),
                available: AtomicUsize::new(config.backends.len()),
                syncing: Mutex::new(()),
            },
            metrics: metrics.upstream(&config.name),
        }
    }

    /// What this upstream's strategy hashes, if it hashes.
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }

    /// The registry state of the upstream.
    pub fn state(&self) -> &Arc<UpstreamState> {
        &self.state
    }

    /// The one eligibility predicate: whether backend `i` may take this attempt of a request
    /// that already failed on `excluded`. Health (checked healthy where checked), ejection and
    /// a trial after an ejection that another request has taken say no unless the upstream is
    /// in panic mode; an open breaker (or a half-open one with
    /// every trial place taken) says no even then. Reads atomics only.
    pub fn eligible(&self, i: usize, excluded: &BackendSet) -> bool {
        !excluded.contains(i)
            && (self.view.panic.load(Ordering::Relaxed)
                || self.states[i].health.takes_request(self.check.is_some()))
            && self.breaker_admits(i)
    }

    /// Whether backend `i` is in service by health and ejection (panic mode aside).
    pub fn in_service(&self, i: usize) -> bool {
        self.states[i].health.in_service(self.check.is_some())
    }

    /// Backend `i`'s breaker (closed when the upstream has none).
    pub fn circuit(&self, i: usize) -> Circuit {
        match self.breaker {
            Some(_) => self.states[i].breaker.circuit(),
            None => Circuit::Closed,
        }
    }

    /// The upstream's balancing strategy, as written in the config.
    pub fn strategy(&self) -> &'static str {
        self.strategy.as_str()
    }

    /// The active check, if the upstream has one.
    pub fn check(&self) -> Option<&HealthCheckConfig> {
        self.check.as_deref()
    }

    fn breaker_admits(&self, i: usize) -> bool {
        self.breaker
            .as_ref()
            .is_none_or(|c| self.states[i].breaker.admits(c))
    }

    /// Counts a request against `max_inflight` until the admission is dropped; `None` when the
    /// upstream is full. (Every request is counted, limit or not, so a reload that sets a limit
    /// sees the requests already in flight.)
    pub fn admit(&self) -> Option<Admission> {
        self.state.admit(self.max_inflight)
    }

    /// The configured `max_inflight`, for messages.
    pub fn max_inflight(&self) -> Option<u32> {
        self.max_inflight
    }

    /// Chooses an eligible backend that is not in `excluded`, for a request with hash key
    /// `key`, and claims its breaker: a half-open backend's trial place is taken with a
    /// compare-and-swap, and a backend whose place went to a parallel request is skipped.
    pub fn select(&self, excluded: &BackendSet, key: Option<&[u8]>) -> Result<Choice, Refusal> {
        self.select_claiming(excluded, key, |i, config| {
            circuit::claim(&self.states[i], config)
        })
    }

    /// [`Upstream::select`] with its breaker claim passed in, so that a test can lose a claim
    /// to a "parallel" request deterministically.
    fn select_claiming(
        &self,
        excluded: &BackendSet,
        key: Option<&[u8]>,
        claim: impl Fn(usize, &BreakerConfig) -> Option<Option<Trial>>,
    ) -> Result<Choice, Refusal> {
        self.refresh();
        // Backends lost to a parallel claim; copied from `excluded` only if that ever happens.
        let mut lost: Option<BackendSet> = None;
        loop {
            let skip = lost.as_ref().unwrap_or(excluded);
            let picked = self.balancer.pick(&Pick {
                eligible: &|i| self.eligible(i, skip),
                key,
                available: self.view.available.load(Ordering::Relaxed),
            });
            let Some(i) = picked else {
                return Err(if self.circuit_open(skip) {
                    Refusal::CircuitOpen
                } else {
                    Refusal::NoBackend
                });
            };
            // Back from an ejection on trial: one request at a time tries it (in panic mode,
            // where every backend takes traffic, the others go there too).
            let state = &self.states[i];
            let trial = if state.health.on_trial() {
                state.health.claim_trial()
            } else {
                None
            };
            let trial_lost = trial.is_none()
                && state.health.on_trial()
                && !self.view.panic.load(Ordering::Relaxed);
            let claimed = match &self.breaker {
                _ if trial_lost => None,
                None => Some(None),
                Some(config) => claim(i, config),
            };
            match (claimed, trial) {
                (Some(trial), Some(cycle)) => {
                    let trial = Some(Trial::with_readmission(trial, state, cycle));
                    return Ok(Choice { backend: i, trial });
                }
                (Some(trial), None) => return Ok(Choice { backend: i, trial }),
                (None, trial) => {
                    // A breaker refused, or a parallel request took the trial. The pick counted
                    // a request that will not be sent: take it back, or a strategy that tracks
                    // its own load would see this backend busier forever.
                    if let Some(cycle) = trial {
                        state.health.release_trial(cycle);
                    }
                    self.balancer.release(i);
                    lost.get_or_insert_with(|| excluded.clone()).insert(i);
                }
            }
        }
    }

    /// Whether every backend not in `excluded` has a breaker that refuses traffic (never for
    /// an empty pool: that is no backend, not an open breaker).
    fn circuit_open(&self, excluded: &BackendSet) -> bool {
        self.breaker.is_some()
            && !self.backends.is_empty()
            && (0..self.backends.len())
                .filter(|&i| !excluded.contains(i))
                .all(|i| !self.breaker_admits(i))
    }

    /// Whether a retry could go anywhere.
    pub fn has_untried(&self, excluded: &BackendSet) -> bool {
        (0..self.backends.len()).any(|i| self.eligible(i, excluded))
    }

    /// Counts a request in flight on backend `i` until the lease is dropped.
    pub fn lease(&self, i: usize) -> Lease {
        Lease::new(&self.states[i], &self.balancer, i, self.generation)
    }

    /// Tells passive health and the breaker how a real request on backend `i` went; each judges
    /// `outcome` against its own `failure_status`. `trial` is what the attempt held (a half-open
    /// breaker's trial place, a trial after an ejection), settled here.
    pub fn record(&self, i: usize, outcome: AttemptOutcome, trial: Option<Trial>) {
        let (breaker_cycle, readmission) = trial.map_or((None, None), Trial::settle);
        match (&self.outlier, readmission) {
            (Some(o), _) => o.record(&self.states, i, outcome, readmission),
            // A trial taken under a config that has since turned ejection off.
            (None, Some(cycle)) => {
                self.states[i].health.pass_trial(cycle);
            }
            (None, None) => {}
        }
        if let Some(config) = &self.breaker {
            let ok = !outcome.failed(&config.failure_status);
            circuit::record(&self.states[i], config, ok, breaker_cycle);
        }
    }

    /// Whether a response with `status` counts as a failure for passive health or the breaker,
    /// so that it is recorded at once, at its header. One bit test.
    pub fn fails_on(&self, status: u16) -> bool {
        self.failure_status.contains(status)
    }

    /// Whether passive ejection is on for this upstream.
    pub fn ejects(&self) -> bool {
        self.outlier.is_some()
    }

    /// Whether the upstream balances across every backend because too few are in service.
    pub fn in_panic(&self) -> bool {
        self.refresh();
        self.view.panic.load(Ordering::Relaxed)
    }

    /// The backends an active check watches (none without a `health_check`).
    pub fn probe_targets(&self) -> impl Iterator<Item = Target> + '_ {
        self.check.iter().flat_map(move |check| {
            self.backends.iter().map(move |b| Target {
                state: Arc::clone(&b.state),
                check: Arc::clone(check),
                host: Arc::from(check.host.as_deref().unwrap_or(&b.name)),
                counters: b.checks.clone(),
                tls: b.probe_tls.clone(),
            })
        })
    }

    /// The peer for backend `i`, with read/write/connect deadlines capped at `remaining` so that
    /// the route's whole-request timeout holds; for an upgrade request (`idle`), reads and writes
    /// may instead wait that long each (as nginx's `proxy_read_timeout` for WebSockets).
    pub fn peer(&self, i: usize, remaining: Duration, idle: Option<Duration>) -> Box<HttpPeer> {
        let mut peer = Box::new(self.backends[i].peer.clone());
        let o = &mut peer.options;
        for t in [&mut o.connection_timeout, &mut o.total_connection_timeout] {
            *t = t.map(|t| t.min(remaining));
        }
        for t in [&mut o.read_timeout, &mut o.write_timeout] {
            *t = match idle {
                Some(idle) => Some(idle),
                None => t.map(|t| t.min(remaining)),
            };
        }
        peer
    }

    /// Brings the view up to date with the registry if the upstream's epoch moved.
    fn refresh(&self) {
        let view = &self.view;
        if view.synced.load(Ordering::Acquire) == self.state.epoch() {
            return;
        }
        let _syncing = view.syncing.lock().unwrap_or_else(|p| p.into_inner());
        // Read before the states: a change after this read moves the epoch again.
        let epoch = self.state.epoch();
        if view.synced.load(Ordering::Acquire) == epoch {
            return;
        }
        let checked = self.check.is_some();
        let n = self.states.len();
        let available = self
            .states
            .iter()
            .filter(|s| s.health.in_service(checked))
            .count();
        let panic = self.panic_threshold > 0 && available * 100 < self.panic_threshold as usize * n;
        view.available
            .store(if panic { n } else { available }, Ordering::Relaxed);
        let was = view.panic.swap(panic, Ordering::Relaxed);
        self.balancer
            .sync(&|i| panic || self.states[i].health.in_service(checked));
        view.synced.store(epoch, Ordering::Release);
        // Older snapshots still finishing requests keep quiet about it.
        if was != panic && self.generation >= self.state.generation() {
            if panic {
                tracing::warn!(upstream = %self.name, available, backends = n, threshold = self.panic_threshold, "panic mode: balancing across all backends");
            } else {
                tracing::info!(upstream = %self.name, available, backends = n, "panic mode over");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::BalanceKind;
    use crate::health::Supervisor;

    fn config(n: u16, balance: BalanceKind) -> UpstreamConfig {
        UpstreamConfig {
            name: "u".into(),
            balance,
            hash_key: None,
            hash_balance_factor: None,
            panic_threshold: 0,
            health_check: None,
            outlier: None,
            circuit_breaker: None,
            max_inflight: None,
            dns_refresh: Duration::from_secs(30),
            unresolved: Vec::new(),
            named: false,
            tls: None,
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
        }
    }

    fn build(config: &UpstreamConfig, registry: &Registry, generation: u64) -> Upstream {
        let (_, handle) = Supervisor::new();
        Upstream::new(config, registry, generation, &handle, &Metrics::detached())
    }

    fn upstream(n: u16) -> Upstream {
        build(&config(n, BalanceKind::RoundRobin), &Registry::default(), 1)
    }

    #[test]
    fn an_empty_pool_refuses_with_every_strategy() {
        // A pool whose only backend names do not resolve yet has no backend at all.
        for balance in [
            BalanceKind::RoundRobin,
            BalanceKind::WeightedRoundRobin,
            BalanceKind::LeastConnections,
            BalanceKind::P2c,
            BalanceKind::Random,
            BalanceKind::IpHash,
            BalanceKind::ConsistentHash,
        ] {
            let mut c = config(0, balance);
            if matches!(balance, BalanceKind::IpHash | BalanceKind::ConsistentHash) {
                c.hash_key = Some(HashKey::ClientIp);
            }
            // With a breaker too: an empty pool is no backend, not an open breaker.
            c.circuit_breaker = Some(BreakerConfig {
                consecutive_failures: 5,
                failure_rate: None,
                min_requests: 10,
                window: Duration::from_secs(10),
                open_duration: Duration::from_secs(10),
                half_open_requests: 1,
                failure_status: StatusSet::EMPTY,
            });
            let u = build(&c, &Registry::default(), 1);
            let key = Some(b"10.0.0.1".as_slice());
            for _ in 0..3 {
                let refusal = u
                    .select(&BackendSet::default(), key)
                    .map(|_| ())
                    .unwrap_err();
                assert_eq!(refusal, Refusal::NoBackend, "{balance:?}");
            }
        }
    }

    #[test]
    fn select_never_repeats_a_tried_backend() {
        let u = upstream(3);
        let mut tried = BackendSet::default();
        let mut seen = Vec::new();
        while let Ok(Choice { backend: i, .. }) = u.select(&tried, None) {
            tried.insert(i);
            seen.push(i);
        }
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
        assert!(!u.has_untried(&tried));
    }

    fn with_breaker(n: u16, half_open_requests: u32) -> Upstream {
        breaker_upstream(n, half_open_requests, BalanceKind::RoundRobin)
    }

    /// `n` backends, each with a breaker that opens on one failure, stays open 5 s and has
    /// `half_open_requests` trial places.
    pub(crate) fn breaker_upstream(
        n: u16,
        half_open_requests: u32,
        balance: BalanceKind,
    ) -> Upstream {
        let mut c = config(n, balance);
        c.circuit_breaker = Some(BreakerConfig {
            consecutive_failures: 1,
            failure_rate: None,
            min_requests: 1,
            window: Duration::from_secs(10),
            open_duration: Duration::from_secs(5),
            half_open_requests,
            failure_status: StatusSet::EMPTY,
        });
        build(&c, &Registry::default(), 1)
    }

    #[tokio::test(start_paused = true)]
    async fn open_breakers_are_skipped_and_all_open_is_its_own_refusal() {
        let u = with_breaker(2, 1);
        let none = BackendSet::default();
        u.record(0, AttemptOutcome::Connect, None);
        for _ in 0..4 {
            assert_eq!(u.select(&none, None).unwrap().backend, 1);
        }
        u.record(1, AttemptOutcome::Connect, None);
        assert_eq!(u.select(&none, None).unwrap_err(), Refusal::CircuitOpen);
        let mut tried = BackendSet::default();
        tried.insert(0);
        tried.insert(1);
        let u2 = upstream(2);
        assert_eq!(u2.select(&tried, None).unwrap_err(), Refusal::NoBackend);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_exactly_its_trials_through_select() {
        let u = with_breaker(1, 2);
        let none = BackendSet::default();
        u.record(0, AttemptOutcome::Connect, None);
        tokio::time::advance(Duration::from_secs(5)).await;
        let first = u.select(&none, None).unwrap();
        let second = u.select(&none, None).unwrap();
        assert!(first.trial.is_some() && second.trial.is_some());
        assert_eq!(u.select(&none, None).unwrap_err(), Refusal::CircuitOpen);
        // A trial whose request went away frees its place; reported successes close the breaker.
        drop(second);
        let third = u.select(&none, None).unwrap();
        u.record(0, AttemptOutcome::Status(200), first.trial);
        u.record(0, AttemptOutcome::Status(200), third.trial);
        let closed = u.select(&none, None).unwrap();
        assert!(closed.trial.is_none(), "closed: no trial needed");
    }

    #[test]
    fn a_claim_lost_to_a_parallel_request_leaves_no_load_behind() {
        let u = breaker_upstream(2, 1, BalanceKind::LeastConnections);
        // Serving: leases end in this balancer, not through a resync from the registry.
        u.state.set_generation(1);
        let none = BackendSet::default();
        // Backend 0 looks eligible, but each claim on it is lost (as when a parallel request
        // takes the last trial place between the pick and the claim); backend 1 passes.
        let lose_0 = |i: usize, _: &BreakerConfig| (i != 0).then_some(None);
        for _ in 0..5 {
            let c = u.select_claiming(&none, None, lose_0).unwrap();
            assert_eq!(c.backend, 1);
            drop(u.lease(1));
        }
        // Nothing is in flight: backend 0 is as idle as backend 1 and takes its turn.
        let picked: Vec<usize> = (0..2)
            .map(|_| {
                let i = u.select(&none, None).unwrap().backend;
                drop(u.lease(i));
                i
            })
            .collect();
        assert!(
            picked.contains(&0),
            "lost claims left load on backend 0: {picked:?}"
        );
    }

    #[test]
    fn peer_timeouts_are_capped_by_the_remaining_deadline() {
        let u = upstream(1);
        let p = u.peer(0, Duration::from_millis(500), None);
        assert_eq!(
            p.options.connection_timeout,
            Some(Duration::from_millis(500))
        );
        assert_eq!(p.options.read_timeout, Some(Duration::from_millis(500)));
        assert_eq!(p.options.idle_timeout, Some(Duration::from_secs(60)));
        let p = u.peer(0, Duration::from_secs(100), None);
        assert_eq!(p.options.read_timeout, Some(Duration::from_secs(30)));
        // An upgrade: reads and writes get the idle timeout, connecting stays capped.
        let p = u.peer(
            0,
            Duration::from_millis(500),
            Some(Duration::from_secs(3600)),
        );
        assert_eq!(p.options.read_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(p.options.write_timeout, Some(Duration::from_secs(3600)));
        assert_eq!(
            p.options.connection_timeout,
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn peers_keep_pingoras_request_policy_which_strips_hop_by_hop_headers() {
        // proxy/hop_by_hop.rs leaves the request side to this policy.
        let p = upstream(1).peer(0, Duration::from_secs(1), None);
        let policy = p.options.http_upstream_request_policy;
        assert_eq!(policy, Default::default());
        assert!(policy.strip_hop_by_hop && policy.strip_connection_nominated);
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

    #[test]
    fn building_changes_no_state_and_a_rebuild_shares_it() {
        let registry = Registry::default();
        let mut c = config(2, BalanceKind::RoundRobin);
        let old = build(&c, &registry, 1);
        old.backends[0].state.health.on_probe(false, 1, 1);
        let epoch = old.state.epoch();
        c.health_check = Some(crate::config::HealthCheckConfig {
            kind: crate::config::ProbeKind::Tcp,
            path: "/".into(),
            host: None,
            expect_status: vec![],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            jitter: 0.0,
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        });
        let new = build(&c, &registry, 2);
        assert!(Arc::ptr_eq(&old.backends[0].state, &new.backends[0].state));
        assert_eq!(old.state.epoch(), epoch, "no announcement from a build");
        assert_eq!(old.state.generation(), 0, "no generation from a build");
        // Each snapshot judges by its own config: the old one does not check, the new one does.
        let none = BackendSet::default();
        assert!(old.eligible(0, &none) && old.eligible(1, &none));
        assert!(!new.eligible(0, &none), "probed unhealthy");
        assert!(!new.eligible(1, &none), "never probed: unknown");
        assert_eq!(new.probe_targets().count(), 2);
        assert_eq!(old.probe_targets().count(), 0);
    }

    #[test]
    fn panic_mode_follows_health_changes_through_the_epoch() {
        let registry = Registry::default();
        let mut c = config(4, BalanceKind::P2c);
        c.panic_threshold = 50;
        let u = build(&c, &registry, 1);
        let none = BackendSet::default();
        assert!(!u.in_panic());
        for i in 0..3 {
            let now = tokio::time::Instant::now();
            u.backends[i]
                .state
                .health
                .eject(Duration::from_secs(1), Duration::from_secs(1), now);
        }
        // Not announced yet: the view still says what it said.
        assert!(!u.in_panic());
        u.state.bump_epoch();
        assert!(u.in_panic(), "1 of 4 in service is under 50 %");
        assert!((0..4).all(|i| u.eligible(i, &none)));
        let picked: std::collections::HashSet<usize> = (0..200)
            .filter_map(|_| u.select(&none, None).ok())
            .map(|c| c.backend)
            .collect();
        assert_eq!(picked.len(), 4, "the balancer's index follows panic mode");
    }

    /// Readmits the ejected backend 0 of `u` and returns the first pick that meets it: the one
    /// that takes its trial.
    fn readmit_to_trial(u: &Upstream) -> Choice {
        u.backends[0]
            .state
            .health
            .readmit(tokio::time::Instant::now());
        u.state.bump_epoch();
        let none = BackendSet::default();
        loop {
            let c = u.select(&none, None).unwrap();
            if c.backend == 0 {
                return c;
            }
        }
    }

    /// An upstream that ejects after 2 failures, and its supervisor (kept, so that ejections
    /// last until the test readmits).
    fn ejecting(n: u16, failure_status: StatusSet) -> (Upstream, Supervisor) {
        let mut c = config(n, BalanceKind::RoundRobin);
        c.outlier = Some(crate::config::OutlierConfig {
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(100),
            max_ejected_percent: 50,
            failure_status,
        });
        let (supervisor, handle) = Supervisor::new();
        let u = Upstream::new(&c, &Registry::default(), 1, &handle, &Metrics::detached());
        (u, supervisor)
    }

    #[test]
    fn each_judge_counts_only_its_failure_statuses() {
        let gateway = StatusSet::of(&[502, 503, 504].map(crate::config::StatusMatch::Code));
        for (attempt, failed) in [
            (AttemptOutcome::Connect, true),
            (AttemptOutcome::Timeout, true),
            (AttemptOutcome::Broken, true),
            (AttemptOutcome::Status(500), false),
            (AttemptOutcome::Status(503), true),
            (AttemptOutcome::Status(200), false),
        ] {
            assert_eq!(attempt.failed(&gateway), failed, "{attempt:?}");
        }
        assert!(
            !AttemptOutcome::Status(0).failed(&gateway),
            "outside 100-599"
        );
        let (u, _supervisor) = ejecting(2, gateway);
        assert!(u.fails_on(502) && !u.fails_on(500));
        for _ in 0..5 {
            u.record(0, AttemptOutcome::Status(500), None);
        }
        assert!(!u.backends[0].state.health.is_ejected(), "500s are answers");
        u.record(0, AttemptOutcome::Status(502), None);
        u.record(0, AttemptOutcome::Connect, None);
        assert!(u.backends[0].state.health.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn a_readmitted_backend_gets_one_trial_request_which_decides() {
        let (u, _supervisor) = ejecting(2, StatusSet::EMPTY);
        let none = BackendSet::default();
        let health = &u.backends[0].state.health;
        u.record(0, AttemptOutcome::Connect, None);
        u.record(0, AttemptOutcome::Connect, None);
        assert!(health.is_ejected());
        for _ in 0..4 {
            assert_eq!(u.select(&none, None).unwrap().backend, 1);
        }
        // The first pick that meets backend 0 takes its trial; no other request goes there
        // until the trial is settled.
        let trial = readmit_to_trial(&u);
        assert!(trial.trial.is_some());
        for _ in 0..4 {
            assert_eq!(u.select(&none, None).unwrap().backend, 1);
        }
        // Dropped unsettled (the client went away): another request may try.
        drop(trial);
        let trial = (0..2)
            .map(|_| u.select(&none, None).unwrap())
            .find(|c| c.backend == 0)
            .expect("backend 0 is tried again");
        // One failure is enough to eject it again, for twice as long.
        u.record(0, AttemptOutcome::Connect, trial.trial);
        assert!(health.is_ejected());
        let until = health.ejected_until().unwrap();
        assert_eq!(until - tokio::time::Instant::now(), Duration::from_secs(20));
        // A trial that succeeds puts it fully back.
        health.readmit(tokio::time::Instant::now());
        u.state.bump_epoch();
        let trial = (0..2)
            .map(|_| u.select(&none, None).unwrap())
            .find(|c| c.backend == 0)
            .expect("backend 0 is tried again");
        u.record(0, AttemptOutcome::Status(200), trial.trial);
        assert!(!health.on_trial());
        let picks: Vec<_> = (0..4)
            .map(|_| u.select(&none, None).unwrap().backend)
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2, "{picks:?}");
    }

    // ---- review 21a: outlier off by reload, one trial per strategy, stale trials ----

    fn outlier_config() -> crate::config::OutlierConfig {
        crate::config::OutlierConfig {
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(100),
            max_ejected_percent: 50,
            failure_status: StatusSet::EMPTY,
        }
    }

    /// A reload that turns passive ejection off ends an ejection at once (the reload owner
    /// calls `end_ejection` for each backend of an upstream that no longer ejects).
    #[tokio::test(start_paused = true)]
    async fn ending_an_ejection_puts_the_backend_back_without_a_trial() {
        let registry = Registry::default();
        let (_supervisor, handle) = Supervisor::new();
        let mut c = config(2, BalanceKind::RoundRobin);
        c.outlier = Some(outlier_config());
        let u1 = Upstream::new(&c, &registry, 1, &handle, &Metrics::detached());
        u1.record(0, AttemptOutcome::Connect, None);
        u1.record(0, AttemptOutcome::Connect, None);
        let health = &u1.backends[0].state.health;
        assert!(health.is_ejected());
        c.outlier = None;
        let u2 = Upstream::new(&c, &registry, 2, &handle, &Metrics::detached());
        assert!(!u2.ejects());
        assert!(health.end_ejection());
        u2.state.bump_epoch();
        assert!(!health.is_ejected() && !health.on_trial() && health.ejected_until().is_none());
        assert!(!health.end_ejection(), "nothing left to end");
        let none = BackendSet::default();
        let picks: Vec<usize> = (0..6)
            .map(|_| u2.select(&none, None).unwrap().backend)
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 3, "{picks:?}");
    }

    /// Every strategy gives a readmitted backend exactly one trial request at a time.
    #[tokio::test(start_paused = true)]
    async fn every_strategy_gives_one_trial() {
        for balance in [
            BalanceKind::RoundRobin,
            BalanceKind::LeastConnections,
            BalanceKind::P2c,
            BalanceKind::Random,
            BalanceKind::ConsistentHash,
        ] {
            let mut c = config(3, balance);
            if balance == BalanceKind::ConsistentHash {
                c.hash_key = Some(HashKey::ClientIp);
            }
            c.outlier = Some(outlier_config());
            let (_supervisor, handle) = Supervisor::new();
            let u = Upstream::new(&c, &Registry::default(), 1, &handle, &Metrics::detached());
            u.record(0, AttemptOutcome::Connect, None);
            u.record(0, AttemptOutcome::Connect, None);
            assert!(u.backends[0].state.health.is_ejected());
            u.backends[0]
                .state
                .health
                .readmit(tokio::time::Instant::now());
            u.state.bump_epoch();
            let none = BackendSet::default();
            let mut held = Vec::new();
            for k in 0..300 {
                let key = format!("10.0.{}.{}", k / 250, k % 250);
                let key = (balance == BalanceKind::ConsistentHash).then_some(key.as_bytes());
                held.push(u.select(&none, key).unwrap());
            }
            let zeros = held.iter().filter(|c| c.backend == 0).count();
            assert_eq!(
                zeros, 1,
                "{balance:?}: requests on the trial backend while held"
            );
        }
    }

    /// A trial holder from an earlier readmission, dropped after the backend was ejected and
    /// readmitted again, frees the *new* trial: two trials run at once (the breaker guards its
    /// trial places with a cycle number; the trial has none).
    #[tokio::test(start_paused = true)]
    async fn a_stale_trial_release_does_not_free_the_next_trial() {
        let h = crate::registry::HealthState::default();
        let (base, now) = (Duration::from_secs(1), tokio::time::Instant::now());
        h.eject(base, base, now);
        h.readmit(now);
        let t1 = h.claim_trial().expect("T1, still in flight");
        h.eject(base, base, now); // others' failures (panic mode) eject it again
        h.readmit(now);
        let t2 = h.claim_trial().expect("T2");
        assert_ne!(t1, t2);
        h.release_trial(t1); // T1's Trial dropped unsettled
        assert!(
            h.claim_trial().is_none(),
            "a third request took a trial while T2 holds one"
        );
        assert!(
            !h.pass_trial(t1) && h.on_trial(),
            "T1's success does not settle T2's trial"
        );
        h.release_trial(t2);
        assert!(h.claim_trial().is_some());
    }

    /// A backend on trial counts toward `max_ejected_percent`: with 2 backends at 50 %, a peer's
    /// failures meanwhile do not eject it, so a failing trial can still take the trial backend
    /// out (rather than force it fully back while its healthy peer is out).
    #[tokio::test(start_paused = true)]
    async fn a_backend_on_trial_counts_toward_max_ejected_percent() {
        let (u, _supervisor) = ejecting(2, StatusSet::EMPTY);
        let (a, b) = (&u.backends[0].state.health, &u.backends[1].state.health);
        u.record(0, AttemptOutcome::Connect, None);
        u.record(0, AttemptOutcome::Connect, None);
        let trial = readmit_to_trial(&u);
        u.record(1, AttemptOutcome::Connect, None);
        u.record(1, AttemptOutcome::Connect, None);
        assert!(!b.is_ejected(), "the trial backend counted as out: no room");
        u.record(0, AttemptOutcome::Connect, trial.trial);
        assert!(a.is_ejected(), "the failed trial ejects it again");
    }

    /// A trial request that fails after an active check brought the backend fully back
    /// ejects it on that one failure.
    #[tokio::test(start_paused = true)]
    async fn a_trial_outliving_an_active_rise_counts_as_a_plain_failure() {
        let (u, _supervisor) = ejecting(2, StatusSet::EMPTY);
        let health = &u.backends[0].state.health;
        u.record(0, AttemptOutcome::Connect, None);
        u.record(0, AttemptOutcome::Connect, None);
        let trial = readmit_to_trial(&u);
        // The active check rises meanwhile (unknown -> up): fully back, trial over.
        health.on_probe(true, 1, 1);
        assert!(!health.on_trial());
        u.record(0, AttemptOutcome::Connect, trial.trial);
        assert!(
            !health.is_ejected(),
            "one failure of a stale trial ejected a fully readmitted backend"
        );
    }
}
