//! Health checking through the real binary against real backends: active checks, passive
//! ejection, all-down and panic behaviour.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

const CHECK: &str = r#"
[upstream.u.health_check]
kind = "http"
path = "/healthz"
interval = "100ms"
timeout = "200ms"
jitter = "0%"
healthy_threshold = 2
unhealthy_threshold = 3
"#;

fn config(backends: &[&Backend], upstream_extra: &str, tables: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    format!(
        "[[route]]\nupstream = \"u\"\nretries = 2\n[upstream.u]\nbackends = [{}]\nconnect_timeout = \"200ms\"\n{upstream_extra}\n{tables}",
        list.join(", ")
    )
}

/// Lines of `log` after the first one containing all of `parts`.
fn lines_after<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    let lines: Vec<&str> = log.lines().collect();
    let at = lines
        .iter()
        .position(|l| parts.iter().all(|p| l.contains(p)))
        .expect("marker line");
    lines[at + 1..].to_vec()
}

/// Seconds since midnight of a log line's timestamp ("2026-11-21T14:20:16.234516Z ...").
fn seconds(line: &str) -> Option<f64> {
    let time = line
        .split_whitespace()
        .next()?
        .split('T')
        .nth(1)?
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let (h, m, s) = (
        parts.next()?.parse::<f64>().ok()?,
        parts.next()?.parse::<f64>().ok()?,
        parts.next()?.parse::<f64>().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Sends requests one after another until stopped; collects every status.
fn steady_load(addr: std::net::SocketAddr) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<u16>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut statuses = Vec::new();
        while !flag.load(Ordering::Relaxed) {
            statuses.push(get(addr, "h.test", "/").await.status);
        }
        statuses
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_leaves_without_client_errors_and_rejoins_after_healthy_threshold() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let f = Fulcrum::start_logging("info", "", &config(&[&a, &b, &c], "", CHECK));
    let baddr = b.addr.to_string();
    let (stop, load) = steady_load(f.addr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.hits() > 0, "b served before it was killed");

    b.stop().await;
    f.wait_for_log(
        &["backend unhealthy", &baddr, "connection refused"],
        Duration::from_secs(5),
    )
    .await;
    // Keep the load on after the transition: nothing may try b any more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = f.log();
    let before: Vec<&str> = log
        .lines()
        .take_while(|l| !(l.contains("backend unhealthy") && l.contains(&baddr)))
        .collect();
    let retried = before
        .iter()
        .filter(|l| l.contains("connect to backend failed") && l.contains(&baddr))
        .count();
    assert!(
        retried > 0,
        "the load never hit the dead backend before detection; the test proves nothing"
    );
    // A request that picked b just before the transition may fail just after it; allow 200 ms
    // for those, then nothing may pick b.
    let marked = log
        .lines()
        .find(|l| l.contains("backend unhealthy") && l.contains(&baddr))
        .and_then(seconds)
        .unwrap();
    let after = lines_after(&log, &["backend unhealthy", &baddr]);
    let tried = after
        .iter()
        .filter(|l| l.contains("connect to backend failed") && l.contains(&baddr))
        .filter(|l| seconds(l).is_some_and(|t| t > marked + 0.2))
        .count();
    assert_eq!(
        tried, 0,
        "b was still tried after it was marked unhealthy:\n{log}"
    );

    // Bring it back on the same port: it rejoins after 2 passing checks, not before.
    let b2 = Backend::on(b.addr, "b2", Behaviour::default()).await;
    f.wait_for_log(
        &["backend healthy", &baddr, "2 checks passed in a row"],
        Duration::from_secs(5),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b2.hits() == 0 {
        assert!(std::time::Instant::now() < deadline, "b did not rejoin");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let statuses = load.await.unwrap();

    let paths = b2.paths.lock().unwrap().clone();
    let first_traffic = paths.iter().position(|p| p != "/healthz").unwrap();
    assert!(
        first_traffic >= 2,
        "traffic before 2 checks passed: {paths:?}"
    );
    let errors = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(
        errors,
        0,
        "client saw {errors} errors in {} requests",
        statuses.len()
    );
    assert!(statuses.len() > 50, "load ran: {} requests", statuses.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_takes_out_a_failing_healthz_and_tcp_check_ignores_status() {
    let a = Backend::start("a").await;
    let sick = Backend::with(
        "sick",
        Behaviour {
            health_status: 500,
            ..Default::default()
        },
    )
    .await;

    // Probed before the listeners open: the sick backend never gets a request.
    let f = Fulcrum::start_logging("info", "", &config(&[&a, &sick], "", CHECK));
    for _ in 0..30 {
        let r = get(f.addr, "h.test", "/").await;
        assert_eq!((r.status, r.backend()), (200, "a"));
    }
    assert_eq!(sick.hits(), 0);
    f.wait_for_log(
        &[
            "backend unhealthy",
            &sick.addr.to_string(),
            "status 500 (expected 2xx)",
        ],
        Duration::from_secs(1),
    )
    .await;
    drop(f);

    let tcp =
        "[upstream.u.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"200ms\"\n";
    let f = Fulcrum::start("", &config(&[&a, &sick], "", tcp));
    for _ in 0..30 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!(sick.hits(), 15, "a tcp check only needs the port open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_is_taken_out_by_the_timeout_without_slowing_other_checks() {
    let a = Backend::start("a").await;
    let hung = Backend::hung("hung").await;
    let check = CHECK.replace("timeout = \"200ms\"", "timeout = \"300ms\"");
    let f = Fulcrum::start_logging("info", "", &config(&[&a, &hung], "", &check));
    f.wait_for_log(
        &[
            "backend unhealthy",
            &hung.addr.to_string(),
            "timed out after 300ms",
        ],
        Duration::from_secs(2),
    )
    .await;

    // a is checked every 100 ms even though each probe of the hung backend takes 300 ms:
    // checks run in parallel (in sequence, a would get at most one per 400 ms).
    let before = a.health_checks();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let checks = a.health_checks() - before;
    assert!(checks >= 7, "a was checked {checks} times in 1 s");
    for _ in 0..10 {
        assert_eq!(get(f.addr, "h.test", "/").await.backend(), "a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_after_consecutive_5xx_then_readmission() {
    let bad = Backend::with(
        "bad",
        Behaviour {
            status: 503,
            ..Default::default()
        },
    )
    .await;
    let (b, c) = (Backend::start("b").await, Backend::start("c").await);
    let outlier = "[upstream.u.outlier]\nconsecutive_failures = 3\nbase_ejection = \"1s\"\nmax_ejection = \"10s\"\n";
    let f = Fulcrum::start_logging("info", "", &config(&[&bad, &b, &c], "", outlier));
    let badaddr = bad.addr.to_string();

    // Round-robin: bad answers requests 1, 4 and 7 with 503, then it is ejected.
    let mut statuses = Vec::new();
    for _ in 0..9 {
        statuses.push(get(f.addr, "h.test", "/").await.status);
    }
    assert_eq!(bad.hits(), 3);
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 3);
    f.wait_for_log(
        &["backend ejected", &badaddr, "3 consecutive failures"],
        Duration::from_secs(1),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!(bad.hits(), 3, "no traffic while ejected");

    // After base_ejection it is readmitted and gets traffic again (and fails again).
    f.wait_for_log(&["backend readmitted", &badaddr], Duration::from_secs(3))
        .await;
    for _ in 0..6 {
        get(f.addr, "h.test", "/").await;
    }
    assert!(bad.hits() > 3, "readmitted backend got no traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejected_percent_holds() {
    let (x, y) = (
        Backend::with(
            "x",
            Behaviour {
                status: 500,
                ..Default::default()
            },
        )
        .await,
        Backend::with(
            "y",
            Behaviour {
                status: 500,
                ..Default::default()
            },
        )
        .await,
    );
    let outlier = "[upstream.u.outlier]\nconsecutive_failures = 2\nbase_ejection = \"30s\"\nmax_ejected_percent = 50\n";
    let f = Fulcrum::start_logging("info", "", &config(&[&x, &y], "", outlier));
    for _ in 0..20 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 500);
    }
    // Round-robin: x fails requests 1 and 3 and is ejected; y fails 2 and 4, but ejecting it
    // too would take out 100 % of the pool, so it stays and serves everything after.
    let log = f.log();
    let ejected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("backend ejected"))
        .collect();
    assert_eq!(ejected.len(), 1, "{log}");
    assert!(ejected[0].contains(&x.addr.to_string()), "{log}");
    assert_eq!((x.hits(), y.hits()), (2, 18));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_down_is_a_fast_503_unless_panic_mode_is_on() {
    let sick = Behaviour {
        health_status: 500,
        ..Default::default()
    };
    let (a, b) = (
        Backend::with("a", sick.clone()).await,
        Backend::with("b", sick).await,
    );

    let f = Fulcrum::start("", &config(&[&a, &b], "", CHECK));
    let started = std::time::Instant::now();
    let r = get(f.addr, "h.test", "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "no healthy backend in upstream u\n");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(a.hits() + b.hits(), 0);
    drop(f);

    let f = Fulcrum::start_logging(
        "info",
        "",
        &config(&[&a, &b], "panic_threshold = 50", CHECK),
    );
    for _ in 0..10 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!(a.hits() + b.hits(), 10);
    f.wait_for_log(&["panic mode"], Duration::from_secs(1))
        .await;
}
