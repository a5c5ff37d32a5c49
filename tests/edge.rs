//! Edge safety through the binary with raw sockets: client timeouts, header limits, connection
//! limit, path normalisation, Host and Content-Length rules, pipelining. Backends here record
//! the exact bytes they receive, so each test can show what got through.

mod support;

use std::time::{Duration, Instant};

use support::rawhttp::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_route(be: &RawBackend) -> String {
    format!(
        "[[route]]\nupstream = \"u\"\n{}",
        upstream("u", &[be.addr], "")
    )
}

const GET: &[u8] = b"GET /ok HTTP/1.1\r\nHost: h.test\r\n\r\n";

async fn still_serves(f: &Fulcrum) {
    let (status, _, body) = exchange(f.addr, GET).await.expect("a response");
    assert_eq!((status, body.as_str()), (200, "raw /ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connections_are_closed_after_keepalive_timeout() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("keepalive_timeout = \"1s\"", &one_route(&be));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    // The client asks for a longer keep-alive; fulcrum's own limit holds.
    s.write_all(b"GET /a HTTP/1.1\r\nHost: h.test\r\nKeep-Alive: timeout=600\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = response(&mut s).await.unwrap();
    assert_eq!(status, 200);
    let took = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(800),
        "closed after {took:?}, before the timeout"
    );
    // Requests inside the timeout keep the connection, for longer than the timeout.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    for path in ["/b", "/c", "/d", "/e"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: h.test\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        assert_eq!(response(&mut s).await.unwrap().2, format!("raw {path}"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_endless_header_gets_408_after_request_header_timeout() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("request_header_timeout = \"1s\"", &one_route(&be));

    // Slowloris: a byte every 100 ms, each read well inside any per-read timeout.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let start = Instant::now();
    let trickle = b"GET /slow HTTP/1.1\r\nHost: h.test\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut got = Vec::new();
    for &b in trickle.iter() {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        let mut chunk = [0u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), s.read(&mut chunk)).await
        {
            got.extend_from_slice(&chunk[..n]);
            if n == 0 || !got.is_empty() {
                break;
            }
        }
    }
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?} after {took:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    closed_within(&mut s, Duration::from_secs(2)).await;

    // A header that stops half-way: 408 too.
    let reply = raw(f.addr, b"GET / HTTP/1.1\r\nHost: h.test\r\nX-Never: ").await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");

    // A connection that never sends anything is closed without a response.
    let reply = raw(f.addr, b"").await;
    assert!(reply.is_empty(), "{reply:?}");

    assert!(be.seen().is_empty(), "the backend saw {:?}", be.seen());
    still_serves(&f).await;
    f.wait_metric(
        "fulcrum_downstream_refused_total{reason=\"header_timeout\"}",
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_the_size_or_count_limit_get_431_and_are_not_forwarded() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("", &one_route(&be));
    // One 40 KiB header, past the 32 KiB default.
    let big = format!(
        "GET /big HTTP/1.1\r\nHost: h.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 << 10)
    );
    let (status, head, _) = exchange(f.addr, big.as_bytes()).await.expect("431");
    assert_eq!(status, 431, "{head}");
    // 512 KiB: still refused as it arrives, not buffered and forwarded.
    let huge = format!(
        "GET /huge HTTP/1.1\r\nHost: h.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 << 10)
    );
    assert_eq!(
        exchange(f.addr, huge.as_bytes()).await.map(|r| r.0),
        Some(431)
    );
    // 101 header lines, past the default of 100.
    let mut many = String::from("GET /many HTTP/1.1\r\nHost: h.test\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        exchange(f.addr, many.as_bytes()).await.map(|r| r.0),
        Some(431)
    );
    assert!(be.seen().is_empty(), "the backend saw {:?}", be.seen());
    // Just under both limits is fine.
    let fine = format!(
        "GET /ok HTTP/1.1\r\nHost: h.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(30 << 10)
    );
    assert_eq!(
        exchange(f.addr, fine.as_bytes()).await.map(|r| r.0),
        Some(200)
    );
    still_serves(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_routed_and_forwarded_in_normal_form() {
    let (public, other) = (RawBackend::start().await, RawBackend::start().await);
    let body = format!(
        "[[route]]\npath = \"/public/\"\nupstream = \"p\"\n[[route]]\nupstream = \"o\"\n{}{}",
        upstream("p", &[public.addr], ""),
        upstream("o", &[other.addr], "")
    );
    let f = Fulcrum::start("", &body);
    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: h.test\r\n\r\n");
    for (target, body) in [
        ("/public/../admin", "raw /admin"),
        ("/public/%2e%2E/admin", "raw /admin"),
        ("/public/./x//y", "raw /public/x/y"),
        ("/public/%7eu?q=%2e%2e", "raw /public/~u?q=%2e%2e"),
    ] {
        let r = exchange(f.addr, get(target).as_bytes()).await.unwrap();
        assert_eq!((r.0, r.2.as_str()), (200, body), "{target}");
    }
    for target in [
        "/public/..%2fadmin",
        "/..",
        "/public/%zz",
        "/public/..\\admin",
        "/public/..%5cadmin",
    ] {
        let r = exchange(f.addr, get(target).as_bytes()).await.unwrap();
        assert_eq!(r.0, 400, "{target}: {}", r.2);
    }
    let r = exchange(f.addr, b"GET  /public/x  HTTP/1.1\r\nHost: h.test\r\n\r\n").await;
    assert_eq!(
        r.map(|r| r.0),
        Some(400),
        "double spaces in the request line"
    );
    // What the backends got: only normal forms.
    let public_seen: Vec<String> = public.seen().iter().map(|h| first_line(h)).collect();
    let other_seen: Vec<String> = other.seen().iter().map(|h| first_line(h)).collect();
    assert_eq!(
        public_seen,
        [
            "GET /public/x/y HTTP/1.1",
            "GET /public/~u?q=%2e%2e HTTP/1.1"
        ]
    );
    assert_eq!(other_seen, ["GET /admin HTTP/1.1", "GET /admin HTTP/1.1"]);
    drop(f);
    // merge_slashes = false keeps `//` (and routes on it).
    let f = Fulcrum::start("merge_slashes = false", &body);
    let r = exchange(f.addr, get("/public//x").as_bytes())
        .await
        .unwrap();
    assert_eq!(r.2, "raw /public//x");
}

fn first_line(head: &str) -> String {
    head.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_required_valid_and_taken_from_an_absolute_target() {
    let (evil, other) = (RawBackend::start().await, RawBackend::start().await);
    let body = format!(
        "[[route]]\nhost = \"evil.example\"\nupstream = \"e\"\n[[route]]\nupstream = \"o\"\n{}{}",
        upstream("e", &[evil.addr], ""),
        upstream("o", &[other.addr], "")
    );
    let f = Fulcrum::start("", &body);
    for bad in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@evil.example\r\n\r\n",
        b"GET http://user@evil.example/ HTTP/1.1\r\n\r\n",
    ] {
        let r = exchange(f.addr, bad).await;
        assert_eq!(
            r.map(|r| r.0),
            Some(400),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // HTTP/1.0 without Host is allowed (and routed host-less).
    let r = exchange(f.addr, b"GET /ten HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.0, 200);
    for req in [
        &b"GET http://evil.example/x?y=1 HTTP/1.1\r\n\r\n"[..],
        b"GET http://EVIL.example/x?y=1 HTTP/1.1\r\nHost: EVIL.example\r\n\r\n",
    ] {
        let r = exchange(f.addr, req).await.unwrap();
        assert_eq!((r.0, r.2.as_str()), (200, "raw /x?y=1"));
    }
    // A Host that names another authority than the target: refused as ambiguous (pingora's
    // check, stricter than RFC 9112's "ignore Host").
    let r = exchange(
        f.addr,
        b"GET http://evil.example/x?y=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
    )
    .await;
    assert_eq!(r.map(|r| r.0), Some(400));
    let seen = evil.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for head in &seen {
        assert_eq!(first_line(head), "GET /x?y=1 HTTP/1.1");
        let host = header(head, "host").unwrap_or_default();
        assert!(host.eq_ignore_ascii_case("evil.example"), "{head}");
    }
    assert_eq!(other.seen().len(), 1, "only the HTTP/1.0 request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_lists_merge_conflicts_are_refused_and_limits_apply_first() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("max_request_body = \"1KiB\"", &one_route(&be));
    let r = exchange(
        f.addr,
        b"POST /big HTTP/1.1\r\nHost: h.test\r\nContent-Length: 1073741824, 1073741824\r\n\r\n",
    )
    .await;
    assert_eq!(r.map(|r| r.0), Some(413));
    for conflict in [
        &b"POST /c HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5, 6\r\n\r\nhello!"[..],
        b"POST /c HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ] {
        let r = exchange(f.addr, conflict).await;
        assert_eq!(
            r.map(|r| r.0),
            Some(400),
            "{}",
            String::from_utf8_lossy(conflict)
        );
    }
    assert!(be.seen().is_empty(), "the backend saw {:?}", be.seen());
    let r = exchange(
        f.addr,
        b"POST /same HTTP/1.1\r\nHost: h.test\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    assert_eq!((r.0, r.2.as_str()), (200, "raw /same"));
    let seen = be.seen();
    let lengths: Vec<&str> = seen[0]
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("content-length"))
        .collect();
    assert_eq!(lengths.len(), 1, "{seen:?}");
    assert_eq!(header(&seen[0], "content-length"), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("", &one_route(&be));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: h.test\r\n\r\nGET /two HTTP/1.1\r\nHost: h.test\r\n\r\nGET /three HTTP/1.1\r\nHost: h.test\r\n\r\n",
    )
    .await
    .unwrap();
    for path in ["/one", "/two", "/three"] {
        let r = response(&mut s)
            .await
            .unwrap_or_else(|| panic!("no answer for {path}"));
        assert_eq!((r.0, r.2), (200, format!("raw {path}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_request_is_not_held_to_the_header_limits() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start(
        "keepalive_timeout = \"1s\"\nrequest_header_timeout = \"1s\"\nmax_header_size = \"1KiB\"",
        &one_route(&be),
    );
    // The second request takes longer than keepalive_timeout at the backend.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: h.test\r\n\r\nGET /slow HTTP/1.1\r\nHost: h.test\r\n\r\n",
    )
    .await
    .unwrap();
    for path in ["/a", "/slow"] {
        let r = response(&mut s)
            .await
            .unwrap_or_else(|| panic!("no answer for {path}"));
        assert_eq!((r.0, r.2), (200, format!("raw {path}")));
    }
    // The second one's body is larger than max_header_size and comes slower than
    // request_header_timeout: it is a body, not a header.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: h.test\r\n\r\nPOST /p HTTP/1.1\r\nHost: h.test\r\nContent-Length: 4000\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(&[b'x'; 1000]).await.unwrap();
    }
    for path in ["/a", "/p"] {
        let r = response(&mut s)
            .await
            .unwrap_or_else(|| panic!("no answer for {path}"));
        assert_eq!((r.0, r.2), (200, format!("raw {path}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_lines_before_the_request_line_count_against_the_limit() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("", &one_route(&be));
    let mut flood = "\r\n".repeat(20 << 10).into_bytes();
    flood.extend_from_slice(GET);
    assert_eq!(exchange(f.addr, &flood).await.map(|r| r.0), Some(431));
    // A few are fine (RFC 9112 §2.2).
    let mut few = b"\r\n\r\n".to_vec();
    few.extend_from_slice(GET);
    assert_eq!(exchange(f.addr, &few).await.map(|r| r.0), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stalls_gets_408_after_client_body_timeout() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("client_body_timeout = \"1s\"", &one_route(&be));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: h.test\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let r = response(&mut s).await;
    let took = start.elapsed();
    assert_eq!(r.map(|r| r.0), Some(408), "after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    still_serves(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_are_closed_at_once() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("max_connections = 3", &one_route(&be));
    // The start-up probe's connection holds a slot until the proxy has seen it close.
    f.wait_metric("fulcrum_downstream_connections_active", 0.0)
        .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(GET).await.unwrap();
        assert_eq!(response(&mut s).await.unwrap().0, 200);
        held.push(s);
    }
    // One more: closed at once, without a response.
    let start = Instant::now();
    let reply = raw(f.addr, GET).await;
    assert!(reply.is_empty(), "{reply:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // Counted before the slot frees: the tries below may be refused again until the proxy
    // has seen the close.
    f.wait_metric(
        "fulcrum_downstream_refused_total{reason=\"max_connections\"}",
        1.0,
    )
    .await;
    held.pop();
    // The slot is free again once the proxy has seen the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((200, _, _)) = exchange(f.addr, GET).await {
            break;
        }
        assert!(Instant::now() < deadline, "no slot after a close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_has_the_same_client_limits() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start(
        "request_header_timeout = \"1s\"\nkeepalive_timeout = \"1s\"",
        &one_route(&be),
    );
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 << 10)
    );
    assert_eq!(
        exchange(f.admin, big.as_bytes()).await.map(|r| r.0),
        Some(431)
    );
    let reply = raw(f.admin, b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ").await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    let mut s = TcpStream::connect(f.admin).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut s).await.unwrap().0, 200);
    closed_within(&mut s, Duration::from_secs(5)).await;
}

/// RSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_held_by_unfinished_headers_is_bounded() {
    const CONNS: usize = 1000;
    let be = RawBackend::start().await;
    let f = Fulcrum::start("request_header_timeout = \"30s\"", &one_route(&be));
    still_serves(&f).await;
    let pid = f.child.id();
    let before = rss_kib(pid);
    let partial = format!(
        "GET / HTTP/1.1\r\nHost: h.test\r\nX-Pad: {}",
        "a".repeat(30 << 10)
    );
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(partial.as_bytes()).await.unwrap();
        conns.push(s);
    }
    // Measured once the proxy has them all open, and has read what was sent.
    f.wait_metrics("all connections open", |m| {
        sample_of(m, "fulcrum_downstream_connections_active") >= Some(CONNS as f64)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = rss_kib(pid).max(before);
    let per_conn = (held - before) / CONNS as u64;
    eprintln!("RSS {before} KiB -> {held} KiB with {CONNS} unfinished 30 KiB headers: {per_conn} KiB each");
    // The target is 64 KiB; measured 55 KiB (a debug build). Some room for other machines.
    assert!(per_conn <= 80, "{per_conn} KiB per connection");
    drop(conns);
    // The allocator hands freed pages back as the workers allocate again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..200 {
        still_serves(&f).await;
    }
    let after = rss_kib(pid);
    eprintln!("RSS {after} KiB after they closed and 200 requests more");
    assert!(
        after.saturating_sub(before) < (held - before) * 3 / 4,
        "RSS stayed at {after} KiB (was {before} before, {held} with the connections)"
    );
    still_serves(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_served_while_stopping_is_told_to_close() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("grace_period = \"5s\"", &one_route(&be));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    let (_, head, _) = response(&mut s).await.unwrap();
    assert_eq!(header(&head, "connection"), Some("keep-alive"), "{head}");
    f.signal("-TERM");
    // Inside the 250 ms that requests caught by the stop still get.
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(GET).await.unwrap();
    let (status, head, _) = response(&mut s).await.expect("served while stopping");
    assert_eq!(status, 200);
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_keep_alive_is_closed_after_its_response() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("", &one_route(&be));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /ten HTTP/1.0\r\nHost: h.test\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = response(&mut s).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    closed_within(&mut s, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_send_timeout() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("send_timeout = \"1s\"", &one_route(&be));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: h.test\r\n\r\n")
        .await
        .unwrap();
    // Stop reading: the socket buffers fill and the proxy's writes wait, then give up.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    let start = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("still open after reading {got} bytes"),
        }
    }
    assert!(got < 64 << 20, "the whole response arrived ({got} bytes)");
    assert!(start.elapsed() < Duration::from_secs(5));
    still_serves(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_admin_requests_are_all_answered() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("", &one_route(&be));
    let mut s = TcpStream::connect(f.admin).await.unwrap();
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    for n in 0..2 {
        let r = response(&mut s)
            .await
            .unwrap_or_else(|| panic!("no answer {n}"));
        assert_eq!((r.0, r.2.as_str()), (200, "ok\n"));
    }
}
