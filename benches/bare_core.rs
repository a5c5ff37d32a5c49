//! The ceiling for `benches/compare.py` (issue 23, step 1): the smallest correct HTTP/1
//! keep-alive reverse proxy on pingora-core alone, without pingora-proxy's `HttpProxy`. It shows
//! what a request loop of our own could cost on the same engine, before anything of fulcrum is
//! moved onto one. Nothing of fulcrum is in it.
//!
//! What it does differently from `bare_pingora_tuned.rs` (same allocator, same listener, same
//! connector and pool, one worker thread):
//! - one future per connection, looping over its requests (`ServerApp::process_new` returns only
//!   when the connection ends), instead of a boxed future and a fresh session context per request;
//! - one deadline per request (`REQUEST_DEADLINE`, a single timer around the whole exchange)
//!   instead of a timer per read;
//! - between requests it holds the socket and nothing else: the wait for the next request reads
//!   into a scratch buffer that lives only inside one poll, so an idle connection keeps no read
//!   buffer, no session and no header map; bytes a pipelined request left behind are carried over;
//! - the upstream request and the response header are built with their final capacity, copying
//!   every header but the hop-by-hop ones.
//!
//! Correct for what the harness sends and for the usual HTTP/1.1 exchanges: bodies either way
//! (length-delimited, chunked or until close), HEAD, keep-alive and `Connection: close`, client
//! pipelining, a retry of a request without a body when a pooled upstream connection turns out to
//! be closed, 502 when the backend fails before the response starts. Out of scope, as a bench:
//! upgrades (the `Upgrade` header is not forwarded, so the backend answers a plain response),
//! `Expect: 100-continue` (the client sends its body after its own wait), HTTP/2, TLS, graceful
//! shutdown of idle connections (they end at the next request or the idle timeout).
//!
//!   bare_core LISTEN BACKEND [BACKEND ...]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use http::header::{self, HeaderName};
use pingora::apps::ServerApp;
use pingora::connectors::http::v1::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorType, Result};
use tokio::io::{AsyncRead, ReadBuf};

/// How long a keep-alive connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole exchange of one request: its header, both bodies and the response.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// The scratch buffer of the wait for a request, and the first capacity of its header buffer
/// (pingora-core's own first read is this size too).
const FIRST_READ: usize = 4096;

/// Request headers that describe the client's connection, not the request (RFC 9110, 7.6.1).
/// `Transfer-Encoding` is kept: pingora-core's body writer frames the upstream body from it.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::UPGRADE,
];

struct Proxy {
    peers: Vec<HttpPeer>,
    next: AtomicUsize,
    connector: Connector,
}

#[async_trait]
impl ServerApp for Proxy {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // While idle this future holds the socket, the bytes a pipelined request left (if any)
        // and the idle timer; everything a request needs lives in a box of its own (`serve`),
        // allocated when the request's first bytes arrive and freed when it is answered. An
        // async state machine is as large as its largest state, and pingora-core's sessions,
        // connector and their futures take several KiB.
        let mut pipelined: Option<BytesMut> = None;
        loop {
            let start = match pipelined.take().filter(|p| !p.is_empty()) {
                Some(prefix) => prefix,
                None => match tokio::time::timeout(IDLE_TIMEOUT, first_bytes(&mut stream)).await {
                    Ok(Ok(Some(bytes))) => bytes,
                    _ => return None, // closed, failed or idle too long
                },
            };
            let served = Box::pin(self.serve(stream, start));
            match tokio::time::timeout(REQUEST_DEADLINE, served).await {
                Ok(Some(next)) => (stream, pipelined) = next,
                Ok(None) => return None, // closed, or answered with an error status where it could be
                Err(_) => return None,   // past the deadline: drop the connection
            }
            if *shutdown.borrow() {
                return None;
            }
        }
    }
}

/// Waits until the client sends something and returns those bytes in a buffer of their own.
/// The scratch array lives only inside one poll, so the pending future holds no buffer.
async fn first_bytes(stream: &mut Stream) -> std::io::Result<Option<BytesMut>> {
    poll_fn(|cx| {
        let mut scratch = [0u8; FIRST_READ];
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Ok(None)),
            Poll::Ready(Ok(())) => {
                let mut bytes = BytesMut::with_capacity(FIRST_READ.max(buf.filled().len()));
                bytes.extend_from_slice(buf.filled());
                Poll::Ready(Ok(Some(bytes)))
            }
        }
    })
    .await
}

/// Answers `status` when nothing of the response was sent yet; the connection closes after it.
async fn refuse(session: &mut DownstreamSession, status: u16) {
    if session.response_written().is_some() {
        return;
    }
    let Ok(mut resp) = ResponseHeader::build(status, Some(1)) else {
        return;
    };
    let _ = resp.insert_header(header::CONTENT_LENGTH, "0");
    session.set_server_keepalive(None);
    let _ = session.write_response_header(Box::new(resp)).await;
}

impl Proxy {
    /// Serves the request whose first bytes are `start`; returns the connection and what a
    /// pipelined request left, when the connection may carry another request.
    async fn serve(&self, stream: Stream, start: BytesMut) -> Option<(Stream, Option<BytesMut>)> {
        let mut session = DownstreamSession::new(stream);
        session.set_read_timeout(None);
        session.set_pipelining_enabled(true);
        session.set_pipelined_prefix(start);
        match self.exchange(&mut session).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
        match session.reuse().await {
            Ok(Some(reusable)) => Some(reusable.into_parts()),
            _ => None,
        }
    }

    /// One request: `Ok(false)` when the client closed before sending one.
    async fn exchange(&self, down: &mut DownstreamSession) -> Result<bool> {
        match down.read_request().await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(false),
            Err(e) => {
                if e.etype() == &ErrorType::InvalidHTTPHeader {
                    refuse(down, 400).await;
                }
                return Err(e);
            }
        }
        if let Err(e) = self.forward(down).await {
            refuse(down, 502).await;
            return Err(e);
        }
        Ok(true)
    }

    /// Sends the request read to a backend and its response to the client.
    async fn forward(&self, down: &mut DownstreamSession) -> Result<()> {
        let peer = &self.peers[self.next.fetch_add(1, Ordering::Relaxed) % self.peers.len()];
        let (mut up, reused) = self.connector.get_http_session(peer).await?;
        let bodiless = down.is_body_empty();
        let mut sent = send_request(&mut up, down).await;
        if sent.is_err() && reused && bodiless {
            // A pooled connection the backend had closed: once more on a new one.
            let (fresh, _) = self.connector.get_http_session(peer).await?;
            up = fresh;
            sent = send_request(&mut up, down).await;
        }
        sent?;
        let resp = loop {
            up.read_response().await?;
            let resp = up.resp_header().expect("read_response succeeded");
            if !resp.status.is_informational() {
                break resp;
            }
        };
        down.write_response_header(response_header(resp)?).await?;
        while let Some(chunk) = up.read_body_bytes().await? {
            down.write_body(&chunk).await?;
        }
        down.finish_body().await?;
        self.connector.release_http_session(up, peer, None).await;
        Ok(())
    }
}

/// Sends the request's header and its body, as the client sends it.
async fn send_request(up: &mut UpstreamSession, down: &mut DownstreamSession) -> Result<()> {
    up.write_request_header(request_header(down.req_header())?)
        .await?;
    while let Some(chunk) = down.read_body_bytes().await? {
        up.write_body(&chunk).await?;
    }
    up.finish_body().await?;
    Ok(())
}

/// The upstream request: the client's method, target and headers, minus the hop-by-hop ones, in
/// a header map of its final size.
fn request_header(client: &RequestHeader) -> Result<Box<RequestHeader>> {
    let path = client.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = RequestHeader::build_no_case(
        client.method.clone(),
        path.as_bytes(),
        Some(client.headers.len()),
    )?;
    for (name, value) in &client.headers {
        if !HOP_BY_HOP.contains(name) {
            req.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(Box::new(req))
}

/// The client's response: the backend's status and headers, minus the hop-by-hop ones.
fn response_header(backend: &ResponseHeader) -> Result<Box<ResponseHeader>> {
    let mut resp = ResponseHeader::build_no_case(backend.status, Some(backend.headers.len()))?;
    for (name, value) in &backend.headers {
        if !HOP_BY_HOP.contains(name) {
            resp.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(Box::new(resp))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .expect("usage: bare_core LISTEN BACKEND [BACKEND ...]");
    let peers: Vec<HttpPeer> = args
        .map(|a| {
            let addr: SocketAddr = a.parse().expect("backend address");
            HttpPeer::new(addr, false, String::new())
        })
        .collect();
    assert!(!peers.is_empty(), "at least one backend");

    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = Proxy {
        peers,
        next: AtomicUsize::new(0),
        connector: Connector::new(Some(ConnectorOptions::from_server_conf(
            &server.configuration,
        ))),
    };
    let mut service = Service::new("bare core".to_string(), proxy);
    service
        .add_listener(ListenerConfig::tcp(&listen).l4_buffer(L4BufferSettings::default().read(0)));
    server.add_service(service);
    server.run_forever();
}
