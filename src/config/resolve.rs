//! Backend host names → addresses: the one step of loading a config that does blocking network
//! IO (DNS). Validation is pure and leaves names here, so that the reload path can run this step
//! off the async workers, and so that validation can be tested and benchmarked without DNS.
//!
//! A name is resolved at every load, and again every `dns_refresh` (the reloader compares
//! [`Config::dns`] and applies a change through the reload path). Every address a name returns is
//! a backend of the pool with the configured weight (a headless service fans out); when a name
//! has IPv4 addresses only those are used (Envoy's `V4_PREFERRED`: most backends listen on IPv4
//! even where "localhost" resolves to ::1 first). A name that does not resolve is a warning, not
//! an error: the upstream serves its other backends (503 naming the host while it has none) and
//! gets the addresses once it resolves. Two backends of one upstream written as the same
//! address are an error; an address a name returns that another backend already has is skipped.
//!
//! For tests, `FULCRUM_HOSTS_FILE` names a file of `name address...` lines consulted before the
//! system resolver (read at every resolution, so a test can change what a name returns).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::Path;

use super::error::ConfigError;
use super::runtime::{BackendConfig, Config};

/// A validated config whose upstreams have no backends yet, and the backends as written.
pub(super) struct Unresolved {
    pub config: Config,
    pub backends: Vec<BackendSource>,
}

/// Where a backend's address comes from.
pub(super) enum Target {
    /// An IP literal with a port.
    Addr(SocketAddr),
    /// `host:port` with a host name.
    Name(String),
}

/// One backend as written in the file.
pub(super) struct BackendSource {
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// Index in the upstream's `backends` list in the file.
    pub index: usize,
    /// `addr` as written.
    pub name: String,
    pub weight: u32,
    pub target: Target,
    /// Of `addr`, for errors.
    pub span: Range<usize>,
    pub field: String,
}

/// Who answers for backend host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Names {
    /// `FULCRUM_HOSTS_FILE`, then the system resolver.
    System,
    /// Nobody: every name resolves to no address, without a lookup (the fuzz targets' loads).
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    Offline,
}

/// Resolves every backend of `u` into its upstream. Problems are returned beside the config,
/// which is complete but for the backends that failed.
/// `previous`: what the names resolved to in the config running now; a name whose lookup fails
/// keeps those addresses (as Envoy's STRICT_DNS and nginx's `resolve` do), so that a resolver
/// hiccup does not empty a pool.
pub(super) fn resolve(
    u: Unresolved,
    file: &Path,
    source: &str,
    previous: &[(String, Vec<SocketAddr>)],
    resolver: Names,
) -> (Config, Vec<ConfigError>) {
    let Unresolved {
        mut config,
        backends,
    } = u;
    let mut errors = Vec::new();
    // (upstream, address) → index in the file of the backend that has it.
    let mut seen: HashMap<(usize, SocketAddr), usize> = HashMap::new();
    let hosts = (resolver == Names::System).then(hosts_file).flatten();
    // What each name resolved to in the config running now: one lookup per backend, not a scan.
    let before: HashMap<&str, &Vec<SocketAddr>> = previous
        .iter()
        .filter(|(_, addrs)| !addrs.is_empty())
        .map(|(name, addrs)| (name.as_str(), addrs))
        .collect();
    // Each host is asked once per load, however many backends (and ports) name it.
    let mut answers: Answers = HashMap::new();
    let mut dns: Vec<(String, Vec<SocketAddr>)> = Vec::new();
    // Literal addresses first: a literal always wins, and what a name returns that a literal
    // has is skipped (whatever their order in the file), so no DNS answer is a config error.
    let (literals, names): (Vec<_>, Vec<_>) = backends
        .into_iter()
        .partition(|b| matches!(b.target, Target::Addr(_)));
    for b in literals.into_iter().chain(names) {
        let error = |message: String| {
            ConfigError::at(file, source, Some(b.span.clone()), b.field.clone(), message)
        };
        let addrs = match &b.target {
            Target::Addr(addr) => {
                if let Some(prev) = seen.insert((b.upstream, *addr), b.index) {
                    seen.insert((b.upstream, *addr), prev);
                    errors.push(error(format!(
                        "{addr} is already backends[{prev}] of this upstream"
                    )));
                    continue;
                }
                vec![*addr]
            }
            Target::Name(host_port) => {
                if let Some(u) = config.upstreams.get_mut(b.upstream) {
                    u.named = true;
                }
                let found = match resolver {
                    Names::System => lookup(host_port, hosts.as_ref(), &mut answers),
                    Names::Offline => Ok(Vec::new()),
                };
                let (addrs, unresolved) = match (found, before.get(host_port.as_str())) {
                    // An answer with no address is an answer: the name has none now.
                    (Ok(addrs), _) if addrs.is_empty() => (
                        addrs,
                        Some(format!("\"{host_port}\" resolves to no address")),
                    ),
                    (Ok(addrs), _) => (addrs, None),
                    (Err(message), Some(addrs)) => {
                        let message =
                            format!("{message}; keeping the {} address(es) it had", addrs.len());
                        config.warnings.push(error(message).warning());
                        ((*addrs).clone(), None)
                    }
                    (Err(message), None) => (Vec::new(), Some(message)),
                };
                if let Some(problem) = unresolved {
                    let message = format!("{problem}; the upstream gets its addresses when it resolves (every dns_refresh)");
                    config.warnings.push(error(message).warning());
                    if let Some(u) = config.upstreams.get_mut(b.upstream) {
                        u.unresolved.push(b.name.clone());
                    }
                }
                dns.push((host_port.clone(), addrs.clone()));
                // An address another backend of the upstream already has is not a second one.
                addrs
                    .into_iter()
                    .filter(|a| match seen.entry((b.upstream, *a)) {
                        Entry::Vacant(v) => {
                            v.insert(b.index);
                            true
                        }
                        Entry::Occupied(_) => false,
                    })
                    .collect()
            }
        };
        if let Some(u) = config.upstreams.get_mut(b.upstream) {
            for addr in addrs {
                u.backends.push(BackendConfig {
                    name: b.name.clone(),
                    addr,
                    weight: b.weight,
                });
            }
        }
    }
    dns.sort();
    // A name several upstreams use is one entry.
    dns.dedup();
    config.dns = dns;
    (config, errors)
}

/// The test resolver seam: `FULCRUM_HOSTS_FILE`, if set, as name → addresses (`None`: the word
/// `!fail`, a lookup that fails).
fn hosts_file() -> Option<HashMap<String, Option<Vec<IpAddr>>>> {
    let path = std::env::var_os("FULCRUM_HOSTS_FILE")?;
    let text = std::fs::read_to_string(path).ok()?;
    let mut map = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let Some(name) = words.next().filter(|w| !w.starts_with('#')) {
            let words: Vec<&str> = words.collect();
            let ips = (!words.contains(&"!fail"))
                .then(|| words.iter().filter_map(|w| w.parse().ok()).collect());
            map.insert(name.to_owned(), ips);
        }
    }
    Some(map)
}

/// Whether a lookup error is the resolver's answer that the name does not exist or has no
/// address (`EAI_NONAME`, `EAI_NODATA`), rather than a failure to ask (`EAI_AGAIN`, `EAI_FAIL`).
/// std reports getaddrinfo's code only through `gai_strerror`'s text (glibc's and musl's).
fn is_no_such_name(e: &std::io::Error) -> bool {
    let text = e.to_string();
    [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
    ]
    .iter()
    .any(|t| text.contains(t))
}

/// What each host resolved to during one load (or why it did not), by host.
type Answers = HashMap<String, Result<Vec<IpAddr>, String>>;

/// Every address `host:port` resolves to (IPv4 only when there is one), sorted; empty when the
/// name does not exist or has none; an error when the resolver could not be asked. The host's
/// answer is taken from `answers` when this load asked already, and kept there.
fn lookup(
    host_port: &str,
    hosts: Option<&HashMap<String, Option<Vec<IpAddr>>>>,
    answers: &mut Answers,
) -> Result<Vec<SocketAddr>, String> {
    // Validation let only `host:port` through as a name.
    let Some((host, port)) = host_port
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
    else {
        return Err(format!("cannot resolve \"{host_port}\": no port"));
    };
    let ips = match answers.get(host) {
        Some(answer) => answer,
        None => answers
            .entry(host.to_owned())
            .or_insert_with(|| lookup_host(host, hosts)),
    };
    let ips = ips
        .as_ref()
        .map_err(|e| format!("cannot resolve \"{host_port}\": {e}"))?;
    let mut addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    if addrs.iter().any(SocketAddr::is_ipv4) {
        addrs.retain(SocketAddr::is_ipv4);
    }
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// Every address of `host`: from `hosts` (`FULCRUM_HOSTS_FILE`) when it names it, else from the
/// system resolver; empty when the name does not exist or has none.
fn lookup_host(
    host: &str,
    hosts: Option<&HashMap<String, Option<Vec<IpAddr>>>>,
) -> Result<Vec<IpAddr>, String> {
    if let Some(ips) = hosts.and_then(|h| h.get(host)) {
        return ips
            .clone()
            .ok_or_else(|| "resolver failure (FULCRUM_HOSTS_FILE)".to_owned());
    }
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
        // The name does not exist, or has no address: an answer, not a failure to get one.
        Err(e) if is_no_such_name(&e) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[(&str, &[&str])]) -> HashMap<String, Option<Vec<IpAddr>>> {
        entries
            .iter()
            .map(|(n, ips)| {
                let fails = ips.contains(&"!fail");
                let ips = (!fails).then(|| ips.iter().map(|i| i.parse().unwrap()).collect());
                (n.to_string(), ips)
            })
            .collect()
    }

    #[test]
    fn a_name_is_every_address_it_returns_ipv4_first() {
        let h = hosts(&[
            ("two", &["10.0.0.2", "10.0.0.1"]),
            ("dual", &["::1", "10.0.0.9"]),
            ("six", &["::2", "::1"]),
        ]);
        let addrs = |n: &str| lookup(n, Some(&h), &mut Answers::new()).unwrap();
        let s = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert_eq!(addrs("two:80"), [s("10.0.0.1:80"), s("10.0.0.2:80")]);
        assert_eq!(addrs("dual:80"), [s("10.0.0.9:80")]);
        assert_eq!(addrs("six:80"), [s("[::1]:80"), s("[::2]:80")]);
        let empty = hosts(&[("none.invalid", &[]), ("down", &["!fail"])]);
        // A host is asked once per load, whatever the port.
        let mut answers = Answers::new();
        assert_eq!(lookup("two:80", Some(&h), &mut answers).unwrap().len(), 2);
        let again = lookup("two:81", Some(&h), &mut answers).unwrap();
        assert_eq!(again, [s("10.0.0.1:81"), s("10.0.0.2:81")]);
        assert_eq!(answers.len(), 1);
        assert_eq!(
            lookup("none.invalid:80", Some(&empty), &mut answers).unwrap(),
            []
        );
        assert!(lookup("down:80", Some(&empty), &mut answers).is_err());
        // The system resolver's "no such name" is an answer too.
        assert_eq!(
            lookup("no-such-host.invalid:80", None, &mut answers).unwrap(),
            []
        );
    }

    #[test]
    fn an_unresolvable_name_is_a_warning_and_the_config_still_loads() {
        let text = "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{ addr = \"127.0.0.1:1\" }, { addr = \"no-such-host.invalid:80\" }]\n";
        let config = crate::config::parse(text, Path::new("t.toml")).unwrap();
        let u = &config.upstreams[0];
        assert_eq!(u.backends.len(), 1);
        assert_eq!(u.unresolved, ["no-such-host.invalid:80"]);
        assert!(config.warnings[0]
            .message
            .contains("\"no-such-host.invalid:80\" resolves to no address"));
        assert_eq!(
            config.dns,
            [("no-such-host.invalid:80".to_owned(), Vec::new())]
        );
        assert_eq!(
            config.dns_refresh(),
            Some(std::time::Duration::from_secs(30))
        );
    }

    #[test]
    fn a_literal_and_a_name_at_the_same_address_are_one_backend_in_either_order() {
        for backends in [
            "[{ addr = \"localhost:9\" }, { addr = \"127.0.0.1:9\" }]",
            "[{ addr = \"127.0.0.1:9\" }, { addr = \"localhost:9\" }]",
        ] {
            let text =
                format!("[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = {backends}\n");
            let config = crate::config::parse(&text, Path::new("t.toml"))
                .unwrap_or_else(|e| panic!("{backends}: {e}"));
            assert_eq!(config.upstreams[0].backends.len(), 1, "{backends}");
            // The name is still looked up again: its answer may move.
            assert_eq!(
                config.dns_refresh(),
                Some(std::time::Duration::from_secs(30)),
                "{backends}"
            );
        }
        // Literals only (a space around one included): nothing to look up again.
        let text =
            "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{ addr = \" 127.0.0.1:9\" }]\n";
        let config = crate::config::parse(text, Path::new("t.toml")).unwrap();
        assert_eq!(config.dns_refresh(), None);
    }
}
