//! Every refusal reaches the client, the log and the metrics: fulcrum's own answers (413, 429,
//! 503, 400, 408, 431) reach an HTTP/2 client (the `h2` crate, over TLS and h2c) as that status on
//! its stream, and a client still uploading can finish its upload and read it.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;

use support::*;

/// How an HTTP/2 request ended, as the client saw it.
#[derive(Debug)]
struct H2Answer {
    /// The response's status, `None` when the stream ended without one.
    status: Option<u16>,
    /// The response body, as far as it came.
    body: String,
    /// The stream's error, if it was reset: `Some("NO_ERROR")` is the RFC 9113 §8.1 way for a
    /// server that answered before reading the whole body.
    reset: Option<String>,
    /// Whether the whole request body went out. A client that sends its body before it reads
    /// the response (curl) fails the exchange, and never shows the status, when it cannot.
    uploaded: bool,
}

/// Sends `POST path` on a new HTTP/2 connection over `io` with `headers`, a `Content-Length` of
/// `declared` (when given) and `body_len` bytes of body sent as fast as the flow-control window
/// lets them (without waiting for the response); returns what came back.
async fn h2_request<T>(
    io: T,
    path: &str,
    headers: &[(&str, &str)],
    declared: Option<u64>,
    body_len: usize,
) -> H2Answer
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("h2 ready");
    let mut req = http::Request::post(format!("http://app.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(len) = declared {
        req = req.header("content-length", len);
    }
    let req = req.body(()).unwrap();
    let (response, mut send) = client
        .send_request(req, body_len == 0)
        .expect("send request");
    let sender = tokio::spawn(async move {
        let mut left = body_len;
        while left > 0 {
            send.reserve_capacity(left.min(1 << 16));
            let cap = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(cap)) => cap,
                _ => return false,
            };
            let n = cap.min(left);
            left -= n;
            if send
                .send_data(Bytes::from(vec![b'x'; n]), left == 0)
                .is_err()
            {
                return false;
            }
        }
        true
    });
    let answer = match tokio::time::timeout(Duration::from_secs(20), response).await {
        Err(_) => panic!("no answer within 20s"),
        Ok(Err(e)) => H2Answer {
            status: None,
            body: String::new(),
            reset: Some(format!("{e:?}")),
            uploaded: false,
        },
        Ok(Ok(resp)) => {
            let status = Some(resp.status().as_u16());
            let mut body = resp.into_body();
            let mut text = Vec::new();
            let mut reset = None;
            while let Some(chunk) = body.data().await {
                match chunk {
                    Ok(c) => {
                        let _ = body.flow_control().release_capacity(c.len());
                        text.extend_from_slice(&c);
                    }
                    Err(e) => {
                        reset = Some(e.reason().map_or(format!("{e:?}"), |r| format!("{r:?}")));
                        break;
                    }
                }
            }
            H2Answer {
                status,
                body: String::from_utf8_lossy(&text).into_owned(),
                reset,
                uploaded: false,
            }
        }
    };
    let mut answer = answer;
    answer.uploaded = match tokio::time::timeout(Duration::from_secs(10), sender).await {
        Ok(Ok(done)) => done,
        _ => false,
    };
    answer
}

async fn h2c(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    declared: Option<u64>,
    body_len: usize,
) -> H2Answer {
    let s = TcpStream::connect(addr).await.unwrap();
    h2_request(s, path, headers, declared, body_len).await
}

/// Asserts that `a` is `status`, its body whole (ended, or reset with NO_ERROR after it).
fn assert_refused(a: &H2Answer, status: u16, what: &str) {
    assert_eq!(a.status, Some(status), "{what}: {a:?}");
    assert!(
        a.reset.is_none() || a.reset.as_deref() == Some("NO_ERROR"),
        "{what}: the stream was reset after the status: {a:?}"
    );
}

/// A TLS client (ALPN `h2`) trusting `cert`, for the name `app.test`.
async fn h2_tls(
    addr: SocketAddr,
    cert: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
    declared: Option<u64>,
    body_len: usize,
) -> H2Answer {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("app.test").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2_request(tls, path, &[], declared, body_len).await
}

/// One route `/` to `app` over `backends`, with `route` lines and `upstream` lines.
fn site(backends: &[SocketAddr], upstream_extra: &str, route: &str) -> String {
    format!(
        "{}[[route]]\npath = \"/\"\nupstream = \"app\"\n{route}\n",
        upstream("app", backends, upstream_extra)
    )
}

#[tokio::test]
async fn an_http2_body_over_the_limit_is_a_413_the_client_can_read_after_its_upload() {
    let b = Backend::start("a").await;
    let f = Fulcrum::start(
        "h2c = true\nmax_request_body = \"1MiB\"",
        &site(&[b.addr], "", ""),
    );
    // Declared and sent at once, past the flow-control window: the 413 comes before most of
    // the body is read, and the client can still finish its upload (curl fails otherwise).
    let a = h2c(f.addr, "/up", &[], Some(2 << 20), 2 << 20).await;
    assert_refused(&a, 413, "declared");
    assert!(a.uploaded, "the upload was cut off: {a:?}");
    assert!(a.body.contains("larger than the limit"), "{a:?}");
    // No Content-Length: counted as it streams.
    let a = h2c(f.addr, "/up", &[], None, 2 << 20).await;
    assert_refused(&a, 413, "streamed");
    assert!(a.uploaded, "the upload was cut off: {a:?}");
}

#[tokio::test]
async fn over_tls_an_http2_refusal_is_its_status_on_the_stream() {
    let b = Backend::start("a").await;
    let (key, _dir, port, tls) = tls_listener();
    let _f = Fulcrum::start(
        &format!("max_request_body = \"1MiB\"\n{tls}"),
        &site(
            &[b.addr],
            "",
            "[[route]]\npath = \"/admin/\"\nupstream = \"app\"\n",
        ),
    );
    let tls: SocketAddr = ([127, 0, 0, 1], port).into();
    let der = key.cert.der().clone();
    let mut up = None;
    for _ in 0..200 {
        if TcpStream::connect(tls).await.is_ok() {
            up = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(up.is_some(), "the TLS listener never came up");
    let a = h2_tls(tls, &der, "/up", Some(2 << 20), 2 << 20).await;
    assert_refused(&a, 413, "TLS, body over the limit");
    assert!(a.uploaded, "the upload was cut off: {a:?}");
    // A `;` parameter that would change the route: 400, with a body still coming.
    let a = h2_tls(tls, &der, "/admin;/x", Some(100_000), 100_000).await;
    assert_refused(&a, 400, "TLS, path parameter");
    assert!(a.uploaded, "the upload was cut off: {a:?}");
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn over_h2c_429_503_400_408_and_431_reach_the_client_on_their_stream() {
    let hung = Backend::hung("hung").await;
    let b = Backend::start("a").await;
    let body = format!(
        "{}{}[[route]]\npath = \"/limited/\"\nupstream = \"app\"\nrate_limit = {{ rate = 1, per = \"1m\", burst = 1 }}\n\
         [[route]]\npath = \"/slow/\"\nupstream = \"hung\"\ntimeout = \"30s\"\n\
         [[route]]\npath = \"/timed/\"\nupstream = \"app\"\ntimeout = \"1s\"\n",
        site(&[b.addr], "", "[[route]]\npath = \"/admin/\"\nupstream = \"app\"\n"),
        upstream("hung", &[hung.addr], "max_inflight = 1"),
    );
    let f = Fulcrum::start("h2c = true\nmax_headers = 20", &body);

    // 429: the second request within the minute.
    let a = h2c(f.addr, "/limited/x", &[], None, 0).await;
    assert_eq!(a.status, Some(200), "{a:?}");
    let a = h2c(f.addr, "/limited/x", &[], Some(100_000), 100_000).await;
    assert_refused(&a, 429, "rate limit");
    assert!(a.uploaded, "{a:?}");

    // 503: max_inflight 1, held by a request the hung backend never answers.
    let addr = f.addr;
    let held = tokio::spawn(async move { h2c(addr, "/slow/held", &[], None, 0).await });
    wait_until(
        "the first request reaches the hung backend",
        Duration::from_secs(10),
        || hung.hits() > 0,
    )
    .await;
    let a = h2c(f.addr, "/slow/x", &[], Some(100_000), 100_000).await;
    assert_refused(&a, 503, "max_inflight");
    held.abort();

    // 400: a path parameter that would change the route.
    let a = h2c(f.addr, "/admin;/x", &[], None, 0).await;
    assert_refused(&a, 400, "path parameter");

    // 431: more header lines than `max_headers`.
    let many: Vec<(String, String)> = (0..30)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = h2c(f.addr, "/x", &many, None, 0).await;
    assert_refused(&a, 431, "max_headers");
    // A header list past HTTP/2's own 64 KiB limit (SETTINGS_MAX_HEADER_LIST_SIZE) is answered
    // 431 by the HTTP/2 layer before fulcrum sees a request.
    let big = "v".repeat(70 * 1024);
    let a = h2c(f.addr, "/x", &[("x-big", big.as_str())], None, 0).await;
    assert_refused(&a, 431, "header list over 64 KiB");

    // 408: a body that stops coming; the backend waits for it past the route's timeout.
    let s = TcpStream::connect(f.addr).await.unwrap();
    let a = h2_stalled(s, "/timed/x").await;
    assert_refused(&a, 408, "stalled body");
}

/// `POST path` declaring 1 000 bytes of body and sending 10 of them, then nothing.
async fn h2_stalled(io: TcpStream, path: &str) -> H2Answer {
    let (client, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("h2 ready");
    let req = http::Request::post(format!("http://app.test{path}"))
        .header("content-length", 1000)
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(req, false).expect("send request");
    send.send_data(Bytes::from_static(b"0123456789"), false)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .expect("an answer within 20s")
        .expect("a response");
    let status = Some(resp.status().as_u16());
    let mut body = resp.into_body();
    let mut text = Vec::new();
    let mut reset = None;
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(c) => text.extend_from_slice(&c),
            Err(e) => {
                reset = Some(e.reason().map_or(format!("{e:?}"), |r| format!("{r:?}")));
                break;
            }
        }
    }
    drop(send);
    H2Answer {
        status,
        body: String::from_utf8_lossy(&text).into_owned(),
        reset,
        uploaded: false,
    }
}

#[tokio::test]
async fn requests_refused_before_routing_are_logged_and_counted() {
    let b = Backend::start("a").await;
    let f = Fulcrum::start(
        "access_log = \"stderr\"\nrequest_header_timeout = \"1s\"\nmax_header_size = \"1KiB\"",
        &site(&[b.addr], "", ""),
    );
    // pingora's own 400: a header line it cannot parse.
    let reply = raw(f.addr, b"GET / HTTP/1.1\r\nHost: app\r\nBad Header\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    f.wait_for_log(
        &[
            "\"client\":\"127.0.0.1\"",
            "\"method\":\"\"",
            "\"status\":400",
            "\"error\":\"malformed request header\"",
        ],
        Duration::from_secs(5),
    )
    .await;
    f.wait_metric(
        "fulcrum_downstream_refused_total{reason=\"malformed\"}",
        1.0,
    )
    .await;

    // The guard's 431: a header section over max_header_size.
    let long = format!(
        "GET / HTTP/1.1\r\nHost: app\r\nX-Long: {}\r\n\r\n",
        "v".repeat(2048)
    );
    let reply = raw(f.addr, long.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:?}");
    f.wait_for_log(
        &["\"status\":431", "over max_header_size or max_headers"],
        Duration::from_secs(5),
    )
    .await;
    f.wait_metric(
        "fulcrum_downstream_refused_total{reason=\"header_too_large\"}",
        1.0,
    )
    .await;

    // The guard's 408: a header that stops coming.
    let reply = raw(f.addr, b"GET / HTTP/1.1\r\nHost: ap").await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    let log = f
        .wait_for_log(
            &["\"status\":408", "within request_header_timeout"],
            Duration::from_secs(5),
        )
        .await;
    f.wait_metric(
        "fulcrum_downstream_refused_total{reason=\"header_timeout\"}",
        1.0,
    )
    .await;
    // The 408's line says how long the header took (the second it was given).
    let line = log.lines().find(|l| l.contains("\"status\":408")).unwrap();
    assert!(
        line.contains("\"duration_ms\":1") || line.contains("\"duration_ms\":2"),
        "{line}"
    );
    // pingora's own 405: CONNECT.
    let reply = raw(f.addr, b"CONNECT app:443 HTTP/1.1\r\nHost: app:443\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply:?}");
    f.wait_for_log(
        &["\"status\":405", "CONNECT is not proxied"],
        Duration::from_secs(5),
    )
    .await;
    // A request that was parsed is logged once, by the proxy, not as a refusal.
    let ok = raw(
        f.addr,
        b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok:?}");
    let log = f
        .wait_for_log(
            &["\"status\":200", "\"method\":\"GET\""],
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(log.matches("\"status\":").count(), 5, "{log}");
}

/// The access-log line (JSON) of the request to `path`, once it is written.
async fn log_line(f: &Fulcrum, path: &str) -> serde_json::Value {
    let needle = format!("\"path\":\"{path}\"");
    let log = f.wait_for_log(&[&needle], Duration::from_secs(5)).await;
    let line = log.lines().find(|l| l.contains(&needle)).unwrap();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// `connect ≤ header ≤ total`, all present.
fn assert_timings(v: &serde_json::Value) {
    let ms = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    let (connect, header, total) = (
        ms("upstream_connect_ms"),
        ms("upstream_header_ms"),
        ms("duration_ms"),
    );
    assert!(
        0.0 <= connect && connect <= header && header <= total,
        "{connect} {header} {total}: {v}"
    );
}

#[tokio::test]
async fn the_access_log_says_protocol_tls_referer_agent_and_the_backend_s_status_and_times() {
    let b = Backend::with(
        "a",
        Behaviour {
            status: 201,
            delay: Duration::from_millis(20),
            ..Behaviour::default()
        },
    )
    .await;
    let (key, _dir, port, tls) = tls_listener();
    let f = Fulcrum::start(
        &format!("access_log = \"stderr\"\n{tls}"),
        &site(&[b.addr], "", ""),
    );

    // HTTP/1.1, plain.
    let resp = get_with(
        f.addr,
        "app.test",
        "/plain",
        &[
            ("referer", "https://from.test/page"),
            ("user-agent", "probe/1.0"),
        ],
    )
    .await;
    assert_eq!(resp.status, 201);
    let v = log_line(&f, "/plain").await;
    assert_eq!(v["protocol"], "HTTP/1.1", "{v}");
    assert_eq!(v["tls_version"], "", "{v}");
    assert_eq!(v["sni"], "", "{v}");
    assert_eq!(v["referer"], "https://from.test/page", "{v}");
    assert_eq!(v["user_agent"], "probe/1.0", "{v}");
    assert_eq!(v["status"], 201, "{v}");
    assert_eq!(v["upstream_status"], 201, "{v}");
    assert_timings(&v);
    assert!(v["upstream_header_ms"].as_f64().unwrap() >= 20.0, "{v}");

    // HTTP/2 over TLS.
    let tls: SocketAddr = ([127, 0, 0, 1], port).into();
    let der = key.cert.der().clone();
    let a = h2_tls(tls, &der, "/secure", None, 0).await;
    assert_eq!(a.status, Some(201), "{a:?}");
    let v = log_line(&f, "/secure").await;
    assert_eq!(v["protocol"], "HTTP/2", "{v}");
    assert!(
        v["tls_version"].as_str().unwrap().starts_with("TLSv1"),
        "{v}"
    );
    assert_eq!(v["sni"], "app.test", "{v}");
    assert_eq!(v["upstream_status"], 201, "{v}");
    assert_timings(&v);

    // A refusal of fulcrum's own (a body announced over the limit): no backend status or times.
    let reply = raw(
        f.addr,
        b"POST /refused HTTP/1.1\r\nHost: app.test\r\nContent-Length: 99999999999\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply:?}");
    let v = log_line(&f, "/refused").await;
    assert_eq!(v["upstream_status"], serde_json::Value::Null, "{v}");
    assert_eq!(v["upstream_connect_ms"], serde_json::Value::Null, "{v}");
    assert_eq!(v["upstream_header_ms"], serde_json::Value::Null, "{v}");
}

/// A refused HTTP/2 upload whose client goes on sending is drained after the request has given
/// back its `max_inflight` place and written its log line: another request to the upstream is
/// served, and the 413's line is there, while the refused body still trickles in.
#[tokio::test]
async fn an_h2_refusal_s_drain_holds_no_place_and_does_not_delay_its_log_line() {
    let b = Backend::start("a").await;
    let f = Fulcrum::start(
        "h2c = true\nmax_request_body = \"1MiB\"\naccess_log = \"stderr\"",
        &site(&[b.addr], "max_inflight = 1", ""),
    );
    let io = TcpStream::connect(f.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.expect("h2 ready");
    // No Content-Length: the body goes over the limit after the backend is picked.
    let req = http::Request::post("http://app.test/trickle")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(req, false).expect("send request");
    let mut left = (1 << 20) + (200 << 10);
    let response = async {
        while left > 0 {
            send.reserve_capacity(left.min(1 << 16));
            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(cap)) => {
                    let n = cap.min(left);
                    left -= n;
                    send.send_data(Bytes::from(vec![b'x'; n]), false).unwrap();
                }
                _ => panic!("the stream ended before the body went over the limit"),
            }
        }
        response.await.expect("a response")
    }
    .await;
    assert_eq!(response.status(), 413);
    // One byte every 50 ms from here on; the drain reads it for up to 2 s.
    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if send.send_data(Bytes::from_static(b"x"), false).is_err() {
                break;
            }
        }
    };
    let check = async {
        let r = get(f.addr, "app.test", "/g").await;
        assert_eq!(
            r.status, 200,
            "the drain held the max_inflight place: {r:?}"
        );
        let line = log_line(&f, "/trickle").await;
        assert_eq!(line["status"], 413, "{line}");
    };
    tokio::select! {
        _ = ticker => panic!("the client could not go on sending"),
        _ = check => {}
    }
    let reset = std::future::poll_fn(|cx| std::task::Poll::Ready(send.poll_reset(cx).is_ready()));
    assert!(
        !reset.await,
        "the refused stream was over before the checks: they did not overlap the drain"
    );
}

/// A backend's `100 Continue` is not its answer: `upstream_header_ms` (and the backend response
/// time) run to the final header, which comes 1.5 s later.
#[tokio::test]
async fn upstream_header_time_is_the_final_header_s_not_a_100_continue_s() {
    let b = support::rawhttp::RawBackend::start().await;
    let f = Fulcrum::start("access_log = \"stderr\"", &site(&[b.addr], "", ""));
    let r = get(f.addr, "app.test", "/slow-continue").await;
    assert_eq!(r.status, 200, "{r:?}");
    let line = log_line(&f, "/slow-continue").await;
    assert_eq!(line["upstream_status"], 200, "{line}");
    let header = line["upstream_header_ms"].as_f64().unwrap();
    assert!(header >= 1400.0, "timed to the 100 Continue: {line}");
    assert_timings(&line);
}

/// A self-signed certificate for app.test in a temporary directory, a free port, and the
/// `[[server.tls]]` section that serves it there.
fn tls_listener() -> (rcgen::CertifiedKey, tempfile::TempDir, u16, String) {
    let key = rcgen::generate_simple_self_signed(vec!["app.test".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, keyfile) = (dir.path().join("app.pem"), dir.path().join("app.key"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&keyfile, key.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let tls = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:{port}\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        cert.display(),
        keyfile.display()
    );
    (key, dir, port, tls)
}
