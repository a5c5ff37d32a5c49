//! Hot reload through the real binary against real backends: edits under load, triggers, bad
//! edits, state that survives a reload, and the graceful upgrade hand-off.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// Route `/` to `pool` ("ua" or "ub"); `ua` is `a`, `ub` is `b`.
fn pools(pool: &str, a: &Backend, b: &Backend) -> String {
    format!(
        "[[route]]\nupstream = \"{pool}\"\n{}{}",
        upstream("ua", &[a.addr], ""),
        upstream("ub", &[b.addr], "")
    )
}

/// One client's statuses (or errors), and how many requests it retried after a keep-alive close.
type ClientResults = (Vec<Result<u16, String>>, usize);

/// Clients sending requests until stopped: half on fresh connections, half on kept-alive ones.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<ClientResults>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|i| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut conn = Conn::new(addr);
                    let mut results = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = if i % 2 == 0 {
                            Conn::new(addr).get("h.test", "/").await
                        } else {
                            conn.get("h.test", "/").await
                        };
                        results.push(r.map(|r| r.status));
                    }
                    (results, conn.retries)
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the clients; every result, in no particular order.
    async fn stop(self) -> Vec<Result<u16, String>> {
        self.stop_counting_retries().await.0
    }

    /// Stops the clients; every result, and how many requests a kept-alive client retried on
    /// a new connection because the server closed the old one as the request went out.
    async fn stop_counting_retries(self) -> ClientResults {
        self.stop.store(true, Ordering::Relaxed);
        let (mut all, mut retries) = (Vec::new(), 0);
        for t in self.tasks {
            let (results, r) = t.await.unwrap();
            all.extend(results);
            retries += r;
        }
        (all, retries)
    }
}

/// Asserts that every request succeeded, and that there were enough to prove something.
fn assert_all_ok(results: &[Result<u16, String>]) {
    let failed: Vec<_> = results.iter().filter(|r| *r != &Ok(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(results.len() > 100, "load ran: {} requests", results.len());
}

/// Requests until `backend` answers `/`; panics after `limit`.
async fn until_backend(addr: std::net::SocketAddr, backend: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let r = get(addr, "h.test", "/").await;
        assert_eq!(r.status, 200, "{}", r.body);
        if r.backend() == backend {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{backend} did not answer within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_edits_under_load_each_visible_within_a_second_and_no_request_fails() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start("", &pools("ua", &a, &b));
    let load = Load::start(f.addr, 4);
    let mut slowest = Duration::ZERO;
    for k in 1..=20 {
        let (pool, want) = if k % 2 == 1 { ("ub", "b") } else { ("ua", "a") };
        // Both ways editors save: rename a new file over the config, or write in place.
        if k % 4 < 2 {
            f.rewrite(&pools(pool, &a, &b));
        } else {
            f.write_in_place(&pools(pool, &a, &b));
        }
        let took = until_backend(f.addr, want, Duration::from_secs(1)).await;
        slowest = slowest.max(took);
    }
    let results = load.stop().await;
    assert_all_ok(&results);
    eprintln!(
        "20 edits, {} requests, slowest edit visible after {slowest:?}",
        results.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_streaming_across_a_reload_completes_intact_on_its_removed_backend() {
    let streaming = Behaviour {
        // 3 s of streaming: time enough for the reload to land before the body ends.
        stream: Some((30, Duration::from_millis(100))),
        ..Default::default()
    };
    let (s, b) = (
        Backend::with("s", streaming).await,
        Backend::start("b").await,
    );
    let f = Fulcrum::start("", &pools("ua", &s, &b));
    let addr = f.addr;
    let stream = tokio::spawn(async move { get(addr, "h.test", "/").await });
    wait_until("the stream started", Duration::from_secs(2), || {
        s.hits() == 1
    })
    .await;

    // The new config drops the streaming backend's upstream altogether. (Waited for through
    // `/status`, not by requests: one sent before the reload would stream for a second too.)
    let ub = format!(
        "[[route]]\nupstream = \"ub\"\n{}",
        upstream("ub", &[b.addr], "")
    );
    f.apply(&ub, 2).await;
    assert!(
        !stream.is_finished(),
        "the reload landed while the response was still streaming"
    );
    let r = stream.await.unwrap();
    assert_eq!((r.status, r.backend()), (200, "s"));
    let chunks: String = (0..30)
        .map(|i| String::from_utf8(stream_chunk(i).to_vec()).unwrap())
        .collect();
    assert!(
        r.body.ends_with(&chunks),
        "body cut or garbled: {} bytes",
        r.body.len()
    );
    for _ in 0..5 {
        assert_eq!(get(f.addr, "h.test", "/").await.backend(), "b");
    }
    assert_eq!(s.hits(), 1, "a removed backend gets no new request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_edits_leave_the_old_routing_serving_and_post_reload_names_each_problem() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start("", &pools("ua", &a, &b));
    let path = f.config_path().display().to_string();

    // An empty file, a syntax error, a route to a missing upstream, a listener change.
    let missing = pools("nope", &a, &b);
    let moved = f.server.replacen(
        &format!("127.0.0.1:{}", f.addr.port()),
        &format!("127.0.0.1:{}", free_port()),
        1,
    ) + &pools("ua", &a, &b);
    let cases: [(String, String); 4] = [
        (
            // An emptied file: what a truncating writer leaves for a moment.
            String::new(),
            format!("{path}: route: no [[route]]: every request would get 404"),
        ),
        (
            format!("{}[[route]\nupstream = \"ub\"\n", f.server),
            format!("{path}:7:9: invalid TOML: unclosed array table, expected `]`"),
        ),
        (
            format!("{}{missing}", f.server),
            format!("{path}:8:12: route[0].upstream: upstream \"nope\" is not defined; defined upstreams: ua, ub"),
        ),
        (
            moved,
            format!("{path}:2:10: server.listen: server.listen changed: restart, or run a graceful upgrade, to apply"),
        ),
    ];
    for (text, problem) in cases {
        f.replace(&text);
        let r = f.admin_post("/reload").await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body.contains(&problem),
            "want {problem:?} in:\n{}",
            r.body
        );
        for _ in 0..3 {
            let r = get(f.addr, "h.test", "/").await;
            assert_eq!((r.status, r.backend()), (200, "a"));
        }
        assert_eq!(
            f.metric("fulcrum_config_last_reload_success").await,
            Some(0.0)
        );
    }
    // The listener change is not applied (the old port still serves), the next valid edit is.
    f.rewrite(&pools("ub", &a, &b));
    let r = f.admin_post("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with(&format!("reloaded {path} (generation ")));
    assert_eq!(get(f.addr, "h.test", "/").await.backend(), "b");
    assert_eq!(
        f.metric("fulcrum_config_last_reload_success").await,
        Some(1.0)
    );
    let failures = f
        .metric("fulcrum_config_reloads_total{result=\"failure\"}")
        .await
        .unwrap();
    assert!(failures >= 3.0, "{failures} failures counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_post_reload_and_a_rename_each_reload_and_a_broken_file_never_kills() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start_logging("info", "", &pools("ua", &a, &b));

    let before = f.status().await;
    f.signal("-HUP");
    f.wait_for_log(&["reload requested by SIGHUP"], Duration::from_secs(2))
        .await;
    f.wait_generation(&before, 2).await;
    // Logged before the load is recorded.
    assert!(f.log().contains("(generation 2)"), "{}", f.log());

    let r = f.admin_post("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("(generation 3)"), "{}", r.body);
    f.wait_for_log(
        &["reload requested by POST /reload"],
        Duration::from_secs(1),
    )
    .await;

    f.rewrite(&pools("ub", &a, &b));
    until_backend(f.addr, "b", Duration::from_secs(1)).await;
    f.wait_for_log(&["config file changed; reloading"], Duration::from_secs(1))
        .await;

    // A broken file, then SIGHUP: logged, rejected, still serving the last good config.
    f.write_in_place("[[route]\n");
    f.wait_for_log(&["config reload rejected"], Duration::from_secs(2))
        .await;
    f.signal("-HUP");
    f.wait_for_log_count(&["reload requested by SIGHUP"], 2, Duration::from_secs(2))
        .await;
    f.wait_for_log_count(&["config reload rejected"], 2, Duration::from_secs(2))
        .await;
    let mut f = f;
    assert!(f.child.try_wait().unwrap().is_none(), "fulcrum exited");
    for _ in 0..5 {
        let r = get(f.addr, "h.test", "/").await;
        assert_eq!((r.status, r.backend()), (200, "b"));
    }
}

const CHECK: &str = "[upstream.u.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"200ms\"\njitter = \"0%\"\nhealthy_threshold = 2\nunhealthy_threshold = 3\n";

/// Route `/` to upstream `u` over `(backend, weight)`, with `tables` appended.
fn pool(backends: &[(&Backend, u32)], upstream_extra: &str, tables: &str) -> String {
    weighted("u", backends, upstream_extra) + tables
}

fn count(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_survives_a_weight_only_reload_without_flapping() {
    let sick = Behaviour {
        health_status: 500,
        ..Default::default()
    };
    let (a, d) = (Backend::start("a").await, Backend::with("d", sick).await);
    let f = Fulcrum::start_logging("info", "", &pool(&[(&a, 1), (&d, 1)], "", CHECK));
    let daddr = d.addr.to_string();
    f.wait_backend("u", d.addr, "health", "unhealthy", Duration::from_secs(1))
        .await;

    f.apply(&pool(&[(&a, 2), (&d, 3)], "", CHECK), 2).await;
    // Probing goes on after the reload: five more checks of d.
    let checks = d.health_checks();
    wait_until("d probed again", Duration::from_secs(3), || {
        d.health_checks() >= checks + 5
    })
    .await;
    for _ in 0..20 {
        assert_eq!(get(f.addr, "h.test", "/").await.backend(), "a");
    }
    assert_eq!(d.hits(), 0);
    let log = f.log();
    let aaddr = a.addr.to_string();
    assert_eq!(count(&log, &["backend unhealthy", &daddr]), 1, "{log}");
    assert_eq!(count(&log, &["backend healthy", &daddr]), 0, "{log}");
    assert_eq!(count(&log, &["backend healthy", &aaddr]), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_by_a_reload_gets_traffic_only_after_a_passing_probe() {
    let sick = Behaviour {
        health_status: 500,
        ..Default::default()
    };
    let (a, n, s) = (
        Backend::start("a").await,
        Backend::start("n").await,
        Backend::with("s", sick).await,
    );
    let f = Fulcrum::start("", &pool(&[(&a, 1)], "", CHECK));
    let load = Load::start(f.addr, 2);
    wait_until("load running", Duration::from_secs(2), || a.hits() > 10).await;

    f.rewrite(&pool(&[(&a, 1), (&n, 1), (&s, 1)], "", CHECK));
    wait_until("n got traffic", Duration::from_secs(3), || n.hits() > 0).await;
    f.wait_backend("u", s.addr, "health", "unhealthy", Duration::from_secs(1))
        .await;
    // More traffic after s was found unhealthy: none of it may reach s.
    let served = a.hits() + n.hits();
    wait_until("traffic after the probe", Duration::from_secs(2), || {
        a.hits() + n.hits() > served + 50
    })
    .await;
    let results = load.stop().await;

    let paths = n.paths.lock().unwrap().clone();
    assert_eq!(paths[0], "/healthz", "traffic before a probe: {paths:?}");
    assert_eq!(
        s.hits(),
        0,
        "a backend that failed its first probe got traffic"
    );
    assert!(s.health_checks() >= 1);
    assert!(results.iter().all(|r| r == &Ok(200)), "a request failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejection_survives_a_reload_and_ends_on_schedule() {
    let bad = Backend::with(
        "bad",
        Behaviour {
            status: 503,
            ..Default::default()
        },
    )
    .await;
    let (b, c) = (Backend::start("b").await, Backend::start("c").await);
    // Ejected for 3 s: longer than the reload and the requests below can take.
    let outlier = "[upstream.u.outlier]\nconsecutive_failures = 3\nbase_ejection = \"3s\"\n";
    let backends = [(&bad, 1), (&b, 1), (&c, 1)];
    let f = Fulcrum::start("", &pool(&backends, "", outlier));
    for _ in 0..9 {
        get(f.addr, "h.test", "/").await;
    }
    assert_eq!(bad.hits(), 3);
    f.wait_backend("u", bad.addr, "ejected", true, Duration::from_secs(1))
        .await;

    // A reload that changes the upstream (but not the backend) keeps the ejection...
    f.apply(&pool(&backends, "connect_timeout = \"2s\"", outlier), 2)
        .await;
    for _ in 0..12 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!(bad.hits(), 3, "no traffic while ejected");
    // ... and the readmission scheduled under the old config still happens.
    expect_readmission(&f, &bad, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_keeps_in_flight_counts_across_a_reload() {
    // Held for 4 s: longer than the reload and the requests below can take.
    let slow = Behaviour {
        delay: Duration::from_secs(4),
        ..Default::default()
    };
    let (s, fast) = (Backend::with("s", slow).await, Backend::start("f").await);
    let lc = "balance = \"least_connections\"";
    let f = Fulcrum::start("", &pool(&[(&s, 1), (&fast, 1)], lc, ""));
    // Concurrent requests: some stay in flight on the slow backend.
    let addr = f.addr;
    let held: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { get(addr, "h.test", "/").await }))
        .collect();
    wait_until("all dispatched", Duration::from_secs(2), || {
        s.hits() + fast.hits() == 8
    })
    .await;
    let on_slow = s.hits();
    assert!(on_slow >= 1);

    let changed = format!("{lc}\nconnect_timeout = \"2s\"");
    f.apply(&pool(&[(&s, 1), (&fast, 1)], &changed, ""), 2)
        .await;
    // The new balancer knows the slow backend is busy: one request at a time goes to the other.
    for _ in 0..10 {
        assert_eq!(get(f.addr, "h.test", "/").await.backend(), "f");
    }
    assert_eq!(s.hits(), on_slow, "the slow backend's load was forgotten");

    // Once those requests end, the slow backend is free again in the new balancer.
    for h in held {
        assert_eq!(h.await.unwrap().status, 200);
    }
    let mut backends = Vec::new();
    for _ in 0..4 {
        backends.push(get(f.addr, "h.test", "/").await.backend().to_owned());
    }
    assert!(
        backends.iter().any(|b| b == "s"),
        "the slow backend stayed busy after its requests ended: {backends:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_hands_the_listeners_over_with_no_refused_connection() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut old = Fulcrum::start_logging("info", "", &pools("ua", &a, &b));
    let load = Load::start(old.addr, 4);
    let mut new = old.start_upgrade("info");
    let sock = old.upgrade_sock();
    wait_until(
        "the new process waits for the sockets",
        Duration::from_secs(10),
        || sock.exists(),
    )
    .await;
    old.signal("-QUIT");
    let status = old
        .wait_exit(Duration::from_secs(15))
        .expect("old process exited");
    assert!(status.success(), "old process: {status}");
    // The new process alone serves the load for a while.
    let served = a.hits();
    wait_until("the new process serves", Duration::from_secs(5), || {
        a.hits() >= served + 200
    })
    .await;
    let (results, retries) = load.stop_counting_retries().await;
    let r = get(old.addr, "h.test", "/").await;
    assert_eq!(r.status, 200);
    assert_all_ok(&results);
    // The old process closes its idle kept-alive connections when it stops; a request that
    // crossed that close went again on a new connection, as HTTP clients do.
    eprintln!(
        "{} requests through the hand-off, {retries} retried after a keep-alive close",
        results.len()
    );
    let log = std::fs::read_to_string(old.dir.path().join("upgrade.log")).unwrap();
    assert!(log.contains("fulcrum serving"), "{log}");
    // One line per side in fulcrum's words, and no ERROR on either (pingora logged one every
    // second the new process waited for the sockets).
    assert!(
        log.contains("took over 2 listeners from the running fulcrum"),
        "{log}"
    );
    let old_log = old.log();
    assert!(
        old_log.contains("handed 2 listeners to the new process; draining for at most"),
        "{old_log}"
    );
    for (side, text) in [("new", &log), ("old", &old_log)] {
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(
            errors.is_empty(),
            "{side} process logged errors: {errors:#?}"
        );
    }
    assert!(
        new.try_wait().unwrap().is_none(),
        "new process exited:\n{log}"
    );
    new.kill().unwrap();
    new.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_with_no_new_process_waiting_keeps_serving() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut f = Fulcrum::start_logging("info", "", &pools("ua", &a, &b));
    assert!(!f.upgrade_sock().exists());
    f.signal("-QUIT");
    f.wait_for_log(
        &[
            "ERROR",
            "SIGQUIT: no new process waits for the listeners",
            "still serving",
        ],
        Duration::from_secs(5),
    )
    .await;
    // Before, the old process said it handed the listeners over, then stopped accepting and
    // exited: nobody listened. Now it stays, and a later SIGTERM drains it as usual.
    assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    assert!(f.child.try_wait().unwrap().is_none(), "{}", f.log());
    f.signal("-TERM");
    let status = f.wait_exit(Duration::from_secs(15)).expect("exited");
    assert!(status.success(), "{status}");
    assert!(!f.log().contains("handed"), "{}", f.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_can_add_a_listener() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut old = Fulcrum::start_logging("info", "", &pools("ua", &a, &b));
    // The new config listens on the old address and on a new one.
    let added: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let text = std::fs::read_to_string(old.config_path()).unwrap();
    let listen = format!("listen = [\"{}\"]", old.addr);
    assert!(text.contains(&listen), "{text}");
    let text = text.replace(
        &listen,
        &format!("listen = [\"{}\", \"{added}\"]", old.addr),
    );
    let mut new = old.start_upgrade_to(&text, "info");
    let sock = old.upgrade_sock();
    wait_until(
        "the new process waits for the sockets",
        Duration::from_secs(10),
        || sock.exists(),
    )
    .await;
    old.signal("-QUIT");
    let status = old
        .wait_exit(Duration::from_secs(15))
        .expect("old process exited");
    assert!(status.success(), "old process: {status}");
    for addr in [old.addr, added] {
        let r = get(addr, "h.test", "/").await;
        assert_eq!(r.status, 200, "{addr}");
    }
    let log = std::fs::read_to_string(old.dir.path().join("upgrade.log")).unwrap();
    assert!(
        new.try_wait().unwrap().is_none(),
        "new process exited:\n{log}"
    );
    new.kill().unwrap();
    new.wait().unwrap();
}

/// Route `/` to `pool` ("ua" or "ub", the other one unused: a warning at every load) and
/// `/hung/` to a backend whose first health probe takes 2 s, so that fulcrum stays in its
/// startup for 2 s after logging the warning.
fn slow_start(pool: &str, a: &Backend, b: &Backend, hung: &Backend) -> String {
    let check = "[upstream.uh.health_check]\npath = \"/healthz\"\ntimeout = \"2s\"\n";
    format!(
        "{}[[route]]\npath = \"/hung/\"\nupstream = \"uh\"\n{}",
        pools(pool, a, b),
        upstream("uh", &[hung.addr], check)
    )
}

/// Starts fulcrum on [`slow_start`] routing to `ua`, waits until it has read its config, and
/// rewrites it to route to `ub` while fulcrum is still starting.
async fn edited_while_starting(a: &Backend, b: &Backend, hung: &Backend) -> Fulcrum {
    let f = Fulcrum::launch("127.0.0.1", "info", "", &slow_start("ua", a, b, hung));
    f.wait_for_log(&["\"ub\" is not used by any route"], Duration::from_secs(5))
        .await;
    f.rewrite(&slow_start("ub", a, b, hung));
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_while_starting_is_applied_once_serving() {
    let (a, b, hung) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::hung("hung").await,
    );
    let mut f = edited_while_starting(&a, &b, &hung).await;
    assert!(
        std::net::TcpStream::connect(f.addr).is_err(),
        "edited after startup"
    );
    f.wait_ready(Duration::from_secs(10)).unwrap();
    until_backend(f.addr, "b", Duration::from_secs(2)).await;
    f.wait_for_log(&["config file changed; reloading"], Duration::from_secs(1))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_sent_while_starting_reloads_once_serving() {
    let (a, b, hung) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::hung("hung").await,
    );
    let mut f = edited_while_starting(&a, &b, &hung).await;
    f.wait_sighup_handled(Duration::from_secs(1));
    f.signal("-HUP");
    assert!(
        std::net::TcpStream::connect(f.addr).is_err(),
        "signalled after startup"
    );
    f.wait_ready(Duration::from_secs(10)).unwrap();
    until_backend(f.addr, "b", Duration::from_secs(2)).await;
    f.wait_for_log(&["reload requested by SIGHUP"], Duration::from_secs(1))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_health_check_under_load_probes_before_publishing() {
    // Probes take 300 ms to answer: a config published before its probes came back would find
    // no backend in service for that long.
    let slow_probes = Behaviour {
        health_delay: Duration::from_millis(300),
        ..Default::default()
    };
    let (a, b) = (
        Backend::with("a", slow_probes.clone()).await,
        Backend::with("b", slow_probes).await,
    );
    let f = Fulcrum::start("", &pool(&[(&a, 1), (&b, 1)], "", ""));
    let load = Load::start(f.addr, 4);
    wait_until("load running", Duration::from_secs(2), || a.hits() > 20).await;
    // Every backend is unknown to the new check: without the probe round before the store, the
    // new config would find none in service and answer 503 until the first probes came back.
    let check =
        "[upstream.u.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\ntimeout = \"1s\"\n";
    f.apply(&pool(&[(&a, 1), (&b, 1)], "", check), 2).await;
    let served = a.hits() + b.hits();
    wait_until("traffic after the reload", Duration::from_secs(2), || {
        a.hits() + b.hits() > served + 100
    })
    .await;
    assert_all_ok(&load.stop().await);
}

/// `POST /reload`, which must answer within 10 s (a reload stuck on a read never does).
async fn reload_within(f: &Fulcrum) -> Resp {
    tokio::time::timeout(Duration::from_secs(10), f.admin_post("/reload"))
        .await
        .expect("POST /reload answered within 10 s")
}

/// The refused file left `a`'s config serving; a good file (to `b`) then reloads.
async fn still_serves_then_reloads_a_good_file(f: &Fulcrum, a: &Backend, b: &Backend) {
    still_serves(f, "a").await;
    f.rewrite(&pools("ub", a, b));
    let r = reload_within(f).await;
    assert_eq!(r.status, 200, "{}", r.body);
    still_serves(f, "b").await;
}

/// Three requests, each answered by `backend`.
async fn still_serves(f: &Fulcrum, backend: &str) {
    for _ in 0..3 {
        let r = get(f.addr, "h.test", "/").await;
        assert_eq!((r.status, r.backend()), (200, backend));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_path_linked_to_dev_zero_is_refused_and_a_later_good_file_reloads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start("", &pools("ua", &a, &b));
    let path = f.config_path().display().to_string();
    f.link_to(std::path::Path::new("/dev/zero"));
    let r = reload_within(&f).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let want =
        format!("{path}: cannot read config file: it is a character device, not a regular file");
    assert!(r.body.contains(&want), "want {want:?} in:\n{}", r.body);
    still_serves_then_reloads_a_good_file(&f, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_path_linked_to_a_fifo_never_blocks_a_reload_and_a_later_good_file_reloads() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start_logging("info", "", &pools("ua", &a, &b));
    let path = f.config_path().display().to_string();
    // Nobody ever writes to it: a plain read of it blocks forever.
    let fifo = f.dir.path().join("fifo");
    mkfifo(&fifo);
    f.link_to(&fifo);
    let want =
        format!("{path}: cannot read config file: it is a FIFO (named pipe), not a regular file");
    // The edit itself (the watcher), POST /reload and SIGHUP: each is answered, none waits.
    f.wait_for_log(&["config reload rejected"], Duration::from_secs(10))
        .await;
    for _ in 0..2 {
        let r = reload_within(&f).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains(&want), "want {want:?} in:\n{}", r.body);
    }
    let rejected = count(&f.log(), &["config reload rejected"]);
    f.signal("-HUP");
    f.wait_for_log_count(
        &["config reload rejected"],
        rejected + 1,
        Duration::from_secs(10),
    )
    .await;
    still_serves_then_reloads_a_good_file(&f, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_max_config_size_is_refused_naming_the_limit() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start("max_config_size = \"2KiB\"", &pools("ua", &a, &b));
    let path = f.config_path().display().to_string();
    // A valid file but for its size: 3 000 bytes, a comment padding it.
    let body = pools("ub", &a, &b) + "#";
    let pad = 3000 - f.server.len() - body.len() - 1;
    f.rewrite(&format!("{body}{}\n", "x".repeat(pad)));
    let r = reload_within(&f).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let want = format!("{path}: server.max_config_size: cannot read config file: it is larger than 2 KiB; the limit is server.max_config_size of the config running now");
    assert!(r.body.contains(&want), "want {want:?} in:\n{}", r.body);
    still_serves_then_reloads_a_good_file(&f, &a, &b).await;
}
