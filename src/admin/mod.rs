//! The admin listener. It never serves proxied traffic.
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok` (the process is alive) |
//! | `GET /readyz` | 200 `ready` when every proxy listener accepts connections (the first health round ran before they opened); 503 while shutting down or if one does not |
//! | `GET /status` | JSON: routes, upstreams and backends with their health, breaker and load, the last config load |
//! | `POST /reload` | reloads the config file: 200 with a one-line summary, or 400 with every problem (file:line:col) |
//! | `GET /metrics` | Prometheus text format |
//!
//! A known path with another method gets 405 with `Allow`; anything else 404. Beside the metric
//! families, `/metrics` serves gauges read from the published snapshot when it is scraped
//! (`snapshot_gauges`).

mod snapshot_gauges;
mod status;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, TextEncoder};

use crate::metrics::Metrics;
use crate::reload::{ReloadHandle, Runtime};
use crate::server::drain::Drain;

/// What `GET /healthz` answers (`fulcrum healthcheck` looks for it).
pub const HEALTHZ_BODY: &[u8] = b"ok\n";

/// How long `/readyz` waits for a proxy listener to accept.
const READY_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) struct AdminApp {
    reload: ReloadHandle,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    drain: Arc<Drain>,
    /// Where `/readyz` connects: the proxy listeners (an unspecified IP as loopback).
    listeners: Vec<SocketAddr>,
}

impl AdminApp {
    pub fn new(
        reload: ReloadHandle,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        drain: Arc<Drain>,
    ) -> AdminApp {
        snapshot_gauges::register(&metrics, runtime.snapshot());
        let listeners = runtime
            .listen()
            .iter()
            .map(|a| match a.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => {
                    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())
                }
                IpAddr::V6(ip) if ip.is_unspecified() => {
                    SocketAddr::new(Ipv6Addr::LOCALHOST.into(), a.port())
                }
                _ => *a,
            })
            .collect();
        AdminApp {
            reload,
            runtime,
            metrics,
            drain,
            listeners,
        }
    }

    async fn ready(&self) -> (StatusCode, String) {
        if self.drain.is_draining() {
            return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
        }
        for &addr in &self.listeners {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(READY_CONNECT_TIMEOUT, connect).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let msg = format!("listener {addr} does not accept: {e}\n");
                    return (StatusCode::SERVICE_UNAVAILABLE, msg);
                }
                Err(_) => {
                    let msg = format!(
                        "listener {addr} did not accept within {READY_CONNECT_TIMEOUT:?}\n"
                    );
                    return (StatusCode::SERVICE_UNAVAILABLE, msg);
                }
            }
        }
        (StatusCode::OK, "ready\n".into())
    }

    async fn reload(&self) -> (StatusCode, String) {
        match self.reload.reload().await {
            Some(outcome) if outcome.is_success() => (StatusCode::OK, format!("{outcome}\n")),
            Some(outcome) => (StatusCode::BAD_REQUEST, format!("{outcome}\n")),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down; not reloading\n".to_owned(),
            ),
        }
    }

    fn metrics(&self) -> (StatusCode, Vec<u8>) {
        let mut out = Vec::new();
        match TextEncoder::new().encode(&self.metrics.registry().gather(), &mut out) {
            Ok(()) => (StatusCode::OK, out),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode metrics");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    b"cannot encode metrics\n".to_vec(),
                )
            }
        }
    }
}

/// The methods each admin path takes (for 405 and `Allow`).
fn allowed(path: &str) -> Option<&'static str> {
    match path {
        "/healthz" | "/readyz" | "/status" | "/metrics" => Some("GET, HEAD"),
        "/reload" => Some("POST"),
        _ => None,
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Admin requests carry no body: the next bytes are the next request's header, under the
        // client limits again. One that does carry a body ends its connection.
        let req = session.req_header();
        let bodyless = !req.headers.contains_key(http::header::TRANSFER_ENCODING)
            && req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        // pingora's HTTP app keeps every connection alive but for `Connection: close`; an
        // HTTP/1.0 client that did not ask for keep-alive waits for the close to end the body.
        let http10_close = req.version == http::Version::HTTP_10
            && !crate::proxy::has_token(&req.headers, http::header::CONNECTION, "keep-alive");
        session.set_pipelining_enabled(true);
        match (bodyless && !http10_close, session.stream()) {
            (true, Some(stream)) => {
                crate::server::guard::rearm(stream);
                // No timer of pingora's between requests: the guard has the keep-alive limit.
                if session.get_keepalive().is_some() {
                    session.set_keepalive(Some(0));
                }
            }
            _ => session.set_keepalive(None),
        }
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_owned());
        let get = method == Method::GET || method == Method::HEAD;
        let (status, content_type, body) = match path.as_str() {
            "/healthz" if get => (StatusCode::OK, TEXT, HEALTHZ_BODY.to_vec()),
            "/readyz" if get => {
                let (status, body) = self.ready().await;
                (status, TEXT, body.into_bytes())
            }
            "/status" if get => {
                let mut body =
                    serde_json::to_vec_pretty(&status::status(&self.runtime)).unwrap_or_default();
                body.push(b'\n');
                (StatusCode::OK, "application/json", body)
            }
            "/metrics" if get => {
                let (status, body) = self.metrics();
                (status, prometheus::TEXT_FORMAT, body)
            }
            "/reload" if method == Method::POST => {
                let (status, body) = self.reload().await;
                (status, TEXT, body.into_bytes())
            }
            _ if allowed(&path).is_some() => (
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                b"method not allowed\n".to_vec(),
            ),
            _ => (StatusCode::NOT_FOUND, TEXT, b"not found\n".to_vec()),
        };
        let mut resp = Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type)
            .header(CONTENT_LENGTH, body.len());
        if status == StatusCode::METHOD_NOT_ALLOWED {
            resp = resp.header(ALLOW, allowed(&path).unwrap_or_default());
        }
        resp.body(body).unwrap_or_default()
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
