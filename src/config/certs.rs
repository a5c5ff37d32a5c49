//! The files a config names for TLS, read and checked after validation (file IO, like `resolve`'s
//! DNS, stays out of the pure validation): each listener certificate's chain and key must be
//! readable PEM, the key must be one rustls can sign with and must match the certificate, and
//! the certificate must be valid now (one that expires within
//! [`CERTIFICATE_EXPIRY_WARNING`] is a warning); each upstream `ca_file` must hold at least one
//! certificate. Every problem is an error at the place the path was written, so `fulcrum check`
//! finds it and a reload with it keeps the running certificates.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::error::ConfigError;
use super::file::{self, Limit};
use super::runtime::{Certificate, Config, UpstreamTls};
use super::schema::CERTIFICATE_EXPIRY_WARNING;

/// The files named in a config, as written, for [`load`].
#[derive(Default)]
pub(super) struct Files {
    pub certs: Vec<CertSource>,
    pub cas: Vec<CaSource>,
}

/// One `{ cert, key }` of a TLS listener.
pub(super) struct CertSource {
    /// Index into `server.tls`.
    pub listener: usize,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_span: Range<usize>,
    pub key_span: Range<usize>,
    /// `server.tls[0].certificates[1]`.
    pub field: String,
}

/// An upstream's `ca_file`.
pub(super) struct CaSource {
    /// Index into `upstreams`.
    pub upstream: usize,
    pub path: PathBuf,
    pub span: Range<usize>,
    pub field: String,
}

/// A problem with one of the files, and which of its two paths it is about.
struct Problem {
    on_key: bool,
    message: String,
}

impl Problem {
    fn cert(message: String) -> Problem {
        Problem {
            on_key: false,
            message,
        }
    }

    fn key(message: String) -> Problem {
        Problem {
            on_key: true,
            message,
        }
    }
}

/// Reads every file of `files` into `config` (certificates in listener order, CA roots into
/// their upstreams); returns the errors, and adds expiry warnings to `config.warnings`.
pub(super) fn load(
    config: &mut Config,
    files: Files,
    file: &Path,
    source: &str,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let now = SystemTime::now();
    // Per listener, the names the certificates before this one serve.
    let mut served: Vec<HashSet<String>> = vec![HashSet::new(); config.server.tls.len()];
    for c in files.certs {
        match certificate(&c.cert, &c.key, now) {
            Ok((cert, warning)) => {
                let field = format!("{}.cert", c.field);
                let mut warn = |message: String| {
                    let span = Some(c.cert_span.clone());
                    let w = ConfigError::at(file, source, span, field.clone(), message).warning();
                    config.warnings.push(w);
                };
                if let Some(w) = warning {
                    warn(w);
                }
                let Some(l) = config.server.tls.get_mut(c.listener) else {
                    continue;
                };
                let seen = &mut served[c.listener];
                let dns: Vec<&String> = cert.sni_names().collect();
                let is_default = l.default_certificate == Some(l.certificates.len());
                if dns.is_empty() && !is_default {
                    warn(format!(
                        "never served: {} names only IP addresses, and clients send no SNI for an IP; make it the default_certificate",
                        c.cert.display()
                    ));
                } else if dns.iter().all(|n| seen.contains(*n)) && !is_default {
                    warn(format!(
                        "never served: every name of {} is served by a certificate listed before it",
                        c.cert.display()
                    ));
                }
                seen.extend(dns.into_iter().cloned());
                l.certificates.push(Arc::new(cert));
            }
            Err(p) => {
                let (span, key) = if p.on_key {
                    (c.key_span, "key")
                } else {
                    (c.cert_span, "cert")
                };
                let field = format!("{}.{key}", c.field);
                errors.push(ConfigError::at(file, source, Some(span), field, p.message));
            }
        }
    }
    let https = config.upstreams.iter().any(|u| u.tls.is_some());
    // The system's roots, once per load, for every HTTPS upstream: its health checks trust
    // them, and with a `ca_file` its requests too (pingora's per-backend CA list replaces its
    // default roots, and `ca_file` adds to them).
    let system = if https { system_roots() } else { Vec::new() };
    for ca in files.cas {
        match ca_certificates(&ca.path) {
            Ok(mut roots) => {
                let Some(tls) = config.upstreams[ca.upstream].tls.as_mut() else {
                    continue;
                };
                let mut trust = xxhash_rust::xxh3::Xxh3::new();
                for r in &roots {
                    trust.update(r.borrow_raw_cert());
                }
                tls.trust = trust.digest().max(1);
                let system = system
                    .iter()
                    .map(|der| WrappedX509::new(der.clone(), parse_x509));
                roots.extend(system);
                tls.roots = Some(Arc::from(roots.into_boxed_slice()));
            }
            Err(message) => errors.push(ConfigError::at(
                file,
                source,
                Some(ca.span),
                ca.field,
                message,
            )),
        }
    }
    for tls in config.upstreams.iter_mut().filter_map(|u| u.tls.as_mut()) {
        tls.probe = Some(Arc::new(probe_config(tls, &system)));
    }
    errors
}

/// The client config of an HTTPS upstream's health checks: the roots and verification its
/// requests have.
fn probe_config(tls: &UpstreamTls, system: &[Vec<u8>]) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    // With a ca_file, `roots` has the system's already.
    let ders: Vec<&[u8]> = match &tls.roots {
        Some(r) => r.iter().map(|c| c.borrow_raw_cert().as_slice()).collect(),
        None => system.iter().map(Vec::as_slice).collect(),
    };
    for der in ders {
        // A root rustls cannot use is one it would not trust for requests either.
        let _ = roots.add(CertificateDer::from(der.to_vec()));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions");
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    if !tls.verify {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)));
    }
    config
}

/// `insecure_skip_verify`: every certificate is accepted (its signatures are still checked,
/// so the handshake itself is sound). Public for tests that must see which certificate a
/// server presents whatever it is.
#[derive(Debug)]
pub struct AcceptAnyCertificate(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Loads and checks one certificate and its key; the warning, if it expires soon.
fn certificate(
    cert_path: &Path,
    key_path: &Path,
    now: SystemTime,
) -> Result<(Certificate, Option<String>), Problem> {
    let chain = pem_certificates(cert_path).map_err(Problem::cert)?;
    let key = pem_file(key_path)
        .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(|e| pem_error(&e)))
        .map_err(|e| {
            Problem::key(format!(
                "cannot read a private key from {}: {e}; expected a PEM file with a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key",
                key_path.display(),
            ))
        })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        Problem::key(format!(
            "unsupported private key in {}: {e}; expected RSA, ECDSA (P-256, P-384) or Ed25519",
            key_path.display()
        ))
    })?;
    let (_, leaf) = X509Certificate::from_der(&chain[0]).map_err(|e| {
        Problem::cert(format!(
            "the first certificate in {} is not a valid X.509 certificate: {e}",
            cert_path.display()
        ))
    })?;
    let names = names(&leaf);
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let unix_now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let key = CertifiedKey::new(chain, signer);
    if key.keys_match().is_err() {
        return Err(Problem::key(format!(
            "the key in {} does not belong to the certificate in {} (a key from another certificate?)",
            key_path.display(),
            cert_path.display()
        )));
    }
    if unix_now > not_after {
        return Err(Problem::cert(format!(
            "the certificate in {} expired on {}; renew it",
            cert_path.display(),
            date(not_after)
        )));
    }
    if unix_now < not_before {
        return Err(Problem::cert(format!(
            "the certificate in {} is not valid before {} (is the clock right?)",
            cert_path.display(),
            date(not_before)
        )));
    }
    let warning = (not_after - unix_now < CERTIFICATE_EXPIRY_WARNING.as_secs() as i64).then(|| {
        format!(
            "the certificate in {} ({}) expires on {}, in {} days; renew it",
            cert_path.display(),
            names.first().map_or("no name", String::as_str),
            date(not_after),
            (not_after - unix_now) / 86_400
        )
    });
    let cert = Certificate {
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
        names,
        not_after,
        key: Arc::new(key),
    };
    Ok((cert, warning))
}

/// The most a certificate, key or CA file may be (a bundle of every public root CA is about
/// 250 KB).
const MAX_PEM_FILE: u64 = 4 << 20;

/// The bytes of a certificate, key or CA file, read as the config file is (a regular file only,
/// at most [`MAX_PEM_FILE`]): a path pointing at a FIFO or a device cannot stall a reload.
fn pem_file(path: &Path) -> Result<Vec<u8>, String> {
    file::read_bytes(path, Limit::Pem(MAX_PEM_FILE)).map_err(|e| e.to_string())
}

/// Every certificate in a PEM file, at least one.
fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let cannot = |e: String| format!("cannot read certificates from {}: {e}", path.display());
    let pem = pem_file(path).map_err(cannot)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cannot(pem_error(&e)))?;
    if chain.is_empty() {
        return Err(format!(
            "no certificate in {}; expected PEM (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(chain)
}

/// A `ca_file`'s certificates, each a valid X.509 certificate.
fn ca_certificates(path: &Path) -> Result<Vec<WrappedX509>, String> {
    let ders = pem_certificates(path)?;
    let mut out = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        if X509Certificate::from_der(der).is_err() {
            return Err(format!(
                "certificate {} in {} is not a valid X.509 certificate",
                i + 1,
                path.display()
            ));
        }
        out.push(WrappedX509::new(der.to_vec(), parse_x509));
    }
    Ok(out)
}

/// The system's trusted roots that parse (an unreadable store is no roots, and a warning).
fn system_roots() -> Vec<Vec<u8>> {
    match pingora::tls::load_native_certs() {
        Ok(certs) => certs
            .into_iter()
            .filter(|c| X509Certificate::from_der(c).is_ok())
            .map(|c| c.to_vec())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the system's trusted certificates; only ca_file is trusted");
            Vec::new()
        }
    }
}

/// The names a certificate serves: its DNS and IP SANs (DNS names lower-cased), else its
/// subject's common names.
fn names(cert: &X509Certificate) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => {
                    let ip = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of that kind found".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A Unix time as an RFC 3339 date.
fn date(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
