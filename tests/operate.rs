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
    let body = get(f.admin, "admin", "/status").await.body;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["config"]["last_load"]["success"]
        .as_bool()
        .unwrap_or_else(|| panic!("no last_load.success in {body}"))
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
