//! Protection through the real binary against real backends: per-route rate limits (accuracy,
//! keys, headers, buckets kept across reloads), per-backend circuit breakers (trip, skip, probe,
//! close; all open → fast 503 without a connection; state kept across reloads) and the
//! per-upstream concurrency limit under parallel clients.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::*;

/// A route named `name` for host `host` to upstream `u`, with `rate_limit = { limit }`.
fn limited(name: &str, host: &str, limit: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\nhost = \"{host}\"\nupstream = \"u\"\nrate_limit = {{ {limit} }}\n")
}

/// `GET /` for `host`, from client IP `client` (fulcrum trusts 127.0.0.1's X-Forwarded-For).
async fn from(f: &Fulcrum, host: &str, client: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("x-forwarded-for", client)];
    headers.extend_from_slice(extra);
    get_with(f.addr, host, "/", &headers).await
}

const TRUSTED: &str = "trusted_proxies = [\"127.0.0.1\"]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_are_burst_plus_rate_times_time_within_two_percent() {
    let a = Backend::start("a").await;
    let body = format!(
        "{}{}",
        limited(
            "r",
            "h.test",
            "rate = 100, per = \"1s\", burst = 50, key = \"global\""
        ),
        upstream("u", &[a.addr], "")
    );
    let f = Fulcrum::start("", &body);
    let window = Duration::from_secs(3);
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = f.addr;
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let (mut ok, mut limited, mut last) = (0, 0, started);
                while started.elapsed() < window {
                    last = Instant::now();
                    match conn.get("h.test", "/").await.map(|r| r.status) {
                        Ok(200) => ok += 1,
                        Ok(429) => limited += 1,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                (ok, limited, last)
            })
        })
        .collect();
    let (mut ok, mut limited, mut last) = (0, 0, started);
    for c in clients {
        let (o, l, t) = c.await.unwrap();
        (ok, limited, last) = (ok + o, limited + l, last.max(t));
    }
    let t = (last - started).as_secs_f64();
    let expected = 50.0 + 100.0 * t;
    let error = (ok as f64 - expected).abs() / expected;
    eprintln!("{ok} allowed, {limited} limited over {t:.3} s; expected {expected:.1}");
    assert!(limited > ok, "the clients pushed well past the limit");
    assert!(
        error <= 0.02,
        "{ok} allowed over {t:.3} s, expected {expected:.1} (off by {:.1} %)",
        error * 100.0
    );
    assert_eq!(a.hits(), ok, "every allowed request reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_get_their_own_buckets_global_shares_one_and_a_missing_header_falls_back_to_the_ip() {
    let a = Backend::start("a").await;
    let one_minute = "rate = 1, per = \"1m\", burst = 3";
    let body = format!(
        "{}{}{}{}",
        limited(
            "ip",
            "ip.test",
            &format!("{one_minute}, key = \"client_ip\"")
        ),
        limited(
            "all",
            "all.test",
            &format!("{one_minute}, key = \"global\"")
        ),
        limited(
            "key",
            "key.test",
            &format!("{one_minute}, key = \"header:X-Api-Key\"")
        ),
        upstream("u", &[a.addr], "")
    );
    let f = Fulcrum::start(TRUSTED, &body);
    let statuses = async |host: &str, client: &str, extra: &[(&str, &str)], n: usize| {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(from(&f, host, client, extra).await.status);
        }
        out
    };
    // client_ip: each client has three.
    assert_eq!(
        statuses("ip.test", "10.0.0.1", &[], 4).await,
        [200, 200, 200, 429]
    );
    assert_eq!(
        statuses("ip.test", "10.0.0.2", &[], 4).await,
        [200, 200, 200, 429]
    );
    // global: three between them.
    assert_eq!(statuses("all.test", "10.0.0.1", &[], 2).await, [200, 200]);
    assert_eq!(statuses("all.test", "10.0.0.2", &[], 2).await, [200, 429]);
    // header: the key's bucket wherever it comes from; no header: the IP's bucket.
    let key_a = [("x-api-key", "A")];
    assert_eq!(
        statuses("key.test", "10.0.0.1", &key_a, 3).await,
        [200, 200, 200]
    );
    assert_eq!(statuses("key.test", "10.0.0.2", &key_a, 1).await, [429]);
    let key_b = [("x-api-key", "B")];
    assert_eq!(statuses("key.test", "10.0.0.2", &key_b, 1).await, [200]);
    assert_eq!(
        statuses("key.test", "10.0.0.1", &[], 4).await,
        [200, 200, 200, 429]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_headers_are_exact_on_allowed_and_limited_responses() {
    let a = Backend::start("a").await;
    let body = format!(
        "{}{}{}",
        limited("api", "api.test", "rate = 1, per = \"1m\", burst = 2"),
        limited(
            "quiet",
            "quiet.test",
            "rate = 1, per = \"1m\", burst = 1, headers = false"
        ),
        upstream("u", &[a.addr], "")
    );
    let f = Fulcrum::start("", &body);
    let header = |r: &Resp, name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let policy = Some("\"api\";q=1;w=60".to_owned());

    let r = get(f.addr, "api.test", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "ratelimit-policy"), policy);
    assert_eq!(header(&r, "ratelimit").as_deref(), Some("\"api\";r=1;t=0"));
    let r = get(f.addr, "api.test", "/").await;
    assert_eq!(header(&r, "ratelimit").as_deref(), Some("\"api\";r=0;t=60"));

    let r = get(f.addr, "api.test", "/").await;
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("60"));
    assert_eq!(header(&r, "ratelimit-policy"), policy);
    assert_eq!(header(&r, "ratelimit").as_deref(), Some("\"api\";r=0;t=60"));
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(r.body, "rate limit exceeded; retry in 60 s\n");
    assert_eq!(a.hits(), 2, "a limited request never reaches the backend");

    // headers = false: none on allowed responses, all of them on a 429.
    let r = get(f.addr, "quiet.test", "/").await;
    assert_eq!((r.status, header(&r, "ratelimit")), (200, None));
    let r = get(f.addr, "quiet.test", "/").await;
    assert_eq!(r.status, 429);
    assert_eq!(
        header(&r, "ratelimit").as_deref(),
        Some("\"quiet\";r=0;t=60")
    );
}

/// A backend that answers every request with `103 Early Hints` and then `200`, over raw TCP
/// (hyper's server sends no interim responses).
async fn early_hints_backend() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let reply = "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n\
                             HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_headers_go_on_the_final_response_not_an_interim_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = early_hints_backend().await;
    let body = format!(
        "{}{}",
        limited("api", "api.test", "rate = 1, per = \"1m\", burst = 5"),
        upstream("u", &[backend], "")
    );
    let f = Fulcrum::start("", &body);
    let mut s = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: api.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let final_at = text
        .find("http/1.1 200")
        .unwrap_or_else(|| panic!("no 200 in {text:?}"));
    let (interim, last) = text.split_at(final_at);
    assert!(
        !interim.contains("ratelimit"),
        "headers on an interim response: {text:?}"
    );
    assert!(last.contains("ratelimit: \"api\";r=4;t=0"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_survive_a_reload_unless_the_limit_changes() {
    let a = Backend::start("a").await;
    let with = |limit: &str, extra: &str| {
        format!(
            "{}{extra}{}",
            limited("api", "api.test", limit),
            upstream("u", &[a.addr], "")
        )
    };
    let limit = "rate = 1, per = \"1m\", burst = 2";
    let f = Fulcrum::start("", &with(limit, ""));
    for want in [200, 200, 429] {
        assert_eq!(get(f.addr, "api.test", "/").await.status, want);
    }
    // Another route added, this one's limit unchanged: its buckets are kept.
    let other = "[[route]]\nhost = \"other.test\"\nupstream = \"u\"\n";
    f.apply(&with(limit, other), 2).await;
    assert_eq!(get(f.addr, "other.test", "/").await.status, 200);
    assert_eq!(get(f.addr, "api.test", "/").await.status, 429);
    // The limit changed: new, full buckets.
    f.apply(&with("rate = 1, per = \"1m\", burst = 3", other), 3)
        .await;
    for want in [200, 200, 200, 429] {
        assert_eq!(get(f.addr, "api.test", "/").await.status, want);
    }
}

/// Route `/` to upstream `u` over `backends` with `[upstream.u.circuit_breaker]` `breaker`.
fn broken_pool(backends: &[&Backend], breaker: &str, extra: &str) -> String {
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    format!(
        "[[route]]\nupstream = \"u\"\n{extra}{}[upstream.u.circuit_breaker]\n{breaker}\n",
        upstream("u", &addrs, "")
    )
}

fn count(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_trips_is_skipped_is_probed_and_closes_once_it_recovers() {
    let (flaky, good) = (Backend::start("flaky").await, Backend::start("good").await);
    flaky.set_status(500);
    // 500s count only where failure_status says so (the default is 502, 503, 504).
    let breaker = "consecutive_failures = 3\nopen_duration = \"1s\"\nhalf_open_requests = 2\n\
                   failure_status = [\"5xx\"]";
    let f = Fulcrum::start_logging("info", "", &broken_pool(&[&flaky, &good], breaker, ""));
    let addr = flaky.addr.to_string();
    for _ in 0..6 {
        get(f.addr, "h.test", "/").await;
    }
    assert_eq!(flaky.hits(), 3);
    f.wait_for_log(
        &["circuit breaker opened", &addr, "3 consecutive failures"],
        Duration::from_secs(1),
    )
    .await;

    // Open: everything goes to the good backend.
    for _ in 0..10 {
        let r = get(f.addr, "h.test", "/").await;
        assert_eq!((r.status, r.backend()), (200, "good"));
    }
    assert_eq!(flaky.hits(), 3);

    // After open_duration a probe goes through; it fails, and the breaker opens again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while flaky.hits() == 3 {
        assert!(Instant::now() < deadline, "no probe after open_duration");
        get(f.addr, "h.test", "/").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.wait_for_log(
        &["circuit breaker opened", &addr, "a half-open probe failed"],
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(flaky.hits(), 4, "one failed probe re-opens at once");

    // It recovers: the next half-open period's two probes succeed and the breaker closes.
    flaky.set_status(200);
    wait_until_log(&f, &["circuit breaker closed", &addr]).await;
    let before = flaky.hits();
    for _ in 0..10 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert!(
        flaky.hits() >= before + 4,
        "closed: traffic is shared again"
    );

    let log = f.log();
    assert_eq!(count(&log, &["circuit breaker opened", &addr]), 2, "{log}");
    assert_eq!(
        count(&log, &["circuit breaker half-open", &addr]),
        2,
        "{log}"
    );
    assert_eq!(count(&log, &["circuit breaker closed", &addr]), 1, "{log}");
}

/// Sends requests every 20 ms until the log has a line with every one of `parts` (3 s at most).
async fn wait_until_log(f: &Fulcrum, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while count(&f.log(), parts) == 0 {
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}:\n{}",
            f.log()
        );
        get(f.addr, "h.test", "/").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_breaker_open_is_a_fast_503_without_a_connection_and_survives_a_reload() {
    let sick = Behaviour {
        status: 500,
        ..Default::default()
    };
    let (x, y) = (
        Backend::with("x", sick.clone()).await,
        Backend::with("y", sick).await,
    );
    let breaker = "consecutive_failures = 2\nopen_duration = \"60s\"\nfailure_status = [\"5xx\"]";
    let f = Fulcrum::start("", &broken_pool(&[&x, &y], breaker, ""));
    for _ in 0..4 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 500);
    }
    for b in [&x, &y] {
        f.wait_backend("u", b.addr, "breaker", "open", Duration::from_secs(1))
            .await;
    }
    let (hits, accepts) = (x.hits() + y.hits(), x.accepts() + y.accepts());
    let open = async || {
        for _ in 0..10 {
            let r = get(f.addr, "h.test", "/").await;
            assert_eq!(r.status, 503, "{}", r.body);
            assert_eq!(
                r.headers.get("x-fulcrum-circuit").map(|v| v.as_bytes()),
                Some(&b"open"[..])
            );
            assert!(r.body.contains("circuit breaker open"), "{}", r.body);
        }
        assert_eq!(x.hits() + y.hits(), hits, "a request reached a backend");
        assert_eq!(
            x.accepts() + y.accepts(),
            accepts,
            "a connection was opened"
        );
    };
    open().await;
    // A reload (a new route, the pool untouched) keeps both breakers open.
    let other = "[[route]]\nhost = \"other.test\"\nupstream = \"u\"\n";
    f.apply(&broken_pool(&[&x, &y], breaker, other), 2).await;
    open().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_holds_under_fifty_parallel_clients() {
    let slow = Behaviour {
        delay: Duration::from_millis(500),
        ..Default::default()
    };
    let s = Backend::with("s", slow).await;
    let f = Fulcrum::start("", &weighted("u", &[(&s, 1)], "max_inflight = 5"));
    let addr = f.addr;
    let requests: Vec<_> = (0..50)
        .map(|_| tokio::spawn(async move { get(addr, "h.test", "/").await }))
        .collect();
    let (mut ok, mut overloaded) = (0, 0);
    for r in requests {
        let r = r.await.unwrap();
        match r.status {
            200 => ok += 1,
            503 => {
                assert_eq!(
                    r.headers.get("x-fulcrum-overloaded").map(|v| v.as_bytes()),
                    Some(&b"true"[..]),
                    "{}",
                    r.body
                );
                assert!(
                    r.body.contains("limit of 5 requests in flight"),
                    "{}",
                    r.body
                );
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    let peak = s.peak.load(Ordering::SeqCst);
    eprintln!("{ok} served, {overloaded} overloaded, at most {peak} at once on the backend");
    assert!(peak <= 5, "{peak} requests in flight at once");
    assert!(ok >= 5, "only {ok} served");
    assert_eq!(ok + overloaded, 50);
    assert_eq!(s.hits(), ok);
}
