use std::path::Path;
use std::time::Duration;

use super::*;

fn parse_ok(src: &str) -> Config {
    parse(src, Path::new("t.toml")).unwrap_or_else(|e| panic!("config should parse: {e}"))
}

fn parse_err(src: &str) -> Vec<String> {
    match parse(src, Path::new("t.toml")) {
        Ok(_) => panic!("config should be rejected:\n{src}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const MINIMAL: &str = r#"
[[route]]
upstream = "web"

[upstream.web]
backends = [{ addr = "127.0.0.1:9001" }]
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse_ok(MINIMAL);
    assert_eq!(c.server.listen, vec!["0.0.0.0:8080".parse().unwrap()]);
    assert!(c.server.threads >= 1);
    assert_eq!(c.server.admin_listen, None);
    assert!(c.server.trusted_proxies.is_empty());
    assert_eq!(c.server.grace_period, schema::DEFAULT_GRACE_PERIOD);
    assert_eq!(c.server.max_request_body, 10 << 20);
    assert_eq!(c.server.max_config_size, 64 << 20);
    let r = &c.routes[0];
    assert_eq!((r.name.as_str(), r.path.as_str()), ("*/", "/"));
    assert_eq!(r.host, HostPattern::Any);
    assert!(!r.strip_prefix);
    assert_eq!((r.retries, r.timeout), (1, Duration::from_secs(60)));
    let u = &c.upstreams[0];
    assert_eq!(u.balance, BalanceKind::RoundRobin);
    assert_eq!(u.backends[0].weight, 1);
    assert_eq!(u.connect_timeout, Duration::from_secs(5));
    assert!(c.warnings.is_empty());
}

#[test]
fn full_contract_example_parses() {
    let c = parse_ok(
        r#"
[server]
listen = ["127.0.0.1:8080", "[::1]:8080"]
threads = 2
admin_listen = "127.0.0.1:9901"
trusted_proxies = ["10.0.0.0/8", "192.168.1.7"]
grace_period = "10s"
max_request_body = "1MiB"
log_level = "info,fulcrum=debug"

[[route]]
name = "api"
host = "API.example.com"
path = "/v1/"
strip_prefix = true
upstream = "api"
retries = 2
timeout = "30s"

[[route]]
host = "*.example.com"
upstream = "api"

[upstream.api]
balance = "round_robin"
backends = [ { addr = "127.0.0.1:9001", weight = 3 }, { addr = "localhost:9002" } ]
connect_timeout = "1s"
read_timeout = "30s"
write_timeout = "5s"
idle_timeout = "60s"
"#,
    );
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert_eq!(c.server.max_request_body, 1 << 20);
    assert_eq!(
        c.routes[0].host,
        HostPattern::Exact("api.example.com".into())
    );
    assert_eq!(
        c.routes[1].host,
        HostPattern::Wildcard(".example.com".into())
    );
    assert_eq!(c.routes[1].name, "*.example.com/");
    assert_eq!(c.upstreams[0].backends[0].weight, 3);
    assert!(c.upstreams[0].backends[1].addr.ip().is_loopback());
    assert_eq!(c.upstreams[0].write_timeout, Duration::from_secs(5));
}

#[test]
fn ipv4_mapped_trusted_proxies_mean_their_ipv4_network() {
    let c = parse_ok(&format!(
        "[server]\ntrusted_proxies = [\"::ffff:10.0.0.0/104\", \"::ffff:192.0.2.7\"]\n{MINIMAL}"
    ));
    let nets: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32"]);
}

#[test]
fn idle_timeout_zero_turns_pooling_off() {
    let c = parse_ok(&MINIMAL.replace("backends =", "idle_timeout = \"0s\"\nbackends ="));
    assert_eq!(c.upstreams[0].idle_timeout, Duration::ZERO);
}

#[test]
fn unused_upstream_is_a_warning_not_an_error() {
    let c = parse_ok(&format!(
        "{MINIMAL}\n[upstream.spare]\nbackends = [{{ addr = \"127.0.0.1:1\" }}]\n"
    ));
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].to_string().contains("\"spare\" is not used"));
}

#[test]
fn semantic_errors_are_all_reported_at_once() {
    let errs = parse_err(
        r#"[server]
listen = ["nope"]
trusted_proxies = ["10.0.0.0/33"]

[[route]]
upstream = "missing"

[upstream.web]
backends = []
"#,
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].starts_with("t.toml:2:11: server.listen[0]: invalid listen address"));
    assert!(errs[1].starts_with("t.toml:3:20: server.trusted_proxies[0]: invalid CIDR"));
    // In file order.
    assert!(errs[2].contains("t.toml:6:12: route[0].upstream: upstream \"missing\" is not defined; defined upstreams: web"));
    assert!(errs[3].starts_with("t.toml:9:12: upstream.web.backends: an upstream needs"));
}

#[test]
fn unknown_key_lists_the_valid_ones() {
    let errs = parse_err("[server]\nlissten = [\"127.0.0.1:1\"]\n");
    // The rest of the file is still validated: it has no route either.
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[1].contains("no [[route]]"), "{}", errs[1]);
    assert!(
        errs[0].starts_with(
            "t.toml:2:1: server.lissten: unknown field `lissten`, expected one of `listen`"
        ),
        "{}",
        errs[0]
    );
}
