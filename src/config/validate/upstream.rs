//! `[upstream.NAME]`: a pool of backends, its strategy and its connection settings.

use std::net::SocketAddr;

use toml::Spanned;

use super::{health, nonzero_count, percent, positive, protect, Checker, BACKEND_ADDR_ACCEPTED};
use crate::config::resolve::{BackendSource, Target};
use crate::config::runtime::*;
use crate::config::schema::*;

/// Validates upstream number `index`, named `name`. Its backends go to `sources`, for `resolve`;
/// the returned config has none yet.
pub(super) fn upstream(
    c: &mut Checker,
    index: usize,
    name: &str,
    u: &UpstreamSection,
    sources: &mut Vec<BackendSource>,
    files: &mut super::Files,
) -> UpstreamConfig {
    let field = format!("upstream.{name}");
    if u.backends.get_ref().is_empty() {
        let msg = "an upstream needs at least one backend, e.g. backends = [{ addr = \"127.0.0.1:9001\" }]";
        c.error(u.backends.span(), format!("{field}.backends"), msg);
    }
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
        let field = format!("{bfield}.addr");
        let Some(target) = backend_target(c, &b.addr, &field) else {
            continue;
        };
        sources.push(BackendSource {
            upstream: index,
            index: i,
            name: b.addr.get_ref().clone(),
            weight,
            target,
            span: b.addr.span(),
            field,
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
        backends: Vec::new(),
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
        health_check: u
            .health_check
            .as_ref()
            .map(|h| health::health_check(c, &field, h)),
        outlier: health::outlier(c, &field, u.outlier.as_ref()),
        circuit_breaker: u
            .circuit_breaker
            .as_ref()
            .map(|b| protect::circuit_breaker(c, &field, b)),
        max_inflight: u
            .max_inflight
            .as_ref()
            .map(|m| nonzero_count(c, Some(m), format!("{field}.max_inflight"), 1)),
        dns_refresh: super::positive(
            c,
            &u.dns_refresh,
            format!("{field}.dns_refresh"),
            DEFAULT_DNS_REFRESH,
        ),
        unresolved: Vec::new(),
        named: false,
        tls: super::tls::upstream(c, index, &field, u, files),
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

/// `host:port` → an address, or a name for `resolve`.
fn backend_target(c: &mut Checker, a: &Spanned<String>, field: &str) -> Option<Target> {
    let s = a.get_ref().trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(Target::Addr(addr));
    }
    if let Some(msg) = not_host_port(s) {
        c.error(a.span(), field, msg);
        return None;
    }
    let has_port = s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        let msg = format!("invalid backend address \"{s}\"; {BACKEND_ADDR_ACCEPTED}");
        c.error(a.span(), field, msg);
        return None;
    }
    Some(Target::Name(s.to_owned()))
}

/// What is wrong with a backend `addr` written as a URL (nginx's `proxy_pass http://...` habit):
/// a scheme, or a path after the address; or a Unix socket path. `None` when it is none of
/// these. The addr it suggests is itself a valid one, or `HOST:PORT` when none is sure.
fn not_host_port(s: &str) -> Option<String> {
    if s.to_ascii_lowercase().starts_with("unix:") || (s.starts_with('/') && !s.starts_with("//")) {
        return Some(format!(
            "backend address \"{s}\" is a Unix socket; backends are reached over TCP only: write addr = \"HOST:PORT\""
        ));
    }
    let url = s
        .split_once("://")
        .or_else(|| s.strip_prefix("//").map(|rest| ("", rest)));
    if let Some((scheme, rest)) = url {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let fix = match scheme.to_ascii_lowercase().as_str() {
            "https" => format!(
                "write addr = \"{}\" and tls = true on the upstream for HTTPS",
                suggested(authority, Some(443))
            ),
            "http" => format!("write addr = \"{}\"", suggested(authority, Some(80))),
            _ => format!(
                "write addr = \"{}\", and tls = true on the upstream for HTTPS",
                suggested(authority, None)
            ),
        };
        return Some(format!(
            "backend address \"{s}\" has a scheme ({scheme}://); an addr is HOST:PORT, not a URL: {fix}"
        ));
    }
    let (host_port, path) = s.split_at(s.find(['/', '?', '#'])?);
    Some(format!(
        "backend address \"{s}\" has a path ({path}) after the address; an addr is HOST:PORT only (the request's own path is forwarded): write addr = \"{}\"",
        suggested(host_port, None)
    ))
}

/// The addr to suggest for a URL's `authority`: without user info, a bare IPv6 address in
/// brackets, `port` added when it has none; `HOST:PORT` when that is not a valid addr.
fn suggested(authority: &str, port: Option<u16>) -> String {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = match host_port.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host_port}]"),
        Err(_) => host_port.to_owned(),
    };
    let addr = match port {
        Some(port) => with_port(&host_port, port),
        None => host_port,
    };
    let valid = addr.parse::<SocketAddr>().is_ok()
        || addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains([':', '[', ']', '/', '@'])
                && !port.starts_with('+')
                && port.parse::<u16>().is_ok()
        });
    if valid {
        addr
    } else {
        "HOST:PORT".to_owned()
    }
}

/// `host_port` with `port` added when it has none: `app.internal` → `app.internal:443`.
fn with_port(host_port: &str, port: u16) -> String {
    let has_port = match host_port.rsplit_once(':') {
        Some((host, p)) => p.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']')),
        None => false,
    };
    if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::not_host_port;

    #[test]
    fn a_url_is_refused_with_the_addr_to_write() {
        let https = not_host_port("https://app.internal/v1").unwrap();
        assert!(
            https.ends_with(
                "write addr = \"app.internal:443\" and tls = true on the upstream for HTTPS"
            ),
            "{https}"
        );
        let http = not_host_port("http://127.0.0.1:9001").unwrap();
        assert!(http.ends_with("write addr = \"127.0.0.1:9001\""), "{http}");
        let path = not_host_port("10.0.0.5:80/api").unwrap();
        assert!(
            path.contains("has a path (/api)") && path.ends_with("write addr = \"10.0.0.5:80\""),
            "{path}"
        );
        // Every suggestion is itself a valid addr, or HOST:PORT.
        let fixes = [
            ("app.internal/api", "HOST:PORT"),
            ("//app:80", "app:80"),
            ("http://", "HOST:PORT"),
            ("http:///x", "HOST:PORT"),
            ("http://::1", "[::1]:80"),
            ("https://user:pw@app.internal/", "app.internal:443"),
        ];
        for (addr, fix) in fixes {
            let got = not_host_port(addr).unwrap();
            assert!(got.contains(&format!("write addr = \"{fix}\"")), "{got}");
        }
        for socket in [
            "/run/app.sock",
            "unix:/run/app.sock",
            "unix:///run/app.sock",
        ] {
            let got = not_host_port(socket).unwrap();
            assert!(got.contains("is a Unix socket"), "{got}");
        }
        assert_eq!(not_host_port("backend.internal:80"), None);
        assert_eq!(not_host_port("[::1]:80"), None);
    }
}
