//! TLS termination through the real binary: certificates by SNI, HTTP/2 over TLS and h2c,
//! WebSockets over TLS, HTTPS backends with a private CA, the HTTP→HTTPS redirect, certificate
//! checks at `fulcrum check`, and certificate reload. Every certificate is made here with
//! rcgen; clients are tokio-rustls + hyper on 127.0.0.1.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use fulcrum::config::AcceptAnyCertificate;
use support::*;

/// A private certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and key as PEM.
struct Issued {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `names` (DNS names or IP addresses), valid from yesterday for 90 days.
    fn issue(&self, names: &[&str]) -> Issued {
        self.issue_valid(names, -1, 90)
    }

    /// A certificate valid from `from` days to `to` days from now.
    fn issue_valid(&self, names: &[&str], from: i64, to: i64) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        let now = time_now();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(to);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Writes `issued` as `NAME.pem` and `NAME.key` in `dir`; returns the two paths.
fn write(dir: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, &issued.cert).unwrap();
    std::fs::write(&key, &issued.key).unwrap();
    (cert, key)
}

/// A `[[server.tls]]` table on `port` with `certs` (cert, key) and an optional default.
fn tls_listener(port: u16, certs: &[&(PathBuf, PathBuf)], default: Option<&Path>) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|(c, k)| {
            format!(
                "{{ cert = \"{}\", key = \"{}\" }}",
                c.display(),
                k.display()
            )
        })
        .collect();
    let mut t = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:{port}\"\ncertificates = [{}]\n",
        list.join(", ")
    );
    if let Some(d) = default {
        t.push_str(&format!("default_certificate = \"{}\"\n", d.display()));
    }
    t
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts `ca` and offers `alpn`.
fn client(ca: &Ca, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client that takes any certificate (to see which one a name it has none for gets).
fn trusting_client() -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())));
    Arc::new(config)
}

/// A TLS connection to `addr` asking for `sni`.
async fn connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The certificate the server presented, parsed; `f` of it.
fn peer_cert<T>(stream: &TlsStream<TcpStream>, f: impl FnOnce(&X509Certificate) -> T) -> T {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate");
    let (_, cert) = X509Certificate::from_der(&certs[0]).unwrap();
    f(&cert)
}

/// The DNS names in the certificate the server presented.
fn presented(stream: &TlsStream<TcpStream>) -> Vec<String> {
    peer_cert(stream, sans)
}

fn sans(cert: &X509Certificate) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().expect("SANs");
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// The series of `fulcrum_tls_handshakes_total` for the listener on `port`.
fn handshakes(port: u16, result: &str) -> String {
    format!("fulcrum_tls_handshakes_total{{listener=\"127.0.0.1:{port}\",result=\"{result}\"}}")
}

fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

/// `GET path` with `Host: host` over HTTP/1.1 on `stream`.
async fn h1_get<S>(stream: S, host: &str, path: &str) -> Resp
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send_on(stream, req).await
}

/// `GET uri` (absolute: its authority is `:authority`) over HTTP/2 on `stream`, and the
/// response's version.
async fn h2_get<S>(stream: S, uri: &str) -> (Resp, http::Version)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut sender = h2_client(stream).await.expect("h2 handshake");
    let req = Request::get(uri).body(Full::new(Bytes::new())).unwrap();
    let resp = sender.send_request(req).await.expect("response");
    let version = resp.version();
    (read(resp).await.expect("response body"), version)
}

/// An HTTP/2 client on `stream` (its connection task spawned).
async fn h2_client<S>(
    stream: S,
) -> hyper::Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `f` once its TLS listener on `port` accepts connections too (the readiness check of
/// [`Fulcrum::start`] knows only the plain and admin listeners).
async fn serving(f: Fulcrum, port: u16) -> Fulcrum {
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the TLS listener on {port} does not accept:\n{}", f.log());
}

/// One CA, one certificate for `name`, one backend behind a catch-all route, and fulcrum with
/// a TLS listener serving the certificate (as the default one with `default`), `server` lines
/// before it.
struct Site {
    ca: Ca,
    /// The certificate's and key's files.
    files: (PathBuf, PathBuf),
    backend: Backend,
    port: u16,
    tls: SocketAddr,
    f: Fulcrum,
    _dir: tempfile::TempDir,
}

async fn site(name: &str, server: &str, default: bool) -> Site {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let files = write(dir.path(), "site", &ca.issue(&[name]));
    let backend = Backend::start("site").await;
    let port = free_port();
    let default = default.then_some(files.0.as_path());
    let server = format!("{server}{}", tls_listener(port, &[&files], default));
    let body = format!(
        "[[route]]\nupstream = \"s\"\n{}",
        upstream("s", &[backend.addr], "")
    );
    let f = serving(Fulcrum::start(&server, &body), port).await;
    Site {
        ca,
        files,
        backend,
        port,
        tls: ([127, 0, 0, 1], port).into(),
        f,
        _dir: dir,
    }
}

/// Two host routes to two backends, for routing checks over every protocol.
fn two_routes(api: &Backend, www: &Backend) -> String {
    format!(
        "[[route]]\nhost = \"api.example.com\"\nupstream = \"api\"\n\n[[route]]\nhost = \"www.example.com\"\nupstream = \"www\"\n\n{}{}",
        upstream("api", &[api.addr], ""),
        upstream("www", &[www.addr], "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_name_gets_its_certificate_and_an_unknown_one_the_default() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let api = write(dir.path(), "api", &ca.issue(&["api.example.com"]));
    let www = write(dir.path(), "www", &ca.issue(&["www.example.com"]));
    let wild = write(dir.path(), "wild", &ca.issue(&["*.apps.example.com"]));
    let (b_api, b_www) = (Backend::start("api").await, Backend::start("www").await);
    let port = free_port();
    let server = format!(
        "{}http2 = false\n",
        tls_listener(port, &[&api, &www, &wild], Some(&www.0))
    );
    let f = serving(Fulcrum::start(&server, &two_routes(&b_api, &b_www)), port).await;
    let tls: SocketAddr = ([127, 0, 0, 1], port).into();
    let http1: &[&[u8]] = &[b"http/1.1"];

    for (name, backend) in [("api.example.com", "api"), ("www.example.com", "www")] {
        let s = connect(tls, name, client(&ca, http1)).await.expect(name);
        assert_eq!(presented(&s), [name], "{name}");
        let r = h1_get(s, name, "/x").await;
        assert_eq!((r.status, r.backend()), (200, backend), "{}", r.body);
        // The backend learns the client came over TLS.
        assert_eq!(r.line("x-forwarded-proto"), Some("https"), "{}", r.body);
    }
    let s = connect(tls, "a.apps.example.com", client(&ca, http1)).await;
    assert_eq!(presented(&s.unwrap()), ["*.apps.example.com"]);
    // One label only: the wildcard does not serve a deeper name; the default does.
    for unknown in ["a.b.apps.example.com", "nobody.example.org"] {
        let s = connect(tls, unknown, trusting_client()).await.unwrap();
        assert_eq!(presented(&s), ["www.example.com"], "{unknown}");
    }
    // The plain listener still says http.
    let plain = get(f.addr, "www.example.com", "/").await;
    assert_eq!(plain.line("x-forwarded-proto"), Some("http"));

    f.wait_metric(&handshakes(port, "success"), 5.0).await;
    let metrics = f.metrics().await;
    for name in ["api.example.com", "www.example.com", "*.apps.example.com"] {
        let series = format!("fulcrum_tls_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}");
        let expires = sample_of(&metrics, &series).expect(name);
        let in_days = (expires - time_now().unix_timestamp() as f64) / 86_400.0;
        assert!((88.0..=90.0).contains(&in_days), "{name}: {in_days}");
    }
    let status = get(f.admin, "admin", "/status").await.body;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let listener = &status["tls"][0];
    assert_eq!(listener["listen"], format!("127.0.0.1:{port}"));
    assert_eq!(listener["default_certificate"], www.0.display().to_string());
    assert_eq!(listener["certificates"][0]["names"][0], "api.example.com");
    let days = listener["certificates"][2]["expires_in_days"].as_i64();
    assert!(matches!(days, Some(89 | 90)), "{days:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_an_unknown_name_fails_the_handshake() {
    let fixture = site("api.example.com", "", false).await;
    let ca = &fixture.ca;
    let port = fixture.port;
    let tls = fixture.tls;
    let f = &fixture.f;
    // serving()'s one connection that got through, closed without a handshake.
    f.wait_metric(&handshakes(port, "failure"), 1.0).await;
    let refused = connect(tls, "other.example.com", trusting_client()).await;
    // rustls answers a resolver that has no certificate with this alert.
    let e = refused.expect_err("no certificate for the name");
    assert!(e.to_string().contains("AccessDenied"), "{e}");
    // A client that sends no SNI at all (an IP address as the name): refused too.
    let e = connect(tls, "127.0.0.1", trusting_client())
        .await
        .expect_err("no certificate without SNI");
    assert!(e.to_string().contains("AccessDenied"), "{e}");
    // Not TLS at all.
    let reply = raw(tls, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(!reply.starts_with("HTTP/"), "{reply:?}");

    let ok = connect(tls, "api.example.com", client(ca, &[])).await;
    assert_eq!(presented(&ok.unwrap()), ["api.example.com"]);
    f.wait_metric(&handshakes(port, "failure"), 4.0).await;
    // The server finishes its side of a TLS 1.3 handshake after the client has.
    f.wait_metric(&handshakes(port, "success"), 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_finish_its_handshake_is_cut_off() {
    let server = "request_header_timeout = \"1s\"\n";
    let fixture = site("api.example.com", server, false).await;
    let ca = &fixture.ca;
    let port = fixture.port;
    let tls = fixture.tls;
    let f = &fixture.f;
    // Connects, sends half a ClientHello, waits.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let window = Duration::from_millis(800)..Duration::from_secs(5);
    let started = std::time::Instant::now();
    // Closed without a byte (no alert for a hello that never came whole).
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let took = started.elapsed();
    assert!(window.contains(&took), "{took:?}");
    f.wait_metric(&handshakes(port, "timeout"), 1.0).await;

    // A client that negotiates HTTP/2 and then sends no preface is closed too.
    let mut s = connect(tls, "api.example.com", client(ca, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(alpn(&s).as_deref(), Some(&b"h2"[..]));
    let took = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(window.contains(&took), "without a preface: {took:?}");
    // Nor with only the preface's first part, which reads like a whole HTTP/1 header.
    let mut s = connect(tls, "api.example.com", client(ca, &[b"h2"]))
        .await
        .unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\n").await.unwrap();
    let took = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(window.contains(&took), "with half a preface: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_and_http1_route_alike_and_h2c_works_when_enabled() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let api = write(
        dir.path(),
        "api",
        &ca.issue(&["api.example.com", "www.example.com"]),
    );
    let (b_api, b_www) = (Backend::start("api").await, Backend::start("www").await);
    let port = free_port();
    let server = format!(
        "h2c = true\naccess_log = \"stderr\"\n{}",
        tls_listener(port, &[&api], None)
    );
    let pool = format!(
        "[[route]]\nhost = \"pool.example.com\"\nupstream = \"pool\"\nrate_limit = {{ rate = 1, per = \"1m\", burst = 2 }}\n\n{}",
        upstream("pool", &[b_api.addr, b_www.addr], "")
    );
    let body = format!("{}{pool}", two_routes(&b_api, &b_www));
    let f = serving(Fulcrum::start_logging("info", &server, &body), port).await;
    let tls: SocketAddr = ([127, 0, 0, 1], port).into();

    let s = connect(tls, "api.example.com", client(&ca, &[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(alpn(&s).as_deref(), Some(&b"h2"[..]));
    let (r, version) = h2_get(s, "https://www.example.com/h2?q=1").await;
    assert_eq!(
        (r.status, version),
        (200, http::Version::HTTP_2),
        "{}",
        r.body
    );
    // Routed by :authority, forwarded as HTTP/1.1 with that Host.
    assert_eq!(r.backend(), "www", "{}", r.body);
    assert_eq!(r.line("host"), Some("www.example.com"), "{}", r.body);
    assert_eq!(r.line("x-forwarded-proto"), Some("https"), "{}", r.body);
    assert_eq!(r.line("uri"), Some("/h2?q=1"), "{}", r.body);

    let s = connect(tls, "api.example.com", client(&ca, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(alpn(&s).as_deref(), Some(&b"http/1.1"[..]));
    let r = h1_get(s, "api.example.com", "/h1").await;
    assert_eq!((r.status, r.backend()), (200, "api"), "{}", r.body);

    // h2c with prior knowledge on the plain listener; HTTP/1.1 there still works.
    let plain = TcpStream::connect(f.addr).await.unwrap();
    let (r, version) = h2_get(plain, "http://api.example.com/c").await;
    assert_eq!(
        (r.status, version),
        (200, http::Version::HTTP_2),
        "{}",
        r.body
    );
    assert_eq!(r.backend(), "api", "{}", r.body);
    assert_eq!(r.line("x-forwarded-proto"), Some("http"), "{}", r.body);
    assert_eq!(get(f.addr, "www.example.com", "/").await.backend(), "www");

    // Balancing and rate limiting act per request, not per connection: two requests on one h2
    // connection go to both backends of a round-robin pool, and the third is limited.
    let s = connect(tls, "api.example.com", client(&ca, &[b"h2"]))
        .await
        .unwrap();
    let mut sender = h2_client(s).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let req = Request::get("https://pool.example.com/p")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = read(sender.send_request(req).await.unwrap()).await.unwrap();
        seen.push((r.status, r.backend().to_owned()));
    }
    assert_eq!(seen[0].0, 200, "{seen:?}");
    assert_eq!(seen[1].0, 200, "{seen:?}");
    assert_ne!(seen[0].1, seen[1].1, "{seen:?}");
    assert_eq!(seen[2].0, 429, "{seen:?}");

    // Unknown host over h2: the same 404 as over HTTP/1.1, and logged the same way.
    let s = connect(tls, "api.example.com", client(&ca, &[b"h2"]))
        .await
        .unwrap();
    let (r, _) = h2_get(s, "https://nobody.example.com/none").await;
    assert_eq!(r.status, 404);
    f.wait_for_log(&["\"status\":404", "/none"], Duration::from_secs(5))
        .await;
    f.wait_for_log(&["\"status\":200", "/h2"], Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_h2c_a_plain_listener_speaks_only_http1() {
    let b = Backend::start("api").await;
    let body = format!(
        "[[route]]\nupstream = \"api\"\n{}",
        upstream("api", &[b.addr], "")
    );
    let f = Fulcrum::start("", &body);
    let plain = TcpStream::connect(f.addr).await.unwrap();
    let failed = match h2_client(plain).await {
        Err(_) => true,
        Ok(mut sender) => {
            let req = Request::get("http://a/")
                .body(Full::new(Bytes::new()))
                .unwrap();
            sender.send_request(req).await.is_err()
        }
    };
    assert!(failed, "h2c answered without h2c = true");
    assert_eq!(get(f.addr, "a", "/").await.backend(), "api");
}

/// A WebSocket handshake on `c` for `path`, then messages both ways through the echo backend.
async fn websocket_round_trip<S>(mut c: S, path: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    websocket_handshake(&mut c, path).await;
    for message in ["hello", "from the client", "and back"] {
        c.write_all(message.as_bytes()).await.unwrap();
        let mut got = vec![0u8; message.len()];
        let read = c.read_exact(&mut got).await;
        assert!(read.is_ok(), "{path}: {message}: {read:?}");
        assert_eq!(got, message.as_bytes(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_work_through_plain_and_tls_listeners_with_every_strategy() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "ws", &ca.issue(&["ws.example.com"]));
    let (one, task1) = upgrade_echo_backend().await;
    let (two, task2) = upgrade_echo_backend().await;
    let strategies = [
        "round_robin",
        "weighted_round_robin",
        "least_connections",
        "p2c",
        "random",
        "ip_hash",
        "consistent_hash",
    ];
    let mut body = String::new();
    for s in strategies {
        let hash = if s == "consistent_hash" {
            "hash_key = \"path\"\n"
        } else {
            ""
        };
        body.push_str(&format!(
            "[[route]]\npath = \"/{s}/\"\nupstream = \"{s}\"\n\n[upstream.{s}]\nbalance = \"{s}\"\n{hash}backends = [{{ addr = \"{one}\" }}, {{ addr = \"{two}\" }}]\n\n"
        ));
    }
    let port = free_port();
    let f = serving(
        Fulcrum::start(&tls_listener(port, &[&cert], None), &body),
        port,
    )
    .await;
    let tls: SocketAddr = ([127, 0, 0, 1], port).into();
    for s in strategies {
        let path = format!("/{s}/chat");
        // A WebSocket client offers http/1.1 only (RFC 8441 over h2 is another matter).
        let c = connect(tls, "ws.example.com", client(&ca, &[b"http/1.1"]))
            .await
            .unwrap();
        websocket_round_trip(c, &format!("{path}?tls")).await;
        websocket_round_trip(TcpStream::connect(f.addr).await.unwrap(), &path).await;
    }
    task1.abort();
    task2.abort();
}

/// An HTTPS backend whose certificate `ca` signed for `names`.
async fn https_backend(name: &str, ca: &Ca, names: &[&str]) -> Backend {
    let issued = ca.issue(names);
    let chain = vec![CertificateDer::from_pem_slice(issued.cert.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Backend::https(name, Arc::new(config)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_are_verified_against_the_ca_file() {
    let ca = Ca::new("internal ca");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    // Certificates for an IP address (the default name) and for a name given as `sni`.
    let by_ip = https_backend("by-ip", &ca, &["127.0.0.1"]).await;
    let by_name = https_backend("by-name", &ca, &["backend.internal"]).await;
    let body = format!(
        "[[route]]\npath = \"/ip/\"\nupstream = \"ip\"\n\n[[route]]\npath = \"/name/\"\nupstream = \"name\"\n\n[[route]]\npath = \"/untrusted/\"\nupstream = \"untrusted\"\n\n[[route]]\npath = \"/wrong-name/\"\nupstream = \"wrong\"\n\n\
         [upstream.ip]\ntls = true\nca_file = \"{ca}\"\nbackends = [{{ addr = \"{ip}\" }}]\n[upstream.ip.health_check]\npath = \"/healthz\"\ninterval = \"200ms\"\n\n\
         [upstream.name]\ntls = true\nsni = \"backend.internal\"\nca_file = \"{ca}\"\nbackends = [{{ addr = \"{name}\" }}]\n\n\
         [upstream.untrusted]\ntls = true\nbackends = [{{ addr = \"{ip}\" }}]\n\n\
         [upstream.wrong]\ntls = true\nca_file = \"{ca}\"\nbackends = [{{ addr = \"{name}\" }}]\n",
        ca = ca_file.display(),
        ip = by_ip.addr,
        name = by_name.addr,
    );
    let f = Fulcrum::start_logging("info", "access_log = \"stderr\"\n", &body);
    let ok = get(f.addr, "a", "/ip/x").await;
    assert_eq!((ok.status, ok.backend()), (200, "by-ip"), "{}", ok.body);
    // Health checks speak TLS too and find it healthy.
    wait_until("health checks over TLS", Duration::from_secs(5), || {
        by_ip.health_checks() >= 2
    })
    .await;
    let up = format!(
        "fulcrum_backend_up{{backend=\"{}\",upstream=\"ip\"}}",
        by_ip.addr
    );
    assert_eq!(f.metric(&up).await, Some(1.0));
    let ok = get(f.addr, "a", "/name/x").await;
    assert_eq!((ok.status, ok.backend()), (200, "by-name"), "{}", ok.body);
    // Without the CA: the private CA is unknown, a 502 and a log line that says why.
    let refused = get(f.addr, "a", "/untrusted/x").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    f.wait_for_log(&["/untrusted/x", "UnknownIssuer"], Duration::from_secs(5))
        .await;
    // A certificate for another name than the one asked for.
    let refused = get(f.addr, "a", "/wrong-name/x").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    f.wait_for_log(
        &["/wrong-name/x", "not valid for name"],
        Duration::from_secs(5),
    )
    .await;
    // Neither refused request reached a backend (health checks are not counted as hits).
    assert_eq!((by_ip.hits(), by_name.hits()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_takes_any_certificate_and_says_so() {
    let ca = Ca::new("unknown ca");
    let backend = https_backend("self", &ca, &["elsewhere.example"]).await;
    let body = format!(
        "[[route]]\nupstream = \"s\"\n\n[upstream.s]\ntls = true\ninsecure_skip_verify = true\nbackends = [{{ addr = \"{}\" }}]\n",
        backend.addr
    );
    let f = Fulcrum::start_logging("warn", "", &body);
    let r = get(f.addr, "a", "/").await;
    assert_eq!((r.status, r.backend()), (200, "self"));
    f.wait_for_log(
        &["insecure_skip_verify", "not verified"],
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_are_redirected_to_https() {
    let server = "redirect_http_to_https = true\n";
    let fixture = site("site.example.com", server, false).await;
    let ca = &fixture.ca;
    let port = fixture.port;
    let tls = fixture.tls;
    let f = &fixture.f;
    let b = &fixture.backend;
    let r = get(f.addr, "site.example.com:8080", "/a/b?x=1&y=2").await;
    assert_eq!(r.status, 308);
    let location = r.headers["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!("https://site.example.com:{port}/a/b?x=1&y=2")
    );
    // A POST keeps its method under 308; nothing reached the backend.
    let post = Request::post("/form")
        .header("host", "site.example.com")
        .body(Full::new(Bytes::from_static(b"a=1")))
        .unwrap();
    let r = send(f.addr, post).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.headers["location"],
        format!("https://site.example.com:{port}/form").as_str()
    );
    assert_eq!(b.hits(), 0);
    // A target that is not a path (`OPTIONS *`) is sent to the root.
    let reply = raw(
        f.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: site.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 308"), "{reply}");
    let location = format!("location: https://site.example.com:{port}/\r\n");
    assert!(reply.to_ascii_lowercase().contains(&location), "{reply}");
    assert_eq!(b.hits(), 0);
    // Over TLS the request is served.
    let s = connect(tls, "site.example.com", client(ca, &[]))
        .await
        .unwrap();
    let r = h1_get(s, "site.example.com", "/a/b").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `fulcrum check` on a config in `dir`; (success, output).
fn check(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("fulcrum.toml");
    std::fs::write(&path, text).unwrap();
    let (ok, out, err) = check_file(&path, &[]);
    (ok, format!("{out}{err}"))
}

#[test]
fn check_finds_a_key_of_another_certificate_an_expired_one_and_missing_files() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let good = ca.issue(&["good.example.com"]);
    let other = ca.issue(&["other.example.com"]);
    let (good_cert, _) = write(dir.path(), "good", &good);
    let (_, other_key) = write(dir.path(), "other", &other);
    let expired = write(
        dir.path(),
        "expired",
        &ca.issue_valid(&["old.example.com"], -60, -1),
    );
    let fine = write(dir.path(), "fine", &ca.issue(&["fine.example.com"]));
    let mismatched = (good_cert.clone(), other_key.clone());
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n\n{}\n{}\n[[server.tls]]\nlisten = \"127.0.0.1:3\"\ncertificates = [{{ cert = \"missing.pem\", key = \"missing.key\" }}]\nmin_version = \"1.1\"\n\n[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"127.0.0.1:9\" }}]\n",
        tls_listener(2, &[&mismatched, &expired], None),
        tls_listener(4, &[&fine], Some(Path::new("nope.pem"))),
    );
    let (ok, out) = check(dir.path(), &text);
    assert!(!ok, "{out}");
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("fulcrum.toml:"))
        .collect();
    let has = |parts: &[&str]| lines.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&[
            "fulcrum.toml:6:",
            "server.tls[0].certificates[0].key",
            "does not belong to the certificate"
        ]),
        "{out}"
    );
    assert!(
        has(&["server.tls[0].certificates[1].cert", "expired on"]),
        "{out}"
    );
    assert!(
        has(&["server.tls[1].default_certificate", "not the cert of any"]),
        "{out}"
    );
    assert!(
        has(&[
            "server.tls[2].certificates[0].cert",
            "missing.pem",
            "No such file"
        ]),
        "{out}"
    );
    assert!(has(&["server.tls[2].min_version", "\"1.3\""]), "{out}");
    // Each at its place, in file order.
    let places: Vec<(usize, usize)> = lines
        .iter()
        .filter_map(|l| {
            let rest = l.split("fulcrum.toml:").nth(1)?;
            let mut it = rest.split(':');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    assert_eq!(places.len(), 5, "{out}");
    assert!(places.windows(2).all(|w| w[0] <= w[1]), "{out}");
}

#[test]
fn a_certificate_or_key_path_at_a_fifo_or_a_device_is_refused_at_once() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = write(dir.path(), "site", &ca.issue(&["site.example.com"]));
    // A FIFO nobody writes to as a certificate, /dev/zero as a key, /dev/null as a CA file:
    // a plain read blocks forever, fills memory, or reads nothing.
    let fifo = dir.path().join("fifo.pem");
    mkfifo(&fifo);
    let zero = (cert, PathBuf::from("/dev/zero"));
    let stuck = (fifo.clone(), dir.path().join("site.key"));
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n\n{}\n{}\n[[route]]\nupstream = \"u\"\n[upstream.u]\ntls = true\nca_file = \"/dev/null\"\nbackends = [{{ addr = \"127.0.0.1:9\" }}]\n",
        tls_listener(2, &[&stuck], None),
        tls_listener(3, &[&zero], None),
    );
    // check_file gives up (and fails the test) after 30 s.
    let (ok, out) = check(dir.path(), &text);
    assert!(!ok, "{out}");
    let has = |parts: &[&str]| out.lines().any(|l| parts.iter().all(|p| l.contains(p)));
    let fifo = format!(
        "cannot read certificates from {}: it is a FIFO (named pipe), not a regular file",
        fifo.display()
    );
    assert!(has(&["server.tls[0].certificates[0].cert", &fifo]), "{out}");
    let zero =
        "cannot read a private key from /dev/zero: it is a character device, not a regular file";
    assert!(has(&["server.tls[1].certificates[0].key", zero]), "{out}");
    let null =
        "cannot read certificates from /dev/null: it is a character device, not a regular file";
    assert!(has(&["upstream.u.ca_file", null]), "{out}");
}

#[test]
fn check_accepts_good_certificates_and_refuses_tls_keys_on_a_plain_upstream() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    // Referred to by a relative path below.
    write(dir.path(), "site", &ca.issue(&["site.example.com"]));
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    // Relative paths are relative to the config file.
    let relative = (PathBuf::from("site.pem"), PathBuf::from("site.key"));
    let soon = write(
        dir.path(),
        "soon",
        &ca.issue_valid(&["soon.example.com"], -60, 5),
    );
    let by_ip = write(dir.path(), "ip", &ca.issue(&["127.0.0.1"]));
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n\n{}\n{}\n[[route]]\nupstream = \"u\"\n[upstream.u]\ntls = true\nca_file = \"ca.pem\"\nbackends = [{{ addr = \"127.0.0.1:9\" }}]\n",
        tls_listener(2, &[&relative], Some(Path::new("site.pem"))),
        tls_listener(3, &[&soon, &by_ip], None),
    );
    let (ok, out) = check(dir.path(), &text);
    assert!(ok, "{out}");
    // A certificate that expires in 5 days is a warning.
    assert!(
        out.lines().any(|l| l.contains("warning")
            && l.contains("server.tls[1].certificates[0].cert")
            && l.contains("soon.example.com")
            && (l.contains("in 4 days") || l.contains("in 5 days"))),
        "{out}"
    );
    // One that only names an IP address is never chosen by SNI: a warning unless it is the
    // default.
    assert!(
        out.lines().any(|l| l.contains("warning")
            && l.contains("server.tls[1].certificates[1].cert")
            && l.contains("names only IP addresses")),
        "{out}"
    );
    let text = "[server]\nlisten = [\"127.0.0.1:1\"]\nredirect_http_to_https = true\n[[route]]\nupstream = \"u\"\n[upstream.u]\nsni = \"x\"\nca_file = \"missing.pem\"\nbackends = [{ addr = \"127.0.0.1:9\" }]\n";
    let (ok, out) = check(dir.path(), text);
    assert!(!ok, "{out}");
    assert!(
        out.contains("upstream.u.sni: sni applies only to HTTPS backends; add tls = true"),
        "{out}"
    );
    assert!(
        out.contains("upstream.u.ca_file: ca_file applies only to HTTPS backends; add tls = true"),
        "{out}"
    );
    assert!(
        out.contains("server.redirect_http_to_https: needs a TLS listener"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_after_reload_and_a_broken_one_is_not() {
    let fixture = site("site.example.com", "", true).await;
    let ca = &fixture.ca;
    let tls = fixture.tls;
    let f = &fixture.f;
    let site = &fixture.files;
    let serial = |s: &TlsStream<TcpStream>| peer_cert(s, |c| c.raw_serial().to_vec());
    let first = connect(tls, "site.example.com", client(ca, &[b"http/1.1"]))
        .await
        .unwrap();
    let old = serial(&first);

    // Renewed on disk (a new key too), with one more name.
    let renewed = ca.issue(&["site.example.com", "new.example.com"]);
    std::fs::write(&site.0, &renewed.cert).unwrap();
    std::fs::write(&site.1, &renewed.key).unwrap();
    let r = f.admin_post("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = connect(tls, "new.example.com", client(ca, &[]))
        .await
        .unwrap();
    assert_ne!(serial(&second), old);
    assert_eq!(presented(&second), ["site.example.com", "new.example.com"]);
    // The connection made before the reload goes on.
    assert_eq!(h1_get(first, "site.example.com", "/").await.status, 200);

    // A key that does not match: the reload is refused, the renewed certificate stays.
    let other = ca.issue(&["site.example.com"]);
    std::fs::write(&site.1, &other.key).unwrap();
    let r = f.admin_post("/reload").await;
    assert!(r.status >= 400, "{} {}", r.status, r.body);
    assert!(
        r.body.contains("does not belong to the certificate"),
        "{}",
        r.body
    );
    let third = connect(tls, "new.example.com", client(ca, &[]))
        .await
        .unwrap();
    assert_eq!(presented(&third), ["site.example.com", "new.example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_cannot_move_a_tls_listener_which_keeps_serving_until_a_restart() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let site = write(dir.path(), "site", &ca.issue(&["site.example.com"]));
    let b = Backend::start("site").await;
    let (port, other) = (free_port(), free_port());
    let body = format!(
        "[[route]]\nupstream = \"s\"\n{}",
        upstream("s", &[b.addr], "")
    );
    let server = |port| {
        format!(
            "redirect_http_to_https = true\n{}",
            tls_listener(port, &[&site], None)
        )
    };
    let f = serving(Fulcrum::start(&server(port), &body), port).await;
    let moved = f.server.replace(&server(port), &server(other));
    f.replace(&format!("{moved}{body}"));
    let r = f.admin_post("/reload").await;
    assert!(
        r.body.contains("server.tls changed: restart"),
        "{} {}",
        r.status,
        r.body
    );
    // The running listener still serves its certificate, and the redirect still points at it.
    let s = connect(
        ([127, 0, 0, 1], port).into(),
        "site.example.com",
        client(&ca, &[]),
    )
    .await
    .expect("the running TLS listener");
    assert_eq!(presented(&s), ["site.example.com"]);
    // The new address waits for a restart.
    assert!(TcpStream::connect(("127.0.0.1", other)).await.is_err());
    let r = get(f.addr, "site.example.com", "/x").await;
    assert_eq!(
        r.headers["location"],
        format!("https://site.example.com:{port}/x").as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_the_tls_listeners_in_another_order_reloads_cleanly() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let site = write(dir.path(), "site", &ca.issue(&["site.example.com"]));
    let b = Backend::start("site").await;
    let (one, two) = (free_port(), free_port());
    let body = format!(
        "[[route]]\nupstream = \"s\"\n{}",
        upstream("s", &[b.addr], "")
    );
    let listeners = |a, b| {
        format!(
            "{}{}",
            tls_listener(a, &[&site], None),
            tls_listener(b, &[&site], None)
        )
    };
    let f = serving(Fulcrum::start(&listeners(one, two), &body), one).await;
    let f = serving(f, two).await;
    let swapped = f.server.replace(&listeners(one, two), &listeners(two, one));
    f.replace(&format!("{swapped}{body}"));
    let r = f.admin_post("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("restart"), "{}", r.body);
    for port in [one, two] {
        let s = connect(
            ([127, 0, 0, 1], port).into(),
            "site.example.com",
            client(&ca, &[]),
        )
        .await
        .unwrap();
        assert_eq!(presented(&s), ["site.example.com"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_h2c_short_and_silent_http1_clients_are_still_guarded() {
    let b = Backend::start("api").await;
    let body = format!(
        "[[route]]\nupstream = \"api\"\n{}",
        upstream("api", &[b.addr], "")
    );
    let f = Fulcrum::start("h2c = true\nrequest_header_timeout = \"1s\"\n", &body);
    // Shorter than the HTTP/2 preface pingora peeks for: answered, not held until
    // request_header_timeout.
    let started = std::time::Instant::now();
    let reply = raw(f.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Silent, and a header that stops: closed after request_header_timeout.
    // (The HTTP/2 preface's first 18 bytes read as a whole header: it must still come whole.)
    for request in [&b""[..], b"GET / HTT", b"PRI * HTTP/2.0\r\n\r\n"] {
        let started = std::time::Instant::now();
        let reply = raw(f.addr, request).await;
        // Closed silently when nothing came, else with a 408.
        if request.is_empty() {
            assert!(reply.is_empty(), "{reply:?}");
        } else {
            assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
        }
        let took = started.elapsed();
        let window = Duration::from_millis(900)..Duration::from_secs(5);
        assert!(window.contains(&took), "{took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_metric_shows_the_sooner_of_two_certificates_with_one_name() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let soon = write(
        dir.path(),
        "soon",
        &ca.issue_valid(&["same.example.com"], -1, 5),
    );
    let late = write(
        dir.path(),
        "late",
        &ca.issue_valid(&["same.example.com"], -1, 30),
    );
    let later = write(
        dir.path(),
        "later",
        &ca.issue_valid(&["same.example.com"], -1, 60),
    );
    let b = Backend::start("s").await;
    // The soonest in the middle: neither the first nor the last listed.
    let server = format!(
        "{}{}{}",
        tls_listener(free_port(), &[&late], None),
        tls_listener(free_port(), &[&soon], None),
        tls_listener(free_port(), &[&later], None)
    );
    let body = format!(
        "[[route]]\nupstream = \"s\"\n{}",
        upstream("s", &[b.addr], "")
    );
    let f = Fulcrum::start(&server, &body);
    let series = "fulcrum_tls_certificate_expiry_timestamp_seconds{name=\"same.example.com\"}";
    let expires = f.metric(series).await.expect("the series");
    let in_days = (expires - time_now().unix_timestamp() as f64) / 86_400.0;
    assert!((4.0..=5.0).contains(&in_days), "{in_days}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_do_not_restart_the_health_checks_of_https_backends() {
    let ca = Ca::new("internal ca");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let backend = https_backend("b", &ca, &["127.0.0.1"]).await;
    let body = |n: u32| {
        format!(
            "[[route]]\nupstream = \"s\"\nretries = {n}\n\n[upstream.s]\ntls = true\nca_file = \"{}\"\nbackends = [{{ addr = \"{}\" }}]\n[upstream.s.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
            ca_file.display(),
            backend.addr
        )
    };
    let f = Fulcrum::start("", &body(0));
    let before = backend.health_checks();
    // A reload every 250 ms for 3 s: a probe task restarted by each would never reach its
    // next interval.
    for n in 1..=12 {
        f.rewrite(&body(n % 2));
        let r = f.admin_post("/reload").await;
        assert_eq!(r.status, 200, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let probes = backend.health_checks() - before;
    assert!(probes >= 2, "{probes} health checks in 3 s of reloads");
}

#[test]
fn a_dns_refresh_does_not_read_the_certificate_files_again() {
    let ca = Ca::new("test ca");
    let dir = tempfile::tempdir().unwrap();
    let site = write(dir.path(), "site", &ca.issue(&["site.example.com"]));
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n{}\n[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"127.0.0.1:9\" }}]\n",
        tls_listener(2, &[&site], None)
    );
    let path = dir.path().join("fulcrum.toml");
    let prepared = fulcrum::config::prepare(&text, &path).unwrap();
    let resolver = fulcrum::config::SystemResolver;
    let running = prepared.resolve(&resolver, &[]).config;
    // The key on disk goes bad after the config was applied.
    std::fs::write(&site.1, "not a key").unwrap();
    assert!(fulcrum::config::parse(&text, &path).is_err());
    // A refresh resolves the prepared config again, with the certificates that run.
    let refreshed = prepared.resolve(&resolver, &running.dns).config;
    assert!(Arc::ptr_eq(
        &refreshed.server.tls[0].certificates[0],
        &running.server.tls[0].certificates[0]
    ));
}
