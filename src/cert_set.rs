//! The certificate set of one TLS listener, as a snapshot holds it: which certificate a
//! handshake gets for the server name (SNI) it asked for.
//!
//! A certificate serves the names of its SANs: exact names and `*.` wildcards (one label, as
//! RFC 6125 says; `*.example.com` does not serve `example.com` or `a.b.example.com`). An exact
//! name wins over a wildcard; between two certificates with the same name, the first listed
//! wins. A client without SNI, or with a name no certificate has, gets `default_certificate`,
//! or a failed handshake without one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::config::runtime::{Certificate, TlsListenerConfig};

/// One TLS listener's certificates, indexed by the names they serve; built once per snapshot.
#[derive(Debug)]
pub struct CertSet {
    pub listen: SocketAddr,
    /// As listed (for `/status` and the expiry metric).
    pub certificates: Vec<Arc<Certificate>>,
    /// Exact name (lower case) → index into `certificates`.
    exact: HashMap<String, usize>,
    /// `*.example.com` as "example.com" → index into `certificates`.
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
}

impl CertSet {
    pub fn new(listener: &TlsListenerConfig) -> CertSet {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, cert) in listener.certificates.iter().enumerate() {
            for name in cert.sni_names() {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        CertSet {
            listen: listener.listen,
            certificates: listener.certificates.clone(),
            exact,
            wildcard,
            default: listener.default_certificate,
        }
    }

    /// `default_certificate`.
    pub fn default(&self) -> Option<&Certificate> {
        self.default.map(|i| &*self.certificates[i])
    }

    /// The certificate for a client that asked for `sni` (`None`: it sent no SNI).
    pub fn resolve(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = sni.and_then(|name| {
            // rustls gives the name lower-cased already, and without a trailing dot.
            self.exact.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        found
            .or(self.default.as_ref())
            .map(|&i| Arc::clone(&self.certificates[i].key))
    }
}
