//! Operating a running fulcrum as an operator would: the reload state after the file went away
//! and came back, the graceful upgrade's lines, what is logged at the default level, and the
//! process metrics.

mod support;

use std::time::Duration;

use support::*;

fn route_to(b: &Backend) -> String {
    format!(
        "[[route]]\nupstream = \"u\"\n{}",
        upstream("u", &[b.addr], "")
    )
}

/// `/status`'s `config.last_load.success`.
async fn status_success(f: &Fulcrum) -> bool {
    let status = f.status().await;
    status["config"]["last_load"]["success"]
        .as_bool()
        .unwrap_or_else(|| panic!("no last_load.success in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_put_back_as_it_runs_clears_the_failure_without_a_reload() {
    let b = Backend::start("b").await;
    let f = Fulcrum::start_logging("info", "", &route_to(&b));
    let text = std::fs::read_to_string(f.config_path()).unwrap();
    const OK: &str = "fulcrum_config_reloads_total{result=\"success\"}";

    std::fs::remove_file(f.config_path()).unwrap();
    f.wait_metric("fulcrum_config_last_reload_success", 0.0)
        .await;
    f.wait_for_log(&["cannot read config file"], Duration::from_secs(5))
        .await;
    assert!(!status_success(&f).await);
    let reloads = f.metric(OK).await;

    f.replace(&text);
    f.wait_metric("fulcrum_config_last_reload_success", 1.0)
        .await;
    assert!(status_success(&f).await);
    f.wait_for_log(
        &["again matches the running config"],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(f.metric(OK).await, reloads, "counted as a reload");
    assert_eq!(get(f.addr, "h.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_text_saved_again_does_not_clear_its_own_failure() {
    let b = Backend::start("b").await;
    let certs = tempfile::tempdir().unwrap();
    let key = rcgen::generate_simple_self_signed(vec!["h.test".to_owned()]).unwrap();
    let (cert, key_file) = (certs.path().join("c.pem"), certs.path().join("k.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&key_file, key.key_pair.serialize_pem()).unwrap();
    let server = format!(
        "[[server.tls]]\nlisten = \"127.0.0.1:{}\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]",
        free_port(),
        cert.display(),
        key_file.display()
    );
    let f = Fulcrum::start_logging("info", &server, &route_to(&b));
    let text = std::fs::read_to_string(f.config_path()).unwrap();

    // The running text's certificate goes bad: its reload fails.
    std::fs::write(&cert, "not a certificate").unwrap();
    f.signal("-HUP");
    f.wait_metric("fulcrum_config_last_reload_success", 0.0)
        .await;
    // The same text saved again (an editor, config management): the failure stands.
    f.replace(&text);
    let log = f
        .wait_for_log(
            &["its last reload failed", "still stands"],
            Duration::from_secs(5),
        )
        .await;
    assert!(!log.contains("again matches the running config"), "{log}");
    assert_eq!(
        f.metric("fulcrum_config_last_reload_success").await,
        Some(0.0)
    );
    assert!(!status_success(&f).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_put_back_after_a_partial_reload_is_read_again() {
    let b = Backend::start("b").await;
    let f = Fulcrum::start_logging("info", "", &route_to(&b));
    let changed = "config file changed; reloading";
    // `threads` needs a restart: applied in part, so the file is not what runs.
    let text = std::fs::read_to_string(f.config_path())
        .unwrap()
        .replace("threads = 2", "threads = 3");
    f.replace(&text);
    f.wait_for_log_count(&[changed], 1, Duration::from_secs(5))
        .await;
    std::fs::remove_file(f.config_path()).unwrap();
    f.wait_for_log(&["cannot read config file"], Duration::from_secs(5))
        .await;
    f.replace(&text);
    // Read again, not skipped as the text last read: the state describes the file on disk.
    f.wait_for_log_count(&[changed], 3, Duration::from_secs(5))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let body = get(f.admin, "admin", "/status").await.body;
        if !body.contains("cannot read config file") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts fulcrum with `log_level` (none: the default) and the access log off, sends one request
/// to a backend that refuses connections, stops it with SIGTERM, and returns what it logged.
async fn start_fail_and_stop(log_level: Option<&str>, dead: std::net::SocketAddr) -> String {
    let level = log_level.map_or(String::new(), |l| format!("log_level = \"{l}\"\n"));
    let server = format!("{level}access_log = \"off\"\ntrusted_proxies = [\"127.0.0.0/8\"]");
    let body = format!(
        "[[route]]\nupstream = \"u\"\nretries = 0\n{}",
        upstream("u", &[dead], "")
    );
    let mut f = Fulcrum::start_logging("", &server, &body);
    let r = get_with(f.addr, "h.test", "/", &[("x-request-id", "op-42")]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    f.signal("-TERM");
    let status = f.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status}");
    f.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_level_logs_fulcrums_lines_not_pingoras() {
    let dead = dead_addr();
    let log = start_fail_and_stop(None, dead).await;
    let pingora: Vec<&str> = log.lines().filter(|l| l.contains(" pingora")).collect();
    assert!(pingora.is_empty(), "pingora's lines: {pingora:#?}\n{log}");
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connect to backend failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    let line = failed[0];
    for part in [
        " WARN ",
        "route=",
        "upstream=u",
        &format!("backend={dead}"),
        "request_id=op-42",
        "error=ConnectRefused",
        "cause=",
    ] {
        assert!(line.contains(part), "no {part:?} in {line}");
    }
    assert!(line.len() < 300, "{} characters: {line}", line.len());
    assert!(log.contains("fulcrum serving"), "{log}");
    assert!(log.contains("SIGTERM: shutting down: draining"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_logs_a_backends_failed_connects_once_per_interval_not_per_request() {
    let dead = dead_addr();
    let body = format!(
        "[[route]]\nupstream = \"u\"\nretries = 0\n{}",
        upstream("u", &[dead], "")
    );
    let mut f = Fulcrum::start_logging("", "access_log = \"off\"", &body);
    for _ in 0..20 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 502);
    }
    f.signal("-TERM");
    let status = f.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status}");
    let log = f.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connect to backend failed"))
        .collect();
    // The first one, and at most one more if the requests took longer than the interval (10 s).
    assert!(
        !lines.is_empty() && lines.len() <= 2,
        "{} lines for 20 failed connects:\n{log}",
        lines.len()
    );
    assert!(lines[0].contains(" WARN "), "{}", lines[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_brings_pingoras_lines_back_when_asked() {
    for level in ["info,pingora=info", "debug"] {
        let log = start_fail_and_stop(Some(level), dead_addr()).await;
        assert!(
            log.lines().any(|l| l.contains(" INFO pingora_core")),
            "log_level {level:?}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_cpu_seconds_are_reported_to_the_tick() {
    let b = Backend::start("b").await;
    let f = Fulcrum::start("", &route_to(&b));
    let process = procfs::process::Process::new(f.child.id() as i32).unwrap();
    let tps = procfs::ticks_per_second() as f64;
    let cpu = || {
        let stat = process.stat().unwrap();
        (stat.utime + stat.stime) as f64 / tps
    };
    // Work until /proc says a time well away from a whole second: a figure truncated to whole
    // seconds is then below it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut conn = Conn::new(f.addr);
    loop {
        let s = cpu();
        if s > 0.1 && (0.1..0.9).contains(&s.fract()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no CPU time: {s}");
        for _ in 0..50 {
            assert_eq!(conn.get("h.test", "/").await.unwrap().status, 200);
        }
    }
    let before = cpu();
    let reported = f.metric("process_cpu_seconds_total").await.unwrap();
    let after = cpu();
    assert!(
        before - 1e-9 <= reported && reported <= after + 1e-9,
        "reported {reported}, /proc said {before} before and {after} after"
    );
}
