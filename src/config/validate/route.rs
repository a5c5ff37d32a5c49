//! `[[route]]`: which requests go to which upstream.

use std::collections::HashMap;

use toml::Spanned;

use super::host::{url_host, url_host_header};
use super::{positive, protect, Checker};
use crate::config::error::Kind;
use crate::config::runtime::*;
use crate::config::schema::*;

pub(super) fn routes(
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
        // The names come sorted (from the table's map): a binary search, not a scan per route.
        debug_assert!(upstreams.is_sorted());
        let upstream = upstreams
            .binary_search_by(|u| (*u).cmp(r.upstream.get_ref().as_str()))
            .ok();
        if upstream.is_none() {
            const SHOWN: usize = 20;
            let defined = match upstreams.len() {
                0 => "none is defined; add an [upstream.NAME] table".to_owned(),
                n if n <= SHOWN => format!("defined upstreams: {}", upstreams.join(", ")),
                n => format!(
                    "defined upstreams: {}, … ({} more)",
                    upstreams[..SHOWN].join(", "),
                    n - SHOWN
                ),
            };
            let msg = format!(
                "upstream \"{}\" is not defined; {defined}",
                r.upstream.get_ref()
            );
            let kind = Kind::UndefinedUpstream {
                name: r.upstream.get_ref().as_str().into(),
            };
            c.error_of(kind, r.upstream.span(), format!("{field}.upstream"), msg);
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
            if let Some(msg) = url_host_header(v, "host_rewrite") {
                c.error(h.span(), format!("{field}.host_rewrite"), msg);
                return None;
            }
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
            upgrade_idle_timeout: positive(
                c,
                &r.upgrade_idle_timeout,
                format!("{field}.upgrade_idle_timeout"),
                DEFAULT_UPGRADE_IDLE_TIMEOUT,
            ),
            rate_limit: r
                .rate_limit
                .as_ref()
                .and_then(|l| protect::rate_limit(c, &field, l)),
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
    if let Some(msg) = url_host(h.get_ref().trim()) {
        c.error(h.span(), field, msg);
        return None;
    }
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
