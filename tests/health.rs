//! Health checking through the real binary against real backends: active checks, passive
//! ejection, all-down and panic behaviour.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// One client sending requests one after another until stopped (so at most one is in flight).
struct SteadyLoad {
    stop: Arc<AtomicBool>,
    /// Requests completed so far.
    done: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<u16>>,
}

impl SteadyLoad {
    fn start(addr: std::net::SocketAddr) -> SteadyLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                statuses.push(get(addr, "h.test", "/").await.status);
                count.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        });
        SteadyLoad { stop, done, task }
    }

    /// Waits until `n` more requests have completed.
    async fn run_for(&self, n: usize) {
        let target = self.done.load(Ordering::Relaxed) + n;
        wait_until("requests completed", Duration::from_secs(10), || {
            self.done.load(Ordering::Relaxed) >= target
        })
        .await;
    }

    async fn stop(self) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_leaves_without_client_errors_and_rejoins_after_healthy_threshold() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    // Connect failures are logged per attempt at debug.
    let f = Fulcrum::start_logging(
        "info,fulcrum::proxy=debug",
        "",
        &config(&[&a, &b, &c], "", CHECK),
    );
    let baddr = b.addr.to_string();
    let load = SteadyLoad::start(f.addr);
    wait_until("b served", Duration::from_secs(2), || b.hits() > 0).await;

    // The request in flight when b dies may get a 502: it reached b, and fulcrum retries
    // only what never reached a backend (a GET is not re-sent after a connection breaks).
    let in_flight_at_kill = load.done.load(Ordering::Relaxed);
    b.stop().await;
    let done_at_kill = load.done.load(Ordering::Relaxed);
    f.wait_for_log(
        &["backend unhealthy", &baddr, "connection refused"],
        Duration::from_secs(5),
    )
    .await;
    // Keep the load on after the transition: nothing may pick b any more.
    load.run_for(50).await;
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
    // One client, one request at a time: only the request in flight at the transition may
    // still have picked b.
    let after = lines_after(&log, &["backend unhealthy", &baddr]);
    let tried = after
        .iter()
        .filter(|l| l.contains("connect to backend failed") && l.contains(&baddr))
        .count();
    assert!(
        tried <= 1,
        "b was still tried {tried} times after it was marked unhealthy:\n{log}"
    );

    // Bring it back on the same port: it rejoins after 2 passing checks, not before.
    let b2 = Backend::on(b.addr, "b2", Behaviour::default()).await;
    f.wait_for_log(
        &["backend healthy", &baddr, "2 checks passed in a row"],
        Duration::from_secs(5),
    )
    .await;
    wait_until("b rejoined", Duration::from_secs(5), || b2.hits() > 0).await;
    let statuses = load.stop().await;

    let paths = b2.paths.lock().unwrap().clone();
    let first_traffic = paths.iter().position(|p| p != "/healthz").unwrap();
    assert!(
        first_traffic >= 2,
        "traffic before 2 checks passed: {paths:?}"
    );
    // Any other request that failed was one the proxy could have retried or routed elsewhere.
    let errors: Vec<(usize, u16)> = statuses
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, s)| s != 200)
        .collect();
    let cut_by_the_kill = |i: usize| (in_flight_at_kill..=done_at_kill).contains(&i);
    assert!(
        errors.len() <= 1 && errors.iter().all(|&(i, _)| cut_by_the_kill(i)),
        "client saw errors (request index, status) {errors:?} in {} requests; only request {in_flight_at_kill}..={done_at_kill}, in flight at the kill, may fail",
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

    // Each probe of the hung backend takes 300 ms (its timeout) and the next starts 100 ms
    // later; a is probed every 100 ms regardless. Checked in sequence, a would get one check
    // per probe of the hung backend; in parallel it gets several.
    let (a0, hung0) = (a.health_checks(), hung.hits());
    wait_until("a checked 8 times", Duration::from_secs(5), || {
        a.health_checks() >= a0 + 8
    })
    .await;
    let hung_probes = hung.hits() - hung0;
    assert!(
        hung_probes <= 4,
        "{hung_probes} probes of the hung backend while a was checked 8 times: checks ran in sequence"
    );
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
    expect_readmission(&f, &bad, 3).await;
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
    let outlier = "[upstream.u.outlier]\nconsecutive_failures = 2\nbase_ejection = \"30s\"\nmax_ejected_percent = 50\nfailure_status = [\"5xx\"]\n";
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

    let f = Fulcrum::start_logging(
        "info,fulcrum::proxy=debug",
        "",
        &config(&[&a, &b], "", CHECK),
    );
    let r = get(f.addr, "h.test", "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "no healthy backend in upstream u\n");
    // Fast because nothing was tried: no request reached a backend, no connection was made.
    assert_eq!(a.hits() + b.hits(), 0);
    assert!(
        !f.log().contains("connect to backend failed"),
        "{}",
        f.log()
    );
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
