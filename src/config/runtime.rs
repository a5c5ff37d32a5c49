//! What the program runs on: the validated config. No `Option`s are left, addresses are parsed,
//! names are resolved to indices and durations are typed. Built by `validate` from the schema.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

pub use super::schema::BalanceKind;

/// A validated config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// In file order.
    pub routes: Vec<RouteConfig>,
    /// In name order; routes refer to them by index.
    pub upstreams: Vec<UpstreamConfig>,
    /// Things that are legal but probably not meant (an upstream no route uses).
    pub warnings: Vec<super::ConfigError>,
    /// Where the keys a reload cannot change were written, so that a reload can point at them.
    pub places: Places,
    /// Every backend host name and what it resolved to (sorted), to notice when that changes.
    pub dns: Vec<(String, Vec<SocketAddr>)>,
}

impl Config {
    /// How often the backend names are resolved again: the shortest `dns_refresh` of the
    /// upstreams that have a name; `None` when no backend is given by name.
    pub fn dns_refresh(&self) -> Option<Duration> {
        self.upstreams
            .iter()
            .filter(|u| u.named)
            .map(|u| u.dns_refresh)
            .min()
    }
}

/// A line and column in the config file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub line: usize,
    pub column: usize,
}

/// Field path (`"server.listen"`) → where its value was written; absent keys are not here.
#[derive(Debug, Clone, Default)]
pub struct Places(pub BTreeMap<&'static str, Place>);

impl Places {
    /// An error about `field`, found after validation, at the place the field was written
    /// (line and column 0 when it was not). `file`: the config file, `None` for a built-in one.
    pub fn error(&self, file: Option<&Path>, field: &str, message: String) -> super::ConfigError {
        let place = self.0.get(field);
        let (line, column) = place.map_or((0, 0), |p| (p.line, p.column));
        super::ConfigError::placed(file.unwrap_or(Path::new("-")), line, column, field, message)
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    pub admin_listen: Option<SocketAddr>,
    pub trusted_proxies: Vec<IpNet>,
    pub grace_period: Duration,
    /// Bytes.
    pub max_request_body: u64,
    /// A `tracing` filter directive.
    pub log_level: String,
    /// Unix socket over which a new process (`fulcrum run --upgrade`) takes the listeners;
    /// `None`: the default, in a runtime directory resolved when `run` starts.
    pub upgrade_sock: Option<PathBuf>,
    pub access_log: AccessLogTarget,
    pub access_log_format: AccessLogFormat,
    /// Whether logged paths keep their query string.
    pub access_log_query: bool,
    pub client: ClientLimits,
    pub max_connections: usize,
    /// Bytes: the largest config file the next reload reads.
    pub max_config_size: u64,
    pub merge_slashes: bool,
    /// In file order; their certificates are loaded by `certs` after validation.
    pub tls: Vec<TlsListenerConfig>,
    pub redirect_http_to_https: bool,
    pub h2c: bool,
}

impl ServerConfig {
    /// The proxy's listen addresses: the plain ones, then the TLS ones.
    pub fn proxy_listeners(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let tls = self.tls.iter().map(|t| t.listen);
        self.listen.iter().copied().chain(tls)
    }
}

/// What one client connection is held to (`[server]`'s client-side limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub request_header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub client_body_timeout: Duration,
    /// Bytes per second a request body must average after its first `client_body_timeout`;
    /// 0: no minimum.
    pub client_body_min_rate: u64,
    pub send_timeout: Duration,
    /// Bytes.
    pub max_header_size: usize,
    pub max_headers: usize,
}

/// `[server].access_log`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Stderr,
    Off,
    /// Appended to; reopened on SIGUSR1.
    File(PathBuf),
}

/// `[server].access_log_format`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// nginx's and Apache's "combined".
    Combined,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub host: HostPattern,
    pub path: String,
    pub strip_prefix: bool,
    /// `Host` for the backend; `None` keeps the client's.
    pub host_rewrite: Option<String>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub retries: u32,
    pub timeout: Duration,
    pub upgrade_idle_timeout: Duration,
    pub rate_limit: Option<RateLimitConfig>,
}

/// A route's `rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub quota: RateQuota,
    pub key: RateKey,
    /// Whether allowed responses carry the `RateLimit` headers.
    pub headers: bool,
}

/// `rate` requests per `per`, `burst` at once: what a token bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateQuota {
    /// At least 1.
    pub rate: u32,
    /// Whole seconds, at least one.
    pub per: Duration,
    /// At least 1.
    pub burst: u32,
}

impl RateQuota {
    /// The time one token takes to come back: `per / rate`.
    pub fn interval(&self) -> Duration {
        self.per / self.rate
    }
}

/// `rate_limit.key`: who shares a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// "client_ip": the real client address (X-Forwarded-For only from trusted proxies).
    ClientIp,
    /// "header:NAME": the header's value; a request without it falls back to its client IP.
    Header(http::HeaderName),
    /// "global": one bucket for every client of the route.
    Global,
}

impl RateKey {
    pub const ACCEPTED: &'static str = r#""client_ip", "header:NAME" or "global""#;

    pub fn parse(s: &str) -> Result<RateKey, String> {
        let bad = || format!(r#"invalid key "{s}"; expected {}"#, RateKey::ACCEPTED);
        match s {
            "client_ip" => Ok(RateKey::ClientIp),
            "global" => Ok(RateKey::Global),
            _ => {
                let name = s.strip_prefix("header:").filter(|n| !n.is_empty());
                let name = name.ok_or_else(bad)?;
                http::HeaderName::from_bytes(name.as_bytes())
                    .map(RateKey::Header)
                    .map_err(|_| bad())
            }
        }
    }
}

/// Which `Host` a route accepts. Names are stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// No `host` key: any host.
    Any,
    /// `host = "api.example.com"`
    Exact(String),
    /// `host = "*.example.com"`, stored as the suffix ".example.com": matches any name that ends
    /// with it and has at least one more label (not "example.com" itself).
    Wildcard(String),
}

impl HostPattern {
    /// How the user wrote it ("*" for any), for names and messages.
    pub fn display(&self) -> String {
        match self {
            HostPattern::Any => "*".to_owned(),
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(suffix) => format!("*{suffix}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub balance: BalanceKind,
    /// What the hash strategies hash (`ClientIp` for `ip_hash`); `None` for the others.
    pub hash_key: Option<HashKey>,
    /// Bounded-load factor for the hash strategies.
    pub hash_balance_factor: Option<f64>,
    pub backends: Vec<BackendConfig>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// Percent; 0 = off.
    pub panic_threshold: u32,
    pub health_check: Option<HealthCheckConfig>,
    /// Passive ejection: on unless `[upstream.NAME.outlier] enabled = false`.
    pub outlier: Option<OutlierConfig>,
    pub circuit_breaker: Option<BreakerConfig>,
    /// Requests in flight to the upstream at once; `None` = unlimited.
    pub max_inflight: Option<u32>,
    /// How often backend host names are resolved again.
    pub dns_refresh: Duration,
    /// Backends (`host:port` as written) whose name did not resolve at the last load.
    pub unresolved: Vec<String>,
    /// Some backend is given by host name (set where names are resolved).
    pub named: bool,
    /// HTTPS to the backends; `None` = plain HTTP.
    pub tls: Option<UpstreamTls>,
}

/// `tls = true` on an upstream and how its backends' certificates are checked.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `sni`; `None` = each backend's host as written in its `addr`.
    pub sni: Option<String>,
    /// The roots the backends' certificates are checked against when `ca_file` is set (its
    /// certificates and the system's), loaded by `certs`; `None` = pingora's (the system's).
    pub roots: Option<Arc<pingora::protocols::tls::CaType>>,
    /// `!insecure_skip_verify`.
    pub verify: bool,
    /// Tells apart pooled connections verified against different roots (pingora's pool key
    /// has no CA in it): a hash of the `ca_file`'s certificates, 0 without one.
    pub trust: u64,
    /// What active health checks connect with (the same roots and verification), built by
    /// `certs`.
    pub probe: Option<Arc<rustls::ClientConfig>>,
}

/// `[[server.tls]]`
#[derive(Debug, Clone)]
pub struct TlsListenerConfig {
    pub listen: SocketAddr,
    /// As listed; empty until `certs` loads them.
    pub certificates: Vec<Arc<Certificate>>,
    /// Index into `certificates` of `default_certificate`.
    pub default_certificate: Option<usize>,
    pub http2: bool,
    pub min_version: TlsVersion,
}

/// `min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// A certificate chain and its key, loaded and checked.
#[derive(Debug)]
pub struct Certificate {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// DNS names (lower case, `*.` wildcards kept) and IP addresses of its SANs (the subject's
    /// common name when it has no SAN).
    pub names: Vec<String>,
    /// The leaf's `notAfter`, Unix seconds.
    pub not_after: i64,
    pub key: Arc<rustls::sign::CertifiedKey>,
}

impl Certificate {
    /// The names a client can ask for by SNI: not its IP addresses (clients send no SNI for an
    /// IP).
    pub fn sni_names(&self) -> impl Iterator<Item = &String> {
        self.names.iter().filter(|n| n.parse::<IpAddr>().is_err())
    }

    /// The name its expiry metric has: its first name, else its file.
    pub fn label(&self) -> String {
        self.names
            .first()
            .cloned()
            .unwrap_or_else(|| self.cert_path.display().to_string())
    }
}

/// `[upstream.NAME.circuit_breaker]`
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// 0 = this trigger is off.
    pub consecutive_failures: u32,
    /// 0.0 < rate <= 1.0; `None` = this trigger is off.
    pub failure_rate: Option<f64>,
    pub min_requests: u32,
    pub window: Duration,
    pub open_duration: Duration,
    /// At least 1.
    pub half_open_requests: u32,
    /// The response statuses that count as failures (connect errors, timeouts and broken
    /// responses always do).
    pub failure_status: StatusSet,
}

pub use super::schema::ProbeKind;

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub kind: ProbeKind,
    pub path: String,
    /// `None`: each backend's own `addr` as written.
    pub host: Option<String>,
    pub expect_status: Vec<StatusMatch>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Fraction of `interval`, 0.0..=0.5.
    pub jitter: f64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// One entry of `expect_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// 200
    Code(u16),
    /// "2xx": the hundreds digit.
    Class(u16),
}

impl StatusMatch {
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => status == c,
            StatusMatch::Class(h) => status / 100 == h,
        }
    }
}

impl std::fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusMatch::Code(c) => write!(f, "{c}"),
            StatusMatch::Class(h) => write!(f, "{h}xx"),
        }
    }
}

/// A set of response statuses (100..=599), one bit each: what `failure_status` resolves to,
/// once per config, so that judging a response is one bit test.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StatusSet([u64; 10]);

impl StatusSet {
    /// No status.
    pub const EMPTY: StatusSet = StatusSet([0; 10]);

    /// Every status one of `matches` matches.
    pub fn of(matches: &[StatusMatch]) -> StatusSet {
        let mut set = StatusSet::EMPTY;
        for status in 100..600u16 {
            if matches.iter().any(|m| m.matches(status)) {
                set.0[usize::from(status / 64)] |= 1 << (status % 64);
            }
        }
        set
    }

    /// The statuses in either set.
    pub fn union(self, other: StatusSet) -> StatusSet {
        let mut set = self;
        for (w, o) in set.0.iter_mut().zip(other.0) {
            *w |= o;
        }
        set
    }

    /// Whether `status` is in the set (never for a status outside 100..=599).
    pub fn contains(&self, status: u16) -> bool {
        self.0
            .get(usize::from(status / 64))
            .is_some_and(|w| w & (1 << (status % 64)) != 0)
    }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((100..600u16).filter(|&s| self.contains(s)))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Percent 0..=100.
    pub max_ejected_percent: u32,
    /// The response statuses that count as failures (connect errors, timeouts and broken
    /// responses always do).
    pub failure_status: StatusSet,
}

/// `hash_key = "..."`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// "header:X-User"
    Header(http::HeaderName),
    /// "cookie:sid"
    Cookie(String),
    /// "query:uid"
    Query(String),
    /// "path"
    Path,
    /// "client_ip": the real client address (X-Forwarded-For only from trusted proxies).
    ClientIp,
}

impl HashKey {
    pub const ACCEPTED: &'static str =
        r#""header:NAME", "cookie:NAME", "query:NAME", "path" or "client_ip""#;

    pub fn parse(s: &str) -> Result<HashKey, String> {
        let bad = || format!(r#"invalid hash_key "{s}"; expected {}"#, HashKey::ACCEPTED);
        let named = |prefix: &str| s.strip_prefix(prefix).filter(|n| !n.is_empty());
        Ok(match s {
            "path" => HashKey::Path,
            "client_ip" => HashKey::ClientIp,
            _ if named("header:").is_some() => {
                let name = named("header:").unwrap_or_default();
                HashKey::Header(http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?)
            }
            _ if named("cookie:").is_some() => {
                HashKey::Cookie(named("cookie:").unwrap_or_default().to_owned())
            }
            _ if named("query:").is_some() => {
                HashKey::Query(named("query:").unwrap_or_default().to_owned())
            }
            _ => return Err(bad()),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// As written in the file (`host:port`), for logs.
    pub name: String,
    pub addr: SocketAddr,
    pub weight: u32,
}
