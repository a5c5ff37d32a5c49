//! Soak: a fixed-rate mixed GET/POST load, every request with a unique id, through the real
//! binary to three backends that record every id they receive, while on a schedule backend `a`
//! is killed and restarted on its port, backend `b` hangs for 10 s, backend `c` resets marked
//! responses mid-body, the config is rewritten 20 times (and once broken) and SIGHUP reloads it
//! 5 times. No POST may arrive twice anywhere; every failed request must be one a fault can
//! cause (hang: 504 after the route timeout; reset: a 200 cut short), none one of a kill or a
//! reload, and each must show as a failure in the access log and in `fulcrum_requests_total`;
//! after a settle period the proxy holds no more file descriptors and little more memory than
//! before the load, and still answers.
//!
//! Ignored by plain `cargo test`. `.ci/run` runs the 60 s version; the long one is documented in
//! docs/src/soak-and-fuzz.md:
//!
//! ```sh
//! cargo test --test soak -- --ignored --nocapture
//! FULCRUM_SOAK_SECS=1800 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! `FULCRUM_SOAK_SECS` is the load's length (at least 30, default 60), `FULCRUM_SOAK_RPS` its
//! rate in requests per second (default [`DEFAULT_RPS`]). The faults sit at fixed fractions of
//! the run; the 20 rewrites and 5 SIGHUPs are spread evenly over it.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use support::{sample_of, sum_of, Fulcrum};

/// Requests per second when `FULCRUM_SOAK_RPS` is unset. Measured on a shared 2-core machine
/// with debug builds: fulcrum used 13 s and this test (client and backends) 7 s of CPU in a
/// 60 s run, a third of one core; 300 req/s was sustained too. The margin keeps a slower CI
/// machine on schedule and the latencies about fulcrum rather than a starved CPU.
const DEFAULT_RPS: u32 = 200;
/// Load length when `FULCRUM_SOAK_SECS` is unset.
const DEFAULT_SECS: u64 = 60;
/// The shortest run whose fault windows do not overlap (the hang is 10 s whatever the length).
const MIN_SECS: u64 = 30;

/// Backend `a` is killed at this fraction of the run and restarted on its port at the next.
const KILL_AT: f64 = 0.15;
const RESTART_AT: f64 = 0.25;
/// Backend `b` stops answering anything (health checks included) at this fraction, for [`HANG`].
const HANG_AT: f64 = 0.40;
const HANG: Duration = Duration::from_secs(10);
/// Backend `c` resets marked requests between these fractions.
const RESET_FROM: f64 = 0.75;
const RESET_TO: f64 = 0.85;
/// Valid config rewrites, spread evenly over the run.
const REWRITES: usize = 20;
/// The broken edit comes just before this rewrite (0-based), which repairs it.
const BROKEN_BEFORE: usize = 10;
/// SIGHUPs, each half-way between two rewrites, never while the file is broken.
const SIGHUPS: usize = 5;

/// The route's whole-request deadline: what a request to the hung backend waits before its 504.
const ROUTE_TIMEOUT: &str = "2s";
/// How long fulcrum keeps an idle pooled backend connection; the settle period waits it out.
const UPSTREAM_IDLE: Duration = Duration::from_secs(2);

/// One request in `POST_EVERY` is a POST (with [`POST_BODY`]), the rest GETs.
const POST_EVERY: u64 = 3;
/// One request in `MARK_EVERY` carries [`MARK`]; `c` resets those during its fault window.
const MARK_EVERY: u64 = 5;
static POST_BODY: [u8; 512] = [b'p'; 512];
/// The request id header every backend records.
const ID: &str = "x-soak-id";
/// The marker of requests `c` may reset.
const MARK: &str = "x-soak-reset";
/// What a reset response announces (`Content-Length`) and what it sends before the RST.
const CUT_ANNOUNCED: u64 = 200;
const CUT_SENT: usize = 20;

/// A request that has no complete answer by then counts as failed (`client timeout`).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// The client drops pooled connections idle this long (fulcrum's `keepalive_timeout` is 75 s).
const CLIENT_POOL_IDLE: Duration = Duration::from_secs(20);
/// Load before the "before" measurement, so that lazily made state (pools, metric series,
/// allocator arenas) is there on both sides of the comparison.
const WARMUP: Duration = Duration::from_secs(2);
/// File descriptors the proxy may hold after the settle period beyond what it held before
/// (a health probe's connection open at the moment of reading).
const FD_SLACK: usize = 4;
/// RSS growth allowed across the run, in KiB. A 60 s run at 200 req/s (debug build) grew by
/// about 1 MiB (docs/src/soak-and-fuzz.md); a leak of 50 bytes a request passes the bound within
/// the 30-minute run at 200 req/s.
const RSS_BOUND_KIB: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak run of FULCRUM_SOAK_SECS (default 60 s): cargo test --test soak -- --ignored"]
async fn soak_with_kills_hangs_resets_and_reloads() {
    let settings = Settings::from_env();
    let a = Counting::start("a").await;
    let b = Counting::start("b").await;
    let c = Counting::start("c").await;
    let addrs = [a.addr, b.addr, c.addr];
    let f = Arc::new(Fulcrum::start_logging(
        "info",
        "access_log = \"access.log\"",
        &config(0, &addrs),
    ));
    let pid = f.child.id();
    let pool = Arc::new(Pool::new(f.addr));

    let mut records = drive(&pool, 0, settings.rps, WARMUP).await;
    pool.close();
    let before = settle(&f, pid, None).await;

    let events = schedule(settings.length);
    let (b_state, c_state) = (Arc::clone(&b.state), Arc::clone(&c.state));
    let started = Instant::now();
    let cpu_before = (cpu(&pid.to_string()), cpu("self"));
    let faults = tokio::spawn(run_schedule(
        Arc::clone(&f),
        a,
        (b_state, c_state),
        addrs,
        started,
        events,
    ));
    let first_id = records.len() as u64;
    let load = drive(&pool, first_id, settings.rps, settings.length).await;
    let sent = load.len();
    let cpu_used = (
        cpu(&pid.to_string()) - cpu_before.0,
        cpu("self") - cpu_before.1,
    );
    records.extend(load);
    let (a, timeline, mut problems) = faults.await.expect("the fault schedule");
    pool.close();
    let after = settle(&f, pid, Some(before.fds + FD_SLACK)).await;
    // The proxy still answers.
    let last = one(Arc::clone(&pool), Job::new(records.len() as u64)).await;
    if let Err(e) = &last.outcome {
        problems.push(format!("the proxy no longer answers after the run: {e}"));
    }
    records.push(last);
    pool.close();

    let backends = Backends {
        addrs: addrs.map(|a| a.to_string()),
        states: [&a.state, &b.state, &c.state],
    };
    let report = account(&f, &records, &timeline, &backends).await;
    problems.extend(report.problems.iter().cloned());
    let planned = settings.rps as usize * settings.length.as_secs() as usize;
    if sent * 10 < planned * 9 {
        problems.push(format!(
            "the client sent {sent} of {planned} requests in time: lower FULCRUM_SOAK_RPS"
        ));
    }
    if after.fds > before.fds + FD_SLACK {
        problems.push(format!(
            "file descriptors grew from {} to {} (slack {FD_SLACK})",
            before.fds, after.fds
        ));
    }
    if after.rss_kib > before.rss_kib + RSS_BOUND_KIB {
        problems.push(format!(
            "RSS grew from {} KiB to {} KiB (bound +{RSS_BOUND_KIB} KiB)",
            before.rss_kib, after.rss_kib
        ));
    }
    print_summary(&settings, sent, &records, &timeline, &report);
    println!(
        "CPU during the load: fulcrum {:.1?}, this test (client and backends) {:.1?}",
        cpu_used.0, cpu_used.1
    );
    println!(
        "resources after settling: fds {} -> {}, RSS {:.1} MiB -> {:.1} MiB\n",
        before.fds,
        after.fds,
        before.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\nfulcrum's log:\n{}",
        problems.len(),
        problems.join("\n"),
        tail(&f.log(), 40)
    );
}

// ---------------------------------------------------------------------------------------------
// Settings and schedule

/// The run's length and rate, from the environment.
struct Settings {
    length: Duration,
    rps: u32,
}

impl Settings {
    fn from_env() -> Settings {
        let secs = env_number("FULCRUM_SOAK_SECS", DEFAULT_SECS);
        assert!(
            secs >= MIN_SECS,
            "FULCRUM_SOAK_SECS must be at least {MIN_SECS} (the hang alone is {HANG:?}); got {secs}"
        );
        let rps = env_number("FULCRUM_SOAK_RPS", u64::from(DEFAULT_RPS));
        let rps = u32::try_from(rps)
            .ok()
            .filter(|r| (1..=100_000).contains(r))
            .unwrap_or_else(|| panic!("FULCRUM_SOAK_RPS must be 1 to 100000; got {rps}"));
        Settings {
            length: Duration::from_secs(secs),
            rps,
        }
    }
}

/// The variable `name` as a whole number, or `default` when it is unset.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => default,
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a whole number: {e}")),
        Err(e) => panic!("{name}: {e}"),
    }
}

/// What the schedule does at one moment.
#[derive(Clone, Copy, Debug)]
enum Event {
    Kill,
    Restart,
    HangStart,
    HangEnd,
    ResetStart,
    ResetEnd,
    /// Rewrite the config with variant N.
    Rewrite(usize),
    /// Rewrite it with an error (the variant in force plus a route to a missing upstream).
    Broken,
    Sighup,
}

/// The events of a run of `length`, in order, each with its offset from the start of the load.
fn schedule(length: Duration) -> Vec<(Duration, Event)> {
    let at = |fraction: f64| length.mul_f64(fraction);
    let gap = length / (REWRITES as u32 + 1);
    let mut events = vec![
        (at(KILL_AT), Event::Kill),
        (at(RESTART_AT), Event::Restart),
        (at(HANG_AT), Event::HangStart),
        (at(HANG_AT) + HANG, Event::HangEnd),
        (at(RESET_FROM), Event::ResetStart),
        (at(RESET_TO), Event::ResetEnd),
        // Just before the rewrite that repairs it, after the SIGHUP before that one.
        (gap * (BROKEN_BEFORE as u32 + 1) - gap / 4, Event::Broken),
    ];
    events.extend((0..REWRITES).map(|i| (gap * (i as u32 + 1), Event::Rewrite(i + 1))));
    // Half-way after rewrites 1, 5, 9, 13 and 17 (0-based).
    events.extend((0..SIGHUPS).map(|j| (gap * (4 * j as u32 + 2) + gap / 2, Event::Sighup)));
    events.sort_by_key(|(t, _)| *t);
    events
}

/// A stretch of time: from just before a fault started to just after it ended.
#[derive(Clone, Copy, Debug)]
struct Span {
    from: Instant,
    to: Instant,
}

impl Span {
    fn at(now: Instant) -> Span {
        Span { from: now, to: now }
    }

    /// Whether a request that ran from `start` to `end` overlaps this span.
    fn overlaps(&self, start: Instant, end: Instant) -> bool {
        start <= self.to && end >= self.from
    }
}

/// When each fault really ran (the schedule waits for each reload to be counted, so later
/// events can run late).
struct Timeline {
    kill: Span,
    hang: Span,
    reset: Span,
    /// From each trigger (rewrite, broken edit, SIGHUP) until fulcrum counted its reload.
    reloads: Vec<Span>,
    /// Ids `a` had received when it came back.
    a_seen_at_restart: usize,
}

/// Runs the events at their times; returns backend `a` (restarted), when each fault ran, and
/// what went wrong.
async fn run_schedule(
    f: Arc<Fulcrum>,
    a: Counting,
    (b, c): (Arc<State>, Arc<State>),
    addrs: [SocketAddr; 3],
    started: Instant,
    events: Vec<(Duration, Event)>,
) -> (Counting, Timeline, Vec<String>) {
    let a_state = Arc::clone(&a.state);
    let mut a = Some(a);
    let mut problems = Vec::new();
    let mut timeline = Timeline {
        kill: Span::at(started),
        hang: Span::at(started),
        reset: Span::at(started),
        reloads: Vec::new(),
        a_seen_at_restart: 0,
    };
    let mut variant = 0;
    for (offset, event) in events {
        tokio::time::sleep_until((started + offset).into()).await;
        let now = Instant::now();
        match event {
            Event::Kill => {
                timeline.kill.from = now;
                if let Some(a) = a.take() {
                    if let Err(e) = a.kill().await {
                        problems.push(e);
                    }
                }
            }
            Event::Restart => {
                a = Some(Counting::start_on(addrs[0], Arc::clone(&a_state)).await);
                timeline.a_seen_at_restart = a_state.seen.lock().unwrap().len();
                timeline.kill.to = Instant::now();
            }
            Event::HangStart => {
                timeline.hang.from = now;
                b.hang.send_replace(true);
            }
            Event::HangEnd => {
                b.hang.send_replace(false);
                timeline.hang.to = Instant::now();
            }
            Event::ResetStart => {
                timeline.reset.from = now;
                c.reset.store(true, Ordering::SeqCst);
            }
            Event::ResetEnd => {
                c.reset.store(false, Ordering::SeqCst);
                timeline.reset.to = Instant::now();
            }
            Event::Rewrite(v) => {
                variant = v;
                let text = config(v, &addrs);
                let r = reload(&f, "success", || f.rewrite(&text)).await;
                timeline.reloads.push(r.unwrap_or_else(|e| {
                    problems.push(format!("rewrite {v}: {e}"));
                    Span::at(now)
                }));
            }
            Event::Broken => {
                let text = format!("{}{BROKEN}", config(variant, &addrs));
                let r = reload(&f, "failure", || f.rewrite(&text)).await;
                timeline.reloads.push(r.unwrap_or_else(|e| {
                    problems.push(format!("broken edit: {e}"));
                    Span::at(now)
                }));
            }
            Event::Sighup => {
                let r = reload(&f, "success", || f.signal("-HUP")).await;
                timeline.reloads.push(r.unwrap_or_else(|e| {
                    problems.push(format!("SIGHUP: {e}"));
                    Span::at(now)
                }));
            }
        }
    }
    let a = match a {
        Some(a) => a,
        None => Counting::start_on(addrs[0], a_state).await,
    };
    (a, timeline, problems)
}

/// Triggers a reload and waits until `fulcrum_config_reloads_total{result}` counts it.
async fn reload(f: &Fulcrum, result: &str, trigger: impl FnOnce()) -> Result<Span, String> {
    let series = format!("fulcrum_config_reloads_total{{result=\"{result}\"}}");
    let count = f.metric(&series).await.unwrap_or(0.0);
    let from = Instant::now();
    trigger();
    let deadline = from + Duration::from_secs(5);
    while f.metric(&series).await.unwrap_or(0.0) <= count {
        if Instant::now() > deadline {
            return Err(format!("no {result} counted within 5 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Span {
        from,
        to: Instant::now(),
    })
}

/// The config after `variant` rewrites: the route and the names stay (so metric series and
/// health survive), the strategy, the weights and the probe interval change.
fn config(variant: usize, addrs: &[SocketAddr; 3]) -> String {
    const BALANCE: [&str; 5] = [
        "round_robin",
        "least_connections",
        "p2c",
        "weighted_round_robin",
        "random",
    ];
    let balance = BALANCE[variant % BALANCE.len()];
    let weight = |k: usize| 1 + (variant + k) % 3;
    let backends: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(k, a)| format!("{{ addr = \"{a}\", weight = {} }}", weight(k)))
        .collect();
    let interval = if variant % 4 == 3 { "400ms" } else { "500ms" };
    format!(
        "[[route]]\nname = \"soak\"\nupstream = \"pool\"\nretries = 2\ntimeout = \"{ROUTE_TIMEOUT}\"\n\n\
         [upstream.pool]\nbalance = \"{balance}\"\nbackends = [{}]\nconnect_timeout = \"500ms\"\n\
         idle_timeout = \"{}s\"\n\n\
         [upstream.pool.health_check]\npath = \"/healthz\"\ninterval = \"{interval}\"\n\
         timeout = \"300ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n",
        backends.join(", "),
        UPSTREAM_IDLE.as_secs(),
    )
}

/// What the broken edit appends: a route to an upstream that does not exist.
const BROKEN: &str =
    "\n[[route]]\nname = \"broken\"\npath = \"/broken/\"\nupstream = \"missing\"\n";

// ---------------------------------------------------------------------------------------------
// Backends

/// What a backend knows across a kill and restart.
struct State {
    /// Every id received (and whether in a POST), in arrival order, health checks not included.
    seen: Mutex<Vec<(u64, bool)>>,
    /// While true nothing is answered, health checks included (the process hangs).
    hang: watch::Sender<bool>,
    /// While true a request with [`MARK`] gets a response cut short by a connection reset.
    reset: AtomicBool,
    /// Responses cut short.
    resets: AtomicUsize,
}

/// A real HTTP/1.1 backend (hyper) on 127.0.0.1 that records the [`ID`] of every request and
/// answers `200` with the id echoed, unless told to hang or to reset.
struct Counting {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Counting {
    async fn start(name: &str) -> Counting {
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            hang: watch::Sender::new(false),
            reset: AtomicBool::new(false),
            resets: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind backend {name}: {e}"));
        Counting::serve(listener, state)
    }

    /// The backend back on `addr` (its port, after a kill), with the state it had.
    async fn start_on(addr: SocketAddr, state: Arc<State>) -> Counting {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => return Counting::serve(listener, state),
                Err(e) => assert!(Instant::now() < deadline, "rebind {addr}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn serve(listener: TcpListener, state: Arc<State>) -> Counting {
        let addr = listener.local_addr().expect("bound address");
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(accept(listener, Arc::clone(&state), stop));
        Counting {
            addr,
            state,
            shutdown,
            task,
        }
    }

    /// Stops the backend as a process that is told to exit does: its port refuses connections
    /// at once, the requests it is answering are answered, and every connection is closed as
    /// soon as it is idle.
    async fn kill(mut self) -> Result<(), String> {
        self.shutdown.send_replace(true);
        let stopped = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        if stopped.is_err() {
            self.task.abort();
            return Err("backend a did not finish its requests within 5 s of its kill".into());
        }
        match TcpStream::connect(self.addr).await {
            Ok(_) => Err(format!("killed backend a still accepts on {}", self.addr)),
            Err(_) => Ok(()),
        }
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts and serves connections until `stop`; then answers what is in flight and closes.
async fn accept(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                conns.spawn(connection(stream, Arc::clone(&state), stop.clone()));
            }
            () = stopped(&mut stop) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Returns once the backend is told to stop (at once if it was).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The sender lives as long as the backend: an error means it is gone, which is a stop too.
    stop.wait_for(|s| *s).await.map(drop).unwrap_or(());
}

/// Serves one connection; on `stop`, finishes its request in flight and closes.
async fn connection(stream: TcpStream, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let cut = Arc::new(AtomicBool::new(false));
    let io = ResettableIo {
        stream,
        reset_on_drop: Arc::clone(&cut),
    };
    let svc = service_fn(move |req| answer(Arc::clone(&state), Arc::clone(&cut), req));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    // The connection's own errors (a peer that went away, a cut response) end it; nothing to
    // report: the client side accounts for every request.
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await.ok();
        }
    }
}

/// Answers one request (see [`Counting`]).
async fn answer(
    state: Arc<State>,
    cut: Arc<AtomicBool>,
    req: Request<Incoming>,
) -> Result<Response<SoakBody>, Infallible> {
    let id = req
        .headers()
        .get(ID)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(id) = id {
        let post = req.method() == Method::POST;
        state.seen.lock().unwrap().push((id, post));
    }
    // A hung process answers nothing until it recovers; `state` holds the sender, so the wait
    // ends only when the hang does.
    let mut hang = state.hang.subscribe();
    if hang.wait_for(|h| !*h).await.is_err() {
        unreachable!("the hang sender lives in the backend's state");
    }
    let marked = req.headers().contains_key(MARK);
    let received = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len().to_string(),
        Err(e) => format!("error: {e}"),
    };
    let mut resp = if marked && state.reset.load(Ordering::SeqCst) {
        state.resets.fetch_add(1, Ordering::SeqCst);
        cut.store(true, Ordering::SeqCst);
        Response::new(SoakBody::cut())
    } else {
        Response::new(SoakBody::whole(Bytes::from_static(b"ok\n")))
    };
    let headers = resp.headers_mut();
    if let Some(id) = id {
        headers.insert(ID, id.into());
    }
    headers.insert(
        "x-soak-body-len",
        received.parse().expect("a length or an error text"),
    );
    Ok(resp)
}

/// A response body: whole, or [`CUT_SENT`] bytes of an announced [`CUT_ANNOUNCED`] followed,
/// 50 ms later (time for them to go out), by an error: hyper then drops the connection, which
/// [`ResettableIo`] turns into a reset.
struct SoakBody {
    data: Option<Bytes>,
    announced: u64,
    cut: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SoakBody {
    fn whole(data: Bytes) -> SoakBody {
        SoakBody {
            announced: data.len() as u64,
            data: Some(data),
            cut: None,
        }
    }

    fn cut() -> SoakBody {
        SoakBody {
            data: Some(Bytes::from_static(&[b'x'; CUT_SENT])),
            announced: CUT_ANNOUNCED,
            cut: Some(Box::pin(tokio::time::sleep(Duration::from_millis(50)))),
        }
    }
}

impl Body for SoakBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(pause) = self.cut.as_mut() else {
            return Poll::Ready(None);
        };
        ready!(pause.as_mut().poll(cx));
        self.cut = None;
        let e = io::Error::new(io::ErrorKind::ConnectionReset, "soak: reset mid-response");
        Poll::Ready(Some(Err(e)))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.cut.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.announced)
    }
}

/// A backend connection that, once told to, closes with `SO_LINGER` 0: a reset (RST) instead of
/// an orderly close.
struct ResettableIo {
    stream: TcpStream,
    reset_on_drop: Arc<AtomicBool>,
}

impl Drop for ResettableIo {
    fn drop(&mut self) {
        if self.reset_on_drop.load(Ordering::SeqCst) {
            if let Err(e) = self.stream.set_zero_linger() {
                eprintln!("soak: SO_LINGER 0 on a backend connection: {e}");
            }
        }
    }
}

impl AsyncRead for ResettableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// One request of the load.
#[derive(Clone, Copy, Debug)]
struct Job {
    id: u64,
    post: bool,
    marked: bool,
}

impl Job {
    /// Method and mark are drawn from a hash of the id: round-robin balancing sends every third
    /// request to the same backend, and with `id % 3` deciding the method one backend would get
    /// every POST and no GET.
    fn new(id: u64) -> Job {
        let h = splitmix64(id);
        Job {
            id,
            post: h % POST_EVERY == 0,
            marked: (h >> 32) % MARK_EVERY == 0,
        }
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let (method, body) = if self.post {
            (Method::POST, Bytes::from_static(&POST_BODY))
        } else {
            (Method::GET, Bytes::new())
        };
        let mut b = Request::builder()
            .method(method)
            .uri(format!("/soak/{}", self.id))
            .header("host", "soak.test")
            .header(ID, self.id);
        if self.marked {
            b = b.header(MARK, "1");
        }
        b.body(Full::new(body)).expect("a valid request")
    }

    fn body_len(&self) -> usize {
        if self.post {
            POST_BODY.len()
        } else {
            0
        }
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How a request failed, as the client saw it.
#[derive(Debug)]
enum Failure {
    Status(u16),
    /// A `200` whose body ended (with an error) before its `Content-Length`.
    Truncated {
        got: u64,
        announced: u64,
    },
    Transport(String),
    /// A complete `200` that is not the answer to this request.
    Garbled(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Truncated { got, announced } => {
                write!(f, "body cut at {got} of {announced} bytes")
            }
            Failure::Transport(e) => write!(f, "transport: {e}"),
            Failure::Garbled(e) => write!(f, "garbled: {e}"),
        }
    }
}

/// One request's fate.
#[derive(Debug)]
struct Record {
    job: Job,
    start: Instant,
    end: Instant,
    outcome: Result<(), Failure>,
    /// Sent again on a new connection because the kept one closed before it was written.
    resent: bool,
}

/// Kept-alive client connections to the proxy, the most recently used first, as HTTP clients
/// pool them.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<
        Vec<(
            hyper::client::conn::http1::SendRequest<Full<Bytes>>,
            Instant,
        )>,
    >,
}

impl Pool {
    fn new(addr: SocketAddr) -> Pool {
        Pool {
            addr,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A ready connection: a kept one (`true`) or a new one.
    async fn take(
        &self,
    ) -> Result<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, bool), String> {
        loop {
            let kept = self.idle.lock().unwrap().pop();
            let Some((mut sender, since)) = kept else {
                break;
            };
            if since.elapsed() < CLIENT_POOL_IDLE && sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        self.connect().await.map(|s| (s, false))
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn put(&self, sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>) {
        if !sender.is_closed() {
            self.idle.lock().unwrap().push((sender, Instant::now()));
        }
    }

    /// Closes every kept connection.
    fn close(&self) {
        self.idle.lock().unwrap().clear();
    }
}

/// Sends `rps` requests a second for `length` (ids from `first_id`), each at its time however
/// long the others take; returns once every one has ended.
async fn drive(pool: &Arc<Pool>, first_id: u64, rps: u32, length: Duration) -> Vec<Record> {
    let count = rps as u64 * length.as_secs().max(1);
    let period = Duration::from_secs(1) / rps;
    let start = tokio::time::Instant::now();
    // Requests not sent by then are not sent: the run stays bounded however slow the machine.
    let last_send = start + length + Duration::from_secs(5);
    let mut tasks = JoinSet::new();
    let mut records = Vec::with_capacity(count as usize);
    for n in 0..count {
        tokio::time::sleep_until(start + period.mul_f64(n as f64)).await;
        if tokio::time::Instant::now() > last_send {
            break;
        }
        tasks.spawn(one(Arc::clone(pool), Job::new(first_id + n)));
        while let Some(done) = tasks.try_join_next() {
            records.push(done.expect("a request task"));
        }
    }
    while let Some(done) = tasks.join_next().await {
        records.push(done.expect("a request task"));
    }
    records
}

/// Sends one request and checks its answer.
async fn one(pool: Arc<Pool>, job: Job) -> Record {
    let start = Instant::now();
    let mut resent = false;
    let outcome = tokio::time::timeout(CLIENT_TIMEOUT, exchange(&pool, job, &mut resent))
        .await
        .unwrap_or_else(|_| Err(Failure::Transport("client timeout".into())));
    Record {
        job,
        start,
        end: Instant::now(),
        outcome,
        resent,
    }
}

async fn exchange(pool: &Pool, job: Job, resent: &mut bool) -> Result<(), Failure> {
    let (mut sender, kept) = pool.take().await.map_err(Failure::Transport)?;
    let resp = match sender.send_request(job.request()).await {
        Ok(resp) => resp,
        // The kept connection closed before the request was written: nothing was sent, so it
        // is safe to send it again, POST included (what HTTP clients do).
        Err(e) if kept && e.is_canceled() => {
            *resent = true;
            sender = pool.connect().await.map_err(Failure::Transport)?;
            sender
                .send_request(job.request())
                .await
                .map_err(|e| Failure::Transport(format!("request: {e}")))?
        }
        Err(e) => return Err(Failure::Transport(format!("request: {e}"))),
    };
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let announced = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let (echoed, received) = (header(ID), header("x-soak-body-len"));
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => got += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => {
                return Err(match announced {
                    Some(announced) if got < announced => Failure::Truncated { got, announced },
                    _ => Failure::Transport(format!("body: {e}")),
                })
            }
        }
    }
    pool.put(sender);
    if status != 200 {
        return Err(Failure::Status(status));
    }
    let want = (job.id.to_string(), job.body_len().to_string());
    match (echoed, received) {
        (Some(id), Some(len)) if (&id, &len) == (&want.0, &want.1) => Ok(()),
        other => Err(Failure::Garbled(format!(
            "echoed (id, body length) {other:?}, sent {want:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Resources

/// The proxy's file descriptors and resident memory at one moment.
#[derive(Clone, Copy, Debug)]
struct Resources {
    fds: usize,
    rss_kib: u64,
}

fn resources(pid: u32) -> Resources {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(usize::MAX);
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(u64::MAX);
    Resources { fds, rss_kib }
}

/// CPU time (user + system) the process `pid` (or `"self"`) has used so far.
fn cpu(pid: &str) -> Duration {
    // utime and stime, fields 14 and 15, count USER_HZ ticks: 100 a second on Linux.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Waits until no client connection is open and no request in flight, then until fulcrum's idle
/// backend connections have timed out, and measures. With `target`, polls until the
/// descriptors are down to it (for at most 20 s); without, measures the least over one idle
/// timeout (a health probe can hold a connection at any moment).
async fn settle(f: &Fulcrum, pid: u32, target: Option<usize>) -> Resources {
    f.wait_metrics("no client connection and no request in flight", |m| {
        sample_of(m, "fulcrum_downstream_connections_active") == Some(0.0)
            && sum_of(m, "fulcrum_backend_inflight", &[]) == 0.0
    })
    .await;
    let idle_over = Instant::now() + UPSTREAM_IDLE + Duration::from_secs(1);
    let deadline = idle_over + Duration::from_secs(20);
    let mut least = resources(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = resources(pid);
        if now.fds < least.fds {
            least = now;
        }
        let t = Instant::now();
        let done = match target {
            Some(target) => t >= idle_over && now.fds <= target,
            None => t >= idle_over,
        };
        if done || t >= deadline {
            return Resources {
                fds: least.fds,
                rss_kib: now.rss_kib,
            };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Accounting

/// The three backends: `a` (killed), `b` (hangs), `c` (resets).
struct Backends<'a> {
    addrs: [String; 3],
    states: [&'a Arc<State>; 3],
}

/// An access-log line, as far as the accounting needs it.
#[derive(Debug)]
struct Logged {
    status: u64,
    backend: String,
    outcome: Option<String>,
}

impl Logged {
    /// Whether the line says the request failed (its `outcome` is there and not `ok`).
    fn failed(&self) -> bool {
        self.outcome.as_deref().is_some_and(|o| o != "ok")
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Cause {
    /// A 504 from `b` while it hung.
    Hang,
    /// A 200 cut short by `c` while it reset marked requests.
    Reset,
    /// A POST fulcrum had already sent on a kept-alive connection to `a` that `a`, killed,
    /// closed in the same instant, unread: a `502`, not retried (RFC 9110 §9.2.2: fulcrum cannot
    /// know the backend did not act on it; nginx and HAProxy do the same), and no backend got
    /// it. HTTP/1.1's own race: 0 or 1 a run so far; at most [`KILL_RACE_MAX`] a run.
    KillRace,
    /// Anything else: a bug, or a fault that must cost nothing (a kill, a reload).
    Unexplained,
}

/// The most POSTs a kill may cost through [`Cause::KillRace`] in one run.
const KILL_RACE_MAX: usize = 4;

/// What the accounting found.
struct Report {
    causes: HashMap<Cause, usize>,
    /// The unexplained failures, for the summary (at most 10).
    unexplained: Vec<String>,
    posts_twice: usize,
    gets_twice: usize,
    resent: usize,
    resets_sent: usize,
    logged_failures: usize,
    metric: HashMap<&'static str, f64>,
    problems: Vec<String>,
}

async fn account(
    f: &Fulcrum,
    records: &[Record],
    timeline: &Timeline,
    backends: &Backends<'_>,
) -> Report {
    let mut problems = Vec::new();
    let log = read_access_log(f, records.len()).await;
    if log.len() != records.len() {
        problems.push(format!(
            "the access log has {} request lines, the client sent {}",
            log.len(),
            records.len()
        ));
    }

    // Deliveries: no POST twice anywhere; every answered request reached a backend.
    let mut delivered: HashMap<u64, (usize, bool)> = HashMap::new();
    for state in backends.states {
        for &(id, post) in state.seen.lock().unwrap().iter() {
            let e = delivered.entry(id).or_insert((0, post));
            e.0 += 1;
        }
    }
    let twice = |post: bool| {
        delivered
            .iter()
            .filter(|(_, (n, p))| *n > 1 && *p == post)
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    };
    let (posts_twice, gets_twice) = (twice(true), twice(false));
    if !posts_twice.is_empty() {
        problems.push(format!(
            "{} POST(s) delivered more than once, e.g. ids {:?}",
            posts_twice.len(),
            &posts_twice[..posts_twice.len().min(10)]
        ));
    }
    let lost: Vec<u64> = records
        .iter()
        .filter(|r| r.outcome.is_ok() && !delivered.contains_key(&r.job.id))
        .map(|r| r.job.id)
        .collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} request(s) answered 200 that no backend received, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    let (a_seen, a_seen_now) = (
        timeline.a_seen_at_restart,
        backends.states[0].seen.lock().unwrap().len(),
    );
    if a_seen_now <= a_seen {
        problems.push("backend a got no request after its restart".into());
    }

    // Every failure: a cause, and a failure in the access log.
    let mut causes: HashMap<Cause, usize> = HashMap::new();
    let mut unexplained = Vec::new();
    let (mut missing, mut not_failures) = (Vec::new(), Vec::new());
    for r in records {
        let Err(failure) = &r.outcome else { continue };
        let line = log.get(&r.job.id);
        let backend = line.map_or("", |l| l.backend.as_str());
        let cause = match failure {
            Failure::Status(504)
                if timeline.hang.overlaps(r.start, r.end) && backend == backends.addrs[1] =>
            {
                Cause::Hang
            }
            Failure::Truncated { .. }
                if r.job.marked
                    && timeline.reset.overlaps(r.start, r.end)
                    && backend == backends.addrs[2] =>
            {
                Cause::Reset
            }
            Failure::Status(502)
                if r.job.post
                    && timeline.kill.overlaps(r.start, r.end)
                    && backend == backends.addrs[0]
                    && !delivered.contains_key(&r.job.id) =>
            {
                Cause::KillRace
            }
            _ => Cause::Unexplained,
        };
        *causes.entry(cause).or_default() += 1;
        if cause == Cause::Unexplained && unexplained.len() < 10 {
            let during: Vec<&str> = [
                ("kill", timeline.kill.overlaps(r.start, r.end)),
                ("hang", timeline.hang.overlaps(r.start, r.end)),
                ("reset", timeline.reset.overlaps(r.start, r.end)),
                (
                    "reload",
                    timeline.reloads.iter().any(|s| s.overlaps(r.start, r.end)),
                ),
            ]
            .iter()
            .filter(|(_, during)| *during)
            .map(|(name, _)| *name)
            .collect();
            unexplained.push(format!(
                "id {} ({}): {failure} during {during:?}, logged {line:?}",
                r.job.id,
                if r.job.post { "POST" } else { "GET" },
            ));
        }
        match line {
            None => missing.push(r.job.id),
            Some(l) => match (cause, l.outcome.as_deref()) {
                // fulcrum answered the timeout itself; the cut response was started, then
                // aborted.
                (Cause::Hang, Some("error"))
                | (Cause::Reset, Some("aborted"))
                | (Cause::KillRace, Some("error"))
                | (Cause::Unexplained, Some("error" | "aborted" | "client_closed")) => {}
                (_, other) => not_failures.push(format!(
                    "id {} ({failure}) logged with status {} and outcome {other:?}",
                    r.job.id, l.status
                )),
            },
        }
    }
    if !missing.is_empty() {
        problems.push(format!(
            "{} failed request(s) have no access-log line, e.g. ids {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    if !not_failures.is_empty() {
        problems.push(format!(
            "{} failed request(s) are not logged as the failures they are (a 504 outcome \
             error, a cut response aborted), e.g.:\n  {}",
            not_failures.len(),
            not_failures[..not_failures.len().min(5)].join("\n  ")
        ));
    }
    if log.values().all(|l| l.outcome.is_none()) {
        problems.push("no access-log line has an `outcome` field".into());
    }
    let unexplained_count = causes.get(&Cause::Unexplained).copied().unwrap_or(0);
    if unexplained_count > 0 {
        problems.push(format!(
            "{unexplained_count} failure(s) no fault explains:\n  {}",
            unexplained.join("\n  ")
        ));
    }
    let kill_races = causes.get(&Cause::KillRace).copied().unwrap_or(0);
    if kill_races > KILL_RACE_MAX {
        problems.push(format!(
            "{kill_races} POSTs lost to the kill's keep-alive race (at most {KILL_RACE_MAX}): \
             not the rare race it is"
        ));
    }
    if causes.get(&Cause::Hang).copied().unwrap_or(0) == 0 {
        problems.push("the hang of b caused no 504: did it run?".into());
    }
    if causes.get(&Cause::Reset).copied().unwrap_or(0) == 0 {
        problems.push("the resets of c cut no response: did they run?".into());
    }

    // The access log and the metrics agree with the client about what failed.
    let failed_ids: std::collections::HashSet<u64> = records
        .iter()
        .filter(|r| r.outcome.is_err())
        .map(|r| r.job.id)
        .collect();
    let logged_failures = log.values().filter(|l| l.failed()).count();
    let logged_only: Vec<u64> = log
        .iter()
        .filter(|(id, l)| l.failed() && !failed_ids.contains(id))
        .map(|(id, _)| *id)
        .collect();
    if !logged_only.is_empty() {
        problems.push(format!(
            "{} request(s) the client saw succeed are logged as failures, e.g. {:?}",
            logged_only.len(),
            &logged_only[..logged_only.len().min(10)]
        ));
    }
    let route = [("route", "soak")];
    let counted = |m: &str| sum_of(m, "fulcrum_requests_total", &route);
    let lines = log.len() as f64;
    let (_, m) = scrape_until(f, |m| counted(m) >= lines).await;
    let total = counted(&m);
    let ok = sum_of(
        &m,
        "fulcrum_requests_total",
        &[("route", "soak"), ("outcome", "ok")],
    );
    if total != lines {
        problems.push(format!(
            "fulcrum_requests_total{{route=\"soak\"}} is {total}, the access log has {lines} lines"
        ));
    }
    if !m.contains("outcome=\"") {
        problems.push("fulcrum_requests_total has no `outcome` label".into());
    }
    if total - ok != logged_failures as f64 {
        problems.push(format!(
            "fulcrum_requests_total{{route=\"soak\"}} counts {} requests not outcome=\"ok\", the access log {logged_failures}",
            total - ok
        ));
    }
    let metric: HashMap<&'static str, f64> = [
        (
            "reloads ok",
            sample_of(&m, "fulcrum_config_reloads_total{result=\"success\"}"),
        ),
        (
            "reloads failed",
            sample_of(&m, "fulcrum_config_reloads_total{result=\"failure\"}"),
        ),
        (
            "log dropped",
            sample_of(&m, "fulcrum_access_log_dropped_total"),
        ),
        (
            "retries",
            Some(sum_of(&m, "fulcrum_upstream_retries_total", &[])),
        ),
        (
            "connect errors a",
            Some(sum_of(
                &m,
                "fulcrum_upstream_connect_errors_total",
                &[("backend", &backends.addrs[0])],
            )),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
    .collect();
    let expect = [
        ("reloads ok", (REWRITES + SIGHUPS) as f64),
        ("reloads failed", 1.0),
        ("log dropped", 0.0),
    ];
    for (name, want) in expect {
        if metric[name] != want {
            problems.push(format!("{name}: {} (expected {want})", metric[name]));
        }
    }

    Report {
        causes,
        unexplained,
        posts_twice: posts_twice.len(),
        gets_twice: gets_twice.len(),
        resent: records.iter().filter(|r| r.resent).count(),
        resets_sent: backends.states[2].resets.load(Ordering::SeqCst),
        logged_failures,
        metric,
        problems,
    }
}

/// The access log's lines for `/soak/ID`, by id, once it has `want` lines (or after 10 s).
async fn read_access_log(f: &Fulcrum, want: usize) -> HashMap<u64, Logged> {
    let path = f.dir.path().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= want || Instant::now() > deadline {
            return text.lines().filter_map(parse_line).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn parse_line(line: &str) -> Option<(u64, Logged)> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let id = json["path"]
        .as_str()?
        .strip_prefix("/soak/")?
        .parse()
        .ok()?;
    let text = |k: &str| json[k].as_str().map(str::to_owned);
    Some((
        id,
        Logged {
            status: json["status"].as_u64()?,
            backend: text("backend").unwrap_or_default(),
            outcome: text("outcome"),
        },
    ))
}

/// Scrapes until `done` holds (for at most 5 s); whether it did, and the last scrape.
async fn scrape_until(f: &Fulcrum, done: impl Fn(&str) -> bool) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = f.metrics().await;
        if done(&m) || Instant::now() > deadline {
            return (done(&m), m);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

/// Whether a request that overlapped a reload (first) and the kill, the hang and the resets
/// (second) belongs to a row of the summary.
type Member = fn(bool, [bool; 3]) -> bool;

fn print_summary(
    settings: &Settings,
    sent: usize,
    records: &[Record],
    timeline: &Timeline,
    report: &Report,
) {
    let posts = records.iter().filter(|r| r.job.post).count();
    let cause = |c| report.causes.get(&c).copied().unwrap_or(0);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "\nsoak: {} s at {} req/s ({build} build): {} requests ({posts} POST; {sent} in the run, \
         the rest warm-up and a last check)",
        settings.length.as_secs(),
        settings.rps,
        records.len()
    );
    println!(
        "failures by cause: hang (504) {}, reset (cut 200) {} of {} cut by c, kill race (a POST \
         on a connection a closed under it, never delivered) {}, unexplained {} (kills and \
         reloads must cause none)",
        cause(Cause::Hang),
        cause(Cause::Reset),
        report.resets_sent,
        cause(Cause::KillRace),
        cause(Cause::Unexplained)
    );
    for u in &report.unexplained {
        println!("  {u}");
    }
    println!(
        "\n{:<16}{:>9}{:>8}{:>10}{:>10}",
        "window", "requests", "failed", "p50", "p99"
    );
    // Which stretches each request overlapped: reloads, and the kill, hang and reset.
    let during = |r: &Record| {
        let on = |s: &Span| s.overlaps(r.start, r.end);
        (
            timeline.reloads.iter().any(on),
            [on(&timeline.kill), on(&timeline.hang), on(&timeline.reset)],
        )
    };
    let rows: [(&str, Member); 5] = [
        ("steady", |reload, f| !reload && f == [false; 3]),
        ("reloading", |reload, f| reload && f == [false; 3]),
        ("a killed", |_, f| f[0]),
        ("b hung", |_, f| f[1]),
        ("c resetting", |_, f| f[2]),
    ];
    for (name, member) in rows {
        let class: Vec<&Record> = records
            .iter()
            .filter(|r| {
                let (reload, faults) = during(r);
                member(reload, faults)
            })
            .collect();
        let failed = class.iter().filter(|r| r.outcome.is_err()).count();
        let mut took: Vec<Duration> = class.iter().map(|r| r.end - r.start).collect();
        took.sort();
        let pct = |p: usize| {
            took.get((took.len() * p / 100).min(took.len().saturating_sub(1)))
                .map_or("-".to_owned(), |d| format!("{:.1?}", d))
        };
        println!(
            "{name:<16}{:>9}{failed:>8}{:>10}{:>10}",
            class.len(),
            pct(50),
            pct(99)
        );
    }
    let m = |k: &str| report.metric.get(k).copied().unwrap_or(f64::NAN);
    println!(
        "\ndeliveries: POST twice {}, GET twice {}; resent by the client (unsent on a closed \
         kept connection) {}",
        report.posts_twice, report.gets_twice, report.resent
    );
    println!(
        "fulcrum: {} failures logged; retries {}, connect errors to a {}; reloads {} ok, {} \
         failed; access-log lines dropped {}",
        report.logged_failures,
        m("retries"),
        m("connect errors a"),
        m("reloads ok"),
        m("reloads failed"),
        m("log dropped")
    );
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
