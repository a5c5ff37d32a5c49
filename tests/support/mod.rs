//! Test scaffolding: real HTTP backends (hyper, 127.0.0.1 port 0), the real `fulcrum` binary
//! on a generated config, and a minimal HTTP/1.1 client.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
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
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: 200,
            health_status: 200,
            delay: Duration::ZERO,
        }
    }
}

/// A real HTTP backend. Its body names it and echoes what it received:
/// `backend NAME`, `method M`, `uri U`, `body-len N`, then one `header: value` line per header.
/// `GET /healthz` answers `health_status`. Dropping or [`Backend::stop`]ping it closes its
/// listener and every open connection.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests other than health checks.
    pub hits: Arc<AtomicUsize>,
    /// Every request path, in arrival order (health checks included).
    pub paths: Arc<std::sync::Mutex<Vec<String>>>,
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
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, h, p) = (name.to_owned(), hits.clone(), paths.clone());
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the accept task closes them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (name, hits, paths, b) = (n.clone(), h.clone(), p.clone(), behaviour.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (name, hits, paths, b) =
                            (name.clone(), hits.clone(), paths.clone(), b.clone());
                        async move {
                            paths.lock().unwrap().push(req.uri().path().to_owned());
                            let health = req.uri().path() == "/healthz";
                            if !health {
                                hits.fetch_add(1, Ordering::SeqCst);
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
                                b.health_status
                            } else {
                                tokio::time::sleep(b.delay).await;
                                b.status
                            };
                            let mut resp = Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            resp.headers_mut()
                                .insert("x-backend", name.parse().unwrap());
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            hits,
            paths,
            task,
        }
    }

    /// A backend that accepts connections and never answers.
    pub async fn hung(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            hits: Arc::default(),
            paths: Arc::default(),
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

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fulcrum"))
}

/// The real `fulcrum` binary serving a generated config.
pub struct Fulcrum {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Fulcrum {
    /// Starts fulcrum with `[server]` lines `server` (listen/admin_listen are added) and the rest
    /// of the file `body`. Waits until the proxy accepts connections.
    pub fn start(server: &str, body: &str) -> Fulcrum {
        Fulcrum::start_logging("warn", server, body)
    }

    /// Like [`Fulcrum::start`], with `RUST_LOG=log`; read the log with [`Fulcrum::log`].
    pub fn start_logging(log: &str, server: &str, body: &str) -> Fulcrum {
        Fulcrum::start_full("127.0.0.1", log, server, body)
    }

    /// Like [`Fulcrum::start`], with the proxy listening on `listen_ip` (e.g. "[::]"); tests
    /// still connect to 127.0.0.1.
    pub fn start_full(listen_ip: &str, log: &str, server: &str, body: &str) -> Fulcrum {
        let mut last_err = String::new();
        // A port picked free can be taken by a parallel test before fulcrum binds it: retry.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let (port, admin_port) = (free_port(), free_port());
            let text = format!(
                "[server]\nlisten = [\"{listen_ip}:{port}\"]\nadmin_listen = \"127.0.0.1:{admin_port}\"\nthreads = 2\n{server}\n{body}"
            );
            let path = dir.path().join("fulcrum.toml");
            std::fs::File::create(&path)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            // A file, not a pipe: nobody reads a pipe while the test runs, and a full one blocks.
            let log_file = std::fs::File::create(dir.path().join("fulcrum.log")).unwrap();
            let mut child = Command::new(bin())
                .args(["run", "--config"])
                .arg(&path)
                .env("RUST_LOG", log)
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .expect("start fulcrum");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    use std::io::Read;
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    last_err = format!("fulcrum exited with {status}: {err}");
                    break;
                }
                if std::net::TcpStream::connect(addr).is_ok()
                    && std::net::TcpStream::connect(admin).is_ok()
                {
                    return Fulcrum {
                        addr,
                        admin,
                        child,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("fulcrum did not start: {last_err}");
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
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
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

/// Writes raw bytes and returns the status code of the reply (0 if the connection closed first).
pub async fn raw_status(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The proxy may answer (and close) before it has read everything we send.
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
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
