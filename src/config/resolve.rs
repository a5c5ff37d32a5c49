//! Backend host names → addresses: the one step of loading a config that does blocking network
//! IO (DNS). Preparing is done once per text and leaves names here, so that a DNS refresh can
//! redo this step alone, off the async workers, and so that validation can be tested and
//! benchmarked without DNS.
//!
//! A name is resolved at every load, and again every `dns_refresh` (the runtime resolves the
//! running config's [`Prepared`](super::Prepared) again, compares [`Config::dns`] and publishes a
//! change). Every address a name returns is a backend of the pool with the configured weight (a
//! headless service fans out); when a name has IPv4 addresses only those are used (Envoy's
//! `V4_PREFERRED`: most backends listen on IPv4 even where "localhost" resolves to ::1 first). A
//! name that does not resolve is a [`Note`], a warning, not an error: the upstream serves its
//! other backends (503 naming the host while it has none) and gets the addresses once it
//! resolves. Two backends of one upstream written as the same address are an error, found while
//! preparing ([`repeated_literals`]); an address a name returns that another backend already has
//! is skipped.
//!
//! Who answers is a [`Resolve`]: [`SystemResolver`] (for tests, `FULCRUM_HOSTS_FILE` names a
//! file of `name address...` lines consulted before the system resolver, read at every
//! resolution, so a test can change what a name returns) or [`OfflineResolver`].

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
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
#[derive(Debug)]
pub(super) enum Target {
    /// An IP literal with a port.
    Addr(SocketAddr),
    /// `host:port` with a host name.
    Name(String),
}

/// One backend as written in the file.
#[derive(Debug)]
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

/// What each host name asked of a [`Resolve`] answered: its addresses (empty: the name does not
/// exist or has none), or why the resolver could not be asked.
pub type Answers = HashMap<String, Result<Vec<IpAddr>, String>>;

/// Who answers for backend host names.
pub trait Resolve: Send + Sync + fmt::Debug {
    /// Called once per resolution of a config, with every host name its backends use (each
    /// once, without the port); answers each of them.
    fn answer(&self, hosts: &[&str]) -> Answers;
}

/// `FULCRUM_HOSTS_FILE` (read once per resolution, when the variable is set), then the system
/// resolver (`getaddrinfo`, blocking).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn answer(&self, hosts: &[&str]) -> Answers {
        let file = hosts_file();
        hosts
            .iter()
            .map(|&host| (host.to_owned(), lookup_host(host, file.as_ref())))
            .collect()
    }
}

/// Nobody: every name resolves to no address, without a lookup (the fuzz targets' loads).
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineResolver;

impl Resolve for OfflineResolver {
    fn answer(&self, hosts: &[&str]) -> Answers {
        hosts
            .iter()
            .map(|&h| (h.to_owned(), Ok(Vec::new())))
            .collect()
    }
}

/// What happened to one backend name in a resolution that is worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteKind {
    /// The lookup failed (`reason`); the name keeps the `kept` addresses it had.
    Kept { reason: String, kept: usize },
    /// The name has no address now (an answer, not a failure).
    NoAddress,
    /// The lookup failed (`reason`) and the name had no address to keep.
    Failed { reason: String },
}

impl NoteKind {
    /// Whether the resolver could not be asked (rather than answered).
    pub fn is_failure(&self) -> bool {
        matches!(self, NoteKind::Kept { .. } | NoteKind::Failed { .. })
    }
}

/// A warning about one backend name (`host:port`), at the place it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `host:port` as written.
    pub name: String,
    pub kind: NoteKind,
    /// The warning as logged and printed: file:line:column, field and the text for `kind`.
    pub warning: ConfigError,
}

impl Note {
    /// The warning's text for `kind` about `name`, without its place.
    fn message(name: &str, kind: &NoteKind) -> String {
        match kind {
            NoteKind::Kept { reason, kept } => {
                format!("{reason}; keeping the {kept} address(es) it had")
            }
            NoteKind::NoAddress => format!("\"{name}\" resolves to no address; {LATER}"),
            NoteKind::Failed { reason } => format!("{reason}; {LATER}"),
        }
    }
}

/// What a name without an address is told.
const LATER: &str = "the upstream gets its addresses when it resolves (every dns_refresh)";

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.warning.fmt(f)
    }
}

/// Two backends of one upstream written as the same address: an error at the second, found
/// before any name is resolved (a literal always wins over a name, so no DNS answer is one).
pub(super) fn repeated_literals(
    backends: &[BackendSource],
    file: &Path,
    source: &str,
) -> Vec<ConfigError> {
    let mut seen: HashMap<(usize, SocketAddr), usize> = HashMap::new();
    let mut errors = Vec::new();
    for b in backends {
        let Target::Addr(addr) = b.target else {
            continue;
        };
        if let Entry::Occupied(first) = seen.entry((b.upstream, addr)) {
            let message = format!(
                "{addr} is already backends[{}] of this upstream",
                first.get()
            );
            let span = Some(b.span.clone());
            errors.push(ConfigError::at(
                file,
                source,
                span,
                b.field.clone(),
                message,
            ));
        } else {
            seen.insert((b.upstream, addr), b.index);
        }
    }
    errors
}

/// `config` (prepared: its upstreams have no backends) with every backend of `backends` in its
/// upstream, and a note for each name that did not resolve. `previous`: what the names resolved
/// to in the config running now; a name whose lookup fails keeps those addresses (as Envoy's
/// STRICT_DNS and nginx's `resolve` do), so that a resolver hiccup does not empty a pool.
pub(super) fn resolve(
    config: &Config,
    backends: &[BackendSource],
    (file, source): (&Path, &str),
    previous: &[(String, Vec<SocketAddr>)],
    resolver: &dyn Resolve,
) -> (Config, Vec<Note>) {
    let mut config = config.clone();
    let mut notes = Vec::new();
    // (upstream, address) → index in the file of the backend that has it.
    let mut seen: HashMap<(usize, SocketAddr), usize> = HashMap::new();
    // What each name resolved to in the config running now: one lookup per backend, not a scan.
    let before: HashMap<&str, &Vec<SocketAddr>> = previous
        .iter()
        .filter(|(_, addrs)| !addrs.is_empty())
        .map(|(name, addrs)| (name.as_str(), addrs))
        .collect();
    // Each host is asked once per resolution, however many backends (and ports) name it.
    let mut hosts: Vec<&str> = backends
        .iter()
        .filter_map(|b| match &b.target {
            Target::Name(host_port) => host_port_of(host_port).map(|(host, _)| host),
            Target::Addr(_) => None,
        })
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let answers = match hosts.is_empty() {
        true => Answers::new(),
        false => resolver.answer(&hosts),
    };
    let mut dns: Vec<(String, Vec<SocketAddr>)> = Vec::new();
    // Literal addresses first: a literal always wins, and what a name returns that a literal
    // has is skipped (whatever their order in the file), so no DNS answer is a config error.
    let (literals, names): (Vec<_>, Vec<_>) = backends
        .iter()
        .partition(|b| matches!(b.target, Target::Addr(_)));
    for b in literals.into_iter().chain(names) {
        let addrs = match &b.target {
            Target::Addr(addr) => match seen.entry((b.upstream, *addr)) {
                // A repeated literal: refused while preparing.
                Entry::Occupied(_) => continue,
                Entry::Vacant(v) => {
                    v.insert(b.index);
                    vec![*addr]
                }
            },
            Target::Name(host_port) => {
                if let Some(u) = config.upstreams.get_mut(b.upstream) {
                    u.named = true;
                }
                let (addrs, kind) =
                    match (lookup(host_port, &answers), before.get(host_port.as_str())) {
                        // An answer with no address is an answer: the name has none now.
                        (Ok(addrs), _) if addrs.is_empty() => (addrs, Some(NoteKind::NoAddress)),
                        (Ok(addrs), _) => (addrs, None),
                        (Err(reason), Some(addrs)) => {
                            let kept = addrs.len();
                            ((*addrs).clone(), Some(NoteKind::Kept { reason, kept }))
                        }
                        (Err(reason), None) => (Vec::new(), Some(NoteKind::Failed { reason })),
                    };
                if let Some(kind) = kind {
                    if !matches!(kind, NoteKind::Kept { .. }) {
                        if let Some(u) = config.upstreams.get_mut(b.upstream) {
                            u.unresolved.push(b.name.clone());
                        }
                    }
                    let message = Note::message(host_port, &kind);
                    let span = Some(b.span.clone());
                    let warning =
                        ConfigError::at(file, source, span, b.field.clone(), message).warning();
                    notes.push(Note {
                        name: host_port.clone(),
                        kind,
                        warning,
                    });
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
    (config, notes)
}

/// `host` and `port` of `host:port`.
fn host_port_of(host_port: &str) -> Option<(&str, u16)> {
    let (host, port) = host_port.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
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

/// Every address `host:port` resolves to (IPv4 only when there is one), sorted; empty when the
/// name does not exist or has none; an error when the resolver could not be asked. The host's
/// answer is taken from `answers`, what the resolver said for this resolution.
fn lookup(host_port: &str, answers: &Answers) -> Result<Vec<SocketAddr>, String> {
    // Validation let only `host:port` through as a name.
    let Some((host, port)) = host_port_of(host_port) else {
        return Err(format!("cannot resolve \"{host_port}\": no port"));
    };
    let ips = match answers.get(host) {
        Some(Ok(ips)) => ips,
        Some(Err(e)) => return Err(format!("cannot resolve \"{host_port}\": {e}")),
        None => return Err(format!("cannot resolve \"{host_port}\": no answer")),
    };
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
            ("none.invalid", &[]),
            ("down", &["!fail"]),
        ]);
        let answers: Answers = ["two", "dual", "six", "none.invalid", "down"]
            .iter()
            .map(|n| (n.to_string(), lookup_host(n, Some(&h))))
            .collect();
        let addrs = |n: &str| lookup(n, &answers).unwrap();
        let s = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert_eq!(addrs("two:80"), [s("10.0.0.1:80"), s("10.0.0.2:80")]);
        // One answer for a host, whatever the port.
        assert_eq!(addrs("two:81"), [s("10.0.0.1:81"), s("10.0.0.2:81")]);
        assert_eq!(addrs("dual:80"), [s("10.0.0.9:80")]);
        assert_eq!(addrs("six:80"), [s("[::1]:80"), s("[::2]:80")]);
        assert_eq!(addrs("none.invalid:80"), []);
        assert!(lookup("down:80", &answers).is_err());
        // The system resolver's "no such name" is an answer too.
        assert!(lookup_host("no-such-host.invalid", None)
            .unwrap()
            .is_empty());
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
        let prepared = crate::config::prepare(text, Path::new("t.toml")).unwrap();
        let resolved = prepared.resolve(&OfflineResolver, &[]);
        assert_eq!(resolved.notes.len(), 1);
        assert_eq!(resolved.notes[0].kind, NoteKind::NoAddress);
        assert_eq!(
            config.dns,
            [("no-such-host.invalid:80".to_owned(), Vec::new())]
        );
        assert_eq!(
            config.dns_refresh(),
            Some(std::time::Duration::from_secs(30))
        );
    }

    /// Answers every host with what it holds for it.
    #[derive(Debug)]
    struct Fixed(Answers);

    impl Resolve for Fixed {
        fn answer(&self, hosts: &[&str]) -> Answers {
            hosts
                .iter()
                .map(|&h| (h.to_owned(), self.0[h].clone()))
                .collect()
        }
    }

    #[test]
    fn a_failed_lookup_keeps_the_addresses_a_name_had_and_says_so() {
        let text = "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{ addr = \"svc:80\" }, { addr = \"gone:80\" }]\n[upstream.spare]\nbackends = [{ addr = \"127.0.0.1:1\" }]\n";
        let prepared = crate::config::prepare(text, Path::new("t.toml")).unwrap();
        let ip = |a: &str| a.parse::<IpAddr>().unwrap();
        let up = Fixed(Answers::from([
            ("svc".to_owned(), Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")])),
            ("gone".to_owned(), Err("timed out".to_owned())),
        ]));
        let first = prepared.resolve(&up, &[]);
        assert_eq!(first.config.upstreams[1].backends.len(), 2);
        let down = Fixed(Answers::from([
            ("svc".to_owned(), Err("timed out".to_owned())),
            ("gone".to_owned(), Err("timed out".to_owned())),
        ]));
        let again = prepared.resolve(&down, &first.config.dns);
        assert_eq!(again.config.dns, first.config.dns);
        let kinds: Vec<&NoteKind> = again.notes.iter().map(|n| &n.kind).collect();
        let reason = "cannot resolve \"svc:80\": timed out".to_owned();
        assert_eq!(kinds[0], &NoteKind::Kept { reason, kept: 2 });
        assert!(matches!(kinds[1], NoteKind::Failed { .. }));
        assert!(kinds.iter().all(|k| k.is_failure()));
        // Validation's warning first, then each note's, as the names come in the file.
        let warnings: Vec<String> = again
            .config
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].contains("\"spare\" is not used"),
            "{warnings:?}"
        );
        assert_eq!(warnings[1], again.notes[0].to_string());
        assert_eq!(
            warnings[1],
            "t.toml:4:22: upstream.u.backends[0].addr: cannot resolve \"svc:80\": timed out; keeping the 2 address(es) it had"
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
