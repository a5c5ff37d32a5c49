//! Test scaffolding: real HTTP backends (hyper, 127.0.0.1 port 0), the real `fulcrum` binary
//! on a generated config, and a minimal HTTP/1.1 client.
#![allow(dead_code)]

pub mod rawhttp;
pub mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a test backend answers.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub status: u16,
    /// Status of `GET /healthz`.
    pub health_status: u16,
    pub delay: Duration,
    /// How long `GET /healthz` takes to answer.
    pub health_delay: Duration,
    /// `Some((n, every))`: the body is the echo text followed by `n` chunks of
    /// [`STREAM_CHUNK`] bytes, one every `every` (a slowly streaming response).
    pub stream: Option<(usize, Duration)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: 200,
            health_status: 200,
            delay: Duration::ZERO,
            health_delay: Duration::ZERO,
            stream: None,
        }
    }
}

/// One chunk of a streamed body: 1 KiB of a byte pattern that shows reordering or loss.
pub const STREAM_CHUNK: usize = 1024;

/// Chunk `i` of a streamed body.
pub fn stream_chunk(i: usize) -> Bytes {
    Bytes::from(
        (0..STREAM_CHUNK)
            .map(|j| b'a' + ((i + j) % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A body fed from a channel, frame by frame.
struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

type Body = http_body_util::Either<Full<Bytes>, Chunks>;

/// A real HTTP backend. Its body names it and echoes what it received:
/// `backend NAME`, `method M`, `uri U`, `body-len N`, then one `header: value` line per header.
/// `GET /healthz` answers `health_status`, `/status/NNN` answers NNN. Dropping or [`Backend::stop`]ping it closes its
/// listener and every open connection.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests other than health checks.
    pub hits: Arc<AtomicUsize>,
    /// Every request path, in arrival order (health checks included).
    pub paths: Arc<std::sync::Mutex<Vec<String>>>,
    /// Connections accepted.
    pub accepts: Arc<AtomicUsize>,
    /// The status of requests other than health checks; change it with [`Backend::set_status`].
    status: Arc<AtomicU16>,
    /// Requests (other than health checks) being answered now, and the most at once.
    active: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Backend::with(name, Behaviour::default()).await
    }

    pub async fn with(name: &str, behaviour: Behaviour) -> Backend {
        Backend::on("127.0.0.1:0".parse().unwrap(), name, behaviour).await
    }

    /// A backend on a given address (to bring a stopped one back on its port).
    pub async fn on(addr: SocketAddr, name: &str, behaviour: Behaviour) -> Backend {
        Backend::serve(addr, name, behaviour, None).await
    }

    /// A backend that speaks HTTPS with `config` (its certificate and ALPN).
    pub async fn https(name: &str, config: Arc<rustls::ServerConfig>) -> Backend {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let addr = "127.0.0.1:0".parse().unwrap();
        Backend::serve(addr, name, Behaviour::default(), Some(acceptor)).await
    }

    async fn serve(
        addr: SocketAddr,
        name: &str,
        behaviour: Behaviour,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Backend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepts = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(behaviour.status));
        let (active, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, h, p, acc) = (
            name.to_owned(),
            hits.clone(),
            paths.clone(),
            accepts.clone(),
        );
        let (st, act, pk) = (status.clone(), active.clone(), peak.clone());
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the accept task closes them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let (name, hits, paths, b) = (n.clone(), h.clone(), p.clone(), behaviour.clone());
                let (st, act, pk) = (st.clone(), act.clone(), pk.clone());
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (name, hits, paths, b) =
                            (name.clone(), hits.clone(), paths.clone(), b.clone());
                        let (st, act, pk) = (st.clone(), act.clone(), pk.clone());
                        async move {
                            paths.lock().unwrap().push(req.uri().path().to_owned());
                            let health = req.uri().path() == "/healthz";
                            // `/status/NNN` answers NNN: one backend, an endpoint that fails
                            // and one that does not.
                            let asked = req
                                .uri()
                                .path()
                                .strip_prefix("/status/")
                                .and_then(|s| s.parse::<u16>().ok());
                            if !health {
                                hits.fetch_add(1, Ordering::SeqCst);
                                let now = act.fetch_add(1, Ordering::SeqCst) + 1;
                                pk.fetch_max(now, Ordering::SeqCst);
                            }
                            let mut text = format!(
                                "backend {name}\nmethod {}\nuri {}\n",
                                req.method(),
                                req.uri()
                            );
                            let headers: Vec<String> = req
                                .headers()
                                .iter()
                                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().len())
                                .unwrap_or(0);
                            text.push_str(&format!("body-len {body}\n"));
                            for h in headers {
                                text.push_str(&h);
                                text.push('\n');
                            }
                            let status = if health {
                                tokio::time::sleep(b.health_delay).await;
                                b.health_status
                            } else {
                                tokio::time::sleep(b.delay).await;
                                act.fetch_sub(1, Ordering::SeqCst);
                                asked.unwrap_or_else(|| st.load(Ordering::SeqCst))
                            };
                            let body: Body = match b.stream.filter(|_| !health) {
                                None => http_body_util::Either::Left(Full::new(Bytes::from(text))),
                                Some((n, every)) => {
                                    let (tx, rx) = tokio::sync::mpsc::channel(1);
                                    tokio::spawn(async move {
                                        if tx.send(Bytes::from(text)).await.is_err() {
                                            return;
                                        }
                                        for i in 0..n {
                                            tokio::time::sleep(every).await;
                                            if tx.send(stream_chunk(i)).await.is_err() {
                                                return;
                                            }
                                        }
                                    });
                                    http_body_util::Either::Right(Chunks(rx))
                                }
                            };
                            let mut resp = Response::new(body);
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            resp.headers_mut()
                                .insert("x-backend", name.parse().unwrap());
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    match tls {
                        None => {
                            let io = TokioIo::new(stream);
                            let _ = http1::Builder::new().serve_connection(io, svc).await;
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let io = TokioIo::new(stream);
                            let _ = http1::Builder::new().serve_connection(io, svc).await;
                        }
                    }
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            hits,
            paths,
            accepts,
            status,
            active,
            peak,
            task,
        }
    }

    /// Answers requests (other than health checks) with `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// A backend that accepts connections and never answers; `hits` counts connections.
    pub async fn hung(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            accepts: Arc::clone(&hits),
            hits,
            paths: Arc::default(),
            status: Arc::default(),
            active: Arc::default(),
            peak: Arc::default(),
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Health-check requests seen so far.
    pub fn health_checks(&self) -> usize {
        self.paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == "/healthz")
            .count()
    }

    /// Closes the listener and every connection; waits until the port refuses connections.
    pub async fn stop(&self) {
        self.task.abort();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(self.addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "backend {} did not stop",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on: connecting to it is refused.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    dead_addr().port()
}

/// The `fulcrum` binary: this build's, or the one `FULCRUM_BIN` names (to run a bench against
/// another build, e.g. the revision before a change).
pub fn bin() -> PathBuf {
    std::env::var_os("FULCRUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fulcrum")))
}

/// `fulcrum run --config path ARGS` with `RUST_LOG=log`, stderr to `log_file`.
fn spawn(path: &std::path::Path, log: &str, log_file: &std::path::Path, args: &[&str]) -> Child {
    spawn_with(path, log, log_file, args, &[])
}

/// [`spawn`] with the environment variables `env` set for fulcrum only.
fn spawn_with(
    path: &std::path::Path,
    log: &str,
    log_file: &std::path::Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> Child {
    // A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks.
    let log_file = std::fs::File::create(log_file).unwrap();
    let mut command = Command::new(bin());
    // `log` "": no RUST_LOG, the config's `log_level` decides.
    match log {
        "" => command.env_remove("RUST_LOG"),
        log => command.env("RUST_LOG", log),
    };
    command
        .envs(env.iter().copied())
        .args(["run", "--config"])
        .arg(path)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start fulcrum")
}

/// Writes a `FULCRUM_HOSTS_FILE` (`name address...` lines) the way an editor does (rename
/// over), so fulcrum never reads half.
pub fn write_hosts(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `done` every 10 ms until it holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The real `fulcrum` binary serving a generated config.
pub struct Fulcrum {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub child: Child,
    pub dir: tempfile::TempDir,
    /// The `[server]` section it started with (listen, admin_listen, threads, upgrade_sock and
    /// the test's own lines).
    pub server: String,
}

impl Fulcrum {
    /// Starts fulcrum with `[server]` lines `server` (listen/admin_listen are added) and the rest
    /// of the file `body`. Waits until the proxy accepts connections.
    pub fn start(server: &str, body: &str) -> Fulcrum {
        Fulcrum::start_logging("warn", server, body)
    }

    /// Like [`Fulcrum::start`], with `RUST_LOG=log` (none for ""); read the log with
    /// [`Fulcrum::log`].
    pub fn start_logging(log: &str, server: &str, body: &str) -> Fulcrum {
        Fulcrum::start_full("127.0.0.1", log, server, body)
    }

    /// Like [`Fulcrum::start`], with the proxy listening on `listen_ip` (e.g. "[::]"); tests
    /// still connect to 127.0.0.1.
    pub fn start_full(listen_ip: &str, log: &str, server: &str, body: &str) -> Fulcrum {
        Fulcrum::start_with(listen_ip, log, server, body, &[])
    }

    /// Like [`Fulcrum::start_logging`], with backend names answered from the hosts file `hosts`
    /// (`FULCRUM_HOSTS_FILE`, set for this fulcrum only; see [`write_hosts`]).
    pub fn start_with_hosts(hosts: &std::path::Path, log: &str, body: &str) -> Fulcrum {
        let env = [("FULCRUM_HOSTS_FILE", hosts.as_os_str())];
        Fulcrum::start_with("127.0.0.1", log, "", body, &env)
    }

    /// [`Fulcrum::start_full`] with the environment variables `env` set for fulcrum only.
    fn start_with(
        listen_ip: &str,
        log: &str,
        server: &str,
        body: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Fulcrum {
        let mut last_err = String::new();
        // A port picked free can be taken by a parallel test before fulcrum binds it: retry.
        for _ in 0..3 {
            let mut f = Fulcrum::launch_with(listen_ip, log, server, body, env);
            match f.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return f,
                Err(e) => last_err = e,
            }
        }
        panic!("fulcrum did not start: {last_err}");
    }

    /// Spawns fulcrum like [`Fulcrum::start_full`] without waiting for it to serve.
    pub fn launch(listen_ip: &str, log: &str, server: &str, body: &str) -> Fulcrum {
        Fulcrum::launch_with(listen_ip, log, server, body, &[])
    }

    fn launch_with(
        listen_ip: &str,
        log: &str,
        server: &str,
        body: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Fulcrum {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let server = format!(
            "[server]\nlisten = [\"{listen_ip}:{port}\"]\nadmin_listen = \"127.0.0.1:{admin_port}\"\nthreads = 2\nupgrade_sock = \"{}\"\n{server}\n",
            dir.path().join("upgrade.sock").display()
        );
        let path = dir.path().join("fulcrum.toml");
        std::fs::write(&path, format!("{server}{body}")).unwrap();
        let child = spawn_with(&path, log, &dir.path().join("fulcrum.log"), &[], env);
        Fulcrum {
            addr: ([127, 0, 0, 1], port).into(),
            admin: ([127, 0, 0, 1], admin_port).into(),
            child,
            dir,
            server,
        }
    }

    /// Waits until the proxy and admin listeners accept connections; `Err` (the process is
    /// killed) if it exits or does not get there within `limit`. The probe of the proxy
    /// listener is closed by the proxy before this returns, so it is counted as open at most
    /// until the proxy's bookkeeping after that close (wait for
    /// `fulcrum_downstream_connections_active` 0 where that matters).
    pub fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("fulcrum exited with {status}: {}", self.log()));
            }
            if let Ok(probe) = std::net::TcpStream::connect(self.addr) {
                if std::net::TcpStream::connect(self.admin).is_ok() {
                    // A connection with nothing on it: the proxy closes it once it has read
                    // the end.
                    let _ = probe.shutdown(std::net::Shutdown::Write);
                    let _ = probe.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = std::io::Read::read(&mut &probe, &mut [0; 64]);
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(format!("not serving within {limit:?}: {}", self.log()))
    }

    /// Waits until the process handles SIGHUP (`/proc/PID/status` lists it as caught).
    pub fn wait_sighup_handled(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let status = format!("/proc/{}/status", self.child.id());
        loop {
            let caught = std::fs::read_to_string(&status)
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok());
            if caught.is_some_and(|mask| mask & 1 != 0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SIGHUP not handled within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("fulcrum.toml")
    }

    /// Replaces the config with the same `[server]` section and a new `body`, as editors do:
    /// write a temporary file, rename it over the config.
    pub fn rewrite(&self, body: &str) {
        self.replace(&format!("{}{body}", self.server));
    }

    /// Replaces the whole config file with `text` (write a temporary file, rename it over).
    pub fn replace(&self, text: &str) {
        let tmp = self.dir.path().join(".fulcrum.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Makes the config path a symbolic link to `target` (made beside it, renamed over it).
    pub fn link_to(&self, target: &std::path::Path) {
        let tmp = self.dir.path().join(".fulcrum.toml.link");
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, self.config_path()).unwrap();
    }

    /// Overwrites the config file in place with the same `[server]` section and `body`.
    pub fn write_in_place(&self, body: &str) {
        std::fs::write(self.config_path(), format!("{}{body}", self.server)).unwrap();
    }

    /// `POST path` on the admin listener.
    pub async fn admin_post(&self, path: &str) -> Resp {
        let req = Request::post(path)
            .header("host", "admin")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(self.admin, req).await
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        get(self.admin, "admin", "/metrics").await.body
    }

    /// The value of the metric line that starts with `series` (name and labels), if any.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        sample_of(&self.metrics().await, series)
    }

    /// Scrapes until `done` holds for the scrape (for at most 5 s; a request is counted just
    /// after its response is written) and returns that scrape; panics with `what` if it never
    /// does.
    pub async fn wait_metrics(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics().await;
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{what} within 5 s:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the series `series` (name and labels) has the value `value`.
    pub async fn wait_metric(&self, series: &str, value: f64) {
        let what = format!("{series} never reached {value}");
        self.wait_metrics(&what, |m| sample_of(m, series) == Some(value))
            .await;
    }

    /// Starts a second fulcrum on the same config with `run --upgrade`, logging to
    /// `upgrade.log`; it takes the listeners over when this one gets SIGQUIT.
    pub fn start_upgrade(&self, log: &str) -> Child {
        spawn(
            &self.config_path(),
            log,
            &self.dir.path().join("upgrade.log"),
            &["--upgrade"],
        )
    }

    /// Like [`Fulcrum::start_upgrade`], with the config file `text` (written to `upgrade.toml`).
    pub fn start_upgrade_to(&self, text: &str, log: &str) -> Child {
        let path = self.dir.path().join("upgrade.toml");
        std::fs::write(&path, text).unwrap();
        spawn(
            &path,
            log,
            &self.dir.path().join("upgrade.log"),
            &["--upgrade"],
        )
    }

    /// Where [`Fulcrum::start_upgrade`] waits for the listening sockets.
    pub fn upgrade_sock(&self) -> PathBuf {
        self.dir.path().join("upgrade.sock")
    }

    /// Everything fulcrum logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fulcrum.log")).unwrap_or_default()
    }

    /// Waits until the log has a line containing every one of `parts`; returns the log.
    pub async fn wait_for_log(&self, parts: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if log.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} within {limit:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the log has `n` lines containing every one of `parts`; returns the log.
    pub async fn wait_for_log_count(&self, parts: &[&str], n: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            let count = log
                .lines()
                .filter(|l| parts.iter().all(|p| l.contains(p)))
                .count();
            if count >= n {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{count} of {n} log lines with {parts:?} within {limit:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Fulcrum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the line of a scrape that starts with `series` (name and labels).
pub fn sample_of(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// The sum of every series of `name` in a scrape whose labels include all of `labels` (0 when
/// none does): `sum_of(m, "fulcrum_requests_total", &[("route", "api")])` counts the route's
/// requests over every method, code and outcome.
pub fn sum_of(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let has = |(k, v): &(&str, &str)| {
                set.split(',').any(|pair| {
                    pair.strip_prefix(*k)
                        .and_then(|p| p.strip_prefix("=\""))
                        .and_then(|p| p.strip_suffix('"'))
                        == Some(*v)
                })
            };
            labels
                .iter()
                .all(has)
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Resp {
    /// The backend that answered, from the echo body.
    pub fn backend(&self) -> &str {
        self.line("backend").unwrap_or("-")
    }

    /// The value of an echo line `KEY value` (or `KEY: value` for headers).
    pub fn line(&self, key: &str) -> Option<&str> {
        self.body.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(": ").or_else(|| rest.strip_prefix(' ')))
        })
    }
}

/// Sends one request on a fresh connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Resp {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    send_on(stream, req).await
}

/// `req` over HTTP/1.1 on a connection of the caller's (a TLS stream, say).
pub async fn send_on<S>(stream: S, req: Request<Full<Bytes>>) -> Resp
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    read(resp)
        .await
        .unwrap_or_else(|e| panic!("response body: {e}"))
}

/// How long until the peer closes `s` (what it sends meanwhile is read and dropped); panics
/// if it is still open after `limit`.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Duration {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// Status, headers and the whole body of a response.
pub async fn read(resp: hyper::Response<hyper::body::Incoming>) -> Result<Resp, hyper::Error> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A client connection kept alive across requests, reconnecting when the server closes it. Like
/// real HTTP clients (RFC 9112 §9.3.1), a request that fails on a *reused* connection before any
/// response arrives (the server closed it as the request went out) is retried once on a new
/// connection; `retries` counts those.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    pub retries: usize,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            sender: None,
            retries: 0,
        }
    }

    /// `GET path` with `Host: host` on the kept connection; `Err` says what failed.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Resp, String> {
        let reused = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        match self.send(reused, host, path).await {
            Err(Sent::Nothing(_)) if reused => {
                self.retries += 1;
                self.send(false, host, path).await.map_err(Sent::into_error)
            }
            r => r.map_err(Sent::into_error),
        }
    }

    async fn send(&mut self, reuse: bool, host: &str, path: &str) -> Result<Resp, Sent> {
        if !reuse {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| Sent::Failed(format!("connect: {e}")))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| Sent::Failed(format!("handshake: {e}")))?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected");
        let req = Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.map_err(|e| {
            let msg = format!("request: {e}");
            if e.is_canceled() || e.is_incomplete_message() {
                Sent::Nothing(msg)
            } else {
                Sent::Failed(msg)
            }
        })?;
        read(resp)
            .await
            .map_err(|e| Sent::Failed(format!("body: {e}")))
    }
}

/// How a request failed.
enum Sent {
    /// The connection closed before any response: safe to retry an idempotent request.
    Nothing(String),
    Failed(String),
}

impl Sent {
    fn into_error(self) -> String {
        match self {
            Sent::Nothing(e) | Sent::Failed(e) => e,
        }
    }
}

/// `GET path` with `Host: host`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    get_with(addr, host, path, &[]).await
}

pub async fn get_with(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Writes `request` on a new connection (the proxy may answer, and close, before it has read
/// it all) and reads until the connection closes, for at most 10 s; whether it closed.
async fn raw_reply(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    (String::from_utf8_lossy(&buf).into_owned(), read.is_ok())
}

/// Everything the proxy answers to `request` on a new connection until it closes it; panics if
/// it is still open after 10 s.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let (reply, closed) = raw_reply(addr, request).await;
    assert!(closed, "connection still open after 10 s; read {reply:?}");
    reply
}

/// Writes raw bytes and returns the status code of the reply (0 if the connection closed first).
pub async fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let (reply, _) = raw_reply(addr, request).await;
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Sends a WebSocket handshake for `path` on `s` and reads the response header, which must be
/// a `101`.
pub async fn websocket_handshake<S>(s: &mut S, path: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let handshake = format!("GET {path} HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    s.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = s.read(&mut b).await.unwrap();
        assert_eq!(n, 1, "{path}: closed during the handshake");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
}

/// `fulcrum check` on the file at `path` with the environment variables `env` set: whether it
/// passed, its stdout and its stderr.
pub fn check_file(path: &std::path::Path, env: &[(&str, &str)]) -> (bool, String, String) {
    check_args(&[path.as_os_str()], env)
}

/// `fulcrum check ARGS` with `env` set: whether it passed, its stdout and its stderr. Panics if
/// it has not ended within 30 s (it is killed first): a check never waits on what it reads.
pub fn check_args(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (bool, String, String) {
    use std::io::Read;
    let mut child = Command::new(bin())
        .arg("check")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained while it runs, so that a full pipe cannot stall it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fulcrum check {args:?} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

/// Makes a FIFO (named pipe) at `path`.
pub fn mkfifo(path: &std::path::Path) {
    let made = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A route `/` to upstream `name` over `(backend, weight)`, with `extra` lines in the upstream
/// table.
pub fn weighted(name: &str, backends: &[(&Backend, u32)], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(b, w)| format!("{{ addr = \"{}\", weight = {w} }}", b.addr))
        .collect();
    format!(
        "[[route]]\nupstream = \"{name}\"\n[upstream.{name}]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// Waits until `/status` says `bad`'s ejection (in upstream `u`) ended, then sends requests
/// until it gets one again (its hit count passes `hits`).
pub async fn expect_readmission(f: &Fulcrum, bad: &Backend, hits: usize) {
    f.wait_backend("u", bad.addr, "ejected", false, Duration::from_secs(5))
        .await;
    for _ in 0..6 {
        get(f.addr, "h.test", "/").await;
    }
    assert!(bad.hits() > hits, "readmitted backend got no traffic");
}

/// One `[upstream.NAME]` table over these backends.
pub fn upstream(name: &str, addrs: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect();
    format!(
        "[upstream.{name}]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// A backend that accepts any upgrade with `101 Switching Protocols` and then echoes bytes.
///
/// It answers the handshake after [`UPGRADE_ANSWER_DELAY`]: pingora 0.9.1 tears an upgraded
/// connection down at once when the backend's `101` is read before the proxy has passed on the
/// upgrade request's (empty) body (cloudflare/pingora#946, fix proposed in #947, not released),
/// which a backend on loopback answering within microseconds makes happen now and then. The
/// manual lists it under WebSockets (docs/src/proxy.md); the delay keeps these tests about
/// fulcrum.
pub async fn upgrade_echo_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut b = [0u8; 1];
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                tokio::time::sleep(UPGRADE_ANSWER_DELAY).await;
                let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
                if s.write_all(reply).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// How long [`upgrade_echo_backend`] takes to answer a handshake.
pub const UPGRADE_ANSWER_DELAY: Duration = Duration::from_millis(20);
