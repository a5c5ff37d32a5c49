//! The proxy path through the real binary against real backends.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_precedence_host_wildcard_longest_prefix_and_404() {
    let (a, b, c, d) = (
        Backend::start("exact-v1").await,
        Backend::start("exact-admin").await,
        Backend::start("wildcard").await,
        Backend::start("any-static").await,
    );
    let body = format!(
        r#"
[[route]]
host = "api.example.com"
path = "/v1/"
upstream = "a"
[[route]]
host = "api.example.com"
path = "/v1/admin/"
upstream = "b"
[[route]]
host = "*.example.com"
upstream = "c"
[[route]]
path = "/static/"
upstream = "d"
{}{}{}{}"#,
        upstream("a", &[a.addr], ""),
        upstream("b", &[b.addr], ""),
        upstream("c", &[c.addr], ""),
        upstream("d", &[d.addr], ""),
    );
    let f = Fulcrum::start("", &body);
    let cases = [
        ("api.example.com", "/v1/users", "exact-v1"),
        ("API.Example.com:8080", "/v1/admin/x", "exact-admin"),
        ("api.example.com", "/other", "wildcard"),
        ("x.y.example.com", "/v1/users", "wildcard"),
        ("example.com", "/static/app.js", "any-static"),
        ("api.example.com", "/static/app.js", "wildcard"),
    ];
    for (host, path, want) in cases {
        let r = get(f.addr, host, path).await;
        assert_eq!((r.status, r.backend()), (200, want), "{host}{path}");
    }
    let r = get(f.addr, "example.com", "/nothing").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "no route for this host and path\n");
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_rewrites_the_path_and_keeps_the_query() {
    let be = Backend::start("api").await;
    let body = format!(
        "[[route]]\npath = \"/api/\"\nstrip_prefix = true\nupstream = \"api\"\n[[route]]\npath = \"/keep/\"\nupstream = \"api\"\n{}",
        upstream("api", &[be.addr], "")
    );
    let f = Fulcrum::start("", &body);
    let r = get(f.addr, "h.test", "/api/users?id=7").await;
    assert_eq!(r.line("uri"), Some("/users?id=7"));
    let r = get(f.addr, "h.test", "/api/").await;
    assert_eq!(r.line("uri"), Some("/"));
    let r = get(f.addr, "h.test", "/keep/users").await;
    assert_eq!(r.line("uri"), Some("/keep/users"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rewrite_replaces_the_host_and_keeps_the_original_in_x_forwarded_host() {
    let be = Backend::start("internal").await;
    let body = format!(
        "[[route]]\npath = \"/rw/\"\nhost_rewrite = \"api.internal:8080\"\nupstream = \"b\"\n[[route]]\nupstream = \"b\"\n{}",
        upstream("b", &[be.addr], "")
    );
    let f = Fulcrum::start("", &body);
    let r = get(f.addr, "public.example", "/rw/x").await;
    assert_eq!(r.line("host"), Some("api.internal:8080"));
    assert_eq!(r.line("x-forwarded-host"), Some("public.example"));
    let r = get(f.addr, "public.example", "/other").await;
    assert_eq!(r.line("host"), Some("public.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_takes_turns_in_order() {
    let bs = [
        Backend::start("b0").await,
        Backend::start("b1").await,
        Backend::start("b2").await,
    ];
    let addrs: Vec<_> = bs.iter().map(|b| b.addr).collect();
    let body = format!(
        "[[route]]\nupstream = \"rr\"\n{}",
        upstream("rr", &addrs, "balance = \"round_robin\"")
    );
    let f = Fulcrum::start("", &body);
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(get(f.addr, "h.test", "/").await.backend().to_owned());
    }
    assert_eq!(seen, ["b0", "b1", "b2", "b0", "b1", "b2", "b0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_hop_by_hop() {
    let be = Backend::start("echo").await;
    let body = format!(
        "[[route]]\nupstream = \"e\"\n{}",
        upstream("e", &[be.addr], "")
    );
    let spoof = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("connection", "x-secret"),
        ("x-secret", "hop"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("x-end-to-end", "kept"),
    ];

    // An untrusted client: its chain is replaced, not extended.
    let f = Fulcrum::start("", &body);
    let r = get_with(f.addr, "app.test", "/", &spoof).await;
    assert_eq!(r.line("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(r.line("x-forwarded-proto"), Some("http"));
    assert_eq!(r.line("x-forwarded-host"), Some("app.test"));
    assert_eq!(
        r.line("host"),
        Some("app.test"),
        "the client's Host is kept"
    );
    assert_eq!(r.line("x-end-to-end"), Some("kept"));
    for hop in ["x-secret", "keep-alive", "proxy-connection"] {
        assert_eq!(
            r.line(hop),
            None,
            "{hop} must not be forwarded:\n{}",
            r.body
        );
    }
    drop(f);

    // From a trusted proxy, the chain is extended and its proto believed.
    let f = Fulcrum::start("trusted_proxies = [\"127.0.0.0/8\"]", &body);
    let r = get_with(f.addr, "app.test", "/", &spoof).await;
    assert_eq!(r.line("x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
    assert_eq!(r.line("x-forwarded-proto"), Some("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_clients_of_a_dual_stack_listener_are_seen_as_ipv4() {
    // On [::] an IPv4 client arrives as ::ffff:127.0.0.1; it must still match 127.0.0.1.
    let be = Backend::start("echo").await;
    let body = format!(
        "[[route]]\nupstream = \"e\"\n{}",
        upstream("e", &[be.addr], "")
    );
    let f = Fulcrum::start_full("[::]", "warn", "trusted_proxies = [\"127.0.0.1\"]", &body);
    let r = get_with(f.addr, "h.test", "/", &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(r.line("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_backend_without_client_errors() {
    let live = Backend::start("live").await;
    let dead = dead_addr();
    let body = format!(
        "[[route]]\nupstream = \"u\"\nretries = 1\n{}",
        upstream("u", &[dead, live.addr], "connect_timeout = \"500ms\"")
    );
    let f = Fulcrum::start("", &body);
    for i in 0..20 {
        let r = get(f.addr, "h.test", "/").await;
        assert_eq!((r.status, r.backend()), (200, "live"), "request {i}");
    }
    assert_eq!(live.hits(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_map_to_502_and_504() {
    let slow = Backend::with(
        "slow",
        Behaviour {
            delay: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    let body = format!(
        r#"
[[route]]
path = "/dead/"
upstream = "dead"
retries = 2
[[route]]
path = "/slow/"
upstream = "slow"
timeout = "300ms"
[[route]]
path = "/slow-read/"
upstream = "slow_read"
{}{}{}"#,
        upstream("dead", &[dead_addr(), dead_addr()], ""),
        upstream("slow", &[slow.addr], ""),
        upstream("slow_read", &[slow.addr], "read_timeout = \"200ms\""),
    );
    let f = Fulcrum::start("", &body);

    let r = get(f.addr, "h.test", "/dead/").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.body, "upstream failed\n");

    for path in ["/slow/", "/slow-read/"] {
        let t = Instant::now();
        let r = get(f.addr, "h.test", path).await;
        assert_eq!(r.status, 504, "{path}: {}", r.body);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{path} waited for the backend"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_limit_get_413() {
    let be = Backend::start("sink").await;
    let body = format!(
        "[[route]]\nupstream = \"s\"\n{}",
        upstream("s", &[be.addr], "")
    );
    let f = Fulcrum::start("max_request_body = \"1KiB\"", &body);

    let post = |n: usize| {
        hyper::Request::post("/")
            .header("host", "h.test")
            .body(Full::new(Bytes::from(vec![b'x'; n])))
            .unwrap()
    };
    let r = send(f.addr, post(1024)).await;
    assert_eq!((r.status, r.line("body-len")), (200, Some("1024")));
    let r = send(f.addr, post(1025)).await;
    assert_eq!(r.status, 413);
    assert!(
        r.body.contains("larger than the limit of 1024 bytes"),
        "{}",
        r.body
    );
    assert_eq!(
        be.hits(),
        1,
        "a declared oversize body is refused before connecting upstream"
    );

    // Without Content-Length the limit is enforced while the body streams.
    let chunk = "x".repeat(600);
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    // (That body streams: the backend sees its start, then the upstream request is aborted.)
    assert_eq!(raw_status(f.addr, chunked.as_bytes()).await, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let slow = Backend::with(
        "slow",
        Behaviour {
            delay: Duration::from_millis(1500),
            ..Default::default()
        },
    )
    .await;
    let body = format!(
        "[[route]]\nupstream = \"s\"\n{}",
        upstream("s", &[slow.addr], "")
    );
    let mut f = Fulcrum::start("grace_period = \"10s\"", &body);
    let addr = f.addr;
    let in_flight = tokio::spawn(async move { get(addr, "h.test", "/").await });
    // Wait until the request reached the backend, then ask fulcrum to stop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.hits() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.signal("-TERM");
    let r = in_flight.await.unwrap();
    assert_eq!((r.status, r.backend()), (200, "slow"));
    let status = f
        .wait_exit(Duration::from_secs(5))
        .expect("fulcrum exits once drained");
    assert!(status.success(), "exit status {status}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_healthz_and_never_proxies() {
    let be = Backend::start("b").await;
    let body = format!(
        "[[route]]\nupstream = \"u\"\n{}",
        upstream("u", &[be.addr], "")
    );
    let f = Fulcrum::start("", &body);
    let r = get(f.admin, "h.test", "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = get(f.admin, "h.test", "/").await;
    assert_eq!(r.status, 404);
    assert_eq!(be.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hop_by_hop_headers_stay_with_the_backend_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that answers every request with hop-by-hop headers and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let be = listener.local_addr().unwrap();
    let backend = tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, X-Secret\r\n\
                          X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Kept: yes\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let f = Fulcrum::start(
        "",
        &format!("[[route]]\nupstream = \"e\"\n{}", upstream("e", &[be], "")),
    );
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    for round in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: h.test\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\nok") {
            let mut buf = [0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("response in time")
                .unwrap();
            assert!(
                n > 0,
                "round {round}: closed after {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(text.contains("x-kept: yes"), "{text}");
        for hop in ["x-secret:", "keep-alive:", "te:", "connection: close"] {
            let found = text.lines().any(|l| l.starts_with(hop));
            assert!(!found, "round {round}: {hop} reached the client:\n{text}");
        }
        // The client's connection is its own: kept alive whatever the backend's did.
        assert!(text.contains("connection: keep-alive"), "{text}");
    }
    backend.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_outlives_the_route_timeout_until_it_idles() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (be, task) = upgrade_echo_backend().await;
    let body = format!(
        "[[route]]\nupstream = \"ws\"\ntimeout = \"1s\"\nupgrade_idle_timeout = \"3s\"\n{}",
        upstream("ws", &[be], "read_timeout = \"1s\"")
    );
    let f = Fulcrum::start("client_body_timeout = \"1s\"", &body);
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    websocket_handshake(&mut s, "/chat").await;
    // Messages both ways, spread over three times the route (and read) timeouts; each gap is
    // well inside upgrade_idle_timeout even on a loaded machine.
    let start = Instant::now();
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let msg = format!("message {i}");
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no echo for {msg} after {:?}", start.elapsed()))
            .unwrap_or_else(|e| panic!("{msg} after {:?}: {e}", start.elapsed()));
        assert_eq!(buf, msg.as_bytes());
    }
    // Silent for longer than upgrade_idle_timeout: closed.
    let mut buf = [0u8; 16];
    let idle = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the idle tunnel was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        idle.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        idle.elapsed()
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_header_does_not_lift_the_route_timeout_until_a_101() {
    let slow = Backend::with(
        "slow",
        Behaviour {
            delay: Duration::from_secs(3),
            ..Behaviour::default()
        },
    )
    .await;
    let body = format!(
        "[[route]]\nupstream = \"s\"\ntimeout = \"1s\"\nupgrade_idle_timeout = \"1h\"\n{}",
        upstream("s", &[slow.addr], "")
    );
    let f = Fulcrum::start("", &body);
    // Not a WebSocket: an Upgrade pingora strips on the way, which lifts no deadline.
    let start = Instant::now();
    let r = get_with(
        f.addr,
        "h.test",
        "/",
        &[("connection", "upgrade"), ("upgrade", "foo")],
    )
    .await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
