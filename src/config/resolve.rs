//! Backend host names → addresses: the one step of loading a config that does blocking network
//! IO (DNS). Validation is pure and leaves names here, so that the reload path can run this step
//! off the async workers, and so that validation can be tested and benchmarked without DNS.
//!
//! A name is resolved once per load (an IPv4 result is preferred, as most backends listen on IPv4
//! even where "localhost" resolves to ::1 first). Two backends of one upstream that end up at the
//! same address are an error.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
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

/// Resolves every backend of `u` into its upstream. Problems are returned beside the config,
/// which is complete but for the backends that failed.
pub(super) fn resolve(u: Unresolved, file: &Path, source: &str) -> (Config, Vec<ConfigError>) {
    let Unresolved {
        mut config,
        backends,
    } = u;
    let mut errors = Vec::new();
    // (upstream, address) → index in the file of the backend that has it.
    let mut seen: HashMap<(usize, SocketAddr), usize> = HashMap::new();
    for b in backends {
        let error = |message: String| {
            ConfigError::at(file, source, Some(b.span.clone()), b.field.clone(), message)
        };
        let addr = match &b.target {
            Target::Addr(addr) => *addr,
            Target::Name(host_port) => match lookup(host_port) {
                Ok(addr) => addr,
                Err(message) => {
                    errors.push(error(message));
                    continue;
                }
            },
        };
        if let Some(prev) = seen.insert((b.upstream, addr), b.index) {
            seen.insert((b.upstream, addr), prev);
            errors.push(error(format!(
                "{addr} is already backends[{prev}] of this upstream"
            )));
            continue;
        }
        if let Some(u) = config.upstreams.get_mut(b.upstream) {
            u.backends.push(BackendConfig {
                name: b.name,
                addr,
                weight: b.weight,
            });
        }
    }
    (config, errors)
}

fn lookup(host_port: &str) -> Result<SocketAddr, String> {
    match host_port.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .copied()
                .ok_or_else(|| format!("\"{host_port}\" resolved to no address"))
        }
        Err(e) => Err(format!(
            "cannot resolve \"{host_port}\": {e}; {}",
            super::validate::BACKEND_ADDR_ACCEPTED
        )),
    }
}
