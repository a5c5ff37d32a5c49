//! Host + path routing. Precedence: the most specific host wins (exact name, then the longest
//! wildcard suffix, then routes without a host), and among the routes of that host the longest
//! matching path prefix wins. If no route of a more specific host matches the path, less specific
//! hosts are tried, so a catch-all route still serves paths an exact host does not claim.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::{HostPattern, RouteConfig};

/// Immutable routing table, built once per config.
#[derive(Debug, Default)]
pub struct Router {
    /// Lower-case host → route indices, longest path first.
    exact: HashMap<String, Vec<usize>>,
    /// (".example.com", route indices longest path first), longest suffix first.
    wildcard: Vec<(String, Vec<usize>)>,
    /// Routes without a host, longest path first.
    any: Vec<usize>,
    /// Path prefix of each route, by route index.
    paths: Vec<String>,
}

impl Router {
    pub fn new(routes: &[RouteConfig]) -> Router {
        let mut r = Router {
            paths: routes.iter().map(|r| r.path.clone()).collect(),
            ..Router::default()
        };
        // Suffix → its place in `wildcard`: a lookup per route, not a scan of the suffixes.
        let mut suffixes: HashMap<&str, usize> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            match &route.host {
                HostPattern::Any => r.any.push(i),
                HostPattern::Exact(h) => r.exact.entry(h.clone()).or_default().push(i),
                HostPattern::Wildcard(suffix) => match suffixes.get(suffix.as_str()) {
                    Some(&at) => r.wildcard[at].1.push(i),
                    None => {
                        suffixes.insert(suffix, r.wildcard.len());
                        r.wildcard.push((suffix.clone(), vec![i]));
                    }
                },
            }
        }
        let by_path_len = |ids: &mut Vec<usize>, paths: &[String]| {
            ids.sort_by_key(|&i| std::cmp::Reverse(paths[i].len()));
        };
        for ids in r.exact.values_mut() {
            by_path_len(ids, &r.paths);
        }
        for (_, ids) in r.wildcard.iter_mut() {
            by_path_len(ids, &r.paths);
        }
        by_path_len(&mut r.any, &r.paths);
        r.wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        r
    }

    /// The route for a request, by its `Host` (port ignored, any case) and path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<usize> {
        if let Some(host) = host.map(normalize_host).filter(|h| !h.is_empty()) {
            if let Some(i) = self
                .exact
                .get(host.as_ref())
                .and_then(|ids| self.longest(ids, path))
            {
                return Some(i);
            }
            for (suffix, ids) in &self.wildcard {
                if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                    if let Some(i) = self.longest(ids, path) {
                        return Some(i);
                    }
                }
            }
        }
        self.longest(&self.any, path)
    }

    fn longest(&self, ids: &[usize], path: &str) -> Option<usize> {
        ids.iter()
            .copied()
            .find(|&i| path.starts_with(self.paths[i].as_str()))
    }
}

/// `host[:port]` without its port; a bracketed IPv6 literal keeps its brackets.
pub fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    }
}

/// Drops the port and a trailing dot, and lower-cases (allocating only when needed).
fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = without_port(host);
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// A route of `host` and `path` with every other setting at a plain value, for tests (and the
/// fuzzing seam's).
#[cfg(test)]
pub(crate) fn plain_route(host: HostPattern, path: &str) -> RouteConfig {
    RouteConfig {
        name: format!("{}{path}", host.display()),
        host,
        path: path.to_owned(),
        strip_prefix: false,
        host_rewrite: None,
        upstream: 0,
        retries: 1,
        timeout: std::time::Duration::from_secs(1),
        upgrade_idle_timeout: std::time::Duration::from_secs(1),
        rate_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Router {
        use HostPattern::*;
        Router::new(&[
            plain_route(Any, "/"),                                      // 0
            plain_route(Any, "/static/"),                               // 1
            plain_route(Exact("api.example.com".into()), "/v1/"),       // 2
            plain_route(Exact("api.example.com".into()), "/v1/admin/"), // 3
            plain_route(Wildcard(".example.com".into()), "/"),          // 4
            plain_route(Wildcard(".eu.example.com".into()), "/"),       // 5
        ])
    }

    #[test]
    fn exact_host_then_longest_prefix() {
        let r = table();
        assert_eq!(r.route(Some("api.example.com"), "/v1/users"), Some(2));
        assert_eq!(r.route(Some("api.example.com"), "/v1/admin/x"), Some(3));
    }

    #[test]
    fn host_is_case_insensitive_and_port_is_ignored() {
        let r = table();
        assert_eq!(r.route(Some("API.Example.COM:8443"), "/v1/"), Some(2));
        assert_eq!(r.route(Some("api.example.com."), "/v1/"), Some(2));
    }

    #[test]
    fn unclaimed_path_falls_to_less_specific_hosts() {
        let r = table();
        assert_eq!(r.route(Some("api.example.com"), "/other"), Some(4));
    }

    #[test]
    fn longest_wildcard_suffix_wins_and_bare_domain_is_not_a_subdomain() {
        let r = table();
        assert_eq!(r.route(Some("x.eu.example.com"), "/"), Some(5));
        assert_eq!(r.route(Some("a.b.example.com"), "/"), Some(4));
        assert_eq!(r.route(Some("example.com"), "/"), Some(0));
    }

    #[test]
    fn no_host_uses_hostless_routes() {
        let r = table();
        assert_eq!(r.route(None, "/static/app.js"), Some(1));
        assert_eq!(r.route(Some("[::1]:8080"), "/"), Some(0));
    }

    #[test]
    fn no_match_is_none() {
        let r = Router::new(&[plain_route(HostPattern::Exact("a.test".into()), "/api/")]);
        assert_eq!(r.route(Some("a.test"), "/"), None);
        assert_eq!(r.route(Some("b.test"), "/api/"), None);
    }
}
