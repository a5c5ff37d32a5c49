//! The HTTP/1 request path end to end: fulcrum's server, started once per process in-process
//! on 127.0.0.1, with four routes to four echo backends (hyper, 127.0.0.1 port 0):
//!
//! | route      | path prefix | strip_prefix | the backend must see                             |
//! |------------|-------------|--------------|--------------------------------------------------|
//! | `public`   | `/public/`  | no           | a normal path under `/public/`                   |
//! | `admin`    | `/admin/`   | no           | a normal path under `/admin/`                    |
//! | `strip`    | `/strip/`   | yes          | a normal path (what followed `/strip`)           |
//! | `fallback` | `/`         | no           | a normal path under none of the prefixes above   |
//!
//! Each route sets `host_rewrite` to a name made of the route and a secret drawn at start, so
//! the proxy writes it into every request it forwards. A backend that gets a request without
//! its own route's name got bytes the proxy did not send as a request: a smuggled request (one
//! the proxy read as the body of another, or as nothing), or one sent to the wrong backend.
//! That replaces counting requests per upstream connection: pingora pools upstream connections
//! across client connections, so a count per connection says nothing about one input. The
//! backends compare a hash of the name, so that the fuzzer's comparison tracing cannot learn
//! the secret and forge it.
//!
//! A backend answers every request with its route, the method, the path and the request's
//! number on its connection. Per input the client connects, writes the bytes, half-closes and
//! reads until the proxy closes (or a short timeout); what the backends found wrong is then a
//! panic. A smuggled request the backend reads after that check is reported by the next input's
//! first check, which says so.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1 as h1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use xxhash_rust::xxh3::xxh3_64;

use crate::proxy::normalize::normalize;

/// (route, path prefix, strip_prefix).
const ROUTES: [(&str, &str, bool); 4] = [
    ("public", "/public/", false),
    ("admin", "/admin/", false),
    ("strip", "/strip/", true),
    ("fallback", "/", false),
];

/// How long the client waits for each read of the answer, and for the whole answer.
const READ_TIMEOUT: Duration = Duration::from_millis(500);
const ANSWER_DEADLINE: Duration = Duration::from_secs(2);

static HARNESS: OnceLock<Harness> = OnceLock::new();

struct Harness {
    proxy: SocketAddr,
    /// What the backends found wrong since the last check.
    violations: Arc<Mutex<Vec<String>>>,
    /// Runs the echo backends.
    _backends: tokio::runtime::Runtime,
}

/// One input: write, half-close, read the answer (returned), then panic with what the backends
/// found wrong.
pub(super) fn exchange(data: &[u8]) -> Vec<u8> {
    let h = HARNESS.get_or_init(Harness::start);
    h.check("before this input was sent: an earlier input caused it");
    let mut conn = TcpStream::connect(h.proxy).expect("connect to the proxy");
    conn.set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    conn.set_write_timeout(Some(READ_TIMEOUT))
        .expect("write timeout");
    // The proxy may refuse and close before it has read everything (a 431, a 400).
    if conn.write_all(data).is_ok() && !holds_a_header(data) {
        // Nothing to answer: the end of the input ends the connection at once. (After a whole
        // header it would abort the request: pingora reads an end of input while it proxies
        // as the client going away.)
        let _ = conn.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + ANSWER_DEADLINE;
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    h.check("for this input");
    answer
}

/// Whether `data` has an empty line after something else, which every complete request header
/// ends with.
fn holds_a_header(data: &[u8]) -> bool {
    data.windows(2).any(|w| w == b"\n\n") || data.windows(3).any(|w| w == b"\n\r\n")
}

impl Harness {
    fn start() -> Harness {
        let backends = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("backend runtime");
        let secret = format!("{:016x}", fastrand::u64(..));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let mut config = String::new();
        let proxy = free_addr();
        config.push_str(&format!(
            "[server]\nlisten = [\"{proxy}\"]\nthreads = 1\naccess_log = \"off\"\n\
             request_header_timeout = \"5ms\"\nkeepalive_timeout = \"1ms\"\n\
             client_body_timeout = \"5ms\"\nmax_header_size = \"8KiB\"\n\
             max_request_body = \"64KiB\"\n"
        ));
        for (name, prefix, strip) in ROUTES {
            let host = format!("{name}.{secret}.fuzz");
            let addr = backends.block_on(echo(name, prefix, strip, &host, &violations));
            config.push_str(&format!(
                "[[route]]\nname = \"{name}\"\npath = \"{prefix}\"\nstrip_prefix = {strip}\n\
                 upstream = \"{name}\"\nhost_rewrite = \"{host}\"\ntimeout = \"2s\"\n\
                 [upstream.{name}]\nbackends = [{{ addr = \"{addr}\" }}]\n\
                 connect_timeout = \"1s\"\nread_timeout = \"2s\"\nwrite_timeout = \"2s\"\n"
            ));
        }
        let config = crate::config::parse(&config, std::path::Path::new("http1-fuzz.toml"))
            .unwrap_or_else(|e| panic!("the harness's config: {e}"));
        let server = std::thread::Builder::new()
            .name("fulcrum".to_owned())
            .spawn(move || crate::server::run(config, crate::server::RunOptions::default()))
            .expect("start the proxy thread");
        let ready = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(proxy).is_err() {
            if server.is_finished() {
                match server.join() {
                    Ok(Err(e)) => panic!("the proxy did not start: {e}"),
                    _ => panic!("the proxy did not start"),
                }
            }
            assert!(
                Instant::now() < ready,
                "the proxy did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Harness {
            proxy,
            violations,
            _backends: backends,
        }
    }

    fn check(&self, when: &str) {
        let found = std::mem::take(&mut *lock(&self.violations));
        assert!(found.is_empty(), "{when}:\n{}", found.join("\n"));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An address on 127.0.0.1 that was free a moment ago.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address")
}

/// Starts the echo backend of route `name` and returns its address.
async fn echo(
    name: &'static str,
    prefix: &'static str,
    strip: bool,
    host: &str,
    violations: &Arc<Mutex<Vec<String>>>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an echo backend");
    let addr = listener.local_addr().expect("local address");
    let host = xxh3_64(host.as_bytes());
    let violations = Arc::clone(violations);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let violations = Arc::clone(&violations);
            let count = Arc::new(AtomicUsize::new(0));
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                    let found = judge(&req, prefix, strip, host);
                    let violations = Arc::clone(&violations);
                    async move {
                        let text = format!("{name} {} {} {n}\n", req.method(), req.uri().path());
                        if let Some(problem) = found {
                            lock(&violations).push(format!(
                                "backend {name} got {} {} (request {n} on its connection): {problem}",
                                req.method(),
                                req.uri()
                            ));
                        }
                        // Read to the end, so that what follows on the connection is parsed as
                        // the next request.
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = h1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// What is wrong with a request the backend of the route with `prefix` got, if anything.
fn judge<B>(req: &Request<B>, prefix: &str, strip: bool, host: u64) -> Option<String> {
    let sent = req.headers().get(http::header::HOST);
    if sent.is_none_or(|h| xxh3_64(h.as_bytes()) != host) {
        return Some(format!(
            "a request the proxy did not send this backend (Host {sent:?}): smuggled or misrouted"
        ));
    }
    let path = req.uri().path();
    if let Some(escape) = super::escapes(path.as_bytes()) {
        return Some(format!("the path has {escape}"));
    }
    if normalize(path.as_bytes(), true) != Ok(None) {
        return Some("the path is not in normal form".to_owned());
    }
    if !strip && !path.starts_with(prefix) {
        return Some(format!("the path is outside the route's prefix {prefix}"));
    }
    // The longest prefix wins: a path another route's longer prefix claims is not this one's.
    let longer = ROUTES
        .iter()
        .find(|(_, p, _)| !strip && p.len() > prefix.len() && path.starts_with(p));
    if let Some((route, _, _)) = longer {
        return Some(format!("the path belongs to route {route}"));
    }
    // What a servlet container behind the backend maps: no dot segment there either, and, for
    // a route that keeps its prefix, no other route's path.
    let cut = servlet_view(path);
    if cut.split('/').any(|s| s == "." || s == "..") {
        return Some(format!("a dot segment once ; parameters are cut ({cut})"));
    }
    let owner = ROUTES
        .iter()
        .filter(|(_, p, _)| cut.starts_with(p))
        .max_by_key(|(_, p, _)| p.len());
    match owner {
        Some((route, p, _)) if !strip && *p != prefix => Some(format!(
            "once ; parameters are cut ({cut}) the path belongs to route {route}"
        )),
        _ => None,
    }
}

/// The path as Tomcat maps it: each segment cut at its first ';' (or `%3B`), and the segments
/// the cut leaves empty merged away; a last segment the cut leaves empty is a trailing '/'
/// (`/public/;s` is `/public/`, as Tomcat's parameter removal leaves it). Written apart from
/// the proxy's own cut (`normalize::without_parameters`), so that a bug there shows.
fn servlet_view(path: &str) -> String {
    let plain = path.replace("%3B", ";").replace("%3b", ";");
    let cut: Vec<&str> = plain
        .split('/')
        .skip(1)
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect();
    let trailing = cut.last().is_some_and(|seg| seg.is_empty());
    let kept: Vec<&str> = cut.into_iter().filter(|seg| !seg.is_empty()).collect();
    let mut out = format!("/{}", kept.join("/"));
    if trailing && out != "/" {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, path: &str) -> Request<()> {
        Request::get(path).header("host", host).body(()).unwrap()
    }

    #[test]
    fn a_backend_refuses_what_the_proxy_would_not_send_it() {
        // The route's Host is "p".
        let judged = |h: &str, path: &str, prefix: &str, strip: bool| {
            judge(&request(h, path), prefix, strip, xxh3_64(b"p"))
        };
        assert_eq!(judged("p", "/public/a", "/public/", false), None);
        assert_eq!(judged("p", "/x/a", "/strip/", true), None);
        assert_eq!(judged("p", "/x", "/", false), None);
        assert_eq!(judged("p", "/public/cart;s=1", "/public/", false), None);
        // An empty last segment with parameters is a trailing '/' (a fuzz find).
        assert_eq!(judged("p", "/public/;s", "/public/", false), None);
        let refused = [
            ("x", "/public/a", "/public/", false, "smuggled"),
            ("p", "/admin/a", "/public/", false, "outside"),
            ("p", "/public/%2e%2e/a", "/public/", false, "dot segment"),
            ("p", "/public/%2E./a", "/public/", false, "dot segment"),
            ("p", "/public/..%2Fa", "/public/", false, "encoded slash"),
            ("p", "/public/%7Ea", "/public/", false, "normal form"),
            ("p", "/public//a", "/public/", false, "normal form"),
            ("p", "/admin/a", "/", false, "route admin"),
            ("p", "/admin;x/a", "/", false, "once ; parameters are cut"),
            ("p", "/;/admin/a", "/", false, "once ; parameters are cut"),
            ("p", "/public/..;/a", "/public/", false, "normal form"),
        ];
        for (h, path, prefix, strip, why) in refused {
            let found = judged(h, path, prefix, strip).unwrap_or_default();
            assert!(found.contains(why), "{h} {path}: {found:?}");
        }
        let no_host = Request::get("/public/a").body(()).unwrap();
        assert!(judge(&no_host, "/public/", false, xxh3_64(b"p")).is_some());
    }

    /// Each route's backend answers what it got, after normalisation (and stripping).
    #[test]
    fn requests_reach_their_route_s_backend() {
        let cases = [
            ("/public/a?q=1", "public GET /public/a "),
            ("/public/%2e%2e/admin/x", "admin GET /admin/x "),
            ("//admin//y", "admin GET /admin/y "),
            ("/strip/a/./b", "strip GET /a/b "),
            ("/strip/../other", "fallback GET /other "),
        ];
        for (path, want) in cases {
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            let answer = String::from_utf8_lossy(&exchange(request.as_bytes())).into_owned();
            assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
            assert!(answer.contains(want), "{path}: {answer}");
        }
        let two =
            b"GET /public/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /admin/2 HTTP/1.1\r\nHost: x\r\n\r\n";
        let answer = String::from_utf8_lossy(&exchange(two)).into_owned();
        assert!(answer.contains("public GET /public/1 "), "{answer}");
        assert!(answer.contains("admin GET /admin/2 "), "{answer}");
    }
}
