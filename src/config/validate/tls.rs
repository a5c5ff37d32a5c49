//! `[[server.tls]]` listeners and an upstream's `tls`, `sni`, `ca_file` and
//! `insecure_skip_verify`. The files they name are read afterwards, by `certs`.

use std::collections::HashSet;
use std::net::SocketAddr;

use toml::Spanned;

use super::listen::listen_addr;
use super::Checker;
use crate::config::certs::{CaSource, CertSource, Files};
use crate::config::runtime::*;
use crate::config::schema::*;

/// Validates the TLS listeners; `taken`: the plain and admin listeners' addresses.
pub(super) fn listeners(
    c: &mut Checker,
    list: &[Spanned<TlsListenerSection>],
    taken: &[SocketAddr],
    files: &mut Files,
) -> Vec<TlsListenerConfig> {
    let mut seen: HashSet<SocketAddr> = taken.iter().copied().collect();
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let field = format!("server.tls[{i}]");
        let t = t.get_ref();
        let Some(listen) = listen_addr(c, &t.listen, &format!("{field}.listen")) else {
            continue;
        };
        if !seen.insert(listen) {
            let msg =
                format!("{listen} is already a listener; each listener needs its own address");
            c.error(t.listen.span(), format!("{field}.listen"), msg);
            continue;
        }
        let index = out.len();
        let certificates = t.certificates.get_ref();
        if certificates.is_empty() {
            let msg = "needs at least one certificate, e.g. [{ cert = \"certs/site.pem\", key = \"certs/site.key\" }]";
            c.error(t.certificates.span(), format!("{field}.certificates"), msg);
        }
        let mut paths = Vec::new();
        for (j, cert) in certificates.iter().enumerate() {
            let cert = cert.get_ref();
            let path = c.relative(cert.cert.get_ref());
            files.certs.push(CertSource {
                listener: index,
                cert: path.clone(),
                key: c.relative(cert.key.get_ref()),
                cert_span: cert.cert.span(),
                key_span: cert.key.span(),
                field: format!("{field}.certificates[{j}]"),
            });
            paths.push(path);
        }
        let default_certificate = t.default_certificate.as_ref().and_then(|d| {
            let path = c.relative(d.get_ref());
            let found = paths.iter().position(|p| *p == path);
            if found.is_none() {
                let msg = format!(
                    "\"{}\" is not the cert of any of this listener's certificates; expected one of their cert paths",
                    d.get_ref()
                );
                c.error(d.span(), format!("{field}.default_certificate"), msg);
            }
            found
        });
        let min_version = match &t.min_version {
            None => TlsVersion::V1_2,
            Some(v) => match v.get_ref().as_str() {
                "1.2" => TlsVersion::V1_2,
                "1.3" => TlsVersion::V1_3,
                other => {
                    let msg = format!("unsupported TLS version \"{other}\"; expected \"1.2\" or \"1.3\" (rustls has no older ones)");
                    c.error(v.span(), format!("{field}.min_version"), msg);
                    TlsVersion::V1_2
                }
            },
        };
        out.push(TlsListenerConfig {
            listen,
            certificates: Vec::new(),
            default_certificate,
            http2: t.http2.as_ref().is_none_or(|h| *h.get_ref()),
            min_version,
        });
    }
    out
}

/// An upstream's HTTPS settings; `None` without `tls = true` (the other keys are then an
/// error: they would do nothing).
pub(super) fn upstream(
    c: &mut Checker,
    index: usize,
    field: &str,
    u: &UpstreamSection,
    files: &mut Files,
) -> Option<UpstreamTls> {
    let on = u.tls.as_ref().is_some_and(|t| *t.get_ref());
    if !on {
        let without = [
            ("sni", u.sni.as_ref().map(Spanned::span)),
            ("ca_file", u.ca_file.as_ref().map(Spanned::span)),
            (
                "insecure_skip_verify",
                u.insecure_skip_verify.as_ref().map(Spanned::span),
            ),
        ];
        for (key, span) in without {
            if let Some(span) = span {
                let msg = format!("{key} applies only to HTTPS backends; add tls = true");
                c.error(span, format!("{field}.{key}"), msg);
            }
        }
        return None;
    }
    let sni = u.sni.as_ref().and_then(|s| {
        let name = s.get_ref().trim().to_ascii_lowercase();
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            let msg = format!(
                "invalid SNI \"{}\"; expected a host name like \"backend.internal\" or an IP address",
                s.get_ref()
            );
            c.error(s.span(), format!("{field}.sni"), msg);
            return None;
        }
        Some(name)
    });
    if let Some(f) = &u.ca_file {
        files.cas.push(CaSource {
            upstream: index,
            path: c.relative(f.get_ref()),
            span: f.span(),
            field: format!("{field}.ca_file"),
        });
    }
    let verify = match &u.insecure_skip_verify {
        Some(skip) if *skip.get_ref() => {
            let msg = "backend certificates are not verified: anyone on the path to the backends can read and change the traffic";
            c.warn(skip.span(), format!("{field}.insecure_skip_verify"), msg);
            false
        }
        _ => true,
    };
    Some(UpstreamTls {
        sni,
        roots: None,
        verify,
        trust: 0,
        probe: None,
    })
}
