//! Observability through the real binary: Prometheus metrics after mixed traffic (values and
//! bounded labels), series across reloads, `/status`, `/readyz`, `Allow` on 405, and request IDs.

mod support;

use std::time::Duration;

use support::*;

/// The value of the first sample of `name` whose labels include every `k="v"` of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

fn routes(a: &Backend) -> String {
    format!(
        "[[route]]\nname = \"api\"\nhost = \"api.test\"\nupstream = \"u\"\n\
         [[route]]\nname = \"dead\"\nhost = \"dead.test\"\nupstream = \"d\"\nretries = 0\n\
         [[route]]\nname = \"limited\"\nhost = \"limited.test\"\nupstream = \"u\"\n\
         rate_limit = {{ rate = 1, per = \"1m\", burst = 1 }}\n{}{}",
        upstream("u", &[a.addr], ""),
        upstream("d", &[dead_addr()], ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_with_bounded_labels() {
    let a = Backend::start("a").await;
    let f = Fulcrum::start("", &routes(&a));
    for _ in 0..3 {
        assert_eq!(
            get(f.addr, "api.test", "/secret-path-123?token=x")
                .await
                .status,
            200
        );
    }
    let post = hyper::Request::post("/")
        .header("host", "api.test")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"hi")))
        .unwrap();
    assert_eq!(send(f.addr, post).await.status, 200);
    let purge = hyper::Request::builder()
        .method("PURGE")
        .uri("/")
        .header("host", "api.test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(f.addr, purge).await.status, 200);
    assert_eq!(get(f.addr, "nowhere.test", "/").await.status, 404);
    assert_eq!(get(f.addr, "dead.test", "/").await.status, 502);
    assert_eq!(get(f.addr, "limited.test", "/").await.status, 200);
    assert_eq!(get(f.addr, "limited.test", "/").await.status, 429);

    // A request is counted in its logging phase, just after its response went out, and the
    // phases of requests on different connections may end in any order: wait for all nine.
    let backend = a.addr.to_string();
    let ab = [("upstream", "u"), ("backend", backend.as_str())];
    let m = f
        .wait_metrics("all 9 requests counted and none in flight", |m| {
            let counted: f64 = m
                .lines()
                .filter(|l| l.starts_with("fulcrum_requests_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            counted == 9.0 && sample(m, "fulcrum_backend_inflight", &ab) == Some(0.0)
        })
        .await;
    let total = |labels: &[(&str, &str)]| sample(&m, "fulcrum_requests_total", labels);
    let api = [("route", "api"), ("upstream", "u")];
    assert_eq!(
        total(&[api[0], api[1], ("method", "GET"), ("code", "200")]),
        Some(3.0)
    );
    assert_eq!(
        total(&[api[0], ("method", "POST"), ("code", "200")]),
        Some(1.0)
    );
    assert_eq!(
        total(&[api[0], ("method", "OTHER"), ("code", "200")]),
        Some(1.0)
    );
    assert_eq!(
        total(&[("route", ""), ("upstream", ""), ("code", "404")]),
        Some(1.0)
    );
    assert_eq!(
        total(&[("route", "dead"), ("upstream", "d"), ("code", "502")]),
        Some(1.0)
    );
    assert_eq!(total(&[("route", "limited"), ("code", "200")]), Some(1.0));
    assert_eq!(total(&[("route", "limited"), ("code", "429")]), Some(1.0));
    assert_eq!(
        sample(&m, "fulcrum_ratelimited_total", &[("route", "limited")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "fulcrum_request_duration_seconds_count", &api),
        Some(5.0)
    );
    assert_eq!(
        sample(&m, "fulcrum_upstream_response_seconds_count", &ab),
        Some(6.0),
        "5 on api, 1 on limited"
    );
    assert_eq!(sample(&m, "fulcrum_backend_up", &ab), Some(1.0));
    assert_eq!(sample(&m, "fulcrum_backend_inflight", &ab), Some(0.0));
    assert_eq!(sample(&m, "fulcrum_circuit_state", &ab), Some(0.0));
    let dead = dead_addr_label(&f, &m);
    assert_eq!(
        sample(
            &m,
            "fulcrum_upstream_connect_errors_total",
            &[("upstream", "d"), ("backend", dead.as_str())]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &m,
            "fulcrum_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ) == Some(1.0)
    );
    assert!(sample(&m, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
    assert!(sample(&m, "process_open_fds", &[]).is_some_and(|v| v > 0.0));
    assert!(sample(&m, "fulcrum_downstream_connections_active", &[]).is_some());
    assert_eq!(
        sample(&m, "fulcrum_access_log_dropped_total", &[]),
        Some(0.0)
    );
    // Bounded labels: never the path, the query or the client address.
    for needle in ["secret-path", "token", "127.0.0.1\""] {
        let leaked: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("fulcrum_requests") && l.contains(needle))
            .collect();
        assert!(leaked.is_empty(), "{needle} in labels: {leaked:?}");
    }
}

/// The `backend` label of upstream `d`'s one backend, as the scrape shows it.
fn dead_addr_label(_f: &Fulcrum, m: &str) -> String {
    m.lines()
        .filter(|l| l.starts_with("fulcrum_backend_up{") && l.contains("upstream=\"d\""))
        .find_map(|l| {
            let start = l.find("backend=\"")? + "backend=\"".len();
            Some(l[start..].split('"').next()?.to_owned())
        })
        .expect("a backend_up series for upstream d")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_counters_of_kept_routes_and_drops_series_of_removed_ones() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let two = format!(
        "[[route]]\nname = \"api\"\nhost = \"api.test\"\nupstream = \"u\"\n\
         [[route]]\nname = \"old\"\nhost = \"old.test\"\nupstream = \"u\"\n{}",
        upstream("u", &[a.addr, b.addr], "")
    );
    let f = Fulcrum::start("", &two);
    for _ in 0..4 {
        assert_eq!(get(f.addr, "api.test", "/").await.status, 200);
    }
    assert_eq!(get(f.addr, "old.test", "/").await.status, 200);
    // Counted just after the responses went out.
    f.wait_metrics("the 5 requests counted", |m| {
        sample(m, "fulcrum_requests_total", &[("route", "old")]) == Some(1.0)
            && sample(m, "fulcrum_requests_total", &[("route", "api")]) == Some(4.0)
    })
    .await;
    let one = format!(
        "[[route]]\nname = \"api\"\nhost = \"api.test\"\nupstream = \"u\"\n{}",
        upstream("u", &[a.addr], "")
    );
    f.rewrite(&one);
    assert_eq!(f.admin_post("/reload").await.status, 200);
    let m = f.metrics().await;
    let api = [("route", "api"), ("code", "200")];
    assert_eq!(
        sample(&m, "fulcrum_requests_total", &api),
        Some(4.0),
        "kept across the reload"
    );
    assert_eq!(
        sample(&m, "fulcrum_requests_total", &[("route", "old")]),
        None
    );
    let b_label = b.addr.to_string();
    for family in [
        "fulcrum_backend_up",
        "fulcrum_upstream_response_seconds_count",
    ] {
        assert_eq!(
            sample(&m, family, &[("backend", b_label.as_str())]),
            None,
            "{family} of the removed backend"
        );
    }
    let a_label = a.addr.to_string();
    assert_eq!(
        sample(&m, "fulcrum_backend_up", &[("backend", a_label.as_str())]),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "fulcrum_config_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_describes_what_runs_and_readyz_and_405_answer() {
    let a = Backend::start("a").await;
    let body = format!(
        "[[route]]\nname = \"api\"\nhost = \"api.test\"\nupstream = \"u\"\n\
         rate_limit = {{ rate = 5, per = \"1s\" }}\n{}\
         [upstream.u.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\n\
         [upstream.u.circuit_breaker]\nconsecutive_failures = 3\n",
        upstream("u", &[a.addr], "balance = \"least_connections\"")
    );
    let f = Fulcrum::start("", &body);
    let r = get(f.admin, "admin", "/status").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").unwrap().to_str().unwrap(),
        "application/json"
    );
    let s: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        s["config"]["path"],
        f.config_path().display().to_string().as_str()
    );
    assert_eq!(s["config"]["last_load"]["success"], true);
    let route = &s["routes"][0];
    assert_eq!(
        (&route["name"], &route["host"], &route["upstream"]),
        (&"api".into(), &"api.test".into(), &"u".into())
    );
    assert_eq!(route["rate_limit"]["rate"], 5);
    let u = &s["upstreams"][0];
    assert_eq!(u["name"], "u");
    assert_eq!(u["strategy"], "least_connections");
    let backend = &u["backends"][0];
    assert_eq!(backend["address"], a.addr.to_string().as_str());
    assert_eq!(backend["weight"], 1);
    assert_eq!(backend["health"], "healthy");
    assert_eq!(backend["breaker"], "closed");
    assert_eq!(backend["in_flight"], 0);
    assert_eq!(backend["ejected"], false);
    assert_eq!(backend["last_check"]["ok"], true);
    assert!(backend["last_check"]["time"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let ready = get(f.admin, "admin", "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(get(f.admin, "admin", "/healthz").await.status, 200);
    let wrong = f.admin_post("/status").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers.get("allow").unwrap(), "GET, HEAD");
    let wrong = get(f.admin, "admin", "/reload").await;
    assert_eq!(
        (
            wrong.status,
            wrong.headers.get("allow").unwrap().to_str().unwrap()
        ),
        (405, "POST")
    );
    // Never on the public listener.
    assert_eq!(
        get(f.addr, "api.test", "/metrics")
            .await
            .body
            .lines()
            .next(),
        Some("backend a")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_made_or_kept_from_trusted_proxies_and_reach_both_ends() {
    let a = Backend::start("a").await;
    let body = format!(
        "[[route]]\nhost = \"api.test\"\nupstream = \"u\"\n{}",
        upstream("u", &[a.addr], "")
    );
    let f = Fulcrum::start("trusted_proxies = [\"127.0.0.1\"]", &body);
    let r = get_with(f.addr, "api.test", "/", &[("x-request-id", "edge-42")]).await;
    assert_eq!(
        r.line("x-request-id"),
        Some("edge-42"),
        "kept: 127.0.0.1 is trusted"
    );
    assert_eq!(r.headers.get("x-request-id").unwrap(), "edge-42");
    let untrusted = Fulcrum::start("", &body);
    let r = get_with(
        untrusted.addr,
        "api.test",
        "/",
        &[("x-request-id", "edge-42")],
    )
    .await;
    let made = r
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(made, "edge-42");
    assert_eq!(made.len(), 32);
    assert_eq!(
        r.line("x-request-id"),
        Some(made.as_str()),
        "the backend saw the same ID"
    );
    let other = get(untrusted.addr, "api.test", "/").await;
    assert_ne!(other.headers.get("x-request-id").unwrap(), made.as_str());
    // Error responses carry one too.
    let none = get(untrusted.addr, "nowhere.test", "/").await;
    assert_eq!(none.status, 404);
    assert_eq!(none.headers.get("x-request-id").unwrap().len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_client_connections_are_counted() {
    let a = Backend::start("a").await;
    let body = format!(
        "[[route]]\nupstream = \"u\"\n{}",
        upstream("u", &[a.addr], "")
    );
    let f = Fulcrum::start("", &body);
    let gauge = "fulcrum_downstream_connections_active";
    // The start-up probe's connection counts until the proxy has seen it close.
    f.wait_metric(gauge, 0.0).await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = Conn::new(f.addr);
        assert_eq!(c.get("x", "/").await.unwrap().status, 200);
        conns.push(c);
    }
    assert_eq!(sample(&f.metrics().await, gauge, &[]), Some(3.0));
    drop(conns);
    f.wait_metric(gauge, 0.0).await;
}

/// The lines of `path` once it has at least `n` (the writer flushes when idle).
async fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} has {} lines, expected {n}",
            path.display(),
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_json_line_per_request_however_it_ended() {
    let a = Backend::start("a").await;
    let body = format!(
        "[[route]]\nname = \"api\"\nhost = \"api.test\"\nupstream = \"u\"\n\
         [[route]]\nname = \"dead\"\nhost = \"dead.test\"\nupstream = \"d\"\nretries = 0\n{}{}",
        upstream("u", &[a.addr], ""),
        upstream("d", &[dead_addr()], ""),
    );
    let f = Fulcrum::start("access_log = \"access.log\"", &body);
    let log = f.dir.path().join("access.log");
    let ok = get_with(
        f.addr,
        "api.test",
        "/users/7?token=secret",
        &[("user-agent", "probe/1.0 \"quoted\"")],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(get(f.addr, "nowhere.test", "/x").await.status, 404);
    assert_eq!(get(f.addr, "dead.test", "/y").await.status, 502);
    let lines = lines(&log, 3).await;
    assert_eq!(lines.len(), 3, "one line per request: {lines:#?}");
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // A line is written just after its response: the order of the lines may differ from the
    // order of the requests.
    let line = |host: &str| {
        json.iter()
            .find(|j| j["host"] == host)
            .unwrap_or_else(|| panic!("no line for {host}: {lines:#?}"))
    };
    let first = line("api.test");
    assert_eq!(
        first["request_id"],
        ok.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/users/7", "query stripped by default");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes_in"], 0);
    assert_eq!(first["bytes_out"], ok.body.len());
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(first["route"], "api");
    assert_eq!(first["upstream"], "u");
    assert_eq!(first["backend"], a.addr.to_string().as_str());
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["user_agent"], "probe/1.0 \"quoted\"");
    assert!(first.get("error").is_none());
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let unrouted = line("nowhere.test");
    assert_eq!(
        (&unrouted["status"], &unrouted["route"]),
        (&404.into(), &"".into())
    );
    assert!(
        unrouted["error"]
            .as_str()
            .is_some_and(|e| e.contains("no route")),
        "a refusal of the proxy's own says why: {unrouted}"
    );
    let dead = line("dead.test");
    assert_eq!(dead["status"], 502);
    assert!(
        dead["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{dead}"
    );
    // Internal logs stay out of it, and the failure is not logged five times elsewhere.
    assert!(!f.log().contains("Fail to proxy"), "{}", f.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_format_and_file_and_sigusr1_reopens_after_rotation() {
    let a = Backend::start("a").await;
    let body = format!(
        "[[route]]\nupstream = \"u\"\n{}",
        upstream("u", &[a.addr], "")
    );
    let f = Fulcrum::start("access_log = \"first.log\"", &body);
    let first = f.dir.path().join("first.log");
    assert_eq!(get(f.addr, "x.test", "/a?q=1").await.status, 200);
    assert!(lines(&first, 1).await[0].starts_with('{'));

    // Reload: another file, combined format, queries kept.
    let server = f.server.replace(
        "access_log = \"first.log\"",
        "access_log = \"second.log\"\naccess_log_format = \"combined\"\naccess_log_query = true",
    );
    f.replace(&format!("{server}{body}"));
    assert_eq!(f.admin_post("/reload").await.status, 200);
    assert_eq!(
        get_with(f.addr, "x.test", "/b?q=2", &[("referer", "http://r.test/")])
            .await
            .status,
        200
    );
    let second = f.dir.path().join("second.log");
    let line = &lines(&second, 1).await[0];
    assert!(
        line.starts_with("127.0.0.1 - - [") && line.contains("] \"GET /b?q=2 HTTP/1.1\" 200 "),
        "{line}"
    );
    assert!(line.ends_with(" \"http://r.test/\" \"-\""), "{line}");
    assert_eq!(
        lines(&first, 1).await.len(),
        1,
        "nothing more in the old file"
    );

    // A file that cannot be opened rejects the whole reload, located; logging goes on as before.
    let bad = server.replace(
        "access_log = \"second.log\"",
        "access_log = \"no-such-dir/x.log\"",
    );
    f.replace(&format!("{bad}{body}"));
    let reload = f.admin_post("/reload").await;
    assert_eq!(reload.status, 400, "{}", reload.body);
    let line_no = bad
        .lines()
        .position(|l| l.starts_with("access_log ="))
        .unwrap()
        + 1;
    assert!(
        reload.body.contains(&format!(
            ":{line_no}:14: server.access_log: cannot open access log "
        )) && reload.body.contains("no-such-dir/x.log"),
        "{}",
        reload.body
    );
    let m = f.metrics().await;
    let reloads = |result| sample(&m, "fulcrum_config_reloads_total", &[("result", result)]);
    assert_eq!(
        (reloads("success"), reloads("failure")),
        (Some(1.0), Some(1.0))
    );
    f.replace(&format!("{server}{body}"));

    // logrotate: move the file away, SIGUSR1, and the next line starts a new file.
    let rotated = f.dir.path().join("second.log.1");
    std::fs::rename(&second, &rotated).unwrap();
    f.signal("-USR1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !second.exists() {
        assert!(std::time::Instant::now() < deadline, "not reopened");
        assert_eq!(get(f.addr, "x.test", "/c").await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Lines written after the reopen go to the new file.
    assert_eq!(get(f.addr, "x.test", "/d").await.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&second)
        .unwrap()
        .contains("GET /d ")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "/d not in the new file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lines(&rotated, 1).await[0].contains("GET /b?q=2 "));
}
