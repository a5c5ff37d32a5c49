//! Hostile and broken traffic through the binary (issue 20's holes, each reproduced first):
//! request bodies that trickle in, responses a backend cuts short, path parameters that a
//! servlet container would read as another route, and the smaller ones (a status outside
//! 100–599, `Transfer-Encoding` codings, HTTP/1.0 without `Host`, forged `Forwarded`).

mod support;

use std::time::{Duration, Instant};

use support::rawhttp::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Passive ejection after one failure, even of the last backend: a failure counted against the
/// backend shows at once in `fulcrum_backend_up`.
const EJECT_AT_ONCE: &str =
    "[upstream.u.outlier]\nconsecutive_failures = 1\nmax_ejected_percent = 100";

/// `be`'s `fulcrum_backend_up`: 1 while it is in service.
async fn backend_up(f: &Fulcrum, be: &RawBackend) -> Option<f64> {
    let series = format!(
        "fulcrum_backend_up{{backend=\"{}\",upstream=\"u\"}}",
        be.addr
    );
    f.metric(&series).await
}

fn one_route(be: &RawBackend, route: &str, upstream_extra: &str) -> String {
    format!(
        "[[route]]\nname = \"r\"\nupstream = \"u\"\n{route}\n{}",
        upstream("u", &[be.addr], upstream_extra)
    )
}

/// Sends a `Content-Length: 1000` POST header, then one body byte every `every` until the
/// proxy answers (or `limit` passes); returns the status (0: closed without one) and when the
/// answer came.
async fn trickle(f: &Fulcrum, every: Duration, limit: Duration) -> (u16, Duration) {
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: h.test\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..1000 {
            tokio::time::sleep(every).await;
            if wr.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut reply = Vec::new();
    let read = tokio::time::timeout(limit, rd.read_to_end(&mut reply)).await;
    let took = start.elapsed();
    writer.abort();
    assert!(read.is_ok(), "still open after {limit:?}");
    let status = String::from_utf8_lossy(&reply)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_a_byte_at_a_time_is_cut_by_the_minimum_rate() {
    let be = RawBackend::start().await;
    // Each byte comes well within client_body_timeout of the last; the route allows a minute.
    let f = Fulcrum::start(
        "client_body_timeout = \"2s\"\nclient_body_min_rate = \"512\"",
        &one_route(&be, "timeout = \"60s\"", ""),
    );
    let (status, took) = trickle(&f, Duration::from_millis(500), Duration::from_secs(20)).await;
    assert_eq!(status, 408, "after {took:?}");
    // The backend's connection is let go, not held for the rest of the body.
    wait_until(
        "the backend connection closed",
        Duration::from_secs(5),
        || be.cut() == 1,
    )
    .await;
    assert_eq!(be.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_cut_by_the_route_timeout() {
    let be = RawBackend::start().await;
    // No minimum rate, a generous gap: only the route's whole-request timeout can end it. The
    // backend's read timeout runs out then too (it waits for the body): still the client's
    // 408, and nothing against the backend.
    let f = Fulcrum::start(
        "client_body_timeout = \"10s\"\nclient_body_min_rate = 0",
        &one_route(&be, "timeout = \"3s\"", EJECT_AT_ONCE),
    );
    for round in 1..=2 {
        let (status, took) = trickle(&f, Duration::from_millis(500), Duration::from_secs(20)).await;
        assert_eq!(status, 408, "round {round}, after {took:?}");
        assert!(took >= Duration::from_secs(3), "{took:?}");
        wait_until(
            "the backend connection closed",
            Duration::from_secs(5),
            || be.cut() == round,
        )
        .await;
    }
    assert_eq!(backend_up(&f, &be).await, Some(1.0));
}

/// Everything the proxy sends on one connection until it closes it (panics if it does not
/// within 10 s).
async fn until_closed(f: &Fulcrum, request: &[u8]) -> String {
    raw(f.addr, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_short_by_the_backend_is_a_failure_everywhere() {
    let be = RawBackend::start().await;
    let extra = "[upstream.u.outlier]\nconsecutive_failures = 2\nmax_ejected_percent = 100\n\
                 [upstream.u.circuit_breaker]\nconsecutive_failures = 2";
    let f = Fulcrum::start("access_log = \"access.log\"", &one_route(&be, "", extra));
    for path in ["/reset", "/reset-chunked"] {
        let reply = until_closed(
            &f,
            format!("GET {path} HTTP/1.1\r\nHost: h.test\r\n\r\n").as_bytes(),
        )
        .await;
        let (head, body) = reply.split_once("\r\n\r\n").expect("a response header");
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        // The client sees the cut: the body is short of its length, or has no last chunk.
        match path {
            "/reset" => assert_eq!(body.len(), 20, "{path}: {body:?}"),
            _ => assert!(!body.contains("0\r\n\r\n"), "{path}: {body:?}"),
        }
    }
    let log_path = f.dir.path().join("access.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until("two access-log lines", Duration::from_secs(5), || {
        log().lines().count() == 2
    })
    .await;
    for line in log().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["status"], 200, "{line}");
        assert_eq!(v["outcome"], "aborted", "{line}");
    }
    let aborted = "fulcrum_requests_total{code=\"200\",method=\"GET\",outcome=\"aborted\",route=\"r\",upstream=\"u\"}";
    f.wait_metric(aborted, 2.0).await;
    let b = be.addr;
    // Counted by passive ejection and by the breaker: both take the backend out.
    f.wait_metric(
        &format!("fulcrum_backend_up{{backend=\"{b}\",upstream=\"u\"}}"),
        0.0,
    )
    .await;
    f.wait_metric(
        &format!("fulcrum_circuit_state{{backend=\"{b}\",upstream=\"u\"}}"),
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_response_is_ok_in_the_log_and_metrics() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("access_log = \"access.log\"", &one_route(&be, "", ""));
    let (status, _, body) = exchange(f.addr, b"GET /fine HTTP/1.1\r\nHost: h.test\r\n\r\n")
        .await
        .expect("a response");
    assert_eq!((status, body.as_str()), (200, "raw /fine"));
    let ok = "fulcrum_requests_total{code=\"200\",method=\"GET\",outcome=\"ok\",route=\"r\",upstream=\"u\"}";
    f.wait_metric(ok, 1.0).await;
    let log_path = f.dir.path().join("access.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until("the access-log line", Duration::from_secs(5), || {
        !log().is_empty()
    })
    .await;
    assert!(
        log().contains("\"status\":200,\"outcome\":\"ok\""),
        "{}",
        log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_outside_100_to_599_is_a_502() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start(
        "access_log = \"access.log\"",
        &one_route(&be, "", EJECT_AT_ONCE),
    );
    let (status, _, _) = exchange(f.addr, b"GET /status600 HTTP/1.1\r\nHost: h.test\r\n\r\n")
        .await
        .expect("a response");
    assert_eq!(status, 502);
    let error = "fulcrum_requests_total{code=\"502\",method=\"GET\",outcome=\"error\",route=\"r\",upstream=\"u\"}";
    f.wait_metric(error, 1.0).await;
    // A backend failure, for passive ejection as for the breaker.
    assert_eq!(backend_up(&f, &be).await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_that_would_change_the_route_are_refused() {
    let (app, admin) = (RawBackend::start().await, RawBackend::start().await);
    let body = format!(
        "[[route]]\npath = \"/app/\"\nupstream = \"app\"\n[[route]]\npath = \"/app/admin/\"\nupstream = \"admin\"\n{}{}",
        upstream("app", &[app.addr], ""),
        upstream("admin", &[admin.addr], "")
    );
    let f = Fulcrum::start("", &body);
    for path in [
        "/app/x/..;/admin/x",
        "/app/admin;/x",
        "/app/admin%3b/x",
        "/app/admin%3B/x",
        "/app/x/.;/../admin/x",
        "/app/;/admin/x",
        "/app/;x=1/admin/x",
        "/app/%3B/admin/x",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: h.test\r\n\r\n");
        let got = exchange(f.addr, req.as_bytes()).await.map(|r| r.0);
        assert_eq!(got, Some(400), "{path}");
    }
    assert!(app.seen().is_empty() && admin.seen().is_empty());
    // Parameters that leave the route as it is pass untouched.
    for (path, backend) in [
        ("/app/cart;jsessionid=1", &app),
        ("/app/admin/x;v=1", &admin),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: h.test\r\n\r\n");
        let (status, _, body) = exchange(f.addr, req.as_bytes()).await.expect("a response");
        assert_eq!((status, body), (200, format!("raw {path}")), "{path}");
        assert!(backend
            .seen()
            .last()
            .unwrap()
            .starts_with(&format!("GET {path} ")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_other_than_chunked_is_refused() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("", &one_route(&be, "", ""));
    for te in ["gzip, chunked", "chunked, chunked", "identity"] {
        let req = format!(
            "POST /x HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        assert_eq!(raw_status(f.addr, req.as_bytes()).await, 400, "{te}");
    }
    assert!(be.seen().is_empty(), "{:?}", be.seen());
    let ok = "POST /x HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(raw_status(f.addr, ok.as_bytes()).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_reaches_the_backend_with_a_host() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("", &one_route(&be, "", ""));
    let (status, _, _) = exchange(f.addr, b"GET /old HTTP/1.0\r\n\r\n")
        .await
        .expect("a response");
    assert_eq!(status, 200);
    let seen = be.seen();
    assert_eq!(
        header(&seen[0], "host"),
        Some(be.addr.to_string().as_str()),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_x_real_ip_from_an_untrusted_client_are_removed() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("", &one_route(&be, "", ""));
    let req = b"GET /who HTTP/1.1\r\nHost: h.test\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n";
    assert_eq!(exchange(f.addr, req).await.map(|r| r.0), Some(200));
    let seen = be.seen();
    assert_eq!(header(&seen[0], "forwarded"), None, "{seen:?}");
    assert_eq!(header(&seen[0], "x-real-ip"), None, "{seen:?}");
    assert_eq!(header(&seen[0], "x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_response_cut_short_by_the_backend_ends_in_an_error() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let be = RawBackend::start().await;
    let f = Fulcrum::start(
        "h2c = true\naccess_log = \"access.log\"",
        &one_route(&be, "", ""),
    );
    let s = TcpStream::connect(f.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    for path in ["/reset", "/reset-chunked"] {
        let req = hyper::Request::get(format!("http://h.test{path}"))
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.into_body().collect().await.map(|b| b.to_bytes().len());
        assert!(
            body.is_err(),
            "{path}: the stream ended cleanly with {body:?} bytes"
        );
    }
    let aborted = "fulcrum_requests_total{code=\"200\",method=\"GET\",outcome=\"aborted\",route=\"r\",upstream=\"u\"}";
    f.wait_metric(aborted, 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_not_held_against_the_backend() {
    let be = RawBackend::start().await;
    let f = Fulcrum::start("send_timeout = \"1s\"", &one_route(&be, "", EJECT_AT_ONCE));
    // Two clients ask for 64 MiB and read none of it: fulcrum's writes time out.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(f.addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: h.test\r\n\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    let closed = "fulcrum_requests_total{code=\"200\",method=\"GET\",outcome=\"client_closed\",route=\"r\",upstream=\"u\"}";
    f.wait_metric(closed, 2.0).await;
    assert_eq!(backend_up(&f, &be).await, Some(1.0));
    drop(held);
}
