//! One active probe: a TCP connect, or an HTTP/1.1 `GET path` whose status must match (over
//! TLS for an HTTPS upstream, verified as its requests are). The whole probe (connect, handshake
//! and answer) is bounded by the check's timeout, and a failure says why.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use pingora::tls::TlsConnector;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{HealthCheckConfig, ProbeKind};

/// Probes `addr`; `Err` carries the reason (for the transition log).
pub async fn probe(
    check: &HealthCheckConfig,
    addr: SocketAddr,
    host: &str,
    tls: Option<&ProbeTls>,
) -> Result<(), String> {
    match tokio::time::timeout(check.timeout, attempt(check, addr, host, tls)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {:?}", check.timeout)),
    }
}

/// How an HTTPS upstream's backends are probed: its health-check client config and the name its
/// certificates are verified against.
#[derive(Debug, Clone)]
pub struct ProbeTls {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
    /// What `config` is made of (every load builds a new one): whether it verifies, and the
    /// hash of its `ca_file` (0 without one).
    pub verify: bool,
    pub trust: u64,
}

/// The same name, verification and roots: a probe task need not restart for a reload.
impl PartialEq for ProbeTls {
    fn eq(&self, other: &ProbeTls) -> bool {
        self.name == other.name && self.verify == other.verify && self.trust == other.trust
    }
}

async fn attempt(
    check: &HealthCheckConfig,
    addr: SocketAddr,
    host: &str,
    tls: Option<&ProbeTls>,
) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        _ => format!("connect failed: {e}"),
    })?;
    if check.kind == ProbeKind::Tcp {
        return Ok(());
    }
    match tls {
        None => http(check, stream, host).await,
        Some(tls) => {
            let connector = TlsConnector::from(Arc::clone(&tls.config));
            let stream = connector
                .connect(tls.name.clone(), stream)
                .await
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            http(check, stream, host).await
        }
    }
}

async fn http<S>(check: &HealthCheckConfig, stream: S, host: &str) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http handshake failed: {e}"))?;
    // The connection task must end with the probe, also when a timeout drops this future.
    let _conn = AbortOnDrop(tokio::spawn(conn));
    let req = http::Request::get(check.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "fulcrum-health-check")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid probe request: {e}"))?;
    let status = sender
        .send_request(req)
        .await
        .map_err(|e| format!("no http response: {e}"))?
        .status()
        .as_u16();
    if check.expect_status.iter().any(|m| m.matches(status)) {
        Ok(())
    } else {
        let expected: Vec<String> = check.expect_status.iter().map(|m| m.to_string()).collect();
        Err(format!(
            "status {status} (expected {})",
            expected.join(" or ")
        ))
    }
}

/// A task that ends when this handle is dropped.
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
