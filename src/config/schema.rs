//! What the user writes: the TOML file's shape. Every table rejects unknown keys, every optional
//! key documents its default (the `DEFAULT_*` constants below), and values that other parts of the
//! file refer to keep their position (`Spanned`) so that errors can point at them.
//!
//! These types are never used by the running proxy: `validate` turns them into `runtime` types.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::units::{ByteSize, HumanDuration};

/// `[server].listen` when absent.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// `[server].grace_period` when absent.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// `[server].max_request_body` when absent: 10 MiB.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 10 << 20;
/// `[server].request_header_timeout` when absent (nginx's `client_header_timeout` is 60 s;
/// 10 s is what a slowloris-aware edge uses).
pub const DEFAULT_REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `[server].keepalive_timeout` when absent: nginx's.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// `[server].client_body_timeout` when absent: nginx's.
pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// `[server].client_body_min_rate` when absent, in bytes per second: Apache `mod_reqtimeout`'s
/// `MinRate=500`, rounded to a binary size.
pub const DEFAULT_CLIENT_BODY_MIN_RATE: u64 = 512;
/// `[upstream.NAME].dns_refresh` when absent.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);
/// `[server].send_timeout` when absent: nginx's.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// `[server].max_header_size` when absent: 32 KiB (nginx: 4 buffers of 8 KiB).
pub const DEFAULT_MAX_HEADER_SIZE: u64 = 32 << 10;
/// The largest `max_header_size` accepted: pingora's own limit.
pub const MAX_HEADER_SIZE_LIMIT: u64 = 1 << 20;
/// `[server].max_headers` when absent (Envoy's `max_headers_count`).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The largest `max_headers` accepted: pingora parses at most 256 headers.
pub const MAX_HEADERS_LIMIT: usize = 256;
/// The most `[server].threads` accepted.
pub const MAX_THREADS: usize = 1024;
/// `[server].max_connections` when absent.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// `[server].max_config_size` when absent, and what `fulcrum run` and `fulcrum check` read at
/// most without `--max-config-size`: 64 MiB.
pub const DEFAULT_MAX_CONFIG_SIZE: u64 = 64 << 20;
/// The smallest `max_config_size` accepted.
pub const MIN_CONFIG_SIZE_LIMIT: u64 = 1 << 10;
/// The largest `max_config_size` accepted: parsing holds about 35 bytes per byte of the file.
pub const MAX_CONFIG_SIZE_LIMIT: u64 = 1 << 30;
/// A certificate that expires within this is a warning at every load.
pub const CERTIFICATE_EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);
/// `[server].log_level` when absent and `RUST_LOG` is unset.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// `[server].access_log` when absent: one line per request on standard output.
pub const DEFAULT_ACCESS_LOG: &str = "stdout";
/// `[server].access_log_format` when absent.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str = "json";
/// `[[route]].path` when absent.
pub const DEFAULT_PATH: &str = "/";
/// `[[route]].retries` when absent.
pub const DEFAULT_RETRIES: u32 = 1;
/// `[[route]].timeout` when absent.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[[route]].upgrade_idle_timeout` when absent.
pub const DEFAULT_UPGRADE_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// `[upstream.*].connect_timeout` when absent.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `[upstream.*].read_timeout` when absent.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `[upstream.*].write_timeout` when absent.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[upstream.*].idle_timeout` when absent.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `weight` of a backend when absent.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Largest accepted backend `weight`.
pub const MAX_WEIGHT: u32 = 1000;
/// `health_check.path` when absent.
pub const DEFAULT_HEALTH_PATH: &str = "/";
/// `health_check.interval` when absent.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// `health_check.timeout` when absent.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// `health_check.jitter` when absent, in percent.
pub const DEFAULT_HEALTH_JITTER: u32 = 10;
/// Largest accepted `health_check.jitter`, in percent.
pub const MAX_HEALTH_JITTER: u32 = 50;
/// `health_check.healthy_threshold` when absent.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// `health_check.unhealthy_threshold` when absent.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// `outlier.consecutive_failures` when absent (also without an `[upstream.NAME.outlier]`
/// section: passive ejection is on by default). Envoy's `consecutive_5xx` and
/// `consecutive_gateway_failure` default: a dead backend is out after a handful of requests,
/// one dropped connection is not enough.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// `outlier.failure_status` (with the `[upstream.NAME.outlier]` table written; without it no
/// status counts, only connect errors, timeouts and broken responses, as nginx's `max_fails`)
/// and `circuit_breaker.failure_status` when absent: Envoy's gateway failures. An
/// application's own 500s are answers, not a sign the backend is gone.
pub const DEFAULT_FAILURE_STATUS: [u16; 3] = [502, 503, 504];
/// `outlier.base_ejection` when absent.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
/// `outlier.max_ejection` when absent.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
/// `outlier.max_ejected_percent` when absent.
pub const DEFAULT_MAX_EJECTED_PERCENT: u32 = 50;
/// `rate_limit.per` when absent.
pub const DEFAULT_RATE_PER: Duration = Duration::from_secs(1);
/// `rate_limit.key` when absent.
pub const DEFAULT_RATE_KEY: &str = "client_ip";
/// `circuit_breaker.consecutive_failures` when absent (0 turns this trigger off).
pub const DEFAULT_BREAKER_CONSECUTIVE_FAILURES: u32 = 5;
/// `circuit_breaker.min_requests` when absent.
pub const DEFAULT_BREAKER_MIN_REQUESTS: u32 = 20;
/// `circuit_breaker.window` when absent.
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(10);
/// `circuit_breaker.open_duration` when absent.
pub const DEFAULT_BREAKER_OPEN_DURATION: Duration = Duration::from_secs(30);
/// `circuit_breaker.half_open_requests` when absent.
pub const DEFAULT_BREAKER_HALF_OPEN_REQUESTS: u32 = 3;
/// Largest accepted `circuit_breaker.half_open_requests`.
pub const MAX_BREAKER_HALF_OPEN_REQUESTS: u32 = 1000;

/// Smallest accepted `hash_balance_factor` (1.0 = perfectly even, no stickiness to spare).
pub const MIN_BALANCE_FACTOR: f64 = 1.0;
/// Largest accepted `hash_balance_factor`.
pub const MAX_BALANCE_FACTOR: f64 = 10.0;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`: listeners and process-wide settings.
    #[serde(default)]
    pub server: ServerSection,
    /// `[[route]]`: which requests go to which upstream.
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RouteSection>>,
    /// `[upstream.NAME]`: pools of backends.
    #[serde(default, rename = "upstream")]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSection>>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Plain-HTTP listeners, `IP:PORT` or `localhost:PORT` (127.0.0.1): a list, or one
    /// string for one listener. Default: [`DEFAULT_LISTEN`].
    pub listen: Option<Spanned<OneOrMany>>,
    /// Worker threads. Default: the number of CPUs.
    pub threads: Option<Spanned<usize>>,
    /// Admin listener `IP:PORT` or `localhost:PORT` (127.0.0.1). Default: none (disabled).
    pub admin_listen: Option<Spanned<String>>,
    /// CIDRs (or single IPs) whose `X-Forwarded-*` headers are believed: a list, or one
    /// string. Default: none.
    pub trusted_proxies: Option<Spanned<OneOrMany>>,
    /// How long SIGTERM waits for in-flight requests. Default: [`DEFAULT_GRACE_PERIOD`].
    pub grace_period: Option<HumanDuration>,
    /// Largest request body accepted; larger gets 413. Default: [`DEFAULT_MAX_REQUEST_BODY`].
    pub max_request_body: Option<ByteSize>,
    /// `tracing` filter, e.g. "info" or "fulcrum=debug"; `RUST_LOG` wins. pingora's own lines
    /// are held to its errors unless a directive names a pingora target ("info,pingora=info")
    /// or the level is debug or trace (`server::log_filter`). Default: "info".
    pub log_level: Option<Spanned<String>>,
    /// Absolute path of the Unix socket over which `fulcrum run --upgrade` takes the listening
    /// sockets from this process on SIGQUIT. Default: `upgrade.sock` in a runtime directory
    /// owned by this user and mode 0700: `$RUNTIME_DIRECTORY`, else `/run/fulcrum/`, else
    /// `$XDG_RUNTIME_DIR/fulcrum/`, else `/tmp/fulcrum-UID/` (see `server::upgrade_sock`); with
    /// none usable, graceful upgrade is off (builds before this used `/tmp/fulcrum-upgrade.sock`).
    pub upgrade_sock: Option<Spanned<String>>,
    /// Where the access log goes: "stdout", "stderr", "off" or a file path (relative to the
    /// config file's directory). Default: [`DEFAULT_ACCESS_LOG`].
    pub access_log: Option<Spanned<String>>,
    /// "json" or "combined" (nginx/Apache). Default: [`DEFAULT_ACCESS_LOG_FORMAT`].
    pub access_log_format: Option<Spanned<String>>,
    /// Whether logged paths keep their query string. Default: false (tokens stay out of logs).
    pub access_log_query: Option<bool>,
    /// The whole request header must arrive within this of its first byte (else 408); also
    /// how long a new connection may wait before it sends one. Default:
    /// [`DEFAULT_REQUEST_HEADER_TIMEOUT`].
    pub request_header_timeout: Option<Spanned<HumanDuration>>,
    /// How long an idle keep-alive connection waits for its next request. Default:
    /// [`DEFAULT_KEEPALIVE_TIMEOUT`].
    pub keepalive_timeout: Option<Spanned<HumanDuration>>,
    /// The longest wait between two reads of a request body (else the request fails with 408).
    /// Default: [`DEFAULT_CLIENT_BODY_TIMEOUT`].
    pub client_body_timeout: Option<Spanned<HumanDuration>>,
    /// Bytes per second a request body must keep up: `T` after the request began, at least this
    /// × (`T` − `client_body_timeout`) bytes of it must have arrived (else 408); 0 turns it
    /// off. Default: [`DEFAULT_CLIENT_BODY_MIN_RATE`].
    pub client_body_min_rate: Option<Spanned<ByteSize>>,
    /// The longest a write of the response to the client may wait (a client that stops reading
    /// is dropped). Default: [`DEFAULT_SEND_TIMEOUT`].
    pub send_timeout: Option<Spanned<HumanDuration>>,
    /// Largest request header section (request line included); larger gets 431. Default:
    /// [`DEFAULT_MAX_HEADER_SIZE`].
    pub max_header_size: Option<Spanned<ByteSize>>,
    /// Most header lines in a request; more gets 431. Default: [`DEFAULT_MAX_HEADERS`].
    pub max_headers: Option<Spanned<usize>>,
    /// Most client connections open at once in this process; past it a new connection is
    /// closed as soon as it is accepted. Default: [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: Option<Spanned<usize>>,
    /// Whether `//` in a request path is read as `/` (for routing and for the backend).
    /// Default: true (nginx's `merge_slashes on`).
    pub merge_slashes: Option<Spanned<bool>>,
    /// `[[server.tls]]`: TLS listeners. Default: none.
    pub tls: Option<Vec<Spanned<TlsListenerSection>>>,
    /// Whether the plain listeners answer every request with a 308 to the same host and path
    /// on the first TLS listener's port. Default: false.
    pub redirect_http_to_https: Option<Spanned<bool>>,
    /// Whether the plain listeners also take HTTP/2 with prior knowledge (h2c). Default: false.
    pub h2c: Option<Spanned<bool>>,
    /// Largest config file a reload reads (bytes); a larger one is refused before it is parsed.
    /// The running config's value governs the next reload. Default: [`DEFAULT_MAX_CONFIG_SIZE`].
    pub max_config_size: Option<Spanned<ByteSize>>,
}

/// A list of strings that may also be written as one string: `listen = "127.0.0.1:8080"` is
/// `listen = ["127.0.0.1:8080"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOrMany {
    /// One string; its place is the enclosing `Spanned`'s.
    One(String),
    /// A list, each element with its place.
    Many(Vec<Spanned<String>>),
}

impl OneOrMany {
    /// The strings, each with its place; `span`: the whole value's (a lone string's own).
    pub fn items(&self, span: std::ops::Range<usize>) -> Vec<Spanned<String>> {
        match self {
            OneOrMany::One(s) => vec![Spanned::new(span, s.clone())],
            OneOrMany::Many(items) => items.clone(),
        }
    }

    /// Whether a list was written (elements are then named `field[i]`, a lone string `field`).
    pub fn is_list(&self) -> bool {
        matches!(self, OneOrMany::Many(_))
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// `failure_status`: a list of status codes or classes that may also be written as one value:
/// `failure_status = 502` is `failure_status = [502]`.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusList {
    /// One code or class; its place is the enclosing `Spanned`'s.
    One(toml::Value),
    /// A list, each element with its place.
    Many(Vec<Spanned<toml::Value>>),
}

impl StatusList {
    /// The values, each with its place (a lone value's is `span`) and its name: `field[i]` in a
    /// list, `field` alone.
    pub fn items(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
    ) -> Vec<(Spanned<toml::Value>, String)> {
        match self {
            StatusList::One(v) => vec![(Spanned::new(span, v.clone()), field.to_owned())],
            StatusList::Many(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), format!("{field}[{i}]")))
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for StatusList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StatusList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a status code, a class (\"5xx\") or a list of them")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<StatusList, E> {
                Ok(StatusList::One(toml::Value::Integer(n)))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<StatusList, E> {
                Ok(StatusList::One(toml::Value::Integer(
                    i64::try_from(n).unwrap_or(i64::MAX),
                )))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<StatusList, E> {
                Ok(StatusList::One(toml::Value::String(s.to_owned())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StatusList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StatusList::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[server.tls]]`: one TLS listener and the certificates it chooses from by SNI.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerSection {
    /// `IP:PORT` or `localhost:PORT` (127.0.0.1).
    pub listen: Spanned<String>,
    /// At least one; each serves the names in its certificate's SANs.
    pub certificates: Spanned<Vec<Spanned<CertificateSection>>>,
    /// The `cert` of one of `certificates`, for clients without SNI or with a name no
    /// certificate has. Default: absent = such handshakes are refused.
    pub default_certificate: Option<Spanned<String>>,
    /// ALPN `h2` beside `http/1.1`. Default: true.
    pub http2: Option<Spanned<bool>>,
    /// "1.2" or "1.3". Default: "1.2".
    pub min_version: Option<Spanned<String>>,
}

/// `{ cert = "...", key = "..." }`: PEM files, relative to the config file's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// The certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Spanned<String>,
}

/// `[[route]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Name used in logs and metrics. Default: host + path, e.g. "api.example.com/v1/".
    pub name: Option<Spanned<String>>,
    /// Exact host or `*.example.com`. Default: any host.
    pub host: Option<Spanned<String>>,
    /// Path prefix, starting with "/". Default: [`DEFAULT_PATH`].
    pub path: Option<Spanned<String>>,
    /// Remove `path` from the request path before forwarding. Default: false.
    pub strip_prefix: Option<bool>,
    /// `Host` sent to the backend instead of the client's. Default: absent = the client's Host.
    pub host_rewrite: Option<Spanned<String>>,
    /// The `[upstream.NAME]` that serves this route. Required.
    pub upstream: Spanned<String>,
    /// Connect failures retried on another backend. Default: [`DEFAULT_RETRIES`].
    pub retries: Option<u32>,
    /// Whole-request deadline; past it the client gets 504. Default: [`DEFAULT_ROUTE_TIMEOUT`].
    pub timeout: Option<Spanned<HumanDuration>>,
    /// For an upgrade request (WebSocket): how long the connection may stay silent in either
    /// direction, instead of `timeout`. Default: [`DEFAULT_UPGRADE_IDLE_TIMEOUT`].
    pub upgrade_idle_timeout: Option<Spanned<HumanDuration>>,
    /// `rate_limit = { rate = 100, per = "1s", burst = 50, key = "client_ip" }`: a token bucket
    /// per key; over it the client gets 429. Default: none (unlimited).
    pub rate_limit: Option<Spanned<RateLimitSection>>,
}

/// `rate_limit = { ... }` of a route: `rate` requests per `per`, up to `burst` at once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Requests allowed per `per`, at least 1. Required.
    pub rate: Spanned<u32>,
    /// The period `rate` is counted over: whole seconds ("1s", "1m"). Default: [`DEFAULT_RATE_PER`].
    pub per: Option<Spanned<HumanDuration>>,
    /// Requests a full bucket lets through at once, at least 1. Default: `rate`.
    pub burst: Option<Spanned<u32>>,
    /// Who gets a bucket: "client_ip", "header:NAME" (a request without the header falls back
    /// to its client IP) or "global" (one bucket for everyone). Default: [`DEFAULT_RATE_KEY`].
    pub key: Option<Spanned<String>>,
    /// Whether allowed responses carry `RateLimit-Policy` and `RateLimit` (429s always do).
    /// Default: true.
    pub headers: Option<bool>,
}

/// `[upstream.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Balancing strategy. Default: round_robin.
    pub balance: Option<Spanned<BalanceKind>>,
    /// The pool: at least one backend.
    pub backends: Spanned<Vec<BackendSection>>,
    /// What `consistent_hash` hashes: "header:NAME", "cookie:NAME", "query:NAME", "path" or
    /// "client_ip". Required with `consistent_hash`, rejected with other strategies.
    pub hash_key: Option<Spanned<String>>,
    /// Bounded loads for `consistent_hash`/`ip_hash`: no backend takes a request at
    /// `factor × average` in-flight or more. A number in [`MIN_BALANCE_FACTOR`,
    /// `MAX_BALANCE_FACTOR`]. Default: absent = unbounded.
    pub hash_balance_factor: Option<Spanned<f64>>,
    /// TCP connect deadline per attempt. Default: [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    /// Longest wait for each read from a backend. Default: [`DEFAULT_READ_TIMEOUT`].
    pub read_timeout: Option<Spanned<HumanDuration>>,
    /// Longest wait for each write to a backend. Default: [`DEFAULT_WRITE_TIMEOUT`].
    pub write_timeout: Option<Spanned<HumanDuration>>,
    /// How long an idle pooled backend connection is kept. Default: [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    /// Percent 0..=100: when fewer backends than this share are healthy, balance across all of
    /// them (Envoy's panic mode). Default: 0 = off.
    pub panic_threshold: Option<Spanned<u32>>,
    /// `[upstream.NAME.health_check]`: active probes. Default: none (every backend healthy).
    pub health_check: Option<HealthCheckSection>,
    /// `[upstream.NAME.outlier]`: passive ejection from real traffic. Default: on, with every
    /// key at its default; `enabled = false` turns it off.
    pub outlier: Option<OutlierSection>,
    /// `[upstream.NAME.circuit_breaker]`: stop sending to a failing backend. Default: none.
    pub circuit_breaker: Option<Spanned<CircuitBreakerSection>>,
    /// Requests in flight to the upstream at once, at least 1; past it the client gets an
    /// immediate 503 (Envoy's `max_requests`). Default: absent = unlimited.
    pub max_inflight: Option<Spanned<u32>>,
    /// How long after they were last resolved (by a refresh, or a reload that applied) backend
    /// host names are resolved again. Default: [`DEFAULT_DNS_REFRESH`].
    pub dns_refresh: Option<Spanned<HumanDuration>>,
    /// HTTPS to the backends. Default: false.
    pub tls: Option<Spanned<bool>>,
    /// The name sent as SNI and verified in the backends' certificates. Default: the backend's
    /// host as written in `addr` (an IP address is verified against the certificate's IP SANs).
    pub sni: Option<Spanned<String>>,
    /// PEM file of CA certificates trusted beside the system's roots, relative to the config
    /// file's directory. Default: none.
    pub ca_file: Option<Spanned<String>>,
    /// Accept any backend certificate (a warning at every load). Default: false.
    pub insecure_skip_verify: Option<Spanned<bool>>,
}

/// `[upstream.NAME.circuit_breaker]`: closed → open → half-open → closed, per backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSection {
    /// Trip after this many failures in a row (connect error, timeout, a `failure_status`); 0 = only
    /// `failure_rate` trips. Default: [`DEFAULT_BREAKER_CONSECUTIVE_FAILURES`].
    pub consecutive_failures: Option<Spanned<u32>>,
    /// Trip when at least this share (0 < rate ≤ 1) of the requests in `window` failed.
    /// Default: absent = off.
    pub failure_rate: Option<Spanned<f64>>,
    /// Requests `window` must hold before `failure_rate` may trip. Default: [`DEFAULT_BREAKER_MIN_REQUESTS`].
    pub min_requests: Option<Spanned<u32>>,
    /// The rolling window of `failure_rate`. Default: [`DEFAULT_BREAKER_WINDOW`].
    pub window: Option<Spanned<HumanDuration>>,
    /// How long an open breaker refuses traffic before it lets probes through. Default: [`DEFAULT_BREAKER_OPEN_DURATION`].
    pub open_duration: Option<Spanned<HumanDuration>>,
    /// Requests let through at once while half-open; all must succeed to close, one failure
    /// re-opens. 1..=[`MAX_BREAKER_HALF_OPEN_REQUESTS`]. Default: [`DEFAULT_BREAKER_HALF_OPEN_REQUESTS`].
    pub half_open_requests: Option<Spanned<u32>>,
    /// Backend response statuses that count as failures: codes (100..=599) or classes ("5xx");
    /// `[]` = none (connect errors, timeouts and broken responses always count).
    /// Default: [`DEFAULT_FAILURE_STATUS`].
    pub failure_status: Option<Spanned<StatusList>>,
}

/// `[upstream.NAME.health_check]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    /// "http" or "tcp". Default: "http".
    pub kind: Option<ProbeKind>,
    /// Request path of an http probe. Default: [`DEFAULT_HEALTH_PATH`].
    pub path: Option<Spanned<String>>,
    /// `Host` header of an http probe. Default: the backend's `addr` as written.
    pub host: Option<Spanned<String>>,
    /// Statuses that pass: codes (200) or classes ("2xx"). Default: ["2xx"].
    pub expect_status: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    /// Time between probes of one backend. Default: [`DEFAULT_HEALTH_INTERVAL`].
    pub interval: Option<Spanned<HumanDuration>>,
    /// Deadline of one probe (connect + answer). Default: [`DEFAULT_HEALTH_TIMEOUT`].
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Random spread of each interval, "0%".."50%". Default: [`DEFAULT_HEALTH_JITTER`].
    pub jitter: Option<Spanned<String>>,
    /// Consecutive successes for an unhealthy backend to rise. Default: [`DEFAULT_HEALTHY_THRESHOLD`].
    pub healthy_threshold: Option<Spanned<u32>>,
    /// Consecutive failures for a healthy backend to fall. Default: [`DEFAULT_UNHEALTHY_THRESHOLD`].
    pub unhealthy_threshold: Option<Spanned<u32>>,
}

/// `kind = "..."` of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// GET `path`; the status must match `expect_status`.
    #[default]
    Http,
    /// A TCP connection that opens is a success.
    Tcp,
}

/// `[upstream.NAME.outlier]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSection {
    /// Passive ejection on or off. Default: true (also without this section).
    pub enabled: Option<bool>,
    /// Consecutive failures (connect errors, timeouts, a `failure_status`) that eject. Default: [`DEFAULT_CONSECUTIVE_FAILURES`].
    pub consecutive_failures: Option<Spanned<u32>>,
    /// Ejection time, multiplied by the number of ejections in a row. Default: [`DEFAULT_BASE_EJECTION`].
    pub base_ejection: Option<Spanned<HumanDuration>>,
    /// Cap on one ejection. Default: [`DEFAULT_MAX_EJECTION`].
    pub max_ejection: Option<Spanned<HumanDuration>>,
    /// Never eject more than this percent (0..=100) of the pool. Default: [`DEFAULT_MAX_EJECTED_PERCENT`].
    pub max_ejected_percent: Option<Spanned<u32>>,
    /// Backend response statuses that count as failures: codes (100..=599) or classes ("5xx");
    /// `[]` = none (connect errors, timeouts and broken responses always count).
    /// Default: [`DEFAULT_FAILURE_STATUS`] with this table written, `[]` without it.
    pub failure_status: Option<Spanned<StatusList>>,
}

/// One `{ addr = "...", weight = N }` in `backends`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `HOST:PORT`, never a URL (a scheme or a path is an error that says what to write);
    /// a host name is resolved each time the config is loaded (start and reload).
    pub addr: Spanned<String>,
    /// Relative share of traffic, 1..=[`MAX_WEIGHT`]. Default: [`DEFAULT_WEIGHT`].
    pub weight: Option<Spanned<u32>>,
}

/// `balance = "..."`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceKind {
    /// nginx's smooth weighted round-robin (equal turns when the weights are equal).
    #[default]
    RoundRobin,
    /// The same as `round_robin`, kept as a synonym.
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight; ties round-robin.
    LeastConnections,
    /// Power of two random choices on in-flight / weight.
    P2c,
    /// Weighted random.
    Random,
    /// Consistent hash of the client IP.
    IpHash,
    /// Consistent hash of `hash_key`.
    ConsistentHash,
}

impl BalanceKind {
    /// The name written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceKind::RoundRobin => "round_robin",
            BalanceKind::WeightedRoundRobin => "weighted_round_robin",
            BalanceKind::LeastConnections => "least_connections",
            BalanceKind::P2c => "p2c",
            BalanceKind::Random => "random",
            BalanceKind::IpHash => "ip_hash",
            BalanceKind::ConsistentHash => "consistent_hash",
        }
    }
}
