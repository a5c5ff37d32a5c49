//! Client-side limits on the request header, enforced underneath pingora.
//!
//! pingora 0.9 reads a request header with a timeout per read (so one byte a second keeps a
//! slowloris connection open for ever), lets a header grow to its fixed 1 MiB
//! `MAX_HEADER_SIZE`, and, after a response, keeps an HTTP/1.1 connection open without limit.
//! Its public API has no hook while the header is being read, so [`Guarded`] wraps the client
//! connection's transport and watches the bytes pingora reads while a header is expected:
//!
//! - the whole header section must arrive within `request_header_timeout` of its first byte
//!   (else `408` and close), and an idle connection gets `keepalive_timeout` between requests
//!   (`request_header_timeout` for its first one) before it is closed silently;
//! - the header section (request line included) may be at most `max_header_size` bytes and
//!   `max_headers` lines (else `431` and close), so pingora never buffers more than that.
//!
//! An HTTP/2 connection (ALPN `h2`, or h2c) starts with its preface, `PRI * HTTP/2.0` and an
//! empty line, which reads as a complete header: so the preface is held to the header limits
//! and deadline (pingora's HTTP/2 handshake has none), and the frames after it pass untouched;
//! pingora's `h2_idle_timeout` closes an idle HTTP/2 connection.
//!
//! The guard looks for the empty line that ends the header; after it, bytes pass untouched
//! (body, upgraded tunnel) until the proxy says the request is over ([`rearm`], from its
//! logging phase, only when the request body was read to its end, so that no drain of an
//! unread body is mistaken for the next header). A request the client pipelined behind another
//! may already be in pingora's buffer, whole or in part, when the first one ends: it is parsed
//! without a read, or with reads the guard takes as the rest of a header. So the proxy also says
//! when a header has been parsed ([`header_done`], first thing in its request phase), and the
//! guard lets bytes pass from then on whatever it had been expecting. The part of such a header
//! that was already buffered is not counted against `max_header_size` (pingora's own 1 MiB limit
//! still holds; `max_headers` is checked again on the parsed request).
//!
//! A request refused before the proxy saw it ([`Refusal`]: the guard's 408 and 431, pingora's
//! own 400 for a header it cannot parse and 405 for `CONNECT`) gets an access-log line (status,
//! client, reason; no method or path: none was parsed) and a count in
//! `fulcrum_downstream_refused_total{reason}`. pingora's answers are seen as they are written:
//! an HTTP/1 status line written before the proxy said a header was parsed.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN, IO,
};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntCounterVec};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::access_log::{AccessLog, Entry, Style};
use crate::config::runtime::ClientLimits;
use crate::outcome::Outcome;
use crate::server::tls::Sni;
use crate::snapshot::SharedSnapshot;

/// Why a request was refused before the proxy saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The header section did not arrive within `request_header_timeout` (408).
    HeaderTimeout,
    /// The header section was over `max_header_size` or `max_headers` (431).
    HeaderTooLarge,
    /// pingora could not parse the request header (400).
    Malformed,
    /// A `CONNECT` request, which pingora does not proxy (405).
    ConnectMethod,
}

impl Refusal {
    /// The `reason` label of `fulcrum_downstream_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::Malformed => "malformed",
            Refusal::ConnectMethod => "connect_method",
        }
    }

    /// What pingora's answer (its status) before the proxy saw the request means.
    fn of_status(status: u16) -> Refusal {
        match status {
            405 => Refusal::ConnectMethod,
            _ => Refusal::Malformed,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::HeaderTimeout => "request header not complete within request_header_timeout",
            Refusal::HeaderTooLarge => "request header over max_header_size or max_headers",
            Refusal::Malformed => "malformed request header",
            Refusal::ConnectMethod => "CONNECT is not proxied",
        })
    }
}

/// What a refusal counts in (`fulcrum_downstream_refused_total{reason}`) and where it is
/// logged (the proxy listeners' access log; none on the admin listener).
#[derive(Clone)]
pub struct Refusals {
    header_timeout: IntCounter,
    header_too_large: IntCounter,
    malformed: IntCounter,
    connect_method: IntCounter,
    log: Option<Arc<AccessLog>>,
}

impl Refusals {
    pub fn new(refused: &IntCounterVec, log: Option<Arc<AccessLog>>) -> Refusals {
        let counter = |r: Refusal| refused.with_label_values(&[r.label()]);
        Refusals {
            header_timeout: counter(Refusal::HeaderTimeout),
            header_too_large: counter(Refusal::HeaderTooLarge),
            malformed: counter(Refusal::Malformed),
            connect_method: counter(Refusal::ConnectMethod),
            log,
        }
    }

    fn counter(&self, r: Refusal) -> &IntCounter {
        match r {
            Refusal::HeaderTimeout => &self.header_timeout,
            Refusal::HeaderTooLarge => &self.header_too_large,
            Refusal::Malformed => &self.malformed,
            Refusal::ConnectMethod => &self.connect_method,
        }
    }
}

/// A pingora app whose connections get the [`Guarded`] transport, with the client limits of
/// the config published when each is accepted.
pub struct GuardApp<A> {
    app: Arc<A>,
    snapshot: SharedSnapshot,
    refusals: Refusals,
}

impl<A> GuardApp<A> {
    /// `log`: where refusals are logged (`None`: not logged, only counted).
    pub fn new(
        app: A,
        snapshot: SharedSnapshot,
        refused: &IntCounterVec,
        log: Option<Arc<AccessLog>>,
    ) -> GuardApp<A> {
        GuardApp {
            app: Arc::new(app),
            snapshot,
            refusals: Refusals::new(refused, log),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let snap = self.snapshot.load();
        let mut guarded = Guarded::new(stream, snap.client, self.refusals.clone());
        guarded.style = snap.access_log;
        drop(snap);
        let stream: Stream = Box::new(guarded);
        ServerApp::process_new(&self.app, stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

const TIMEOUT_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const TOO_LARGE_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// A client connection's transport with the header limits applied; pingora sees an ordinary
/// [`IO`].
pub struct Guarded {
    inner: Stream,
    limits: ClientLimits,
    refusals: Refusals,
    /// What the proxy said last ([`REARM`] or [`PASS`]), applied at the next read.
    said: AtomicU8,
    state: State,
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes [`Peek::try_peek`] read (and scanned) that are still to be read.
    peeked: Bytes,
    /// Whether the proxy said the current request's header was parsed (or a refusal of it was
    /// logged already): a status line written before that is pingora's refusal.
    parsed: bool,
    /// How the access log was written when the connection was accepted.
    style: Style,
}

enum State {
    /// A header is expected or under way.
    Header(Header),
    /// The header is complete: bytes pass untouched.
    Pass,
    /// Refused: every read ends the connection.
    Closed,
}

pub(crate) struct Header {
    /// When the wait ends: before the first byte the idle limit, after it the header limit.
    deadline: Instant,
    started: bool,
    bytes: usize,
    lines: usize,
    /// Bytes of the current line seen so far (a line may span reads), `\r` included.
    line: usize,
    /// The last byte of the previous read.
    last: u8,
    /// How many of the first bytes are the start of the HTTP/2 preface (up to the empty line
    /// in it); `None` once one is not.
    preface: Option<usize>,
}

impl Header {
    /// `first`: the connection's first request, the only place an HTTP/2 preface can be.
    pub(crate) fn new(wait: Duration, first: bool) -> Header {
        Header {
            deadline: Instant::now() + wait,
            started: false,
            bytes: 0,
            lines: 0,
            line: 0,
            last: 0,
            preface: first.then_some(0),
        }
    }

    /// Bytes of the header section counted so far (all of it once [`Scan::Complete`]).
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What scanning newly read bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    More,
    Complete,
    TooLarge,
}

impl Header {
    /// Feeds bytes just read: line ends are found with `memchr`, and the header ends at the
    /// first empty line (`\r\n` or `\n`). Empty lines before the request line are skipped,
    /// as RFC 9112 §2.2 allows.
    pub(crate) fn scan(&mut self, mut bytes: &[u8], limits: &ClientLimits) -> Scan {
        // Only its head is compared, so that no split into reads changes the answer.
        if let Some(m) = self.preface {
            let n = bytes.len().min(PREFACE_HEAD - m);
            self.preface = (bytes[..n] == H2_PREFACE[m..m + n]).then_some(m + n);
        }
        if !self.started {
            let skip = bytes
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(bytes.len());
            // Skipped, but counted: a client must not fill the buffer with empty lines.
            self.bytes += skip;
            if self.bytes > limits.max_header_size {
                return Scan::TooLarge;
            }
            bytes = &bytes[skip..];
            if bytes.is_empty() {
                return Scan::More;
            }
            self.started = true;
        }
        let mut consumed = 0;
        for end in memchr::memchr_iter(b'\n', bytes) {
            let line = self.line + (end - consumed);
            self.line = 0;
            consumed = end + 1;
            let before = if end > 0 { bytes[end - 1] } else { self.last };
            let empty = line == 0 || (line == 1 && before == b'\r');
            // HTTP/2's preface reads as a request line and an empty line, then `SM` and
            // another: the whole of it is held to the header's limits and deadline.
            if empty && self.preface.is_some() && self.bytes + consumed == PREFACE_HEAD {
                continue;
            }
            if empty {
                self.bytes += consumed;
                return if self.bytes > limits.max_header_size {
                    Scan::TooLarge
                } else {
                    Scan::Complete
                };
            }
            self.lines += 1;
            // The request line plus max_headers header lines.
            if self.lines > limits.max_headers + 1 {
                return Scan::TooLarge;
            }
        }
        self.line += bytes.len() - consumed;
        self.bytes += bytes.len();
        self.last = bytes.last().copied().unwrap_or(self.last);
        if self.bytes > limits.max_header_size {
            Scan::TooLarge
        } else {
            Scan::More
        }
    }
}

impl Guarded {
    pub fn new(inner: Stream, limits: ClientLimits, refusals: Refusals) -> Guarded {
        Guarded {
            inner,
            state: State::Header(Header::new(limits.request_header_timeout, true)),
            limits,
            refusals,
            said: AtomicU8::new(NOTHING),
            timer: None,
            peeked: Bytes::new(),
            parsed: false,
            style: Style {
                format: crate::config::AccessLogFormat::Json,
                query: false,
            },
        }
    }

    /// Counts `why` and writes its access-log line. `began`: when the header's first byte
    /// came, if it did.
    fn record(&mut self, why: Refusal, status: u16, began: Option<Instant>) {
        self.parsed = true;
        self.refusals.counter(why).inc();
        let Some(log) = self.refusals.log.as_ref().filter(|l| l.is_on()) else {
            return;
        };
        let duration = began.map_or(Duration::ZERO, |b| b.elapsed());
        let time = std::time::SystemTime::now()
            .checked_sub(duration)
            .unwrap_or_else(std::time::SystemTime::now);
        let client = self
            .inner
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let reason = why.to_string();
        let tls = self.inner.get_ssl_digest();
        let entry = Entry {
            time,
            request_id: "-",
            client,
            method: "",
            host: "",
            path: "",
            query: None,
            version: "",
            tls_version: tls.as_deref().map_or("", |d| &d.version),
            sni: tls
                .as_deref()
                .and_then(|d| d.extension.get::<Sni>())
                .map_or("", |n| &n.0),
            status,
            outcome: Outcome::Error,
            bytes_in: 0,
            bytes_out: 0,
            duration,
            route: "",
            upstream: "",
            backend: "",
            attempts: 0,
            upstream_status: None,
            upstream_connect: None,
            upstream_header: None,
            user_agent: "",
            referer: "",
            error: Some(&reason),
        };
        log.log(&entry, self.style);
    }

    /// When the header under way began: its deadline less `request_header_timeout`.
    fn began(&self) -> Option<Instant> {
        match &self.state {
            State::Header(h) if h.started => {
                h.deadline.checked_sub(self.limits.request_header_timeout)
            }
            _ => None,
        }
    }

    /// Answers `reply` if the socket takes it at once, and refuses every later read.
    fn refuse(&mut self, cx: &mut Context<'_>, reply: &'static [u8]) -> io::Error {
        self.state = State::Closed;
        let inner = Pin::new(&mut self.inner);
        if let Poll::Ready(Ok(n)) = inner.poll_write(cx, reply) {
            if n == reply.len() {
                let _ = Pin::new(&mut self.inner).poll_flush(cx);
            }
        }
        io::Error::new(io::ErrorKind::InvalidData, "request header refused")
    }
}

const NOTHING: u8 = 0;
const REARM: u8 = 1;
const PASS: u8 = 2;

/// Tells the guard under `stream` (if any) that the request is over: the next bytes read are
/// a new header, under the keep-alive and header limits.
pub fn rearm(stream: &Stream) {
    tell(stream, REARM);
}

/// Tells the guard under `stream` (if any) that a request header has been parsed: what is read
/// from now on is that request's body (or tunnel), even if the header came out of pingora's
/// buffer without the guard seeing its end.
pub fn header_done(stream: &Stream) {
    tell(stream, PASS);
}

fn tell(stream: &Stream, what: u8) {
    let io: &dyn IO = &**stream;
    if let Some(g) = io.as_any().downcast_ref::<Guarded>() {
        g.said.store(what, Ordering::Relaxed);
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        match std::mem::replace(me.said.get_mut(), NOTHING) {
            REARM => {
                me.state = State::Header(Header::new(me.limits.keepalive_timeout, false));
                me.parsed = false;
            }
            PASS => {
                me.parsed = true;
                if matches!(me.state, State::Header(_)) {
                    me.state = State::Pass;
                }
            }
            _ => {}
        }
        if !me.peeked.is_empty() {
            let n = buf.remaining().min(me.peeked.len());
            buf.put_slice(&me.peeked.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let header = match &mut me.state {
            State::Pass => return Pin::new(&mut me.inner).poll_read(cx, buf),
            State::Closed => return Poll::Ready(Ok(())),
            State::Header(h) => h,
        };
        let before = buf.filled().len();
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let was_started = header.started;
                match header.scan(&buf.filled()[before..], &me.limits) {
                    Scan::More => {
                        if !was_started && header.started {
                            header.deadline = Instant::now() + me.limits.request_header_timeout;
                        }
                        Poll::Ready(Ok(()))
                    }
                    Scan::Complete => {
                        me.state = State::Pass;
                        Poll::Ready(Ok(()))
                    }
                    Scan::TooLarge => {
                        let began = me.began();
                        me.record(Refusal::HeaderTooLarge, 431, began);
                        buf.set_filled(before);
                        Poll::Ready(Err(me.refuse(cx, TOO_LARGE_431)))
                    }
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = header.deadline;
                let started = header.started;
                let timer = me
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                // The timer is moved only to an earlier deadline: a keep-alive connection's
                // idle deadline moves later with every request, and re-registering the timer
                // for each would cost more than letting it fire early once and checking.
                if deadline < timer.deadline() {
                    timer.as_mut().reset(deadline);
                }
                loop {
                    ready!(timer.as_mut().poll(cx));
                    if Instant::now() >= deadline {
                        break;
                    }
                    timer.as_mut().reset(deadline);
                }
                if started {
                    let began = me.began();
                    me.record(Refusal::HeaderTimeout, 408, began);
                    Poll::Ready(Err(me.refuse(cx, TIMEOUT_408)))
                } else {
                    // Idle between requests: close without a word, as nginx does.
                    me.state = State::Closed;
                    Poll::Ready(Ok(()))
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.parsed && self.said.load(Ordering::Relaxed) != PASS {
            if let Some(status) = h1_status(buf) {
                let began = self.began();
                self.record(Refusal::of_status(status), status, began);
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

/// The status of an HTTP/1 response whose status line starts `buf` (`HTTP/1.x NNN`); HTTP/2
/// frames never start so.
fn h1_status(buf: &[u8]) -> Option<u16> {
    let line = buf.get(..12)?;
    if !line.starts_with(b"HTTP/1.") || line[8] != b' ' {
        return None;
    }
    line[9..12].iter().try_fold(0u16, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
    })
}

/// What every HTTP/2 connection starts with (after TLS, or with prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Its first part, up to the first empty line: `PRI * HTTP/2.0` and an empty line.
const PREFACE_HEAD: usize = 18;

/// pingora peeks at a new plain connection for the HTTP/2 preface when h2c is on (its only
/// use of `try_peek`), with a read of exactly that many bytes and no deadline: a silent client,
/// or an HTTP/1 request shorter than the preface, would wait there for ever. So the guard
/// peeks itself: it reads through its own limits and deadline, and stops as soon as the bytes
/// cannot be the preface (then `buf` holds what came, zero-filled, which is not the preface).
/// What it read is kept and read again, unscanned, before anything else.
#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        use tokio::io::AsyncReadExt;
        let mut got = std::mem::take(&mut self.peeked).to_vec();
        while got.len() < buf.len() && H2_PREFACE.starts_with(&got) {
            let mut chunk = [0u8; 64];
            let want = (buf.len() - got.len()).min(chunk.len());
            match self.read(&mut chunk[..want]).await {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    self.peeked = got.into();
                    return Err(e);
                }
            }
        }
        buf.fill(0);
        let n = got.len().min(buf.len());
        buf[..n].copy_from_slice(&got[..n]);
        self.peeked = got.into();
        Ok(true)
    }
}

impl fmt::Debug for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ClientLimits = ClientLimits {
        request_header_timeout: Duration::from_secs(10),
        keepalive_timeout: Duration::from_secs(75),
        client_body_timeout: Duration::from_secs(60),
        client_body_min_rate: 512,
        send_timeout: Duration::from_secs(60),
        max_header_size: 64,
        max_headers: 3,
    };

    fn scan_all(chunks: &[&[u8]]) -> (Scan, usize) {
        let mut h = Header::new(Duration::from_secs(1), true);
        for c in chunks {
            let s = h.scan(c, &LIMITS);
            if s != Scan::More {
                return (s, h.bytes);
            }
        }
        (Scan::More, h.bytes)
    }

    #[test]
    fn finds_the_end_of_the_header_across_reads_with_crlf_or_lf() {
        let (s, n) = scan_all(&[b"GET / HTTP/1.1\r\nHost: a\r", b"\n\r", b"\nbody"]);
        assert_eq!((s, n), (Scan::Complete, 27));
        assert_eq!(scan_all(&[b"GET / HTTP/1.0\n\nrest"]).0, Scan::Complete);
        assert_eq!(scan_all(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]).0, Scan::More);
        // Empty lines before the request line are not its end, but they count.
        assert_eq!(scan_all(&[b"\r\n\r\nGET / HTTP/1.1\r\n"]).0, Scan::More);
        assert_eq!(scan_all(&[&[b'\n'; 70]]).0, Scan::TooLarge);
        assert_eq!(scan_all(&[&[b'\n'; 40], &[b'\r'; 30]]).0, Scan::TooLarge);
    }

    #[test]
    fn any_split_into_reads_gives_the_same_answer() {
        let texts: [&[u8]; 6] = [
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
            b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nbody",
            b"\r\nGET / HTTP/1.0\n\nrest",
            b"GET / HTTP/1.1\r\nA: \r\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n",
        ];
        for text in texts {
            // The byte count matters where the header is complete.
            let outcome = |r: (Scan, usize)| (r.1 * usize::from(r.0 == Scan::Complete), r.0);
            let whole = outcome(scan_all(&[text]));
            for i in 0..=text.len() {
                for j in i..=text.len() {
                    let split = outcome(scan_all(&[&text[..i], &text[i..j], &text[j..]]));
                    assert_eq!(
                        split,
                        whole,
                        "{:?} split at {i}, {j}",
                        String::from_utf8_lossy(text)
                    );
                }
            }
        }
    }

    #[test]
    fn the_http2_preface_is_complete_only_with_its_last_six_bytes() {
        let head = &H2_PREFACE[..PREFACE_HEAD];
        assert_eq!(scan_all(&[head]).0, Scan::More);
        assert_eq!(scan_all(&[head, b"SM\r\n"]).0, Scan::More);
        assert_eq!(scan_all(&[H2_PREFACE]), (Scan::Complete, 24));
        // Not HTTP/2 after all: an ordinary (odd) header that ends at its first empty line.
        assert_eq!(scan_all(&[b"PRI * HTTP/1.1\r\n\r\n"]).0, Scan::Complete);
    }

    #[test]
    fn refuses_a_header_over_the_size_or_line_limit() {
        let big = [b'a'; 65];
        assert_eq!(scan_all(&[b"GET /", &big]).0, Scan::TooLarge);
        let lines = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n";
        assert_eq!(scan_all(&[lines]).0, Scan::More);
        assert_eq!(scan_all(&[lines, b"d: 4\r\n"]).0, Scan::TooLarge);
        assert_eq!(scan_all(&[lines, b"\r\n"]).0, Scan::Complete);
    }
}
