//! Schema → runtime: every semantic check, collecting all problems instead of stopping at the
//! first one (like `nginx -t`, but listing every problem).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrors};
use super::runtime::*;
use super::schema::*;
use super::units::HumanDuration;

/// Collects errors with their place in the file.
struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let e = ConfigError::at(self.file, self.source, Some(span), field, message);
        self.errors.push(e);
    }

    fn warn(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let e = ConfigError::at(self.file, self.source, Some(span), field, message);
        self.warnings.push(e);
    }
}

/// Validates a deserialized file into the config the proxy runs on.
pub(super) fn validate(
    file: FileConfig,
    path: &Path,
    source: &str,
) -> Result<Config, ConfigErrors> {
    let mut c = Checker {
        file: path,
        source,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let server = server(&mut c, file.server);
    let upstreams: Vec<UpstreamConfig> = file
        .upstreams
        .iter()
        .map(|(name, u)| upstream(&mut c, name, u.get_ref()))
        .collect();
    let names: Vec<&str> = file.upstreams.keys().map(String::as_str).collect();
    let routes = routes(&mut c, &file.routes, &names);

    for (i, (name, u)) in file.upstreams.iter().enumerate() {
        if !routes.iter().any(|r| r.upstream == i) {
            let msg = format!("upstream \"{name}\" is not used by any route");
            c.warn(u.span(), format!("upstream.{name}"), msg);
        }
    }
    if !c.errors.is_empty() {
        return Err(ConfigErrors(c.errors));
    }
    Ok(Config {
        server,
        routes,
        upstreams,
        warnings: c.warnings,
    })
}

fn server(c: &mut Checker, s: ServerSection) -> ServerConfig {
    let listen = match &s.listen {
        None => vec![DEFAULT_LISTEN
            .parse()
            .expect("default listen address parses")],
        Some(list) => {
            if list.get_ref().is_empty() {
                c.error(
                    list.span(),
                    "server.listen",
                    "needs at least one address, e.g. [\"0.0.0.0:8080\"]",
                );
            }
            let mut out: Vec<SocketAddr> = Vec::new();
            for (i, a) in list.get_ref().iter().enumerate() {
                let field = format!("server.listen[{i}]");
                if let Some(addr) = listen_addr(c, a, &field) {
                    if out.contains(&addr) {
                        c.error(a.span(), field, format!("{addr} is listed twice"));
                    } else {
                        out.push(addr);
                    }
                }
            }
            out
        }
    };
    let threads = match &s.threads {
        Some(t) if *t.get_ref() == 0 => {
            c.error(
                t.span(),
                "server.threads",
                "must be at least 1 (or absent for one per CPU)",
            );
            1
        }
        Some(t) => *t.get_ref(),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let admin_listen = s.admin_listen.as_ref().and_then(|a| {
        let addr = listen_addr(c, a, "server.admin_listen")?;
        if listen.contains(&addr) {
            let msg = format!(
                "{addr} is also a proxy listener; the admin listener needs its own address"
            );
            c.error(a.span(), "server.admin_listen", msg);
        }
        Some(addr)
    });
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, t)| cidr(c, t, &format!("server.trusted_proxies[{i}]")))
        .collect();
    let log_level = match &s.log_level {
        Some(l) => {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(l.get_ref()) {
                let msg = format!(
                    "invalid log filter \"{}\" ({e}); expected a level (error, warn, info, debug, trace) or directives like \"info,fulcrum=debug\"",
                    l.get_ref()
                );
                c.error(l.span(), "server.log_level", msg);
            }
            l.get_ref().clone()
        }
        None => DEFAULT_LOG_LEVEL.to_owned(),
    };
    ServerConfig {
        listen,
        threads,
        admin_listen,
        trusted_proxies,
        grace_period: s.grace_period.map_or(DEFAULT_GRACE_PERIOD, |d| d.0),
        max_request_body: s.max_request_body.map_or(DEFAULT_MAX_REQUEST_BODY, |b| b.0),
        log_level,
    }
}

fn listen_addr(c: &mut Checker, a: &Spanned<String>, field: &str) -> Option<SocketAddr> {
    match a.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let msg = format!(
                "invalid listen address \"{}\"; expected IP:PORT like \"127.0.0.1:8080\" or \"[::]:8080\"",
                a.get_ref()
            );
            c.error(a.span(), field, msg);
            None
        }
    }
}

fn cidr(c: &mut Checker, t: &Spanned<String>, field: &str) -> Option<IpNet> {
    let s = t.get_ref().trim();
    let parsed = s
        .parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from));
    match parsed {
        // An IPv4-mapped network (::ffff:10.0.0.0/104) means its IPv4 network: peers are
        // compared in their IPv4 form.
        Ok(IpNet::V6(v6)) if v6.prefix_len() >= 96 && v6.addr().to_ipv4_mapped().is_some() => {
            let v4 = v6
                .addr()
                .to_ipv4_mapped()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .ok()
                .map(|n| IpNet::V4(n.trunc()))
        }
        Ok(net) => Some(net.trunc()),
        Err(_) => {
            let msg = format!(
                "invalid CIDR \"{s}\"; expected a network like \"10.0.0.0/8\", \"fd00::/8\" or a single IP"
            );
            c.error(t.span(), field, msg);
            None
        }
    }
}

fn upstream(c: &mut Checker, name: &str, u: &UpstreamSection) -> UpstreamConfig {
    let field = format!("upstream.{name}");
    if u.backends.get_ref().is_empty() {
        let msg = "an upstream needs at least one backend, e.g. backends = [{ addr = \"127.0.0.1:9001\" }]";
        c.error(u.backends.span(), format!("{field}.backends"), msg);
    }
    let mut backends: Vec<BackendConfig> = Vec::new();
    for (i, b) in u.backends.get_ref().iter().enumerate() {
        let bfield = format!("{field}.backends[{i}]");
        let weight = match &b.weight {
            None => DEFAULT_WEIGHT,
            Some(w) if (1..=MAX_WEIGHT).contains(w.get_ref()) => *w.get_ref(),
            Some(w) => {
                let msg = format!("weight must be between 1 and {MAX_WEIGHT} (got {}); remove the backend to stop sending it traffic", w.get_ref());
                c.error(w.span(), format!("{bfield}.weight"), msg);
                continue;
            }
        };
        let Some(addr) = backend_addr(c, &b.addr, &format!("{bfield}.addr")) else {
            continue;
        };
        if let Some(prev) = backends.iter().position(|p| p.addr == addr) {
            let msg = format!("{addr} is already backends[{prev}] of this upstream");
            c.error(b.addr.span(), format!("{bfield}.addr"), msg);
            continue;
        }
        backends.push(BackendConfig {
            name: b.addr.get_ref().clone(),
            addr,
            weight,
        });
    }
    let balance = u
        .balance
        .as_ref()
        .map_or_else(BalanceKind::default, |b| *b.get_ref());
    let (hash_key, hash_balance_factor) = hashing(c, &field, balance, u);
    UpstreamConfig {
        name: name.to_owned(),
        balance,
        hash_key,
        hash_balance_factor,
        backends,
        connect_timeout: positive(
            c,
            &u.connect_timeout,
            format!("{field}.connect_timeout"),
            DEFAULT_CONNECT_TIMEOUT,
        ),
        read_timeout: positive(
            c,
            &u.read_timeout,
            format!("{field}.read_timeout"),
            DEFAULT_READ_TIMEOUT,
        ),
        write_timeout: positive(
            c,
            &u.write_timeout,
            format!("{field}.write_timeout"),
            DEFAULT_WRITE_TIMEOUT,
        ),
        // "0s" is allowed: no pooling, a new backend connection per request.
        idle_timeout: u
            .idle_timeout
            .as_ref()
            .map_or(DEFAULT_IDLE_TIMEOUT, |d| d.get_ref().0),
        panic_threshold: u.panic_threshold.as_ref().map_or(0, |p| {
            percent(c, p, &format!("{field}.panic_threshold"), 100)
        }),
        health_check: u.health_check.as_ref().map(|h| health_check(c, &field, h)),
        outlier: u.outlier.as_ref().map(|o| outlier(c, &field, o)),
    }
}

/// A duration that must be longer than zero (timeouts, intervals, ejection times).
fn positive(
    c: &mut Checker,
    d: &Option<Spanned<HumanDuration>>,
    field: String,
    default: Duration,
) -> Duration {
    match d {
        Some(d) if d.get_ref().0.is_zero() => {
            c.error(d.span(), field, "must be longer than 0s, e.g. \"2s\"");
            default
        }
        Some(d) => d.get_ref().0,
        None => default,
    }
}

/// A percentage 0..=max; out of range is reported and read as `max`.
fn percent(c: &mut Checker, p: &Spanned<u32>, field: &str, max: u32) -> u32 {
    let v = *p.get_ref();
    if v > max {
        c.error(
            p.span(),
            field,
            format!("must be a percentage between 0 and {max} (got {v})"),
        );
        return max;
    }
    v
}

/// A count that must be at least 1.
fn at_least_one(c: &mut Checker, v: Option<&Spanned<u32>>, field: String, default: u32) -> u32 {
    match v {
        None => default,
        Some(n) if *n.get_ref() >= 1 => *n.get_ref(),
        Some(n) => {
            c.error(n.span(), field, "must be at least 1");
            1
        }
    }
}

fn health_check(c: &mut Checker, upstream: &str, h: &HealthCheckSection) -> HealthCheckConfig {
    let field = format!("{upstream}.health_check");
    let kind = h.kind.unwrap_or_default();
    if kind == ProbeKind::Tcp {
        let http_only = [
            ("path", h.path.as_ref().map(|p| p.span())),
            ("host", h.host.as_ref().map(|p| p.span())),
            ("expect_status", h.expect_status.as_ref().map(|p| p.span())),
        ];
        for (key, span) in http_only {
            if let Some(span) = span {
                c.error(span, format!("{field}.{key}"), format!("{key} applies only to kind = \"http\" (a tcp check only opens a connection)"));
            }
        }
    }
    let path = match &h.path {
        Some(p) if !p.get_ref().starts_with('/') => {
            let msg = format!(
                "path \"{}\" must start with \"/\", e.g. \"/healthz\"",
                p.get_ref()
            );
            c.error(p.span(), format!("{field}.path"), msg);
            DEFAULT_HEALTH_PATH.to_owned()
        }
        Some(p) => p.get_ref().clone(),
        None => DEFAULT_HEALTH_PATH.to_owned(),
    };
    let expect_status = match &h.expect_status {
        None => vec![StatusMatch::Class(2)],
        Some(list) => {
            if list.get_ref().is_empty() {
                c.error(
                    list.span(),
                    format!("{field}.expect_status"),
                    "needs at least one status, e.g. [200] or [\"2xx\"]",
                );
            }
            list.get_ref()
                .iter()
                .enumerate()
                .filter_map(|(i, v)| status_match(c, v, &format!("{field}.expect_status[{i}]")))
                .collect()
        }
    };
    let jitter = match &h.jitter {
        None => DEFAULT_HEALTH_JITTER,
        Some(j) => {
            let parsed = j
                .get_ref()
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u32>().ok());
            match parsed {
                Some(p) if p <= MAX_HEALTH_JITTER => p,
                _ => {
                    let msg = format!("invalid jitter \"{}\"; expected a percentage of the interval from \"0%\" to \"{MAX_HEALTH_JITTER}%\"", j.get_ref());
                    c.error(j.span(), format!("{field}.jitter"), msg);
                    0
                }
            }
        }
    };
    let interval = positive(
        c,
        &h.interval,
        format!("{field}.interval"),
        DEFAULT_HEALTH_INTERVAL,
    );
    let timeout = positive(
        c,
        &h.timeout,
        format!("{field}.timeout"),
        DEFAULT_HEALTH_TIMEOUT,
    );
    HealthCheckConfig {
        kind,
        path,
        host: h.host.as_ref().map(|h| h.get_ref().clone()),
        expect_status,
        interval,
        timeout,
        jitter: f64::from(jitter) / 100.0,
        healthy_threshold: at_least_one(
            c,
            h.healthy_threshold.as_ref(),
            format!("{field}.healthy_threshold"),
            DEFAULT_HEALTHY_THRESHOLD,
        ),
        unhealthy_threshold: at_least_one(
            c,
            h.unhealthy_threshold.as_ref(),
            format!("{field}.unhealthy_threshold"),
            DEFAULT_UNHEALTHY_THRESHOLD,
        ),
    }
}

fn status_match(c: &mut Checker, v: &Spanned<toml::Value>, field: &str) -> Option<StatusMatch> {
    let parsed = match v.get_ref() {
        toml::Value::Integer(n) if (100..=599).contains(n) => Some(StatusMatch::Code(*n as u16)),
        toml::Value::String(s) => {
            let b = s.as_bytes();
            (b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && b[1..].eq_ignore_ascii_case(b"xx"))
                .then(|| StatusMatch::Class(u16::from(b[0] - b'0')))
        }
        _ => None,
    };
    if parsed.is_none() {
        let msg = format!(
            "invalid status {}; expected a code from 100 to 599 (200) or a class (\"2xx\")",
            v.get_ref()
        );
        c.error(v.span(), field, msg);
    }
    parsed
}

fn outlier(c: &mut Checker, upstream: &str, o: &OutlierSection) -> OutlierConfig {
    let field = format!("{upstream}.outlier");
    let base = positive(
        c,
        &o.base_ejection,
        format!("{field}.base_ejection"),
        DEFAULT_BASE_EJECTION,
    );
    let max = positive(
        c,
        &o.max_ejection,
        format!("{field}.max_ejection"),
        DEFAULT_MAX_EJECTION.max(base),
    );
    if let Some(m) = o.max_ejection.as_ref().filter(|_| max < base) {
        let msg = format!("max_ejection ({max:?}) is shorter than base_ejection ({base:?}); it caps every ejection, so it must be at least as long");
        c.error(m.span(), format!("{field}.max_ejection"), msg);
    }
    OutlierConfig {
        consecutive_failures: at_least_one(
            c,
            o.consecutive_failures.as_ref(),
            format!("{field}.consecutive_failures"),
            DEFAULT_CONSECUTIVE_FAILURES,
        ),
        base_ejection: base,
        max_ejection: max,
        max_ejected_percent: o
            .max_ejected_percent
            .as_ref()
            .map_or(DEFAULT_MAX_EJECTED_PERCENT, |p| {
                percent(c, p, &format!("{field}.max_ejected_percent"), 100)
            }),
    }
}

/// `hash_key` and `hash_balance_factor`, which only the hash strategies take.
fn hashing(
    c: &mut Checker,
    field: &str,
    balance: BalanceKind,
    u: &UpstreamSection,
) -> (Option<HashKey>, Option<f64>) {
    let hashed = matches!(balance, BalanceKind::ConsistentHash | BalanceKind::IpHash);
    let key = match (&u.hash_key, balance) {
        (None, BalanceKind::ConsistentHash) => {
            let place = u
                .balance
                .as_ref()
                .map_or_else(|| u.backends.span(), |b| b.span());
            let msg = format!(
                "balance = \"consistent_hash\" needs hash_key = {}",
                HashKey::ACCEPTED
            );
            c.error(place, format!("{field}.hash_key"), msg);
            None
        }
        (Some(k), BalanceKind::ConsistentHash) => match HashKey::parse(k.get_ref()) {
            Ok(key) => Some(key),
            Err(msg) => {
                c.error(k.span(), format!("{field}.hash_key"), msg);
                None
            }
        },
        (Some(k), _) => {
            let msg = "hash_key applies only to balance = \"consistent_hash\" (ip_hash always hashes the client IP)";
            c.error(k.span(), format!("{field}.hash_key"), msg);
            None
        }
        (None, BalanceKind::IpHash) => Some(HashKey::ClientIp),
        (None, _) => None,
    };
    let factor = u.hash_balance_factor.as_ref().and_then(|f| {
        let v = *f.get_ref();
        let field = format!("{field}.hash_balance_factor");
        if !hashed {
            c.error(f.span(), field, "hash_balance_factor applies only to balance = \"consistent_hash\" or \"ip_hash\"");
            None
        } else if !(MIN_BALANCE_FACTOR..=MAX_BALANCE_FACTOR).contains(&v) {
            let msg = format!("hash_balance_factor must be between {MIN_BALANCE_FACTOR} and {MAX_BALANCE_FACTOR} (got {v}); 1.25 is a common choice");
            c.error(f.span(), field, msg);
            None
        } else {
            Some(v)
        }
    });
    (key, factor)
}

/// `host:port` → one address. A name is resolved now; an IPv4 result is preferred, as most
/// backends listen on IPv4 even where "localhost" resolves to ::1 first.
fn backend_addr(c: &mut Checker, a: &Spanned<String>, field: &str) -> Option<SocketAddr> {
    let s = a.get_ref().trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr);
    }
    let accepted = "expected HOST:PORT like \"127.0.0.1:9001\" or \"backend.internal:80\"";
    let has_port = s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        c.error(
            a.span(),
            field,
            format!("invalid backend address \"{s}\"; {accepted}"),
        );
        return None;
    }
    match s.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            let pick = addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .copied();
            if pick.is_none() {
                c.error(a.span(), field, format!("\"{s}\" resolved to no address"));
            }
            pick
        }
        Err(e) => {
            c.error(
                a.span(),
                field,
                format!("cannot resolve \"{s}\": {e}; {accepted}"),
            );
            None
        }
    }
}

fn routes(
    c: &mut Checker,
    routes: &[Spanned<RouteSection>],
    upstreams: &[&str],
) -> Vec<RouteConfig> {
    let mut out: Vec<RouteConfig> = Vec::new();
    // (host, path) → index of the first route that claimed it; name → index.
    let mut seen: HashMap<(HostPattern, String), usize> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, spanned) in routes.iter().enumerate() {
        let r = spanned.get_ref();
        let field = format!("route[{i}]");
        let host = match &r.host {
            None => Some(HostPattern::Any),
            Some(h) => host_pattern(c, h, &format!("{field}.host")),
        };
        let path = match &r.path {
            None => Some(DEFAULT_PATH.to_owned()),
            Some(p) if p.get_ref().starts_with('/') => Some(p.get_ref().clone()),
            Some(p) => {
                let msg = format!(
                    "path \"{}\" must start with \"/\", e.g. \"/api/\"",
                    p.get_ref()
                );
                c.error(p.span(), format!("{field}.path"), msg);
                None
            }
        };
        let upstream = upstreams.iter().position(|u| *u == r.upstream.get_ref());
        if upstream.is_none() {
            let defined = if upstreams.is_empty() {
                "none is defined; add an [upstream.NAME] table".to_owned()
            } else {
                format!("defined upstreams: {}", upstreams.join(", "))
            };
            let msg = format!(
                "upstream \"{}\" is not defined; {defined}",
                r.upstream.get_ref()
            );
            c.error(r.upstream.span(), format!("{field}.upstream"), msg);
        }
        let (Some(host), Some(path), Some(upstream)) = (host, path, upstream) else {
            continue;
        };
        let name = match &r.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                c.error(
                    n.span(),
                    format!("{field}.name"),
                    "name must not be empty (or leave it out)",
                );
                continue;
            }
            Some(n) => n.get_ref().clone(),
            None => format!("{}{}", host.display(), path),
        };
        let place = r
            .path
            .as_ref()
            .map(|p| p.span())
            .unwrap_or_else(|| spanned.span());
        if let Some(first) = seen.get(&(host.clone(), path.clone())) {
            let msg = format!(
                "duplicate route: route[{first}] already matches host \"{}\" and path \"{path}\"",
                host.display()
            );
            c.error(place, field, msg);
            continue;
        }
        if let Some(first) = names.get(&name) {
            let span = r.name.as_ref().map_or(place, |n| n.span());
            let msg = format!("duplicate route name \"{name}\": route[{first}] has it already");
            c.error(span, format!("{field}.name"), msg);
            continue;
        }
        seen.insert((host.clone(), path.clone()), i);
        names.insert(name.clone(), i);
        let host_rewrite = r.host_rewrite.as_ref().and_then(|h| {
            let v = h.get_ref().trim();
            let valid = !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                let msg = format!("invalid host_rewrite \"{}\"; expected a host like \"api.internal\" or \"api.internal:8080\"", h.get_ref());
                c.error(h.span(), format!("{field}.host_rewrite"), msg);
            }
            valid.then(|| v.to_owned())
        });
        out.push(RouteConfig {
            name,
            host,
            path,
            strip_prefix: r.strip_prefix.unwrap_or(false),
            host_rewrite,
            upstream,
            retries: r.retries.unwrap_or(DEFAULT_RETRIES),
            timeout: positive(
                c,
                &r.timeout,
                format!("{field}.timeout"),
                DEFAULT_ROUTE_TIMEOUT,
            ),
        });
    }
    out
}

fn host_pattern(c: &mut Checker, h: &Spanned<String>, field: &str) -> Option<HostPattern> {
    let raw = h.get_ref().trim().to_ascii_lowercase();
    let (wildcard, name) = match raw.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw.as_str()),
    };
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    };
    let bracketed_ipv6 = |n: &str| {
        n.strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    };
    let problem = if name.starts_with('[') && !bracketed_ipv6(name) {
        Some("an IPv6 host is written in brackets without a port, e.g. \"[2001:db8::1]\"")
    } else if name.contains(':') && !name.starts_with('[') {
        Some("must not include a port (the port is ignored when matching)")
    } else if name.contains('*') {
        Some("a wildcard is only accepted as the first label, as in \"*.example.com\"")
    } else if !name.starts_with('[') && !name.split('.').all(valid_label) {
        Some("expected a host name like \"api.example.com\" or \"*.example.com\"")
    } else {
        None
    };
    if let Some(p) = problem {
        c.error(
            h.span(),
            field,
            format!("invalid host \"{}\": {p}", h.get_ref()),
        );
        return None;
    }
    Some(if wildcard {
        HostPattern::Wildcard(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_owned())
    })
}
