//! Prometheus metrics, served by the admin listener from one registry.
//!
//! [`Metrics`] owns the metric families and is created once per process. What the request path
//! records into is resolved once per snapshot: a route's [`RouteMetrics`], an upstream's
//! [`UpstreamMetrics`] and a backend's [`BackendMetrics`] hold their label handles, so recording
//! is an atomic add (no label hashing, no formatting). `fulcrum_requests_total` has a method, a
//! code and an [`Outcome`] label on top of the route's: its handles are created on first use, in a
//! table of the common codes made for each (outcome, method) the route sees; a code outside
//! [`COMMON_CODES`] gets its handle from a short per-route list under a lock, made the first time
//! that (method, code, outcome) is seen.
//!
//! Gauges that mirror the registry's state and the certificates' expiry are read from the
//! published snapshot at scrape time, by collectors the admin listener registers
//! (`admin::snapshot_gauges`). Series of routes and backends a reload removed are
//! dropped by [`Metrics::retain`], which the reload owner calls after each publish; before that
//! it retires the old snapshot's request counters of those routes, so that a request still in
//! flight on the old snapshot cannot make their series again.
//!
//! Labels are bounded by the config: route and upstream names, backend addresses as written,
//! a fixed set of methods, status codes and check results. Never a path or a client address.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http::Method;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use crate::outcome::Outcome;

/// Methods with a label of their own; any other is `OTHER`.
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

/// Status codes with a slot of their own in each route's `fulcrum_requests_total` handles.
pub const COMMON_CODES: [u16; 32] = [
    101, 200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409,
    410, 412, 413, 415, 422, 429, 431, 499, 500, 501, 502, 503, 504,
];

/// Seconds; from 1 ms to a minute (the default route timeout).
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The label value of a method: its name, or `OTHER`.
pub fn method_label(m: &Method) -> &'static str {
    METHODS
        .iter()
        .find(|known| *known == m)
        .map_or("OTHER", |known| known.as_str())
}

fn method_slot(m: &Method) -> usize {
    METHODS
        .iter()
        .position(|known| known == m)
        .unwrap_or(METHODS.len())
}

/// The process's metric families.
pub struct Metrics {
    registry: prometheus::Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_response: HistogramVec,
    retries: IntCounterVec,
    connect_errors: IntCounterVec,
    health_checks: IntCounterVec,
    ratelimited: IntCounterVec,
    overloaded: IntCounterVec,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// Client connections open now.
    pub connections: IntGauge,
    /// Requests refused before they were parsed, and connections over `max_connections`, by
    /// reason (`server::guard::Refusal::label`).
    pub refused: IntCounterVec,
    /// TLS handshakes by listener and result (success, failure, timeout).
    pub tls_handshakes: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    HistogramVec::new(opts, labels).expect("valid metric")
}

impl Metrics {
    /// Creates the families and registers them (and build info and process metrics) in
    /// `registry`, the one the admin listener serves.
    pub fn register(registry: &prometheus::Registry) -> Arc<Metrics> {
        let m = Metrics {
            registry: registry.clone(),
            requests: counter_vec(
                "fulcrum_requests_total",
                "Requests answered, by route, upstream, method, status code and outcome (ok; error: fulcrum's own error response; aborted: a backend's response cut short; client_closed: the client went away, 499 when before any response; route \"\": no route matched)",
                &["route", "upstream", "method", "code", "outcome"],
            ),
            duration: histogram_vec(
                "fulcrum_request_duration_seconds",
                "Whole request as the client sees it, from its first byte to the last byte of the response",
                &["route", "upstream"],
            ),
            upstream_response: histogram_vec(
                "fulcrum_upstream_response_seconds",
                "Time from picking a backend (connect included) to its response header",
                &["upstream", "backend"],
            ),
            retries: counter_vec(
                "fulcrum_upstream_retries_total",
                "Attempts after a request's first one (connect failures, dead pooled connections)",
                &["upstream"],
            ),
            connect_errors: counter_vec(
                "fulcrum_upstream_connect_errors_total",
                "Failed connects to a backend",
                &["upstream", "backend"],
            ),
            health_checks: counter_vec(
                "fulcrum_health_checks_total",
                "Active health checks by result (success or failure)",
                &["upstream", "backend", "result"],
            ),
            ratelimited: counter_vec(
                "fulcrum_ratelimited_total",
                "Requests refused with 429 by the route's rate limit",
                &["route"],
            ),
            overloaded: counter_vec(
                "fulcrum_overloaded_total",
                "Requests refused with 503 by the upstream's max_inflight",
                &["upstream"],
            ),
            access_log_dropped: IntCounter::new(
                "fulcrum_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind",
            )
            .expect("valid metric"),
            connections: IntGauge::new(
                "fulcrum_downstream_connections_active",
                "Client connections open now",
            )
            .expect("valid metric"),
            refused: counter_vec(
                "fulcrum_downstream_refused_total",
                "Requests refused before they were parsed (header_timeout 408, header_too_large 431, malformed 400, connect_method 405) and connections closed by max_connections",
                &["reason"],
            ),
            tls_handshakes: counter_vec(
                "fulcrum_tls_handshakes_total",
                "TLS handshakes on the TLS listeners by result: success, failure (refused or broken off; no certificate for the name, no common protocol version or cipher, not TLS) or timeout (not finished within request_header_timeout)",
                &["listener", "result"],
            ),
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "fulcrum_build_info",
                "Always 1; the running version as a label",
            ),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.refused.clone()),
            Box::new(m.tls_handshakes.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.upstream_response.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.connect_errors.clone()),
            Box::new(m.health_checks.clone()),
            Box::new(m.ratelimited.clone()),
            Box::new(m.overloaded.clone()),
            Box::new(m.access_log_dropped.clone()),
            Box::new(m.connections.clone()),
            Box::new(build),
            Box::new(ProcessMetrics::new()),
        ];
        for c in collectors {
            m.add(c);
        }
        Arc::new(m)
    }

    /// The registry the admin listener serves.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.registry
    }

    /// Families in a registry of their own, for tests, benchmarks and fuzz targets.
    #[cfg(any(test, feature = "internals", feature = "fuzzing"))]
    pub fn detached() -> Arc<Metrics> {
        Metrics::register(&prometheus::Registry::new())
    }

    /// Registers `c` in the served registry; a collector it refuses is logged and left out.
    pub fn add(&self, c: Box<dyn Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::error!(error = %e, "cannot register a metric");
        }
    }

    pub fn route(&self, route: &str, upstream: &str) -> RouteMetrics {
        RouteMetrics {
            requests: RequestCounters {
                vec: self.requests.clone(),
                route: route.into(),
                upstream: upstream.into(),
                tables: std::array::from_fn(|_| OnceLock::new()),
                other: Mutex::default(),
                retired: AtomicBool::new(false),
            },
            duration: self.duration.with_label_values(&[route, upstream]),
            ratelimited: self.ratelimited.with_label_values(&[route]),
        }
    }

    /// The metrics of requests that matched no route (route and upstream are "").
    pub fn unrouted(&self) -> RouteMetrics {
        self.route("", "")
    }

    pub fn upstream(&self, upstream: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            retries: self.retries.with_label_values(&[upstream]),
            overloaded: self.overloaded.with_label_values(&[upstream]),
        }
    }

    pub fn backend(&self, upstream: &str, backend: &str) -> BackendMetrics {
        BackendMetrics {
            response: self
                .upstream_response
                .with_label_values(&[upstream, backend]),
            connect_errors: self.connect_errors.with_label_values(&[upstream, backend]),
            connect_log: LogGate::default(),
        }
    }

    pub fn health_checks(&self, upstream: &str, backend: &str) -> CheckCounters {
        CheckCounters {
            success: self
                .health_checks
                .with_label_values(&[upstream, backend, "success"]),
            failure: self
                .health_checks
                .with_label_values(&[upstream, backend, "failure"]),
        }
    }

    /// Drops the series of routes, upstreams and backends that `keep` does not name any more
    /// (called after a reload is published). One pass over each family's series, each checked
    /// with a hash lookup: linear in the number of series.
    pub fn retain(&self, keep: &Keep) {
        retain(&self.requests, |l| {
            l[0].is_empty() || keep.route(l[0], l[1])
        });
        retain(&self.duration, |l| {
            l[0].is_empty() || keep.route(l[0], l[1])
        });
        retain(&self.ratelimited, |l| keep.routes.contains_key(l[0]));
        for vec in [&self.retries, &self.overloaded] {
            retain(vec, |l| keep.upstreams.contains(l[0]));
        }
        retain(&self.upstream_response, |l| keep.backend(l[0], l[1]));
        for vec in [&self.connect_errors, &self.health_checks] {
            retain(vec, |l| keep.backend(l[0], l[1]));
        }
    }
}

/// The label sets a published config still has, borrowed from its snapshot.
#[derive(Debug, Default)]
pub struct Keep<'a> {
    /// Route → its upstream (route names are unique in a config).
    pub routes: HashMap<&'a str, &'a str>,
    pub upstreams: HashSet<&'a str>,
    /// (upstream, backend)
    pub backends: HashSet<(&'a str, &'a str)>,
}

impl Keep<'_> {
    /// Whether route `route` still goes to `upstream`.
    pub fn route(&self, route: &str, upstream: &str) -> bool {
        self.routes.get(route) == Some(&upstream)
    }

    /// Whether `upstream` still has `backend`.
    pub fn backend(&self, upstream: &str, backend: &str) -> bool {
        self.backends.contains(&(upstream, backend))
    }
}

/// Removes every series of `vec` whose label values (in the vec's label order) `keep` refuses.
fn retain<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    keep: impl Fn(&[&str]) -> bool,
) {
    let desc = vec.desc()[0];
    let families = vec.collect();
    let mut values: Vec<&str> = Vec::with_capacity(desc.variable_labels.len());
    for family in &families {
        for metric in family.get_metric() {
            // The exposition sorts labels by name; put them back in the vec's order.
            let pairs = metric.get_label();
            values.clear();
            values.extend(
                desc.variable_labels
                    .iter()
                    .filter_map(|name| pairs.iter().find(|p| p.name() == name).map(|p| p.value())),
            );
            if values.len() == desc.variable_labels.len() && !keep(&values) {
                if let Err(e) = vec.remove_label_values(&values) {
                    tracing::debug!(error = %e, "metric series already gone");
                }
            }
        }
    }
}

/// A route's handles.
#[derive(Debug)]
pub struct RouteMetrics {
    pub requests: RequestCounters,
    pub duration: Histogram,
    pub ratelimited: IntCounter,
}

impl RouteMetrics {
    /// Counts one finished request and its duration.
    pub fn record(
        &self,
        method: &Method,
        code: u16,
        outcome: Outcome,
        duration: std::time::Duration,
    ) {
        self.requests.inc(method, code, outcome);
        self.duration.observe(duration.as_secs_f64());
    }
}

/// One (outcome, method)'s handles of `fulcrum_requests_total`, by [`COMMON_CODES`] index.
type CodeRow = [OnceLock<IntCounter>; COMMON_CODES.len()];

/// `fulcrum_requests_total` of one route: a handle per (method, code, outcome), made on first use.
pub struct RequestCounters {
    vec: IntCounterVec,
    route: Box<str>,
    upstream: Box<str>,
    /// (outcome × method slot) → that pair's row of handles, one per common code, made at the
    /// pair's first request on the route (so that a route nobody calls costs no row at all).
    tables: [OnceLock<Box<CodeRow>>; Outcome::ALL.len() * (METHODS.len() + 1)],
    /// Handles of the codes outside [`COMMON_CODES`]: (method slot, code, outcome, handle).
    other: Mutex<Vec<(usize, u16, Outcome, IntCounter)>>,
    /// Set when a reload dropped this route's series: no handle is made any more.
    retired: AtomicBool,
}

impl std::fmt::Debug for RequestCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestCounters({:?})", self.route)
    }
}

impl RequestCounters {
    /// Counts one request answered with `code` that ended as `outcome`.
    pub fn inc(&self, method: &Method, code: u16, outcome: Outcome) {
        let m = method_slot(method);
        let Some(c) = COMMON_CODES.iter().position(|&k| k == code) else {
            let mut other = self.other.lock().unwrap_or_else(|e| e.into_inner());
            let known = other
                .iter()
                .find(|(om, oc, oo, _)| *om == m && *oc == code && *oo == outcome);
            if let Some((_, _, _, counter)) = known {
                counter.inc();
            } else if let Some(counter) = self.handle(method, code, outcome) {
                counter.inc();
                other.push((m, code, outcome, counter));
            }
            return;
        };
        let row = self.tables[outcome.index() * (METHODS.len() + 1) + m]
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        let slot = &row[c];
        if let Some(counter) = slot.get() {
            counter.inc();
        } else if let Some(counter) = self.handle(method, code, outcome) {
            slot.get_or_init(|| counter).inc();
        }
    }

    /// The series of (method, code, outcome), made now; `None` once retired.
    fn handle(&self, method: &Method, code: u16, outcome: Outcome) -> Option<IntCounter> {
        if self.retired.load(Ordering::Acquire) {
            return None;
        }
        let mut code_buf = itoa::Buffer::new();
        Some(self.vec.with_label_values(&[
            &*self.route,
            &*self.upstream,
            method_label(method),
            code_buf.format(code),
            outcome.as_str(),
        ]))
    }

    /// Stops making series: called on the old snapshot's routes that a reload dropped, before
    /// [`Metrics::retain`] removes their series. Requests still in flight on them then count
    /// into handles nothing exports (or into none).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

/// An upstream's handles.
#[derive(Debug)]
pub struct UpstreamMetrics {
    pub retries: IntCounter,
    pub overloaded: IntCounter,
}

/// A backend's handles (per upstream).
#[derive(Debug)]
pub struct BackendMetrics {
    pub response: Histogram,
    pub connect_errors: IntCounter,
    /// Holds the backend's failed-connect WARN lines to one per [`LogGate::EVERY`].
    pub connect_log: LogGate,
}

/// At most one log line per [`LogGate::EVERY`] for one subject: the first, then one per
/// interval that says how many were held back since the last.
#[derive(Debug, Default)]
pub struct LogGate {
    /// Milliseconds since [`LogGate::clock`]'s start before which lines are held back.
    next_ms: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
}

impl LogGate {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// `Some(n)`: log this line, `n` were held back since the last one; `None`: hold it back.
    pub fn pass(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Self::clock();
        let next = self.next_ms.load(Relaxed);
        let every = Self::EVERY.as_millis() as u64;
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now + every, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Relaxed));
        }
        self.held.fetch_add(1, Relaxed);
        None
    }

    /// Milliseconds on a monotonic clock started at the first call.
    fn clock() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }
}

/// A health-checked backend's handles.
#[derive(Debug, Clone)]
pub struct CheckCounters {
    pub success: IntCounter,
    pub failure: IntCounter,
}

/// The `process_*` metrics of prometheus's process collector, with `process_cpu_seconds_total`
/// to the clock tick: that collector truncates it to whole seconds (1 while /proc says 1.59).
struct ProcessMetrics {
    inner: prometheus::process_collector::ProcessCollector,
    cpu: prometheus::Counter,
    /// Held while `cpu` is brought up to date, so that two scrapes never add the same time.
    update: Mutex<()>,
}

const CPU_SECONDS: &str = "process_cpu_seconds_total";

impl ProcessMetrics {
    fn new() -> ProcessMetrics {
        let cpu = prometheus::Counter::new(
            CPU_SECONDS,
            "Total user and system CPU time spent in seconds.",
        )
        .expect("valid metric");
        ProcessMetrics {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
            cpu,
            update: Mutex::new(()),
        }
    }

    /// User plus system CPU time of this process, in seconds, to the clock tick.
    fn cpu_seconds() -> Option<f64> {
        let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
        let ticks = stat.utime + stat.stime;
        Some(ticks as f64 / procfs::ticks_per_second() as f64)
    }
}

impl Collector for ProcessMetrics {
    /// The process collector's descriptions (its `process_cpu_seconds_total` among them).
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families: Vec<MetricFamily> = self
            .inner
            .collect()
            .into_iter()
            .filter(|f| f.name() != CPU_SECONDS)
            .collect();
        if let Some(now) = Self::cpu_seconds() {
            let _update = self.update.lock().unwrap_or_else(|p| p.into_inner());
            let past = self.cpu.get();
            if now > past {
                self.cpu.inc_by(now - past);
            }
        }
        families.extend(self.cpu.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        m.registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)?
            .get_metric()
            .iter()
            .find(|s| {
                labels.iter().all(|(k, v)| {
                    s.get_label()
                        .iter()
                        .any(|p| p.name() == *k && p.value() == *v)
                })
            })
            .map(|s| s.get_counter().get_value())
    }

    #[test]
    fn methods_are_a_fixed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"PURGE").unwrap()),
            "OTHER"
        );
    }

    #[test]
    fn common_and_rare_codes_count_under_their_labels() {
        let m = Metrics::detached();
        let r = m.route("api", "pool");
        r.requests.inc(&Method::GET, 200, Outcome::Ok);
        r.requests.inc(&Method::GET, 200, Outcome::Ok);
        r.requests
            .inc(&Method::from_bytes(b"PURGE").unwrap(), 418, Outcome::Ok);
        let get = [("route", "api"), ("method", "GET"), ("code", "200")];
        assert_eq!(value(&m, "fulcrum_requests_total", &get), Some(2.0));
        let rare = [("method", "OTHER"), ("code", "418")];
        assert_eq!(value(&m, "fulcrum_requests_total", &rare), Some(1.0));
    }

    #[test]
    fn each_outcome_counts_under_its_own_label() {
        let m = Metrics::detached();
        let r = m.route("api", "pool");
        r.requests.inc(&Method::GET, 200, Outcome::Ok);
        r.requests.inc(&Method::GET, 200, Outcome::Aborted);
        r.requests.inc(&Method::GET, 200, Outcome::Aborted);
        r.requests.inc(&Method::GET, 418, Outcome::ClientClosed);
        let count = |code, outcome| {
            let labels = [("code", code), ("outcome", outcome)];
            value(&m, "fulcrum_requests_total", &labels)
        };
        assert_eq!(count("200", "ok"), Some(1.0));
        assert_eq!(count("200", "aborted"), Some(2.0));
        assert_eq!(count("418", "client_closed"), Some(1.0));
        assert_eq!(count("418", "ok"), None);
    }

    #[test]
    fn retain_drops_the_series_of_removed_routes_and_backends_only() {
        let m = Metrics::detached();
        for route in ["kept", "gone"] {
            m.route(route, "pool")
                .requests
                .inc(&Method::GET, 200, Outcome::Ok);
            m.route(route, "pool").ratelimited.inc();
        }
        m.unrouted().requests.inc(&Method::GET, 404, Outcome::Ok);
        for b in ["10.0.0.1:80", "10.0.0.2:80"] {
            m.backend("pool", b).connect_errors.inc();
        }
        let mut keep = Keep::default();
        keep.routes.insert("kept", "pool");
        keep.upstreams.insert("pool");
        keep.backends.insert(("pool", "10.0.0.1:80"));
        m.retain(&keep);
        let total = |labels: &[(&str, &str)]| value(&m, "fulcrum_requests_total", labels);
        assert_eq!(total(&[("route", "kept")]), Some(1.0));
        assert_eq!(total(&[("route", "gone")]), None);
        assert_eq!(total(&[("route", ""), ("code", "404")]), Some(1.0));
        assert_eq!(
            value(&m, "fulcrum_ratelimited_total", &[("route", "gone")]),
            None
        );
        let errors = |b: &str| {
            value(
                &m,
                "fulcrum_upstream_connect_errors_total",
                &[("backend", b)],
            )
        };
        assert_eq!(errors("10.0.0.1:80"), Some(1.0));
        assert_eq!(errors("10.0.0.2:80"), None);
    }

    #[test]
    fn a_retired_route_makes_no_series_again_after_retain() {
        let m = Metrics::detached();
        // The old snapshot's handles of a route a reload removes; one request already counted.
        let old = m.route("old", "pool");
        old.requests.inc(&Method::GET, 200, Outcome::Ok);
        old.retire_and_retain(&m);
        // Requests still in flight on the old snapshot end: a cached code, a common code not
        // seen yet, a rare code.
        old.requests.inc(&Method::GET, 200, Outcome::Ok);
        old.requests.inc(&Method::GET, 504, Outcome::Ok);
        old.requests.inc(&Method::POST, 418, Outcome::Ok);
        assert_eq!(
            value(&m, "fulcrum_requests_total", &[("route", "old")]),
            None
        );
    }

    #[test]
    fn a_rare_code_is_counted_through_its_cached_handle() {
        let m = Metrics::detached();
        let r = m.route("api", "pool");
        for _ in 0..3 {
            r.requests.inc(&Method::GET, 418, Outcome::Ok);
        }
        r.requests.inc(&Method::POST, 418, Outcome::Ok);
        assert_eq!(r.requests.other.lock().unwrap().len(), 2);
        let get = [("method", "GET"), ("code", "418")];
        assert_eq!(value(&m, "fulcrum_requests_total", &get), Some(3.0));
    }

    impl RouteMetrics {
        /// What a reload that drops this route does: retire, then retain nothing of it.
        fn retire_and_retain(&self, m: &Metrics) {
            self.requests.retire();
            m.retain(&Keep::default());
        }
    }
}
