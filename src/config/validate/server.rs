//! `[server]`: listeners and process-wide settings.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use toml::Spanned;

use super::listen::listen_addr;
use super::{positive, tls, Checker};
use crate::config::certs::Files;
use crate::config::runtime::*;
use crate::config::schema::*;
use crate::config::units::ByteSize;

/// Validates `[server]`; records in `places` where the keys a reload cannot change (and
/// `access_log`, whose file a reload opens) were written.
pub(super) fn server(
    c: &mut Checker,
    s: ServerSection,
    places: &mut Places,
    files: &mut Files,
) -> ServerConfig {
    let spans = [
        ("server.listen", s.listen.as_ref().map(|l| l.span())),
        (
            "server.admin_listen",
            s.admin_listen.as_ref().map(|a| a.span()),
        ),
        ("server.threads", s.threads.as_ref().map(|t| t.span())),
        (
            "server.upgrade_sock",
            s.upgrade_sock.as_ref().map(|u| u.span()),
        ),
        ("server.access_log", s.access_log.as_ref().map(|a| a.span())),
        (
            "server.tls",
            s.tls.as_ref().and_then(|t| t.first()).map(|t| t.span()),
        ),
        ("server.h2c", s.h2c.as_ref().map(|h| h.span())),
        (
            "server.max_config_size",
            s.max_config_size.as_ref().map(|m| m.span()),
        ),
    ];
    for (key, span) in spans {
        if let Some(span) = span {
            places.0.insert(key, c.place(span));
        }
    }
    let listen = match &s.listen {
        None => vec![DEFAULT_LISTEN
            .parse()
            .expect("default listen address parses")],
        Some(list) => {
            let items = list.get_ref().items(list.span());
            if items.is_empty() {
                c.error(
                    list.span(),
                    "server.listen",
                    "needs at least one address, e.g. [\"0.0.0.0:8080\"]",
                );
            }
            let mut out: Vec<SocketAddr> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (i, a) in items.iter().enumerate() {
                let field = element("server.listen", list.get_ref(), i);
                if let Some(addr) = listen_addr(c, a, &field) {
                    if !seen.insert(addr) {
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
        Some(t) if *t.get_ref() > MAX_THREADS => {
            let msg = format!(
                "must be at most {MAX_THREADS} (got {}); one per CPU is what a proxy needs, and absent means that",
                t.get_ref()
            );
            c.error(t.span(), "server.threads", msg);
            MAX_THREADS
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
    let trusted_proxies = match &s.trusted_proxies {
        None => Vec::new(),
        Some(t) => (t.get_ref().items(t.span()).iter().enumerate())
            .filter_map(|(i, p)| cidr(c, p, &element("server.trusted_proxies", t.get_ref(), i)))
            .collect(),
    };
    let log_level = match &s.log_level {
        Some(l) => {
            if let Some(word) = bare_non_level(l.get_ref()) {
                let msg = format!(
                    "unknown level \"{word}\" in log_level \"{}\" (it would be read as a target name and turn every other log off); expected error, warn, info, debug, trace or off, or TARGET=LEVEL like \"info,fulcrum::health=debug\"",
                    l.get_ref()
                );
                c.error(l.span(), "server.log_level", msg);
            } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(l.get_ref()) {
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
    let taken: Vec<SocketAddr> = listen.iter().copied().chain(admin_listen).collect();
    let tls = tls::listeners(c, s.tls.as_deref().unwrap_or_default(), &taken, files);
    let redirect_http_to_https = match &s.redirect_http_to_https {
        Some(r) if *r.get_ref() && tls.is_empty() => {
            let msg = "needs a TLS listener to redirect to; add a [[server.tls]] with listen and certificates";
            c.error(r.span(), "server.redirect_http_to_https", msg);
            false
        }
        Some(r) => *r.get_ref(),
        None => false,
    };
    ServerConfig {
        tls,
        redirect_http_to_https,
        h2c: s.h2c.as_ref().is_some_and(|h| *h.get_ref()),
        listen,
        threads,
        admin_listen,
        trusted_proxies,
        grace_period: s.grace_period.map_or(DEFAULT_GRACE_PERIOD, |d| d.0),
        max_request_body: s.max_request_body.map_or(DEFAULT_MAX_REQUEST_BODY, |b| b.0),
        log_level,
        upgrade_sock: upgrade_sock(c, s.upgrade_sock.as_ref()),
        access_log: access_log(c, s.access_log.as_ref()),
        access_log_format: match &s.access_log_format {
            None => AccessLogFormat::Json,
            Some(f) => {
                match f.get_ref().as_str() {
                    "json" => AccessLogFormat::Json,
                    "combined" => AccessLogFormat::Combined,
                    other => {
                        let msg = format!("unknown access log format \"{other}\"; expected \"json\" or \"combined\"");
                        c.error(f.span(), "server.access_log_format", msg);
                        AccessLogFormat::Json
                    }
                }
            }
        },
        access_log_query: s.access_log_query.unwrap_or(false),
        client: client_limits(c, &s),
        max_connections: count_in_range(
            c,
            &s.max_connections,
            "server.max_connections",
            usize::MAX,
            DEFAULT_MAX_CONNECTIONS,
        ),
        max_config_size: max_config_size(c, s.max_config_size.as_ref()),
        merge_slashes: match &s.merge_slashes {
            Some(m) if !*m.get_ref() => {
                let msg = "false: a path like //admin/ does not match an /admin/ route, but a backend that merges slashes serves it as /admin/";
                c.warn(m.span(), "server.merge_slashes", msg);
                false
            }
            _ => true,
        },
    }
}

fn client_limits(c: &mut Checker, s: &ServerSection) -> ClientLimits {
    let max_header_size = match &s.max_header_size {
        Some(b) if !(1024..=MAX_HEADER_SIZE_LIMIT).contains(&b.get_ref().0) => {
            let msg = format!(
                "must be between 1KiB and 1MiB (pingora's own limit), e.g. \"32KiB\" (got {} bytes)",
                b.get_ref().0
            );
            c.error(b.span(), "server.max_header_size", msg);
            DEFAULT_MAX_HEADER_SIZE
        }
        Some(b) => b.get_ref().0,
        None => DEFAULT_MAX_HEADER_SIZE,
    };
    ClientLimits {
        request_header_timeout: positive(
            c,
            &s.request_header_timeout,
            "server.request_header_timeout".into(),
            DEFAULT_REQUEST_HEADER_TIMEOUT,
        ),
        keepalive_timeout: positive(
            c,
            &s.keepalive_timeout,
            "server.keepalive_timeout".into(),
            DEFAULT_KEEPALIVE_TIMEOUT,
        ),
        client_body_timeout: positive(
            c,
            &s.client_body_timeout,
            "server.client_body_timeout".into(),
            DEFAULT_CLIENT_BODY_TIMEOUT,
        ),
        client_body_min_rate: s
            .client_body_min_rate
            .as_ref()
            .map_or(DEFAULT_CLIENT_BODY_MIN_RATE, |r| r.get_ref().0),
        send_timeout: positive(
            c,
            &s.send_timeout,
            "server.send_timeout".into(),
            DEFAULT_SEND_TIMEOUT,
        ),
        max_header_size: max_header_size as usize,
        max_headers: count_in_range(
            c,
            &s.max_headers,
            "server.max_headers",
            MAX_HEADERS_LIMIT,
            DEFAULT_MAX_HEADERS,
        ),
    }
}

/// `max_config_size`: 1 KiB to 1 GiB.
fn max_config_size(c: &mut Checker, m: Option<&Spanned<ByteSize>>) -> u64 {
    let Some(m) = m else {
        return DEFAULT_MAX_CONFIG_SIZE;
    };
    let bytes = m.get_ref().0;
    if !(MIN_CONFIG_SIZE_LIMIT..=MAX_CONFIG_SIZE_LIMIT).contains(&bytes) {
        let msg = format!("must be between 1KiB and 1GiB, e.g. \"64MiB\" (got {bytes} bytes)");
        c.error(m.span(), "server.max_config_size", msg);
        return DEFAULT_MAX_CONFIG_SIZE;
    }
    bytes
}

/// A count between 1 and `max`; anything else is reported and read as `default`.
fn count_in_range(
    c: &mut Checker,
    n: &Option<Spanned<usize>>,
    field: &str,
    max: usize,
    default: usize,
) -> usize {
    match n {
        Some(n) if *n.get_ref() == 0 || *n.get_ref() > max => {
            let msg = if max == usize::MAX {
                format!("must be at least 1 (got {})", n.get_ref())
            } else {
                format!("must be between 1 and {max} (got {})", n.get_ref())
            };
            c.error(n.span(), field, msg);
            default
        }
        Some(n) => *n.get_ref(),
        None => default,
    }
}

/// `access_log`: a destination keyword or a file, relative to the config file's directory.
fn access_log(c: &mut Checker, a: Option<&Spanned<String>>) -> AccessLogTarget {
    let Some(a) = a else {
        return AccessLogTarget::Stdout;
    };
    match a.get_ref().as_str() {
        "stdout" => AccessLogTarget::Stdout,
        "stderr" => AccessLogTarget::Stderr,
        "off" => AccessLogTarget::Off,
        "" => {
            let msg = "empty; expected \"stdout\", \"stderr\", \"off\" or a file path";
            c.error(a.span(), "server.access_log", msg);
            AccessLogTarget::Off
        }
        path => AccessLogTarget::File(c.relative(path)),
    }
}

/// The first directive of a `tracing` filter that is a bare word but neither a level nor one of
/// fulcrum's or pingora's targets, in a filter that gives no default level otherwise: almost
/// always a misspelt level ("verbose", "warning"). Beside a level ("warn,hyper") a bare word is
/// a target, as tracing reads it.
fn bare_non_level(filter: &str) -> Option<&str> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let is_level = |d: &str| {
        LEVELS.contains(&d.to_ascii_lowercase().as_str()) || d.parse::<u8>().is_ok_and(|n| n <= 5)
    };
    let mut bare = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains('=') && !d.contains('['));
    if bare.clone().any(is_level) {
        return None;
    }
    bare.find(|d| !d.starts_with("fulcrum") && !d.starts_with("pingora"))
}

fn upgrade_sock(c: &mut Checker, u: Option<&Spanned<String>>) -> Option<PathBuf> {
    let u = u?;
    let path = PathBuf::from(u.get_ref());
    if !path.is_absolute() {
        let msg = format!(
            "upgrade_sock \"{}\" must be an absolute path, e.g. \"/run/fulcrum/upgrade.sock\"",
            u.get_ref()
        );
        c.error(u.span(), "server.upgrade_sock", msg);
    }
    Some(path)
}

/// The field name of element `i` of a list that may be written as one string: `field[i]`, or
/// `field` for a lone string.
fn element(field: &str, value: &OneOrMany, i: usize) -> String {
    if value.is_list() {
        format!("{field}[{i}]")
    } else {
        field.to_owned()
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

#[cfg(test)]
mod tests {
    use super::bare_non_level;

    #[test]
    fn only_a_bare_word_that_leaves_no_default_level_is_flagged() {
        assert_eq!(bare_non_level("warning"), Some("warning"));
        assert_eq!(bare_non_level("verbose,fulcrum=debug"), Some("verbose"));
        for ok in [
            "info",
            "3",
            "warn,hyper",
            "WARN",
            "fulcrum",
            "info,fulcrum::health=debug",
        ] {
            assert_eq!(bare_non_level(ok), None, "{ok}");
        }
    }
}
