//! A DNS refresh is not a config reload: it resolves the running config's backend names again
//! and publishes a change of address, but counts no reload and reports nothing of the file
//! again. Resolution goes through the test seam `FULCRUM_HOSTS_FILE` (set for this test binary
//! only).

mod support;

use std::time::{Duration, Instant};

use support::*;

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
    std::env::set_var("FULCRUM_HOSTS_FILE", &hosts);
    // One name, one port: it moves from a (127.0.0.1) to b (127.0.0.2).
    let a = Backend::start("a").await;
    let b = Backend::on(
        ([127, 0, 0, 2], a.addr.port()).into(),
        "b",
        Behaviour::default(),
    )
    .await;
    let body = format!(
        "[[route]]\nupstream = \"svc\"\n[upstream.svc]\ndns_refresh = \"200ms\"\nbackends = [{{ addr = \"svc.test:{}\" }}]\n",
        a.addr.port()
    );
    let f = Fulcrum::start_logging("info", "", &body);
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

    // The name moves: traffic follows, as a refresh, not as another (failed) reload.
    write_hosts(&hosts, "svc.test 127.0.0.2\n");
    served_by(&f, "b", "traffic never moved to the name's new address").await;
    f.wait_metric(changed, changed_before + 1.0).await;
    assert_eq!(f.metric(reloads_failed).await, Some(1.0), "{}", f.log());
    let log = f.log();
    assert_eq!(log.matches(restart).count(), 1, "{log}");
    drop(b);
}
