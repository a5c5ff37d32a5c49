//! Defaults that never surprise an operator (issue 21, "Defaults that bite" 1–3), through the
//! real binary against real backends: weights are honoured by the default strategy, an
//! application's 500s do not count against a backend, and a dead backend leaves rotation without
//! a health check.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Route everything to upstream `u` over `addrs`, with `extra` in `[upstream.u]` and `tables`
/// after it.
fn pool(addrs: &[SocketAddr], extra: &str, tables: &str) -> String {
    format!(
        "[[route]]\nupstream = \"u\"\n{}{tables}",
        upstream("u", addrs, extra)
    )
}

/// `/status`'s entry for backend `addr` of upstream `u`.
async fn status_of(f: &Fulcrum, addr: SocketAddr) -> Value {
    f.backend_status("u", addr).await
}

/// Connect errors to backend `addr` so far.
async fn connect_errors(f: &Fulcrum, addr: SocketAddr) -> f64 {
    let m = f.metrics().await;
    let backend = addr.to_string();
    sum_of(
        &m,
        "fulcrum_upstream_connect_errors_total",
        &[("backend", &backend)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_round_robin_honours_weights() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start("", &weighted("u", &[(&a, 5), (&b, 1)], ""));
    for _ in 0..60 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!((a.hits(), b.hits()), (50, 10));
    let s = status_of(&f, a.addr).await;
    assert_eq!(s["weight"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_500s_do_not_open_the_breaker() {
    let app = Backend::start("app").await;
    let breaker =
        "[upstream.u.circuit_breaker]\nconsecutive_failures = 3\nopen_duration = \"60s\"\n";
    let f = Fulcrum::start("", &pool(&[app.addr], "", breaker));
    for _ in 0..9 {
        assert_eq!(get(f.addr, "h.test", "/status/500").await.status, 500);
    }
    let home = get(f.addr, "h.test", "/home").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert_eq!(status_of(&f, app.addr).await["breaker"], "closed");

    // A gateway failure (502, 503, 504) does count by default.
    for _ in 0..3 {
        assert_eq!(get(f.addr, "h.test", "/status/502").await.status, 502);
    }
    assert_eq!(get(f.addr, "h.test", "/home").await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_status_chooses_what_counts() {
    let app = Backend::start("app").await;
    let breaker =
        "[upstream.u.circuit_breaker]\nconsecutive_failures = 3\nopen_duration = \"60s\"\n\
                   failure_status = [\"5xx\"]\n";
    let f = Fulcrum::start("", &pool(&[app.addr], "", breaker));
    for _ in 0..3 {
        assert_eq!(get(f.addr, "h.test", "/status/500").await.status, 500);
    }
    let home = get(f.addr, "h.test", "/home").await;
    assert_eq!(home.status, 503, "{}", home.body);
    f.wait_backend("u", app.addr, "breaker", "open", Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_ejected_without_a_health_check_and_stays_out_across_a_reload() {
    let good = Backend::start("good").await;
    let dead = dead_addr();
    let f = Fulcrum::start_logging("info", "", &pool(&[dead, good.addr], "", ""));
    // Every request succeeds (a failed connect is retried on the good backend) until the dead
    // one has failed DEFAULT consecutive_failures (5) times in a row and is ejected.
    for _ in 0..20 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
        if status_of(&f, dead).await["ejected"] == true {
            break;
        }
    }
    let s = status_of(&f, dead).await;
    assert_eq!(
        (&s["ejected"], &s["in_service"]),
        (&true.into(), &false.into()),
        "{s}"
    );
    assert_eq!(s["health"], "ejected");
    assert_eq!(connect_errors(&f, dead).await, 5.0);
    f.wait_for_log(
        &[
            "backend ejected",
            &dead.to_string(),
            "5 consecutive failures",
        ],
        Duration::from_secs(2),
    )
    .await;
    let up = format!("fulcrum_backend_up{{backend=\"{dead}\",upstream=\"u\"}}");
    assert_eq!(f.metric(&up).await, Some(0.0));

    // No request tries the dead backend first any more.
    let hits = good.hits();
    for _ in 0..8 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!(good.hits(), hits + 8);
    assert_eq!(connect_errors(&f, dead).await, 5.0);

    // A reload of something else keeps the ejection (the registry holds it).
    f.apply(&pool(&[dead, good.addr], "connect_timeout = \"2s\"", ""), 2)
        .await;
    assert_eq!(status_of(&f, dead).await["ejected"], true);
    for _ in 0..8 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!(connect_errors(&f, dead).await, 5.0);
    assert_eq!(f.metric(&up).await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_ejection_one_request_tries_the_backend_and_its_failure_ejects_again() {
    let good = Backend::start("good").await;
    let dead = dead_addr();
    let outlier = "[upstream.u.outlier]\nconsecutive_failures = 2\nbase_ejection = \"2s\"\n";
    let f = Fulcrum::start_logging("info", "", &pool(&[dead, good.addr], "", outlier));
    for _ in 0..6 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!(connect_errors(&f, dead).await, 2.0);
    f.wait_for_log(
        &["backend readmitted", &dead.to_string()],
        Duration::from_secs(10),
    )
    .await;
    // Back on trial: the first request that goes there fails and the backend is out again at
    // once, for twice as long, without needing two failures more.
    for _ in 0..6 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert_eq!(connect_errors(&f, dead).await, 3.0);
    f.wait_for_log(
        &["backend ejected", &dead.to_string(), "trial"],
        Duration::from_secs(2),
    )
    .await;
    let s = status_of(&f, dead).await;
    assert_eq!(s["ejected"], true, "{s}");
    assert!(s["ejected_for_seconds"].as_f64().unwrap() > 2.0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_can_be_turned_off() {
    let good = Backend::start("good").await;
    let dead = dead_addr();
    let off = "[upstream.u.outlier]\nenabled = false\n";
    let f = Fulcrum::start("", &pool(&[dead, good.addr], "", off));
    for _ in 0..12 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    assert!(connect_errors(&f, dead).await >= 6.0);
    let s = status_of(&f, dead).await;
    assert_eq!(
        (&s["ejected"], &s["in_service"]),
        (&false.into(), &true.into()),
        "{s}"
    );
}

/// A reload that turns passive ejection off puts an ejected backend back at once, not at its
/// scheduled readmission (and with no trial).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_ejection_off_by_reload_readmits_at_once() {
    let (flaky, good) = (Backend::start("flaky").await, Backend::start("good").await);
    flaky.set_status(502);
    let on = "[upstream.u.outlier]\nconsecutive_failures = 2\nbase_ejection = \"60s\"\n";
    let f = Fulcrum::start("", &pool(&[flaky.addr, good.addr], "", on));
    for _ in 0..20 {
        get(f.addr, "h.test", "/").await;
        if status_of(&f, flaky.addr).await["ejected"] == true {
            break;
        }
    }
    assert_eq!(status_of(&f, flaky.addr).await["ejected"], true);
    flaky.set_status(200);
    let off = "[upstream.u.outlier]\nenabled = false\n";
    f.apply(&pool(&[flaky.addr, good.addr], "", off), 2).await;
    let hits = flaky.hits();
    for _ in 0..8 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
    }
    let s = status_of(&f, flaky.addr).await;
    assert_eq!(
        flaky.hits(),
        hits + 4,
        "ejection off, yet {} stays out: {s}",
        flaky.addr
    );
    assert_eq!(
        (&s["ejected"], &s["in_service"]),
        (&false.into(), &true.into()),
        "{s}"
    );
}

/// Issue 21 item 2's trap with a 503 instead of a 500: without an `[upstream.NAME.outlier]`
/// table only connection-level failures eject, so one endpoint's 503s take no backend out.
/// Written, the table counts 502, 503 and 504 by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_503s_eject_only_with_an_outlier_table() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start("", &pool(&[a.addr, b.addr], "", ""));
    for _ in 0..12 {
        assert_eq!(get(f.addr, "h.test", "/status/503").await.status, 503);
    }
    let (sa, sb) = (status_of(&f, a.addr).await, status_of(&f, b.addr).await);
    assert!(
        sa["ejected"] == false && sb["ejected"] == false,
        "an endpoint's 503s ejected a backend by default:\n{sa}\n{sb}"
    );

    let table = "[upstream.u.outlier]\nconsecutive_failures = 2\n";
    f.apply(&pool(&[a.addr, b.addr], "", table), 2).await;
    for _ in 0..4 {
        assert_eq!(get(f.addr, "h.test", "/status/503").await.status, 503);
    }
    let (sa, sb) = (status_of(&f, a.addr).await, status_of(&f, b.addr).await);
    assert!(
        sa["ejected"] == true || sb["ejected"] == true,
        "a written outlier table counts 503:\n{sa}\n{sb}"
    );
}
