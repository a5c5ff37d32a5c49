//! A DNS refresh is not a config reload: it resolves the running config's backend names again
//! and publishes a change of address, but counts no reload and reports nothing of the file
//! again. Resolution goes through the test seam `FULCRUM_HOSTS_FILE` (set for the fulcrum each
//! test starts, each test its own file).

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Waits until the series `series` (name and labels) is at least `value`.
async fn at_least(f: &Fulcrum, series: &str, value: f64) {
    let what = format!("{series} never reached {value}");
    f.wait_metrics(&what, |m| {
        m.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .any(|v| v >= value)
    })
    .await;
}

/// Sends requests until one is answered by the backend named `name`; panics with `what` after
/// 5 s.
async fn served_by(f: &Fulcrum, name: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(f.addr, "h.test", "/").await.backend() != name {
        assert!(Instant::now() < deadline, "{what}: {}", f.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_change_after_a_partial_reload_is_a_refresh_not_a_failed_reload() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    write_hosts(&hosts, "svc.test 127.0.0.1\n");
    // One name, one port: it moves from a (127.0.0.1) to b (127.0.0.2).
    let a = Backend::start("a").await;
    let b = Backend::on(
        ([127, 0, 0, 2], a.addr.port()).into(),
        "b",
        Behaviour::default(),
    )
    .await;
    // `spare` is a warning of the file: each load reports it, a refresh does not.
    let body = format!(
        "[[route]]\nupstream = \"svc\"\n[upstream.svc]\ndns_refresh = \"200ms\"\nbackends = [{{ addr = \"svc.test:{}\" }}]\n[upstream.spare]\nbackends = [{{ addr = \"127.0.0.1:1\" }}]\n",
        a.addr.port()
    );
    let f = Fulcrum::start_with_hosts(&hosts, "info", &body);
    served_by(&f, "a", "the name's first address never served").await;

    // A key only a restart changes: the reload applies the rest, and says what it did not.
    let listen = format!("listen = [\"{}\"]", f.addr);
    let moved = format!("listen = [\"127.0.0.1:{}\"]", free_port());
    f.replace(&format!("{}{body}", f.server.replacen(&listen, &moved, 1)));
    let restart = "server.listen changed: restart, or run a graceful upgrade, to apply";
    f.wait_for_log(&[restart], Duration::from_secs(5)).await;
    let reloads_failed = r#"fulcrum_config_reloads_total{result="failure"}"#;
    let changed = r#"fulcrum_dns_refreshes_total{result="changed"}"#;
    f.wait_metric(reloads_failed, 1.0).await;
    let changed_before = f.metric(changed).await.unwrap_or(0.0);
    let loaded = f.status().await["config"].clone();
    let reload_time = f
        .metric("fulcrum_config_last_reload_timestamp_seconds")
        .await;

    // The name moves: traffic follows, as a refresh, not as another (failed) reload.
    write_hosts(&hosts, "svc.test 127.0.0.2\n");
    served_by(&f, "b", "traffic never moved to the name's new address").await;
    f.wait_metric(changed, changed_before + 1.0).await;
    assert_eq!(f.metric(reloads_failed).await, Some(1.0), "{}", f.log());
    let log = f.log();
    assert_eq!(log.matches(restart).count(), 1, "{log}");
    assert!(log.contains("DNS refresh applied (generation"), "{log}");
    let spare = "upstream \"spare\" is not used by any route";
    assert_eq!(
        log.matches(spare).count(),
        2,
        "the start and the reload: {log}"
    );
    // `/status` shows the new generation; its last load, and the reload gauges, are the reload's.
    let now = f.status().await["config"].clone();
    assert!(
        now["generation"].as_u64() > loaded["generation"].as_u64(),
        "{now}"
    );
    assert_eq!(now["last_load"], loaded["last_load"]);
    assert_eq!(
        f.metric("fulcrum_config_last_reload_timestamp_seconds")
            .await,
        reload_time
    );
    assert_eq!(
        f.metric("fulcrum_config_last_reload_success").await,
        Some(0.0)
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lookup_keeps_the_backends_and_is_logged_once_until_it_resolves_again() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    write_hosts(&hosts, "svc.test 127.0.0.1\n");
    let a = Backend::start("a").await;
    let port = a.addr.port();
    let body = format!(
        "[[route]]\nupstream = \"svc\"\n[upstream.svc]\ndns_refresh = \"100ms\"\nbackends = [{{ addr = \"svc.test:{port}\" }}]\n"
    );
    let f = Fulcrum::start_with_hosts(&hosts, "info", &body);
    served_by(&f, "a", "the name's address never served").await;
    let generation = f.status().await["config"]["generation"].clone();

    // The resolver fails: the name keeps its address, and says so once, not at every refresh.
    write_hosts(&hosts, "svc.test !fail\n");
    let failures = "fulcrum_dns_lookup_failures_total";
    at_least(&f, failures, 3.0).await;
    assert_eq!(get(f.addr, "h.test", "/").await.backend(), "a");
    let kept = "keeping the 1 address(es) it had";
    let log = f.log();
    assert_eq!(log.matches(kept).count(), 1, "{log}");
    // Nothing was published: a failed lookup is not a change, nor a failed refresh.
    assert_eq!(f.status().await["config"]["generation"], generation);
    let refreshes = |result: &str| format!("fulcrum_dns_refreshes_total{{result=\"{result}\"}}");
    assert_eq!(f.metric(&refreshes("changed")).await, Some(0.0));
    assert_eq!(f.metric(&refreshes("failure")).await, Some(0.0));
    assert!(f.metric(&refreshes("unchanged")).await >= Some(3.0));

    // It answers again: one line says so, and the warning does not come back.
    write_hosts(&hosts, "svc.test 127.0.0.1\n");
    let again = format!("backend name svc.test:{port} resolves again");
    f.wait_for_log(&[&again], Duration::from_secs(5)).await;
    let unchanged = f.metric(&refreshes("unchanged")).await.unwrap_or(0.0);
    at_least(&f, &refreshes("unchanged"), unchanged + 2.0).await;
    let log = f.log();
    assert_eq!(log.matches(&again).count(), 1, "{log}");
    assert_eq!(log.matches(kept).count(), 1, "{log}");
    assert_eq!(f.status().await["config"]["generation"], generation);
}
