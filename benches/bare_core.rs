//! The ceiling for `benches/compare.py` (issue 23, step 1): the smallest correct HTTP/1
//! keep-alive reverse proxy on pingora-core alone, without pingora-proxy's `HttpProxy`. It shows
//! what a request loop of our own could cost on the same engine, before anything of fulcrum is
//! moved onto one. Nothing of fulcrum is in it.
//!
//! What it does differently from `bare_pingora_tuned.rs` (same allocator, same listener, same
//! connector and pool, one worker thread):
//! - one future per connection, looping over its requests (`ServerApp::process_new` returns only
//!   when the connection ends), instead of a boxed future and a fresh session context per request;
//! - one timer per request (`HEADER_DEADLINE` up to the response header, then reset to
//!   `BODY_DEADLINE` for the response body) instead of a timer per read;
//! - between requests it holds the socket and nothing else: the wait for the next request reads
//!   into a scratch buffer that lives only inside one poll, and everything a request needs lives
//!   in a box of its own, allocated when the request's first bytes arrive and freed when it is
//!   answered; bytes a pipelined request left behind are carried over;
//! - the upstream request and the response header are built with their final capacity, copying
//!   every header but the hop-by-hop ones.
//!
//! Correct for what the harness sends and for the usual HTTP/1.1 exchanges: bodies either way
//! (length-delimited, chunked or until close), HEAD, keep-alive and `Connection: close`, the
//! fields a `Connection` header names, client pipelining, a retry (on a new connection) of a
//! request without a body that failed on a pooled upstream connection, 502 when the backend
//! fails before the response starts, 504 past the header deadline. Out of scope, as a bench:
//! upgrades (the `Upgrade` header is not forwarded, so the backend answers a plain response),
//! `Expect: 100-continue` (the client sends its body after its own wait), relaying a backend's
//! early answer while the request body is still being sent, a lingering close after an error
//! status (unread input may turn the close into a reset), HTTP/2, TLS, graceful shutdown of idle
//! connections (they end at their next request, answered with `Connection: close`, or at the
//! idle timeout).
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
use http::header::{self, HeaderName, HeaderValue};
use pingora::apps::ServerApp;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{ErrorType, Result};
use tokio::io::{AsyncRead, ReadBuf};

/// How long a keep-alive connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// From a request's first bytes to the backend's response header: the client's header, the
/// connect, the request body and the backend's wait. Past it, 504 (or, before a request header
/// was read, the connection closes).
const HEADER_DEADLINE: Duration = Duration::from_secs(60);
/// For relaying the response body, from its header on; past it the connection closes, and a
/// response delimited by the close looks complete to the client, as with any proxy's timeout.
const BODY_DEADLINE: Duration = Duration::from_secs(300);
/// The scratch buffer of the wait for a request, and the first capacity of its header buffer
/// (pingora-core's own first read is this size too).
const FIRST_READ: usize = 4096;

/// Request headers that describe the client's connection, not the request (RFC 9110, 7.6.1),
/// besides those its `Connection` header names. `Transfer-Encoding` is kept: pingora-core's body
/// writer frames the upstream body from it. `Upgrade` goes too: this proxy does no upgrades.
const REQUEST_HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::UPGRADE,
];
/// The same for responses (a 426's `Upgrade` stays).
const RESPONSE_HOP_BY_HOP: [HeaderName; 3] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

struct Proxy {
    peers: Vec<HttpPeer>,
    next: AtomicUsize,
    connector: TransportConnector,
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
            let closing = *shutdown.borrow();
            match Box::pin(self.serve(stream, start, closing)).await {
                Some(next) if !closing => (stream, pipelined) = next,
                _ => return None, // closed, failed, past a deadline, or shutting down
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
                let mut bytes = BytesMut::with_capacity(FIRST_READ);
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
    /// pipelined request left, when the connection may carry another request. `closing`: the
    /// server is shutting down, so the response says `Connection: close`.
    async fn serve(
        &self,
        stream: Stream,
        start: BytesMut,
        closing: bool,
    ) -> Option<(Stream, Option<BytesMut>)> {
        let mut session = DownstreamSession::new(stream);
        session.set_read_timeout(None);
        session.set_pipelining_enabled(true);
        session.set_pipelined_prefix(start);
        if !self.exchange(&mut session, closing).await {
            return None;
        }
        match session.reuse().await {
            Ok(Some(reusable)) => Some(reusable.into_parts()),
            _ => None,
        }
    }

    /// One request, under one timer (`HEADER_DEADLINE`, then reset to `BODY_DEADLINE`); true
    /// when the connection may carry another.
    async fn exchange(&self, down: &mut DownstreamSession, closing: bool) -> bool {
        let deadline = tokio::time::sleep(HEADER_DEADLINE);
        tokio::pin!(deadline);
        let read = tokio::select! {
            read = down.read_request() => read,
            () = &mut deadline => return false,
        };
        match read {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(e) => {
                if e.etype() == &ErrorType::InvalidHTTPHeader {
                    refuse(down, 400).await;
                }
                return false;
            }
        }
        if closing {
            down.set_server_keepalive(None);
        }
        let answered = tokio::select! {
            answered = self.response(down) => answered,
            () = &mut deadline => {
                refuse(down, 504).await;
                return false;
            }
        };
        let (mut up, peer) = match answered {
            Ok(answered) => answered,
            Err(_) => {
                refuse(down, 502).await;
                return false;
            }
        };
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + BODY_DEADLINE);
        let relayed = tokio::select! {
            relayed = relay(&mut up, down) => relayed,
            () = &mut deadline => return false,
        };
        if relayed.is_err() {
            return false;
        }
        up.respect_keepalive();
        if let Some(stream) = up.reuse().await {
            self.connector
                .release_stream(stream, peer.reuse_hash(), None);
        }
        true
    }

    /// Sends the request read to a backend and reads its response header. A request without a
    /// body that fails on a pooled connection (one the backend had closed meanwhile) is sent
    /// once more, on a new connection.
    async fn response(&self, down: &mut DownstreamSession) -> Result<(UpstreamSession, &HttpPeer)> {
        let peer = &self.peers[self.next.fetch_add(1, Ordering::Relaxed) % self.peers.len()];
        let bodiless = down.is_body_empty();
        let (stream, reused) = self.connector.get_stream(peer).await?;
        let mut up = UpstreamSession::new_with_options(stream, peer);
        if let Err(mut e) = request(&mut up, down).await {
            e.retry.decide_reuse(reused);
            if !(reused && bodiless && e.retry.retry()) {
                return Err(e);
            }
            let stream = self.connector.new_stream(peer).await?;
            up = UpstreamSession::new_with_options(stream, peer);
            request(&mut up, down).await?;
        }
        Ok((up, peer))
    }
}

/// Sends the request's header and its body, as the client sends it, then reads the response
/// header (past any 1xx). The whole body goes before the response is read: a backend that
/// answers early and stops reading makes this fail (502), where a full proxy would relay its
/// early answer.
async fn request(up: &mut UpstreamSession, down: &mut DownstreamSession) -> Result<()> {
    up.write_request_header(request_header(down.req_header())?)
        .await?;
    while let Some(chunk) = down.read_body_bytes().await? {
        up.write_body(&chunk).await?;
    }
    up.finish_body().await?;
    loop {
        up.read_response().await?;
        if !up
            .resp_header()
            .is_some_and(|r| r.status.is_informational())
        {
            return Ok(());
        }
    }
}

/// The response header and body, from the backend to the client.
async fn relay(up: &mut UpstreamSession, down: &mut DownstreamSession) -> Result<()> {
    let resp = up.resp_header().expect("read before relaying");
    down.write_response_header(response_header(resp)?).await?;
    while let Some(chunk) = up.read_body_bytes().await? {
        down.write_body(&chunk).await?;
    }
    down.finish_body().await?;
    Ok(())
}

/// Whether a `Connection` header lists `name` (a field meant for this hop only).
fn named_in(connection: Option<&HeaderValue>, name: &HeaderName) -> bool {
    connection.is_some_and(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            t.trim_ascii()
                .eq_ignore_ascii_case(name.as_str().as_bytes())
        })
    })
}

/// The upstream request: the client's method, target (as the client sent it) and headers, minus
/// the hop-by-hop ones, in a header map of its final size.
fn request_header(client: &RequestHeader) -> Result<Box<RequestHeader>> {
    let raw = client.raw_path();
    let path = if raw.starts_with(b"/") {
        raw
    } else {
        // absolute-form (`GET http://host/path`): the path of it
        client
            .uri
            .path_and_query()
            .map_or(b"/".as_slice(), |p| p.as_str().as_bytes())
    };
    let mut req =
        RequestHeader::build_no_case(client.method.clone(), path, Some(client.headers.len()))?;
    let connection = client.headers.get(header::CONNECTION);
    for (name, value) in &client.headers {
        if !REQUEST_HOP_BY_HOP.contains(name) && !named_in(connection, name) {
            req.append_header(name.clone(), value.clone())?;
        }
    }
    Ok(Box::new(req))
}

/// The client's response: the backend's status and headers, minus the hop-by-hop ones (pingora
/// adds `Connection` and `Date` as it writes the header).
fn response_header(backend: &ResponseHeader) -> Result<Box<ResponseHeader>> {
    let mut resp = ResponseHeader::build_no_case(backend.status, Some(backend.headers.len() + 2))?;
    let connection = backend.headers.get(header::CONNECTION);
    for (name, value) in &backend.headers {
        if !RESPONSE_HOP_BY_HOP.contains(name) && !named_in(connection, name) {
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
        connector: TransportConnector::new(Some(ConnectorOptions::from_server_conf(
            &server.configuration,
        ))),
    };
    let mut service = Service::new("bare core".to_string(), proxy);
    service
        .add_listener(ListenerConfig::tcp(&listen).l4_buffer(L4BufferSettings::default().read(0)));
    server.add_service(service);
    server.run_forever();
}
