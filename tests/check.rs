//! `fulcrum check` through the binary: valid files pass, each broken file is rejected with the
//! file, line, column, field and what is accepted.

mod support;

use std::process::Command;

fn check(text: &str) -> (bool, String, String) {
    check_with_env(text, &[])
}

/// `fulcrum check` on `text` with the environment variables `env` set.
fn check_with_env(text: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let (ok, out, err) = support::check_file(&path, env);
    let shown = path.display().to_string();
    (
        ok,
        out.replace(&shown, "bad.toml"),
        err.replace(&shown, "bad.toml"),
    )
}

const UPSTREAM: &str = "[upstream.web]\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n";

/// (config, the error line it must print)
fn broken() -> Vec<(String, &'static str)> {
    let route = "[[route]]\nupstream = \"web\"\n";
    vec![
        (
            format!("[server]\nlisten = [\"127.0.0.1:1\"\n{route}{UPSTREAM}"),
            "error: bad.toml:3:1: invalid TOML: missing comma between array elements, expected `,`",
        ),
        (
            format!("[server]\nlissten = [\"127.0.0.1:1\"]\n{route}{UPSTREAM}"),
            "error: bad.toml:2:1: server.lissten: unknown field `lissten`, expected one of `listen`, `threads`, `admin_listen`, `trusted_proxies`, `grace_period`, `max_request_body`, `log_level`, `upgrade_sock`, `access_log`, `access_log_format`, `access_log_query`, `request_header_timeout`, `keepalive_timeout`, `client_body_timeout`, `client_body_min_rate`, `send_timeout`, `max_header_size`, `max_headers`, `max_connections`, `merge_slashes`, `tls`, `redirect_http_to_https`, `h2c`, `max_config_size`; did you mean `listen`?",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\nstrip = true\n{UPSTREAM}"),
            "error: bad.toml:3:1: route[0].strip: unknown field `strip`, expected one of `name`, `host`, `path`, `strip_prefix`, `host_rewrite`, `upstream`, `retries`, `timeout`, `upgrade_idle_timeout`, `rate_limit`",
        ),
        (
            // An emptied file (or a half-written one) must never load.
            String::new(),
            "error: bad.toml: route: no [[route]]: every request would get 404; add one, e.g. [[route]] with upstream = \"NAME\"",
        ),
        (
            format!("[[route]]\npath = \"/\"\n{UPSTREAM}"),
            "error: bad.toml:1:1: route[0]: missing key `upstream`, the name of an [upstream.NAME] table, in quotes; add it, e.g. upstream = \"web\"",
        ),
        (
            format!("[[route]]\nupstream = \"wbe\"\n{UPSTREAM}"),
            "error: bad.toml:2:12: route[0].upstream: upstream \"wbe\" is not defined; defined upstreams: web",
        ),
        (
            format!("{route}[upstream.web]\nbackends = []\n"),
            "error: bad.toml:4:12: upstream.web.backends: an upstream needs at least one backend, e.g. backends = [{ addr = \"127.0.0.1:9001\" }]",
        ),
        (
            format!("{route}[[route]]\nupstream = \"web\"\n{UPSTREAM}"),
            "error: bad.toml:3:1: route[1]: duplicate route: route[0] already matches host \"*\" and path \"/\"",
        ),
        (
            format!("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n{route}{UPSTREAM}"),
            "error: bad.toml:2:20: server.trusted_proxies[0]: invalid CIDR \"10.0.0.0/33\"; expected a network like \"10.0.0.0/8\", \"fd00::/8\" or a single IP",
        ),
        (
            format!("[server]\nlisten = [\"localhost\"]\n{route}{UPSTREAM}"),
            "error: bad.toml:2:11: server.listen[0]: invalid listen address \"localhost\"; expected IP:PORT like \"127.0.0.1:8080\" or \"[::]:8080\", or localhost:PORT",
        ),
        (
            format!("{route}[upstream.web]\nbackends = [{{ addr = \"127.0.0.1:9001\", weight = 0 }}]\n"),
            "error: bad.toml:4:49: upstream.web.backends[0].weight: weight must be between 1 and 1000 (got 0); remove the backend to stop sending it traffic",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\ntimeout = \"30\"\n{UPSTREAM}"),
            "error: bad.toml:3:11: route[0].timeout: invalid duration \"30\" (time unit needed, for example 30sec or 30ms); expected e.g. \"250ms\", \"2s\", \"1m\" or \"1h\"",
        ),
        (
            format!("[server]\nmax_headers = 300\n{route}{UPSTREAM}"),
            "error: bad.toml:2:15: server.max_headers: must be between 1 and 256 (got 300)",
        ),
        (
            format!("[server]\nmax_header_size = \"100B\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:19: server.max_header_size: must be between 1KiB and 1MiB (pingora's own limit), e.g. \"32KiB\" (got 100 bytes)",
        ),
        (
            format!("[server]\nmax_config_size = \"100B\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:19: server.max_config_size: must be between 1KiB and 1GiB, e.g. \"64MiB\" (got 100 bytes)",
        ),
        (
            format!("[server]\nrequest_header_timeout = \"0s\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:26: server.request_header_timeout: must be longer than 0s, e.g. \"2s\"",
        ),
        (
            format!("[server]\nthreads = 5000\n{route}{UPSTREAM}"),
            "error: bad.toml:2:11: server.threads: must be at most 1024 (got 5000); one per CPU is what a proxy needs, and absent means that",
        ),
        (
            format!("[server]\nmax_connections = 0\n{route}{UPSTREAM}"),
            "error: bad.toml:2:19: server.max_connections: must be at least 1 (got 0)",
        ),
        (
            format!("[server]\nmax_request_body = \"10 MiBs\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:20: server.max_request_body: invalid size unit in \"10 MiBs\"; expected an integer with an optional unit: B, KB, KiB, MB, MiB, GB, GiB (e.g. \"10MiB\")",
        ),
        (
            format!("{route}[upstream.web]\nbalance = \"fastest\"\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n"),
            "error: bad.toml:4:11: upstream.web.balance: unknown value \"fastest\"; accepted: \"round_robin\", \"weighted_round_robin\", \"least_connections\", \"p2c\", \"random\", \"ip_hash\", \"consistent_hash\"",
        ),
        (
            format!("[[route]]\nhost = \"api.*.example.com\"\nupstream = \"web\"\n{UPSTREAM}"),
            "error: bad.toml:2:8: route[0].host: invalid host \"api.*.example.com\": a wildcard is only accepted as the first label, as in \"*.example.com\"",
        ),
        (
            format!("[[route]]\npath = \"api/\"\nupstream = \"web\"\n{UPSTREAM}"),
            "error: bad.toml:2:8: route[0].path: path \"api/\" must start with \"/\", e.g. \"/api/\"",
        ),
        (
            format!("{route}[upstream.web]\nbackends = [{{ addr = \"127.0.0.1\" }}]\n"),
            "error: bad.toml:4:22: upstream.web.backends[0].addr: invalid backend address \"127.0.0.1\"; expected HOST:PORT like \"127.0.0.1:9001\" or \"backend.internal:80\"",
        ),
        (
            format!("{route}[upstream.web]\nbalance = \"consistent_hash\"\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n"),
            "error: bad.toml:4:11: upstream.web.hash_key: balance = \"consistent_hash\" needs hash_key = \"header:NAME\", \"cookie:NAME\", \"query:NAME\", \"path\" or \"client_ip\"",
        ),
        (
            format!("{route}[upstream.web]\nbalance = \"consistent_hash\"\nhash_key = \"header\"\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n"),
            "error: bad.toml:5:12: upstream.web.hash_key: invalid hash_key \"header\"; expected \"header:NAME\", \"cookie:NAME\", \"query:NAME\", \"path\" or \"client_ip\"",
        ),
        (
            format!("{route}[upstream.web]\nhash_key = \"path\"\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n"),
            "error: bad.toml:4:12: upstream.web.hash_key: hash_key applies only to balance = \"consistent_hash\" (ip_hash always hashes the client IP)",
        ),
        (
            format!("{route}[upstream.web]\nbalance = \"ip_hash\"\nhash_balance_factor = 0.5\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n"),
            "error: bad.toml:5:23: upstream.web.hash_balance_factor: hash_balance_factor must be between 1 and 10 (got 0.5); 1.25 is a common choice",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.health_check]\nkind = \"tcp\"\npath = \"/healthz\"\n"),
            "error: bad.toml:7:8: upstream.web.health_check.path: path applies only to kind = \"http\" (a tcp check only opens a connection)",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.health_check]\nexpect_status = [200, \"6xx\"]\n"),
            "error: bad.toml:6:23: upstream.web.health_check.expect_status[1]: invalid status \"6xx\"; expected a code from 100 to 599 (200) or a class (\"2xx\")",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.health_check]\njitter = \"75%\"\n"),
            "error: bad.toml:6:10: upstream.web.health_check.jitter: invalid jitter \"75%\"; expected a percentage of the interval from \"0%\" to \"50%\"",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.health_check]\ninterval = \"0s\"\n"),
            "error: bad.toml:6:12: upstream.web.health_check.interval: must be longer than 0s, e.g. \"2s\"",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.outlier]\nmax_ejected_percent = 150\n"),
            "error: bad.toml:6:23: upstream.web.outlier.max_ejected_percent: must be a percentage between 0 and 100 (got 150)",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.health_check]\nunhealthy_threshold = 0\n"),
            "error: bad.toml:6:23: upstream.web.health_check.unhealthy_threshold: must be at least 1",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\ntimeout = \"0s\"\n{UPSTREAM}"),
            "error: bad.toml:3:11: route[0].timeout: must be longer than 0s, e.g. \"2s\"",
        ),
        (
            format!("{route}[upstream.web]\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\nread_timeout = \"500000000000y\"\n"),
            "error: bad.toml:5:16: upstream.web.read_timeout: duration \"500000000000y\" is too long; at most a year (\"1y\")",
        ),
        (
            format!("[[route]]\nhost = \"[::1]:8080\"\nupstream = \"web\"\n{UPSTREAM}"),
            "error: bad.toml:2:8: route[0].host: invalid host \"[::1]:8080\": an IPv6 host is written in brackets without a port, e.g. \"[2001:db8::1]\"",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.outlier]\nbase_ejection = \"60s\"\nmax_ejection = \"30s\"\n"),
            "error: bad.toml:7:16: upstream.web.outlier.max_ejection: max_ejection (30s) is shorter than base_ejection (60s); it caps every ejection, so it must be at least as long",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\nrate_limit = {{ rate = 10, per = \"500ms\" }}\n{UPSTREAM}"),
            "error: bad.toml:3:33: route[0].rate_limit.per: per must be a whole number of seconds, e.g. \"1s\" or \"1m\" (got 500ms); for 10 requests per 100ms write rate = 100, per = \"1s\"",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\nrate_limit = {{ rate = 10, key = \"cookie:sid\" }}\n{UPSTREAM}"),
            "error: bad.toml:3:33: route[0].rate_limit.key: invalid key \"cookie:sid\"; expected \"client_ip\", \"header:NAME\" or \"global\"",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\nrate_limit = {{ rate = 0 }}\n{UPSTREAM}"),
            "error: bad.toml:3:23: route[0].rate_limit.rate: must be at least 1",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\nrate_limit = {{ rate = 1, per = \"1y\", burst = 1000 }}\n{UPSTREAM}"),
            "error: bad.toml:3:46: route[0].rate_limit.burst: burst = 1000 at rate = 1 per 1year takes 1000years to fill; the most is 100years (lower burst or per)",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\nrate_limit = {{ rate = 2000000000 }}\n{UPSTREAM}"),
            "error: bad.toml:3:23: route[0].rate_limit.rate: rate = 2000000000 per 1s is more than one request per nanosecond; the most is 1000000000 per second",
        ),
        (
            format!("[server]\nlog_level = \"warning\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:13: server.log_level: unknown level \"warning\" in log_level \"warning\" (it would be read as a target name and turn every other log off); expected error, warn, info, debug, trace or off, or TARGET=LEVEL like \"info,fulcrum::health=debug\"",
        ),
        (
            format!("[server]\nlog_level = \"info,=x[[\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:13: server.log_level: invalid log filter \"info,=x[[\" (invalid filter directive); expected a level (error, warn, info, debug, trace) or directives like \"info,fulcrum=debug\"",
        ),
        (
            format!("[server]\naccess_log_format = \"logfmt\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:21: server.access_log_format: unknown access log format \"logfmt\"; expected \"json\" or \"combined\"",
        ),
        (
            format!("[server]\naccess_log = \"\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:14: server.access_log: empty; expected \"stdout\", \"stderr\", \"off\" or a file path",
        ),
        (
            format!("[[route]]\nupstream = \"web\"\nrate_limit = {{ burst = 5 }}\n{UPSTREAM}"),
            "error: bad.toml:3:14: route[0].rate_limit: missing key `rate`, a whole number of requests per `per`; add it, e.g. rate_limit = { rate = 10, per = \"1s\" }",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.circuit_breaker]\nfailure_rate = 1.5\n"),
            "error: bad.toml:6:16: upstream.web.circuit_breaker.failure_rate: failure_rate must be a share above 0 and at most 1, e.g. 0.5 for 50 % (got 1.5)",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.circuit_breaker]\nconsecutive_failures = 0\n"),
            "error: bad.toml:6:24: upstream.web.circuit_breaker.consecutive_failures: consecutive_failures = 0 and no failure_rate: the breaker could never trip; set either",
        ),
        (
            format!("{route}{UPSTREAM}[upstream.web.circuit_breaker]\nhalf_open_requests = 0\n"),
            "error: bad.toml:6:22: upstream.web.circuit_breaker.half_open_requests: must be at least 1",
        ),
        (
            format!("{route}[upstream.web]\nmax_inflight = 0\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n"),
            "error: bad.toml:4:16: upstream.web.max_inflight: must be at least 1",
        ),
        (
            // nginx's proxy_pass habit: a URL where HOST:PORT goes.
            format!("{route}[upstream.web]\nbackends = [{{ addr = \"http://127.0.0.1:9001\" }}]\n"),
            "error: bad.toml:4:22: upstream.web.backends[0].addr: backend address \"http://127.0.0.1:9001\" has a scheme (http://); an addr is HOST:PORT, not a URL: write addr = \"127.0.0.1:9001\"",
        ),
        (
            format!("{route}[upstream.web]\nbackends = [{{ addr = \"https://app.internal\" }}]\n"),
            "error: bad.toml:4:22: upstream.web.backends[0].addr: backend address \"https://app.internal\" has a scheme (https://); an addr is HOST:PORT, not a URL: write addr = \"app.internal:443\" and tls = true on the upstream for HTTPS",
        ),
        (
            format!("{route}[upstream.web]\nbackends = [{{ addr = \"10.0.0.5:80/api\" }}]\n"),
            "error: bad.toml:4:22: upstream.web.backends[0].addr: backend address \"10.0.0.5:80/api\" has a path (/api) after the address; an addr is HOST:PORT only (the request's own path is forwarded): write addr = \"10.0.0.5:80\"",
        ),
        (
            format!("[[route]]\nhost = \"https://app.example.com\"\nupstream = \"web\"\n{UPSTREAM}"),
            "error: bad.toml:2:8: route[0].host: invalid host \"https://app.example.com\": has a scheme (https://); a route's host is the name alone, matched for http and https alike: write host = \"app.example.com\"",
        ),
        (
            format!("[[route]]\nhost = \"app.example.com/api/\"\nupstream = \"web\"\n{UPSTREAM}"),
            "error: bad.toml:2:8: route[0].host: invalid host \"app.example.com/api/\": has a path (/api/); a route's host is the name alone, and path is its own key: write host = \"app.example.com\" and path = \"/api/\"",
        ),
        (
            format!("[[route]]\nhost = \"/api\"\nupstream = \"web\"\n{UPSTREAM}"),
            "error: bad.toml:2:8: route[0].host: invalid host \"/api\": has a path (/api); a route's host is the name alone, and path is its own key: leave host out (to match any host) and write path = \"/api\"",
        ),
        (
            format!("[[route]]\nhost_rewrite = \"https://api.internal\"\nupstream = \"web\"\n{UPSTREAM}"),
            "error: bad.toml:2:16: route[0].host_rewrite: invalid host_rewrite \"https://api.internal\": has a scheme (https://); it is sent as the Host header, a host (and port) alone: write host_rewrite = \"api.internal\"",
        ),
        (
            format!("{route}{UPSTREAM}health_check = {{ host = \"http://app.internal\", path = \"/healthz\" }}\n"),
            "error: bad.toml:5:25: upstream.web.health_check.host: invalid host \"http://app.internal\": has a scheme (http://); it is sent as the Host header, a host (and port) alone: write host = \"app.internal\"",
        ),
        (
            format!("{route}[upstream.web]\nbackends = [{{ addr = \"app.internal/api\" }}]\n"),
            "error: bad.toml:4:22: upstream.web.backends[0].addr: backend address \"app.internal/api\" has a path (/api) after the address; an addr is HOST:PORT only (the request's own path is forwarded): write addr = \"HOST:PORT\"",
        ),
        (
            format!("[server]\nlisten = \"localhost:+8080\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:10: server.listen: invalid listen address \"localhost:+8080\"; expected IP:PORT like \"127.0.0.1:8080\" or \"[::]:8080\", or localhost:PORT",
        ),
        (
            format!("upstream = 5\n{route}"),
            "bad.toml: 1 problem(s) found",
        ),
        (
            format!("[server]\nlisten = \"localhost:http\"\n{route}{UPSTREAM}"),
            "error: bad.toml:2:10: server.listen: invalid listen address \"localhost:http\"; expected IP:PORT like \"127.0.0.1:8080\" or \"[::]:8080\", or localhost:PORT",
        ),
        (
            format!("[server]\nthreads = 0\n{route}{UPSTREAM}"),
            "error: bad.toml:2:11: server.threads: must be at least 1 (or absent for one per CPU)",
        ),
    ]
}

#[test]
fn each_broken_config_is_rejected_with_its_place_and_what_is_accepted() {
    let mut failures = Vec::new();
    for (text, want) in broken() {
        let (ok, _, stderr) = check(&text);
        if ok || !stderr.lines().any(|l| l == want) {
            failures.push(format!(
                "--- config:\n{text}--- want: {want}\n--- got (ok={ok}):\n{stderr}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        broken().len(),
        failures.join("\n")
    );
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let text = "[server]\nlisten = [\"x\"]\n[[route]]\nupstream = \"nope\"\n[upstream.web]\nbackends = []\n";
    let (ok, _, stderr) = check(text);
    assert!(!ok);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error: ")).count(),
        3,
        "{stderr}"
    );
    assert!(
        stderr.ends_with("bad.toml: 3 problem(s) found\n"),
        "{stderr}"
    );
}

#[test]
fn valid_config_passes_with_warnings_for_unused_upstreams() {
    let text = format!("[[route]]\nupstream = \"web\"\n{UPSTREAM}[upstream.spare]\nbackends = [{{ addr = \"127.0.0.1:9002\" }}]\n");
    let (ok, stdout, stderr) = check(&text);
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("bad.toml: ok (1 routes, 2 upstreams)"));
    // check binds nothing, and says so.
    assert_eq!(
        lines.next(),
        Some("note: listeners are not bound by check; run binds 0.0.0.0:8080")
    );
    assert!(
        stderr.contains(
            "warning: bad.toml:5:1: upstream.spare: upstream \"spare\" is not used by any route"
        ),
        "{stderr}"
    );
}

#[test]
fn merge_slashes_off_is_a_warning() {
    let text =
        format!("[server]\nmerge_slashes = false\n[[route]]\nupstream = \"web\"\n{UPSTREAM}");
    let (ok, _, stderr) = check(&text);
    assert!(ok, "{stderr}");
    assert!(
        stderr
            .contains("warning: bad.toml:2:17: server.merge_slashes: false: a path like //admin/"),
        "{stderr}"
    );
}

#[test]
fn environment_variables_expand_in_values_with_defaults_and_located_errors() {
    let text = format!(
        "[server]\nlisten = [\"${{FULCRUM_T_LISTEN}}\"] # ${{NOT_A_VALUE}}\n[[route]]\nupstream = \"${{FULCRUM_T_UP:-web}}\"\n{UPSTREAM}"
    );
    let (ok, stdout, stderr) = check_with_env(&text, &[("FULCRUM_T_LISTEN", "127.0.0.1:8181")]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.lines().next(),
        Some("bad.toml: ok (1 routes, 1 upstreams)")
    );
    // The value is used: an upstream that does not exist is reported by its expanded name.
    let env = [
        ("FULCRUM_T_LISTEN", "127.0.0.1:8181"),
        ("FULCRUM_T_UP", "nope"),
    ];
    let (ok, _, stderr) = check_with_env(&text, &env);
    assert!(!ok);
    assert!(
        stderr.contains("upstream \"nope\" is not defined"),
        "{stderr}"
    );
    // Unset without a default: located, named, and the rest of the file is still checked.
    let text = format!("{text}[server.oops]\n");
    let (ok, _, stderr) = check_with_env(&text, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("server.oops: unknown field `oops`"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("bad.toml: 2 problem(s) found\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: bad.toml:2:12: environment variable FULCRUM_T_LISTEN is not set (write ${FULCRUM_T_LISTEN:-default} to give a default)"),
        "{stderr}"
    );
}

/// The lines of `out`, each checked to start with its `want`, as many as there are.
fn lines_starting_with<'a>(out: &'a str, want: &[&str]) -> Vec<&'a str> {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), want.len(), "{out}");
    for (line, want) in lines.iter().zip(want) {
        assert!(line.starts_with(want), "want {want}\n got {line}");
    }
    lines
}

#[test]
fn every_independent_mistake_is_reported_in_one_run() {
    let text = r#"[server]
lissten = ["127.0.0.1:1"]
threads = "two"

[[route]]
upstream = "web"
timeot = "5s"

[[route]]
path = "/b/"
upstream = "web"
rate_limit = { rate = "ten", per = "1s", burst = 5 }

[[route]]
upstream = "nope"
path = "no-slash"

[upstream.web]
balance = "roundrobin"
backends = [{ addr = "127.0.0.1:1", wieght = 2 }, { addr = 5 }, { addr = "127.0.0.1:2", weight = 0 }]

[upstream.web.health_check]
intervall = "1s"
timeout = 3
"#;
    let (ok, _, stderr) = check(text);
    assert!(!ok);
    let want = [
        "error: bad.toml:2:1: server.lissten: unknown field `lissten`, expected one of `listen`,",
        "error: bad.toml:3:11: server.threads: expected a whole number of worker threads, e.g. threads = 4 (found the string \"two\")",
        "error: bad.toml:7:1: route[0].timeot: unknown field `timeot`, expected one of `name`,",
        "error: bad.toml:12:23: route[1].rate_limit.rate: expected a whole number of requests per `per`, e.g. rate_limit = { rate = 10, per = \"1s\" } (found the string \"ten\")",
        "error: bad.toml:15:12: route[2].upstream: upstream \"nope\" is not defined; defined upstreams: web",
        "error: bad.toml:16:8: route[2].path: path \"no-slash\" must start with \"/\"",
        "error: bad.toml:19:11: upstream.web.balance: unknown value \"roundrobin\"; accepted: \"round_robin\",",
        "error: bad.toml:20:37: upstream.web.backends[0].wieght: unknown field `wieght`, expected `addr` or `weight`; did you mean `weight`?",
        "error: bad.toml:20:60: upstream.web.backends[1].addr: expected HOST:PORT in quotes, e.g. backends = [{ addr = \"10.0.0.5:80\" }] (found the whole number 5)",
        "error: bad.toml:20:98: upstream.web.backends[2].weight: weight must be between 1 and 1000 (got 0)",
        "error: bad.toml:23:1: upstream.web.health_check.intervall: unknown field `intervall`",
        "error: bad.toml:24:11: upstream.web.health_check.timeout: expected a duration in quotes, e.g. timeout = \"1s\" (found the whole number 3)",
        "bad.toml: 12 problem(s) found",
    ];
    let lines = lines_starting_with(&stderr, &want);
    assert!(
        lines[6].ends_with("did you mean \"round_robin\"?"),
        "{}",
        lines[6]
    );
}

#[test]
fn every_mistake_in_tls_listeners_and_their_certificates_is_reported() {
    let text = r#"[[server.tls]]
listen = "127.0.0.1:1"
min_versoin = "1.2"
certificates = [{ cert = "a.pem", kye = "a.key" }]

[[server.tls]]
listen = "127.0.0.1:2"
certificates = [{ cert = "a.pem", key = "a.key", extra = 1 }]

[[route]]
upstream = "web"

[upstream.web]
backends = [{ addr = "127.0.0.1:3" }]
"#;
    let (ok, _, stderr) = check(text);
    assert!(!ok);
    let want = [
        "error: bad.toml:3:1: server.tls[0].min_versoin: unknown field `min_versoin`, expected one of `listen`,",
        "error: bad.toml:4:35: server.tls[0].certificates[0].kye: unknown field `kye`, expected `cert` or `key`",
        "error: bad.toml:8:50: server.tls[1].certificates[0].extra: unknown field `extra`, expected `cert` or `key`",
        "bad.toml: 3 problem(s) found",
    ];
    lines_starting_with(&stderr, &want);
}

#[test]
fn what_taking_the_mistakes_out_leaves_is_still_validated_and_nothing_more() {
    // Ten routes with a misspelt required key (each needs its route taken out whole), a
    // semantic error after them, and an upstream whose name has a dot.
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!(
            "[[route]]\npath = \"/r{i}/\"\nupstrem = \"api.v1\"\n"
        ));
    }
    text.push_str("[[route]]\npath = \"nope\"\nupstream = \"api.v1\"\n");
    text.push_str("[upstream.\"api.v1\"]\nbalanse = \"p2c\"\nbackends = [{ addr = \"127.0.0.1:1\" }, { adr = \"127.0.0.1:2\" }, { addr = \"127.0.0.1:3\", weight = 0 }]\n");
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    assert_eq!(
        stderr.matches("unknown field `upstrem`").count(),
        10,
        "{stderr}"
    );
    assert!(
        stderr.contains("route[10].path: path \"nope\" must start with \"/\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("upstream.api.v1.balanse: unknown field `balanse`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("backends[1].adr: unknown field `adr`"),
        "{stderr}"
    );
    // The third backend keeps its place in the file after the second was taken out.
    assert!(
        stderr.contains("backends[2].weight: weight must be between 1 and 1000"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("bad.toml: 14 problem(s) found\n"),
        "{stderr}"
    );

    // Taking out the only backend is not a second problem.
    let (_, _, stderr) = check(
        "[[route]]\nupstream = \"web\"\n[upstream.web]\nbackends = [{ adr = \"127.0.0.1:1\" }]\n",
    );
    assert!(
        stderr.ends_with("bad.toml: 1 problem(s) found\n"),
        "{stderr}"
    );
}

#[test]
fn a_single_bracket_route_table_gets_a_hint() {
    let (ok, _, stderr) = check(&format!("[route]\nupstream = \"web\"\n{UPSTREAM}"));
    assert!(!ok);
    assert!(
        stderr.contains("error: bad.toml:1:1: route: expected a list of tables, e.g. [[route]] (two brackets) above each route's keys, such as upstream = \"web\" (found a table)"),
        "{stderr}"
    );
    // Taking the [route] table out is not a second problem.
    assert!(!stderr.contains("no [[route]]"), "{stderr}");
    assert!(
        stderr.ends_with("bad.toml: 1 problem(s) found\n"),
        "{stderr}"
    );
}

#[test]
fn a_health_check_timeout_not_shorter_than_its_interval_is_a_warning() {
    let text = format!("[[route]]\nupstream = \"web\"\n{UPSTREAM}[upstream.web.health_check]\ninterval = \"1s\"\ntimeout = \"2s\"\n");
    let (ok, _, stderr) = check(&text);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: bad.toml:7:11: upstream.web.health_check.timeout: timeout (2s) is not shorter than interval (1s)"),
        "{stderr}"
    );
    // Only the interval written (the default timeout is 1 s): the warning points at it.
    let text = format!("[[route]]\nupstream = \"web\"\n{UPSTREAM}[upstream.web.health_check]\ninterval = \"500ms\"\n");
    let (ok, _, stderr) = check(&text);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: bad.toml:6:12: upstream.web.health_check.interval: timeout (1s) is not shorter than interval (500ms)"),
        "{stderr}"
    );
}

#[test]
fn shipped_configs_are_valid() {
    for file in ["config/fulcrum.toml", "config/demo.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let (ok, _, stderr) = support::check_file(&path, &[]);
        assert!(ok, "{file}: {stderr}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let (ok, _, stderr) =
        support::check_file(std::path::Path::new("/nonexistent/fulcrum.toml"), &[]);
    assert!(!ok);
    assert!(
        stderr.contains("/nonexistent/fulcrum.toml: cannot read config file"),
        "{stderr}"
    );
}

#[test]
fn a_fifo_a_device_or_a_directory_is_refused_at_once_naming_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    support::mkfifo(&fifo);
    let zero = dir.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let cases = [
        (fifo, "a FIFO (named pipe)"),
        (zero, "a character device"),
        (dir.path().to_path_buf(), "a directory"),
    ];
    // A FIFO nobody writes to would block a plain read forever; check_file gives up after 30 s.
    for (path, kind) in cases {
        let (ok, _, stderr) = support::check_file(&path, &[]);
        assert!(!ok, "{}: {stderr}", path.display());
        let want = format!(
            "error: {}: cannot read config file: it is {kind}, not a regular file",
            path.display()
        );
        assert!(
            stderr.lines().any(|l| l == want),
            "want {want:?} in:\n{stderr}"
        );
    }
}

#[test]
fn a_file_over_the_size_limit_is_refused_naming_the_limit_and_how_to_raise_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.toml");
    // A valid config of 3 000 bytes (a comment pads it).
    let head = format!("[[route]]\nupstream = \"web\"\n{UPSTREAM}#");
    let text = format!("{head}{}\n", "x".repeat(3000 - head.len() - 1));
    std::fs::write(&path, &text).unwrap();
    let check = |limit: &str| {
        support::check_args(
            &[
                "--max-config-size".as_ref(),
                limit.as_ref(),
                path.as_os_str(),
            ],
            &[],
        )
    };
    let (ok, _, stderr) = check("2KiB");
    assert!(!ok);
    let want = format!("error: {}: cannot read config file: it is larger than 2 KiB; raise it with --max-config-size (and server.max_config_size, which holds reloads of it)", path.display());
    assert!(
        stderr.lines().any(|l| l == want),
        "want {want:?} in:\n{stderr}"
    );
    // Within the limit it passes (the default, 64 MiB, is far above it).
    assert!(check("3000").0);
    assert!(support::check_file(&path, &[]).0);

    // A file over its own max_config_size would be refused by the next reload: an error now.
    let head =
        format!("[server]\nmax_config_size = \"1KiB\"\n[[route]]\nupstream = \"web\"\n{UPSTREAM}#");
    let text = format!("{head}{}\n", "x".repeat(1500 - head.len() - 1));
    std::fs::write(&path, &text).unwrap();
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(!ok);
    let want = format!("error: {}:2:19: server.max_config_size: this file is 1500 bytes, more than its own max_config_size (1 KiB): a reload of it would be refused; raise max_config_size to at least 1500 bytes", path.display());
    assert!(
        stderr.lines().any(|l| l == want),
        "want {want:?} in:\n{stderr}"
    );
}

#[test]
fn run_with_an_access_log_that_cannot_be_opened_fails_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\naccess_log = \"no-such-dir/access.log\"\n[[route]]\nupstream = \"web\"\n{UPSTREAM}"
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(support::bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:14: server.access_log: cannot open access log {}",
            path.display(),
            dir.path().join("no-such-dir/access.log").display()
        )),
        "{stderr}"
    );
}

/// `[server]` lines, the route and the upstream, in a file of its own directory.
fn file_in(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("f.toml");
    let text = format!("[server]\n{server}\n[[route]]\nupstream = \"web\"\n{UPSTREAM}");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_refuses_the_access_log_run_refuses_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(dir.path(), "access_log = \"no-such-dir/access.log\"");
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(!ok, "{stderr}");
    // What run_with_an_access_log_that_cannot_be_opened_fails_located sees from `run`.
    let want = format!(
        "error: {}:2:14: server.access_log: cannot open access log {}: No such file or directory (os error 2); a writable file, \"stdout\", \"stderr\" or \"off\"",
        path.display(),
        dir.path().join("no-such-dir/access.log").display()
    );
    assert!(
        stderr.lines().any(|l| l == want),
        "want {want:?} in:\n{stderr}"
    );
    // A directory where the file should be.
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let path = file_in(dir.path(), "access_log = \"logs\"");
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(
        !ok && stderr.contains("server.access_log: cannot open access log"),
        "{stderr}"
    );
}

#[test]
fn check_neither_creates_nor_truncates_the_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(dir.path(), "access_log = \"access.log\"");
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(ok, "{stderr}");
    assert!(
        !dir.path().join("access.log").exists(),
        "check created the access log"
    );
    std::fs::write(dir.path().join("access.log"), "earlier lines\n").unwrap();
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(ok, "{stderr}");
    let kept = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    assert_eq!(kept, "earlier lines\n");
}

#[test]
fn check_warns_of_an_upgrade_sock_in_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("no-such-dir/upgrade.sock");
    let path = file_in(
        dir.path(),
        &format!("upgrade_sock = \"{}\"", sock.display()),
    );
    // run starts with it: only a graceful upgrade needs the socket.
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(ok, "{stderr}");
    let want = format!(
        "warning: {}:2:16: server.upgrade_sock: a graceful upgrade (run --upgrade, SIGQUIT) would fail: the directory of upgrade_sock \"{}\", {}, cannot hold it (No such file or directory (os error 2)); create it",
        path.display(),
        sock.display(),
        dir.path().join("no-such-dir").display()
    );
    assert!(
        stderr.lines().any(|l| l.starts_with(&want)),
        "want {want:?} in:\n{stderr}"
    );
}

#[test]
fn check_follows_an_access_log_link_and_refuses_a_dangling_one() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("access.log");
    std::os::unix::fs::symlink(dir.path().join("no-such-dir/file.log"), &link).unwrap();
    let path = file_in(dir.path(), "access_log = \"access.log\"");
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("server.access_log: cannot open access log")
            && stderr.contains("No such file or directory"),
        "{stderr}"
    );
    // A link to a file in a directory that exists: run's open creates the file; check does not.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("logs/file.log", &link).unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(ok, "{stderr}");
    assert!(
        !dir.path().join("logs/file.log").exists(),
        "check created it"
    );
}

/// A FIFO without a reader: opening it for writing would fail (O_NONBLOCK: ENXIO) or wait
/// forever; check passing shows it was not opened, and it says that run waits for a reader.
#[test]
fn check_accepts_an_access_log_fifo_without_opening_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let path = file_in(dir.path(), "access_log = \"access.fifo\"");
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("server.access_log: ")
            && stderr.contains("is a FIFO: run waits at start"),
        "{stderr}"
    );
}

#[test]
fn one_listen_string_and_localhost_are_accepted() {
    let text = format!(
        "[server]\nlisten = \"localhost:8080\"\nadmin_listen = \"localhost:9901\"\ntrusted_proxies = \"10.0.0.0/8\"\n[[route]]\nupstream = \"web\"\n{UPSTREAM}"
    );
    let (ok, stdout, stderr) = check(&text);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "note: listeners are not bound by check; run binds 127.0.0.1:8080, 127.0.0.1:9901"
        ),
        "{stdout}"
    );
}

#[test]
fn run_serves_on_one_listen_string_and_on_localhost() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (support::free_port(), support::free_port());
    let path = file_in(
        dir.path(),
        &format!(
            "listen = \"localhost:{port}\"\nadmin_listen = \"localhost:{admin}\"\nupgrade_sock = \"{}\"",
            dir.path().join("upgrade.sock").display()
        ),
    );
    let mut child = Command::new(support::bin())
        .args(["run", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let serving = loop {
        let healthy = Command::new(support::bin())
            .args(["healthcheck", &format!("localhost:{admin}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if healthy && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break true;
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        serving,
        "fulcrum did not serve on 127.0.0.1:{port} and 127.0.0.1:{admin}"
    );
}
