//! The pingora `ProxyHttp` implementation. It stays thin: each phase asks the module that owns
//! the decision (router, rate limit, upstream/breaker/balancer, forwarded headers, error mapping)
//! and records what happened in the request context.

mod attempt;
mod edge;
mod error;
mod forwarded;
mod hop_by_hop;
pub(crate) mod normalize;
mod request_id;

pub use error::ProxyError;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorSource;

use crate::access_log::{AccessLog, Entry};
use crate::balance::{extract_key, BackendSet, Lease};
use crate::config::runtime::ClientLimits;
use crate::outcome::{AttemptOutcome, Outcome};
use crate::ratelimit::{RateState, Verdict};
use crate::registry::Admission;
use crate::server::drain::{Drain, InFlight};
use crate::server::guard;
use crate::server::tls::Sni;
use crate::snapshot::{Route, SharedSnapshot, Snapshot};
use crate::upstream::{Refusal, Upstream};
use attempt::{Attempt, AttemptReport};

/// The proxy service: reads the current snapshot once per request.
pub struct Proxy {
    snapshot: SharedSnapshot,
    drain: Arc<Drain>,
    access_log: Arc<AccessLog>,
}

impl Proxy {
    pub fn new(snapshot: SharedSnapshot, drain: Arc<Drain>, access_log: Arc<AccessLog>) -> Proxy {
        Proxy {
            snapshot,
            drain,
            access_log,
        }
    }
}

/// Per-request state. Dropped when the request ends, however it ends.
pub struct RequestCtx {
    _in_flight: InFlight,
    started: Instant,
    /// `started` on the wall clock, for the access log.
    started_at: SystemTime,
    /// `X-Request-Id`, chosen before routing.
    request_id: HeaderValue,
    /// The snapshot this request started with, kept for its whole life.
    snapshot: Option<Arc<Snapshot>>,
    route: Option<usize>,
    deadline: Option<Instant>,
    /// A WebSocket handshake: `upgrade_idle_timeout` for the backend, and no deadline after
    /// its 101.
    upgrade: bool,
    /// The client's address (X-Forwarded-For only from trusted proxies), computed once.
    client: Option<IpAddr>,
    /// The `RateLimit` value an allowed response carries.
    rate_state: Option<RateState>,
    /// The request's place under its upstream's `max_inflight`, from its first attempt on.
    admission: Option<Admission>,
    /// Backends this request could not connect to; retries go elsewhere.
    failed: BackendSet,
    /// The current attempt, from the pick of its backend until its outcome is recorded.
    attempt: Option<Attempt>,
    /// The in-flight count of the last attempt once it has ended, until the next attempt or the
    /// request's end: a response judged at its header streams on.
    lease: Option<Lease>,
    /// The last attempt's backend, timings and status.
    last_attempt: AttemptReport,
    /// A backend's final response header (or its 101) went on to the client: from then on a
    /// failure cuts a response short ([`Outcome::Aborted`]).
    proxied: bool,
    attempts: u32,
    body_bytes: u64,
    /// Set by a phase that fails the request for a reason of its own.
    failure: Option<ProxyError>,
    /// When fulcrum's own answer went out: the request's end for its duration, whatever
    /// of its body is read and discarded after.
    answered: Option<Instant>,
    /// How much of an HTTP/2 body to read and discard once the request is logged (0: none).
    drain: usize,
}

impl RequestCtx {
    fn route(&self) -> Option<(&Snapshot, &Route)> {
        let snap = self.snapshot.as_deref()?;
        Some((snap, &snap.routes[self.route?]))
    }

    fn upstream(&self) -> Option<&Upstream> {
        self.route()
            .map(|(snap, route)| &snap.upstreams[route.config.upstream])
    }

    /// Tells passive health and the breaker how the current attempt went, if one is under way:
    /// finishing consumes it, so its outcome is recorded once.
    fn finish_attempt(&mut self, outcome: AttemptOutcome) {
        let Some(attempt) = self.attempt.take() else {
            return;
        };
        let lease = match self.upstream() {
            Some(u) => attempt.finish(u, outcome),
            None => attempt.abandon(),
        };
        self.lease = Some(lease);
    }

    /// How long the next read of the request body may wait: `client_body_timeout`, but not past
    /// the route's deadline, nor past the time by which the body read so far should have come at
    /// `client_body_min_rate` once `client_body_timeout` has passed since the request began
    /// (Apache `mod_reqtimeout`'s `MinRate`). So a body sent a byte at a time, each within
    /// `client_body_timeout` of the last, is still cut off.
    fn body_wait(&self, limits: &ClientLimits, now: Instant) -> Duration {
        let mut until = now.checked_add(limits.client_body_timeout);
        let ns = self.body_bytes.saturating_mul(1_000_000_000);
        if let Some(earned) = ns.checked_div(limits.client_body_min_rate) {
            let by_rate = self
                .started
                .checked_add(limits.client_body_timeout)
                .and_then(|t| t.checked_add(Duration::from_nanos(earned)));
            until = earliest(until, by_rate);
        }
        until = earliest(until, self.deadline);
        until.map_or(Duration::MAX, |t| t.saturating_duration_since(now))
    }

    /// How the request ended, given the error it ended with (if any) and the status logged, and
    /// what that says of the backend whose response it was: `Some(ok)` for a response that ended
    /// whole or that the backend cut short, `None` when the end says nothing of it (the client
    /// went away or stopped reading, the route timeout passed while the body streamed: a slow
    /// backend or a slow reader, no telling which) or it was judged already.
    fn ending(&self, e: Option<&Error>, status: u16) -> (Outcome, Option<bool>) {
        if self.failure.is_none() && e.is_none() {
            return (Outcome::Ok, Some(true));
        }
        if status == CLIENT_GONE {
            return (Outcome::ClientClosed, None);
        }
        // A WebSocket's tunnel ends with an error when it is closed for being idle: its
        // handshake, the response, went through whole.
        if !self.proxied || status == 101 {
            let outcome = if self.proxied {
                Outcome::Ok
            } else {
                Outcome::Error
            };
            return (outcome, None);
        }
        match (&self.failure, e) {
            // The client's own fault (a body too large or too slow) cut the response short.
            (Some(f), _) if f.by_client() => (Outcome::Error, None),
            (Some(ProxyError::Deadline(_)), _) => (Outcome::Aborted, None),
            (Some(_), _) => (Outcome::Aborted, Some(false)),
            (None, Some(e)) if *e.esource() == ErrorSource::Upstream => {
                (Outcome::Aborted, Some(false))
            }
            // `from_pingora` says `None` for a client that went away; a write that timed out
            // (`send_timeout`) is a client that stopped reading.
            (None, Some(e))
                if *e.esource() == ErrorSource::Downstream
                    || ProxyError::from_pingora(e).is_none() =>
            {
                (Outcome::ClientClosed, None)
            }
            (None, _) => (Outcome::Aborted, None),
        }
    }

    fn fail(&mut self, e: ProxyError) -> Box<Error> {
        let err = e.to_pingora();
        self.failure = Some(e);
        err
    }
}

/// The sooner of two instants, `None` being never.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The name the client asked for: the URI authority (absolute-form or HTTP/2) or `Host`.
fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get(HOST).and_then(|v| v.to_str().ok()))
}

/// [`request_host`] as a header value: the client's `Host` value itself (shared, not copied)
/// when that is where the host came from, else a copy of the URI's authority.
fn request_host_value(req: &RequestHeader) -> Option<HeaderValue> {
    let host = request_host(req)?;
    match req.headers.get(HOST) {
        Some(v) if v.as_bytes() == host.as_bytes() => Some(v.clone()),
        _ => HeaderValue::from_str(host).ok(),
    }
}

/// A WebSocket handshake (`Connection: upgrade` + `Upgrade: websocket`): the only upgrade
/// pingora's request policy lets through, and the only request that may outlive the route
/// timeout. Any other `Upgrade` header is stripped on the way and changes nothing here.
fn is_websocket(req: &RequestHeader) -> bool {
    req.version == http::Version::HTTP_11
        && has_token(&req.headers, http::header::UPGRADE, "websocket")
        && has_token(&req.headers, http::header::CONNECTION, "upgrade")
}

/// Whether a comma-separated header (`Connection`, `Upgrade`), in any of its lines, lists
/// `token` (ASCII case-insensitive).
pub(crate) fn has_token(headers: &http::HeaderMap, name: http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the client connection is TLS (the request came in on a TLS listener).
fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// Answers a plain-HTTP request with a 308 to the same host (without its port) and target on
/// the TLS listener's `port` (left out when it is 443). An `Err` is what the access log says.
async fn redirect_to_https(
    session: &mut Session,
    port: u16,
    request_id: &HeaderValue,
) -> std::result::Result<(), ProxyError> {
    let req = session.req_header();
    let host = request_host(req).unwrap_or("");
    let name = crate::router::without_port(host);
    if name.is_empty() {
        let e = ProxyError::Invalid("no host to redirect to");
        respond(session, &e, request_id).await;
        return Err(e);
    }
    // `OPTIONS *` (or anything else not a path) goes to the root.
    let target = req
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{port}{target}")
    };
    let mut resp = ResponseHeader::build(308, Some(3)).expect("valid status code");
    let written = resp
        .insert_header(http::header::LOCATION, location)
        .and_then(|_| resp.insert_header(CONTENT_LENGTH, 0))
        .and_then(|_| resp.insert_header(request_id::HEADER, request_id));
    if let Err(err) = written {
        tracing::debug!(%err, "cannot build the redirect");
        let e = ProxyError::Invalid("the request cannot be redirected");
        respond(session, &e, request_id).await;
        return Err(e);
    }
    if let Err(err) = session.write_error_response(resp, Bytes::new()).await {
        tracing::debug!(%err, "client went away before the redirect");
    }
    Ok(())
}

/// The status logged and counted for a request that got no response: the client went away.
const CLIENT_GONE: u16 = 499;

/// Writes a short plain-text error response.
async fn respond(session: &mut Session, e: &ProxyError, request_id: &HeaderValue) -> u16 {
    let status = e.status();
    let body = Bytes::from(format!("{e}\n"));
    let mut resp = ResponseHeader::build(status, Some(3)).expect("valid status code");
    let written = resp
        .insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .and_then(|_| resp.insert_header(CONTENT_LENGTH, body.len()))
        .and_then(|_| resp.insert_header(request_id::HEADER, request_id))
        .and_then(|_| e.headers(&mut resp));
    if let Err(err) = written {
        tracing::error!(%err, "cannot build error response");
    }
    if let Err(err) = session.write_error_response(resp, body).await {
        tracing::debug!(%err, "client went away before the error response");
    }
    status
}

/// How much of an HTTP/2 request body refused with `e` fulcrum reads and discards after its
/// answer (see [`drain_h2_body`]): none for a body too slow to wait for (408), a little for a
/// request refused whatever its body (429, 503), more for one refused for its size (413) or
/// for what the backend did while it was being sent.
fn drain_budget(e: &ProxyError) -> usize {
    match e {
        ProxyError::ClientTimeout => 0,
        ProxyError::RateLimited { .. }
        | ProxyError::Overloaded { .. }
        | ProxyError::NoBackend { .. }
        | ProxyError::CircuitOpen { .. } => H2_DRAIN_BYTES_REFUSED,
        _ => H2_DRAIN_BYTES,
    }
}

/// How long fulcrum goes on reading (and discarding) an HTTP/2 request body after refusing the
/// request, so that the client's upload ends before its stream does: see [`drain_h2_body`].
const H2_DRAIN_TIME: Duration = Duration::from_secs(2);

/// How much more of an HTTP/2 request body fulcrum reads and discards after refusing it.
const H2_DRAIN_BYTES: usize = 32 << 20;

/// The same for a request refused whatever its body (429, 503).
const H2_DRAIN_BYTES_REFUSED: usize = 1 << 20;

/// After an HTTP/2 answer written before the whole request body came: reads and discards the
/// rest of the body, for at most [`H2_DRAIN_TIME`] and `budget` bytes, before the stream is
/// dropped; a body declared longer than what is left of the budget is not waited for at all.
/// It runs last, after the request's places (`max_inflight`, lease, trial) are given back and
/// its access-log line and metrics are written, so that neither waits for it. The answer is on its way already (HEADERS, DATA with END_STREAM); dropping the
/// stream with body still coming sends RST_STREAM(NO_ERROR), RFC 9113 §8.1's way, but clients
/// still uploading (curl 7.x with nghttp2) then fail the whole exchange ("Stream error in the
/// HTTP/2 framing layer", exit 92) and never show the status. A body past the bounds still gets
/// the reset. HTTP/1.1 needs nothing here: its connection closes after an error response.
async fn drain_h2_body(session: &mut Session, budget: usize) {
    if budget == 0 || !session.as_downstream().is_http2() || session.is_body_done() {
        return;
    }
    let declared = session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let read = session.body_bytes_read() as u64;
    if declared.is_some_and(|len| len.saturating_sub(read) > budget as u64) {
        return;
    }
    let deadline = tokio::time::Instant::now() + H2_DRAIN_TIME;
    let mut left = budget;
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout_at(deadline, session.downstream_session.read_request_body()).await
    {
        match left.checked_sub(chunk.len()) {
            Some(rest) => left = rest,
            None => return,
        }
    }
}

/// Answers `e` from the proxy itself before any backend is involved, and keeps it for the
/// access log's `error`.
async fn refuse(session: &mut Session, ctx: &mut RequestCtx, e: ProxyError) {
    respond(session, &e, &ctx.request_id).await;
    ctx.answered = Some(Instant::now());
    ctx.drain = drain_budget(&e);
    ctx.failure = Some(e);
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            _in_flight: self.drain.enter(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            request_id: HeaderValue::from_static("-"),
            snapshot: None,
            route: None,
            deadline: None,
            upgrade: false,
            client: None,
            rate_state: None,
            admission: None,
            failed: BackendSet::default(),
            attempt: None,
            lease: None,
            last_attempt: AttemptReport::default(),
            proxied: false,
            attempts: 0,
            answered: None,
            drain: 0,
            body_bytes: 0,
            failure: None,
        }
    }

    /// Routes the request, takes a token from the route's rate limit and enforces the body
    /// limit announced by `Content-Length`.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(stream) = session.stream() {
            guard::header_done(stream);
        }
        let snap = self.snapshot.load_full();
        ctx.snapshot = Some(Arc::clone(&snap));
        // Keep-alive without pingora's own timeout (which would wrap every later header read in
        // a timer, and which the client's Keep-Alive header could stretch): the connection's
        // guard enforces `keepalive_timeout` and `request_header_timeout` itself. A connection
        // pingora already set to close (the server is shutting down) stays so.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(0));
        }
        session.set_read_timeout(Some(snap.client.client_body_timeout));
        session.set_write_timeout(Some(snap.client.send_timeout));
        session.set_pipelining_enabled(true);
        let req = session.req_header();
        let peer = forwarded::peer_ip(session);
        let trusted = peer.is_some_and(|ip| forwarded::is_trusted(ip, &snap.trusted_proxies));
        ctx.request_id = request_id::pick(req, trusted);
        ctx.client = forwarded::client_ip(peer, req, &snap.trusted_proxies);
        let checked = edge::check(
            session.req_header_mut(),
            snap.client.max_headers,
            snap.merge_slashes,
        );
        if let Err(e) = checked {
            // What follows a request that was not understood cannot be trusted either.
            session.set_keepalive(None);
            refuse(session, ctx, e).await;
            return Ok(true);
        }
        if let Some(port) = snap.https_redirect.filter(|_| !is_tls(session)) {
            let status = redirect_to_https(session, port, &ctx.request_id).await;
            ctx.failure = status.err();
            return Ok(true);
        }
        let req = session.req_header();
        let (host, path) = (request_host(req), req.uri.path());
        let index = snap.router.route(host, path);
        // A servlet container behind fulcrum cuts `;` parameters off each segment before it
        // maps the path (see `normalize`): a path that would route elsewhere without them is
        // refused, so that no route's rules can be passed by (`/app/admin;/x` past `/app/admin/`).
        if normalize::without_parameters(path).is_some_and(|p| snap.router.route(host, &p) != index)
        {
            session.set_keepalive(None);
            let e = ProxyError::Invalid("a path parameter (;) would change the route");
            refuse(session, ctx, e).await;
            return Ok(true);
        }
        let Some(index) = index else {
            refuse(session, ctx, ProxyError::NoRoute).await;
            return Ok(true);
        };
        ctx.route = Some(index);
        let route = &snap.routes[index];
        if let Some(limit) = &route.limit {
            match limit.check(req, ctx.client) {
                Verdict::Allowed { state } => ctx.rate_state = state,
                Verdict::Limited { retry_after, state } => {
                    route.metrics.ratelimited.inc();
                    let e = ProxyError::RateLimited {
                        retry_after,
                        policy: limit.policy.clone(),
                        state: limit.header(state),
                    };
                    refuse(session, ctx, e).await;
                    return Ok(true);
                }
            }
        }
        let req = session.req_header();
        let limit = snap.max_request_body;
        let declared = req
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            refuse(session, ctx, ProxyError::BodyTooLarge { limit }).await;
            return Ok(true);
        }
        ctx.deadline = ctx.started.checked_add(route.config.timeout);
        if is_websocket(session.req_header()) {
            // A WebSocket lives as long as it is used: once the backend answers 101 the
            // whole-request deadline goes, and an idle limit on both sides holds instead.
            ctx.upgrade = true;
            session.set_read_timeout(Some(route.config.upgrade_idle_timeout));
        } else {
            let wait = ctx.body_wait(&snap.client, Instant::now());
            session.set_read_timeout(Some(wait));
        }
        Ok(false)
    }

    /// Counts streamed body bytes against the limit (for bodies without `Content-Length`), and
    /// sets how long the next read of the body may wait (see `RequestCtx::body_wait`).
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(snap) = ctx.snapshot.as_deref() else {
            return Ok(());
        };
        let (limit, client) = (snap.max_request_body, snap.client);
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if ctx.body_bytes > limit {
            return Err(ctx.fail(ProxyError::BodyTooLarge { limit }));
        }
        if !end_of_stream && !ctx.upgrade {
            let wait = ctx.body_wait(&client, Instant::now());
            if wait.is_zero() {
                return Err(ctx.fail(ProxyError::ClientTimeout));
            }
            session.set_read_timeout(Some(wait));
        }
        Ok(())
    }

    /// Admits the request under its upstream's `max_inflight` (on the first attempt) and picks
    /// a backend this request has not failed to connect to whose breaker lets it through; called
    /// again for every retry (after a connect failure, or when pingora retries on a dead pooled
    /// connection, which may go back to the same backend).
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // An attempt still under way (pingora retrying a dead pooled connection: no outcome)
        // ends first, so that this one can claim its trial place again; its in-flight count
        // lasts until this attempt has its own.
        if let Some(previous) = ctx.attempt.take() {
            ctx.lease = Some(previous.abandon());
        }
        let Some((snap, route)) = ctx.route() else {
            return Err(ctx.fail(ProxyError::Internal));
        };
        let (timeout, upstream) = (route.config.timeout, &snap.upstreams[route.config.upstream]);
        let remaining = ctx
            .deadline
            .map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        if remaining.is_zero() {
            return Err(ctx.fail(ProxyError::Deadline(timeout)));
        }
        let admission = match ctx.admission {
            Some(_) => None,
            None => match upstream.admit() {
                Some(admitted) => Some(admitted),
                None => {
                    upstream.metrics.overloaded.inc();
                    let e = ProxyError::Overloaded {
                        upstream: upstream.name.clone(),
                        limit: upstream.max_inflight().unwrap_or(0),
                    };
                    return Err(ctx.fail(e));
                }
            },
        };
        let mut ip_buf = Default::default();
        let key = upstream
            .hash_key()
            .and_then(|k| extract_key(k, session.req_header(), ctx.client, &mut ip_buf));
        let choice = match upstream.select(&ctx.failed, key) {
            Ok(choice) => choice,
            Err(refusal) => {
                let name = upstream.name.clone();
                let e = match refusal {
                    Refusal::CircuitOpen => ProxyError::CircuitOpen { upstream: name },
                    Refusal::NoBackend => ProxyError::NoBackend {
                        upstream: name,
                        unresolved: upstream.unresolved.clone(),
                    },
                };
                return Err(ctx.fail(e));
            }
        };
        let i = choice.backend;
        if ctx.attempts > 0 {
            upstream.metrics.retries.inc();
        }
        let idle = ctx.upgrade.then_some(route.config.upgrade_idle_timeout);
        let peer = upstream.peer(i, remaining, idle);
        ctx.attempt = Some(Attempt::start(upstream, choice));
        ctx.lease = None;
        if admission.is_some() {
            ctx.admission = admission;
        }
        // pingora replays a buffered body through request_body_filter on a retry.
        ctx.body_bytes = 0;
        ctx.attempts += 1;
        ctx.last_attempt = AttemptReport::started(i);
        Ok(peer)
    }

    /// Notes how long the attempt took to get its connection (for the access log).
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.last_attempt.connect = ctx.attempt.as_ref().map(Attempt::elapsed);
        Ok(())
    }

    /// Nothing reached the backend: retry on another one while the route allows it.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(i) = ctx.last_attempt.backend {
            ctx.failed.insert(i);
        }
        ctx.finish_attempt(AttemptOutcome::Connect);
        let (Some((_, route)), Some(upstream)) = (ctx.route(), ctx.upstream()) else {
            return e;
        };
        // The budget counts connect failures only: pingora's own retry of a dead pooled
        // connection does not use it up.
        let retry =
            ctx.failed.len() <= route.config.retries as usize && upstream.has_untried(&ctx.failed);
        let backend = ctx.last_attempt.backend.map(|i| &upstream.backends[i]);
        if let Some(b) = backend {
            b.metrics.connect_errors.inc();
        }
        // One short line per failed connect, in place of pingora's (demoted; see `log_level`).
        // With the access log on, it records each failed request: DEBUG. Off: WARN, at most one
        // per backend per `LogGate::EVERY` (the first, then one saying how many were held back),
        // so that an outage does not write a line per request.
        let held = match backend {
            _ if self.access_log.is_on() => None,
            Some(b) => b.metrics.connect_log.pass(),
            None => Some(0),
        };
        let warn = held.is_some();
        if warn || tracing::enabled!(tracing::Level::DEBUG) {
            let name = backend.map_or("-", |b| b.name.as_str());
            let cause = e
                .cause
                .is_some()
                .then(|| tracing::field::display(e.root_cause()));
            macro_rules! connect_line {
                ($level:ident) => {
                    tracing::$level!(
                        route = %route.config.name,
                        upstream = %upstream.name,
                        backend = %name,
                        client = ctx.client.map(tracing::field::display),
                        request_id = %ctx.request_id.to_str().unwrap_or("-"),
                        attempt = ctx.attempts,
                        retry,
                        error = %e.etype().as_str(),
                        cause,
                        held_back = held.filter(|&n| n > 0),
                        "connect to backend failed"
                    )
                };
            }
            if warn {
                connect_line!(warn);
            } else {
                connect_line!(debug);
            }
        }
        if retry {
            e.set_retry(true);
        }
        e
    }

    /// Sets forwarding headers and applies `host_rewrite` and `strip_prefix`. Hop-by-hop headers
    /// are gone already: pingora's default `HttpUpstreamRequestPolicy` removed them.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some((snap, route)) = ctx.route() else {
            return Ok(());
        };
        let peer = forwarded::peer_ip(session);
        let trusted = peer.is_some_and(|ip| forwarded::is_trusted(ip, &snap.trusted_proxies));
        let host = request_host_value(session.req_header());
        let proto = if is_tls(session) { "https" } else { "http" };
        forwarded::apply(upstream_request, peer, trusted, proto, host)?;
        upstream_request.insert_header(request_id::HEADER, &ctx.request_id)?;
        let config = &route.config;
        if let Some(rewrite) = &config.host_rewrite {
            upstream_request.insert_header(HOST, rewrite.as_str())?;
        } else if upstream_request
            .headers
            .get(HOST)
            .is_none_or(|h| h.is_empty())
        {
            // An HTTP/1.0 request may come without a Host; the backend is sent HTTP/1.1, which
            // needs one: the backend's own name, as written in the config.
            let upstream = &snap.upstreams[config.upstream];
            if let Some(b) = ctx
                .last_attempt
                .backend
                .and_then(|i| upstream.backends.get(i))
            {
                upstream_request.insert_header(HOST, b.name.as_str())?;
            }
        }
        if config.strip_prefix {
            let uri = strip_prefix(&upstream_request.uri, &config.path)?;
            upstream_request.set_uri(uri);
        }
        Ok(())
    }

    /// Refuses a status outside 100–599 (502), drops hop-by-hop headers and tells passive health
    /// and the breaker how the backend did: a status in either judge's `failure_status` is a
    /// failure at once; a trial (a half-open breaker's, an ejected backend's) is settled at the
    /// header whatever its status; an accepted upgrade (101) is a success; any other response is
    /// judged when it ends (in `logging`), so that one cut short counts as the failure it is.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status;
        // An interim response (100 Continue, 103) is not the backend's answer: its times and
        // status are the final header's.
        if status.is_informational() && status != http::StatusCode::SWITCHING_PROTOCOLS {
            hop_by_hop::strip_response(upstream_response);
            return Ok(());
        }
        ctx.last_attempt.status = Some(status.as_u16());
        if let (None, Some(attempt)) = (ctx.last_attempt.header, &ctx.attempt) {
            let elapsed = attempt.elapsed();
            if let Some(u) = ctx.upstream() {
                u.backends[attempt.backend()]
                    .metrics
                    .response
                    .observe(elapsed.as_secs_f64());
            }
            ctx.last_attempt.header = Some(elapsed);
        }
        if !(100..600).contains(&status.as_u16()) {
            return Err(ctx.fail(ProxyError::UpstreamInvalid(
                "the backend's status code is outside 100-599",
            )));
        }
        let upgraded = status == http::StatusCode::SWITCHING_PROTOCOLS;
        if upgraded && ctx.upgrade {
            ctx.deadline = None;
        }
        if upgraded || !status.is_informational() {
            ctx.proxied = true;
            // A trial (a half-open breaker's, an ejected backend's) is settled by the header, so
            // that a long response (a stream, a download) does not hold one of its few places;
            // so is a status that counts as a failure.
            let code = status.as_u16();
            let fails = ctx.upstream().is_some_and(|u| u.fails_on(code));
            if upgraded || fails || ctx.attempt.as_ref().is_some_and(Attempt::is_trial) {
                ctx.finish_attempt(AttemptOutcome::Status(code));
            }
        }
        if !upgraded {
            hop_by_hop::strip_response(upstream_response);
        }
        Ok(())
    }

    /// Adds the route's `RateLimit-Policy` and `RateLimit` headers to an allowed response (the
    /// final one, or a 101: not an interim 1xx such as 103, which another response follows).
    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if response.status.is_informational()
            && response.status != http::StatusCode::SWITCHING_PROTOCOLS
        {
            return Ok(());
        }
        response.insert_header(request_id::HEADER, &ctx.request_id)?;
        let Some(state) = ctx.rate_state.take() else {
            return Ok(());
        };
        if let Some(limit) = ctx.route().and_then(|(_, r)| r.limit.as_ref()) {
            response.insert_header("ratelimit-policy", &limit.policy)?;
            response.insert_header("ratelimit", limit.header(state))?;
        }
        Ok(())
    }

    /// Enforces the route deadline while a response body streams in.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            let timeout = ctx
                .route()
                .map_or(Duration::ZERO, |(_, r)| r.config.timeout);
            return Err(ctx.fail(ProxyError::Deadline(timeout)));
        }
        Ok(None)
    }

    /// Writes the error response for a failed request (the one place statuses are chosen).
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy
    where
        RequestCtx: Send + Sync,
    {
        let mut failure = ctx.failure.clone().or_else(|| ProxyError::from_pingora(e));
        // The backend gave no answer while the client had not sent all of the body: it waits
        // for the rest, so the body's slowness is what ran out the time (pingora's read timeout
        // of the backend and the body's own can fire in either order; over HTTP/2 the body has
        // none). The client's fault: 408, and nothing against the backend.
        if failure == Some(ProxyError::UpstreamTimeout) && !ctx.proxied && !session.is_body_done() {
            failure = Some(ProxyError::ClientTimeout);
            ctx.failure = failure.clone();
        }
        // A timeout or a broken response after connecting counts against the backend.
        match &failure {
            Some(ProxyError::UpstreamTimeout) => ctx.finish_attempt(AttemptOutcome::Timeout),
            Some(ProxyError::UpstreamFailed | ProxyError::UpstreamInvalid(_)) => {
                ctx.finish_attempt(AttemptOutcome::Broken)
            }
            _ => {}
        }
        let error_code = match &failure {
            Some(f) => {
                let code = respond(session, f, &ctx.request_id).await;
                ctx.answered = Some(Instant::now());
                ctx.drain = drain_budget(f);
                code
            }
            None => 0,
        };
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
    }

    /// pingora's own "Fail to proxy" line repeats the access log's, or for a failed connect
    /// `fail_to_connect`'s shorter one, or is about the client (not an ERROR of the proxy);
    /// otherwise it stays when the log is off.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        use pingora::ErrorType::*;
        let connect = matches!(
            error.etype(),
            ConnectTimedout
                | ConnectRefused
                | ConnectNoRoute
                | ConnectError
                | ConnectProxyFailure
                | TLSHandshakeFailure
                | TLSHandshakeTimedout
        );
        // A client's own failure (reset, timeout, a refused header) is not a proxy ERROR: it
        // is counted, and access-logged when the log is on.
        let downstream = *error.esource() == ErrorSource::Downstream;
        self.access_log.is_on() || connect || downstream
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        _error: &Error,
        _context: pingora::proxy::ProxyWarnLogContext,
    ) -> bool {
        self.access_log.is_on()
    }

    /// Counts the request in the metrics and writes its access-log line, however it ended.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx)
    where
        RequestCtx: Send + Sync,
    {
        // The next request on this connection starts a new header for the guard, unless part of
        // this one's body is still unread (pingora would drain it): then the connection closes.
        if session.is_body_done() {
            if let Some(stream) = session.stream() {
                guard::rearm(stream);
            }
        } else {
            session.set_keepalive(None);
        }
        // No response at all: the client went away first (nginx's 499).
        let status = session
            .response_written()
            .map_or(CLIENT_GONE, |r| r.status.as_u16());
        let (outcome, verdict) = ctx.ending(e, status);
        // A backend's response that ended whole is a success; one it cut short a failure.
        if let (true, Some(ok)) = (ctx.proxied, verdict) {
            ctx.finish_attempt(match ok {
                true => AttemptOutcome::Status(status),
                false => AttemptOutcome::Broken,
            });
        }
        // The request's places are given back before anything else waits (the drain).
        drop(ctx.admission.take());
        drop(ctx.attempt.take());
        drop(ctx.lease.take());
        self.account(session, e, ctx, status, outcome);
        let budget = std::mem::take(&mut ctx.drain);
        drain_h2_body(session, budget).await;
    }
}

impl Proxy {
    /// Counts the request in the metrics and writes its access-log line.
    fn account(
        &self,
        session: &Session,
        e: Option<&Error>,
        ctx: &RequestCtx,
        status: u16,
        outcome: Outcome,
    ) {
        let req = session.req_header();
        let elapsed = ctx
            .answered
            .map_or_else(|| ctx.started.elapsed(), |t| t - ctx.started);
        let loaded;
        let snap = match &ctx.snapshot {
            Some(snap) => snap,
            None => {
                loaded = self.snapshot.load_full();
                &loaded
            }
        };
        let route = ctx.route.map(|i| &snap.routes[i]);
        match route {
            Some(r) => r.metrics.record(&req.method, status, outcome, elapsed),
            None => snap.unrouted.record(&req.method, status, outcome, elapsed),
        }
        if !self.access_log.is_on() {
            return;
        }
        let upstream = route.map(|r| &snap.upstreams[r.config.upstream]);
        let backend = match (upstream, ctx.last_attempt.backend) {
            (Some(u), Some(i)) => u.backends[i].name.as_str(),
            _ => "",
        };
        let header = |name| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let error = ctx
            .failure
            .as_ref()
            .map(|f| f.to_string())
            .or_else(|| e.map(|e| e.to_string()));
        let tls = session.digest().and_then(|d| d.ssl_digest.as_deref());
        let entry = Entry {
            time: ctx.started_at,
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            client: ctx.client.or_else(|| forwarded::peer_ip(session)),
            method: req.method.as_str(),
            host: request_host(req).unwrap_or(""),
            path: req.uri.path(),
            query: req.uri.query(),
            version: version(req.version),
            tls_version: tls.map_or("", |t| &t.version),
            sni: tls
                .and_then(|t| t.extension.get::<Sni>())
                .map_or("", |n| &n.0),
            status,
            outcome,
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
            duration: elapsed,
            route: route.map_or("", |r| r.config.name.as_str()),
            upstream: upstream.map_or("", |u| u.name.as_str()),
            backend,
            attempts: ctx.attempts,
            upstream_status: ctx.last_attempt.status,
            upstream_connect: ctx.last_attempt.connect,
            upstream_header: ctx.last_attempt.header,
            user_agent: header(http::header::USER_AGENT),
            referer: header(http::header::REFERER),
            error: error.as_deref(),
        };
        self.access_log.log(&entry, snap.access_log);
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The request URI with the route's prefix removed from its path (always keeping a leading
/// "/") and its query kept.
fn strip_prefix(uri: &http::Uri, prefix: &str) -> Result<http::Uri> {
    let path = uri.path();
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    let mut out = String::with_capacity(path.len() + 1);
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    out.parse::<http::Uri>().or_err(
        ErrorType::InternalError,
        "rewritten path is not a valid URI",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_the_query() {
        let s = |u: &str, p: &str| strip_prefix(&u.parse().unwrap(), p).unwrap().to_string();
        assert_eq!(s("/v1/users?x=1", "/v1/"), "/users?x=1");
        assert_eq!(s("/v1/users", "/v1"), "/users");
        assert_eq!(s("/v1", "/v1"), "/");
        assert_eq!(s("/v1/", "/v1/"), "/");
    }
}
