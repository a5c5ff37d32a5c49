use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::balance::BackendSet;
use crate::health::Supervisor;

fn config(text: &str) -> Config {
    config::parse(text, Path::new("f.toml")).unwrap_or_else(|e| panic!("{e}"))
}

const SERVER: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\nthreads = 1\n";

fn file(body: &str) -> String {
    format!("{SERVER}{body}")
}

/// The config file `path` as the process started with it: `text`, prepared, its names
/// answered by `resolver`.
fn source_with(path: &Path, text: &str, resolver: Arc<dyn config::Resolve>) -> Source {
    let loaded = Source::from_text(path, text.to_owned(), resolver);
    loaded.unwrap_or_else(|e| panic!("{e}")).1
}

/// [`source_with`] the system resolver.
fn source(path: &Path, text: &str) -> Source {
    source_with(path, text, Arc::new(config::SystemResolver))
}

/// Answers every host name with the addresses it holds now.
#[derive(Debug, Default)]
struct Answering(std::sync::Mutex<Vec<std::net::IpAddr>>);

impl config::Resolve for Answering {
    fn answer(&self, hosts: &[&str]) -> config::Answers {
        let ips = self.0.lock().unwrap().clone();
        hosts
            .iter()
            .map(|&h| (h.to_owned(), Ok(ips.clone())))
            .collect()
    }
}

/// The value of `fulcrum_config_reloads_total{result}`.
fn reloads(rt: &Runtime, result: &str) -> f64 {
    let families = rt.metrics.registry().gather();
    let family = families
        .iter()
        .find(|f| f.name() == "fulcrum_config_reloads_total")
        .expect("registered");
    family
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.value() == result))
        .map_or(0.0, |m| m.get_counter().get_value())
}

async fn runtime(text: &str) -> Arc<Runtime> {
    let (_, handle) = Supervisor::new();
    Runtime::start(
        config(text),
        None,
        handle,
        None,
        crate::metrics::Metrics::detached(),
        None,
    )
    .await
}

/// A port nothing listens on.
fn dead() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn apply_publishes_a_new_generation_and_keeps_backend_state() {
    let (a, b) = (dead(), dead());
    let one = file(&format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{a}\" }}]\n"
    ));
    let rt = runtime(&one).await;
    let first = rt.snapshot().load_full();
    assert_eq!(first.generation, 1);
    let state_a = Arc::clone(&first.upstreams[0].backends[0].state);
    let lease = first.upstreams[0].lease(0);
    assert_eq!(state_a.upstream().generation(), 1);

    let two = file(&format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{a}\", weight = 3 }}, {{ addr = \"{b}\" }}]\n"
    ));
    let epoch = state_a.upstream().epoch();
    let outcome = rt.apply(config(&two)).await;
    assert!(outcome.is_success(), "{outcome}");
    assert!(
        outcome
            .to_string()
            .ends_with("2 backends (1 added, 0 removed)"),
        "{outcome}"
    );
    let now = rt.snapshot().load_full();
    assert_eq!(now.generation, 2);
    assert!(Arc::ptr_eq(&now.upstreams[0].backends[0].state, &state_a));
    assert_eq!(
        state_a.in_flight(),
        1,
        "the in-flight request is still counted"
    );
    assert_eq!(state_a.upstream().generation(), 2);
    assert!(
        state_a.upstream().epoch() > epoch,
        "views re-read the registry"
    );
    // The request picked under generation 1 ends: the new balancer hears of it.
    let epoch = state_a.upstream().epoch();
    drop(lease);
    assert_eq!(state_a.in_flight(), 0);
    assert!(state_a.upstream().epoch() > epoch);
}

#[tokio::test]
async fn a_new_checked_backend_is_probed_before_the_snapshot_is_published() {
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (alive, gone) = (up.local_addr().unwrap(), dead());
    let check = "[upstream.u.health_check]\nkind = \"tcp\"\ninterval = \"1h\"\ntimeout = \"1s\"\n";
    let one = file(&format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{alive}\" }}]\n{check}"
    ));
    let rt = runtime(&one).await;
    let none = BackendSet::default();
    assert!(
        rt.snapshot().load().upstreams[0].eligible(0, &none),
        "probed at start"
    );

    let two = file(&format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{alive}\" }}, {{ addr = \"{gone}\" }}]\n{check}"
    ));
    assert!(rt.apply(config(&two)).await.is_success());
    let snap = rt.snapshot().load();
    let u = &snap.upstreams[0];
    assert!(u.eligible(0, &none), "kept its health");
    assert!(
        !u.backends[1].state.health.is_unknown(),
        "probed before publishing"
    );
    assert!(!u.eligible(1, &none), "refused: not eligible");
}

#[tokio::test]
async fn a_check_removed_by_a_reload_leaves_its_backends_unknown_by_the_time_apply_returns() {
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let alive = up.local_addr().unwrap();
    let body = format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{alive}\" }}]\n"
    );
    let check = "[upstream.u.health_check]\nkind = \"tcp\"\ninterval = \"1h\"\ntimeout = \"1s\"\n";
    let rt = runtime(&file(&format!("{body}{check}"))).await;
    let state = Arc::clone(&rt.snapshot().load().upstreams[0].backends[0].state);
    assert!(!state.health.is_unknown(), "probed at start");
    assert!(rt.apply(config(&file(&body))).await.is_success());
    assert!(
        state.health.is_unknown(),
        "a check added back must probe before trusting the old result"
    );
    // Added back: probed again before the config is published.
    assert!(rt
        .apply(config(&file(&format!("{body}{check}"))))
        .await
        .is_success());
    assert!(rt.snapshot().load().upstreams[0].eligible(0, &BackendSet::default()));
}

#[tokio::test]
async fn keys_only_a_restart_changes_are_reported_with_their_place_and_the_rest_applies() {
    let a = dead();
    let body =
        format!("[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{a}\" }}]\n");
    let rt = runtime(&file(&body)).await;
    let changed = format!(
        "[server]\nlisten = [\"127.0.0.1:2\"]\nthreads = 1\nadmin_listen = \"127.0.0.1:3\"\nmax_request_body = 5\n{body}"
    );
    let outcome = rt.apply(config(&changed)).await;
    let Outcome::Partial { restart, .. } = &outcome else {
        panic!("expected a partial reload: {outcome}");
    };
    let lines: Vec<String> = restart.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "-:2:10: server.listen: server.listen changed: restart, or run a graceful upgrade, to apply",
            "-:4:16: server.admin_listen: server.admin_listen changed: restart, or run a graceful upgrade, to apply",
        ]
    );
    assert!(!outcome.is_success());
    assert_eq!(rt.snapshot().load().max_request_body, 5, "the rest applied");
}

#[tokio::test]
async fn a_removed_backend_keeps_its_state_while_a_request_holds_it_then_it_is_gone() {
    let (a, b) = (dead(), dead());
    let both = file(&format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{a}\" }}, {{ addr = \"{b}\" }}]\n"
    ));
    let rt = runtime(&both).await;
    let lease = rt.snapshot().load().upstreams[0].lease(1);
    let weak = Arc::downgrade(&rt.snapshot().load().upstreams[0].backends[1].state);
    let only_a = file(&format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{a}\" }}]\n"
    ));
    let outcome = rt.apply(config(&only_a)).await;
    assert!(
        outcome.to_string().ends_with("(0 added, 1 removed)"),
        "{outcome}"
    );
    assert_eq!(rt.registry.len(), (1, 2), "b lives while its request does");
    drop(lease);
    assert!(weak.upgrade().is_none(), "nothing refers to b any more");
    assert_eq!(rt.registry.len(), (1, 1));
}

#[test]
fn outcomes_read_well() {
    let e = ConfigError::at(
        Path::new("f.toml"),
        "x\ny",
        Some(2..3),
        "route[0].upstream",
        "bad",
    );
    let rejected = Outcome::Rejected { errors: vec![e] };
    assert_eq!(
        rejected.to_string(),
        "config rejected, previous config still serving:\nf.toml:2:1: route[0].upstream: bad"
    );
    assert!(!rejected.is_success());
}

#[tokio::test]
async fn a_request_in_flight_on_a_removed_route_does_not_bring_its_series_back() {
    let a = dead();
    let route =
        |name: &str| format!("[[route]]\nname = \"{name}\"\nhost = \"{name}\"\nupstream = \"u\"\n");
    let upstream = format!("[upstream.u]\nbackends = [{{ addr = \"{a}\" }}]\n");
    let rt = runtime(&file(&format!(
        "{}{}{upstream}",
        route("old"),
        route("kept")
    )))
    .await;
    let first = rt.snapshot().load_full();
    let old = first
        .routes
        .iter()
        .find(|r| r.config.name == "old")
        .unwrap();
    old.metrics
        .requests
        .inc(&http::Method::GET, 200, crate::outcome::Outcome::Ok);

    let outcome = rt
        .apply(config(&file(&format!("{}{upstream}", route("kept")))))
        .await;
    assert!(outcome.is_success(), "{outcome}");
    // The request that was in flight on the old snapshot ends with a code not seen before.
    old.metrics
        .requests
        .inc(&http::Method::GET, 504, crate::outcome::Outcome::Ok);
    let series: Vec<String> = rt
        .metrics
        .registry()
        .gather()
        .iter()
        .filter(|f| f.name() == "fulcrum_requests_total")
        .flat_map(|f| f.get_metric().iter())
        .flat_map(|m| m.get_label().iter())
        .filter(|l| l.name() == "route")
        .map(|l| l.value().to_owned())
        .collect();
    assert!(!series.iter().any(|r| r == "old"), "{series:?}");
}

#[tokio::test]
async fn a_partial_reload_is_what_a_dns_refresh_starts_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let body = format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{}\" }}]\n",
        dead()
    );
    let one = file(&body);
    std::fs::write(&path, &one).unwrap();
    let (_, handle) = Supervisor::new();
    let source = source(&path, &one);
    let metrics = crate::metrics::Metrics::detached();
    let rt = Runtime::start(config(&one), Some(source), handle, None, metrics, None).await;
    // A key only a restart changes, and one that applies now.
    let two =
        format!("[server]\nlisten = [\"127.0.0.1:2\"]\nthreads = 1\nmax_request_body = 5\n{body}");
    std::fs::write(&path, &two).unwrap();
    let outcome = rt.reload(Cause::Sighup).await.expect("a reload");
    assert!(matches!(outcome, Outcome::Partial { .. }), "{outcome}");
    assert_eq!(rt.snapshot().load().max_request_body, 5);
    // A DNS refresh re-resolves this text, not the one before it (which would undo the rest).
    let prepared = rt.applied.lock().await.prepared.clone().expect("kept");
    let resolved = prepared.resolve(&config::OfflineResolver, &[]);
    assert_eq!(resolved.config.server.max_request_body, 5);
    // A refresh is not a reload: the last load is still the partial one, counted once.
    let last = rt.last_load();
    assert_eq!(rt.refresh_dns().await, Some(DnsRefresh::Unchanged));
    assert_eq!(rt.last_load().message, last.message);
    assert_eq!(rt.last_load().at, last.at);
    assert_eq!(rt.snapshot().load().generation, 2);
}

#[tokio::test]
async fn the_running_configs_max_config_size_governs_the_next_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let body = format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"{}\" }}]\n",
        dead()
    );
    // `limit` as max_config_size, padded with a comment to `size` bytes.
    let text = |limit: &str, size: usize| {
        let head = format!("[server]\nlisten = [\"127.0.0.1:1\"]\nthreads = 1\nmax_config_size = \"{limit}\"\n{body}#");
        format!("{head}{}\n", "x".repeat(size - head.len() - 1))
    };
    let small = text("2KiB", 1500);
    std::fs::write(&path, &small).unwrap();
    let (_, handle) = Supervisor::new();
    let source = source(&path, &small);
    let metrics = crate::metrics::Metrics::detached();
    let rt = Runtime::start(config(&small), Some(source), handle, None, metrics, None).await;

    // 3 000 bytes asking for 4 KiB: over the 2 KiB of the config running now, so not read.
    let large = text("4KiB", 3000);
    std::fs::write(&path, &large).unwrap();
    let outcome = rt.reload(Cause::Sighup).await.expect("a reload");
    let Outcome::Rejected { errors } = &outcome else {
        panic!("{outcome}");
    };
    assert_eq!(errors.len(), 1, "{outcome}");
    assert_eq!(errors[0].field, "server.max_config_size");
    assert!(errors[0].message.contains("larger than 2 KiB"), "{outcome}");
    assert_eq!(rt.snapshot().load().generation, 1);

    // A small file that raises the limit applies; then the large one is read.
    std::fs::write(&path, text("4KiB", 1500)).unwrap();
    let outcome = rt.reload(Cause::Sighup).await.expect("a reload");
    assert!(outcome.is_success(), "{outcome}");
    std::fs::write(&path, &large).unwrap();
    let outcome = rt.reload(Cause::Sighup).await.expect("a reload");
    assert!(outcome.is_success(), "{outcome}");
    assert_eq!(rt.snapshot().load().generation, 3);
}

#[tokio::test]
async fn a_dns_refresh_after_a_partial_reload_publishes_without_counting_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let port = dead().port();
    let body = format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"svc.test:{port}\" }}]\n"
    );
    let one = file(&body);
    std::fs::write(&path, &one).unwrap();
    let resolver = Arc::new(Answering::default());
    *resolver.0.lock().unwrap() = vec![[127, 0, 0, 1].into()];
    let source = source_with(&path, &one, resolver.clone());
    let config = source.prepared.resolve(&*resolver, &[]).config;
    let (_, handle) = Supervisor::new();
    let metrics = crate::metrics::Metrics::detached();
    let rt = Runtime::start(config, Some(source), handle, None, metrics, None).await;
    std::fs::write(
        &path,
        format!("[server]\nlisten = [\"127.0.0.1:2\"]\nthreads = 1\n{body}"),
    )
    .unwrap();
    let outcome = rt.reload(Cause::Sighup).await.expect("a reload");
    assert!(matches!(outcome, Outcome::Partial { .. }), "{outcome}");
    let last = rt.last_load();
    assert_eq!(reloads(&rt, "failure"), 1.0);

    // Nothing changed: nothing is published.
    assert_eq!(rt.refresh_dns().await, Some(DnsRefresh::Unchanged));
    assert_eq!(rt.snapshot().load().generation, 2);
    // The name moves: the new address is published, and no reload is counted or recorded.
    *resolver.0.lock().unwrap() = vec![[127, 0, 0, 2].into()];
    assert_eq!(rt.refresh_dns().await, Some(DnsRefresh::Changed));
    let snapshot = rt.snapshot().load();
    assert_eq!(snapshot.generation, 3);
    let addrs: Vec<SocketAddr> = snapshot.upstreams[0]
        .backends
        .iter()
        .map(|b| b.addr)
        .collect();
    assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 2], port))]);
    assert_eq!(reloads(&rt, "failure"), 1.0);
    assert_eq!(rt.last_load().message, last.message);
    assert_eq!(rt.last_load().at, last.at);
}

/// Answers each host name as set (a name not set: no address).
#[derive(Debug, Default)]
struct Scripted(std::sync::Mutex<config::Answers>);

impl Scripted {
    fn set(&self, host: &str, answer: Result<Vec<std::net::IpAddr>, &str>) {
        let answer = answer.map_err(str::to_owned);
        self.0.lock().unwrap().insert(host.to_owned(), answer);
    }
}

impl config::Resolve for Scripted {
    fn answer(&self, hosts: &[&str]) -> config::Answers {
        let set = self.0.lock().unwrap();
        let answer = |h: &str| set.get(h).cloned().unwrap_or(Ok(Vec::new()));
        hosts.iter().map(|&h| (h.to_owned(), answer(h))).collect()
    }
}

/// The value of the counter `name` (without labels).
fn counter(rt: &Runtime, name: &str) -> f64 {
    let families = rt.metrics.registry().gather();
    let family = families
        .iter()
        .find(|f| f.name() == name)
        .expect("registered");
    family.get_metric()[0].get_counter().get_value()
}

/// A runtime on a file whose upstream has `one.test` and `two.test` on a dead port, both
/// answered by the returned resolver.
async fn two_names() -> (tempfile::TempDir, Arc<Runtime>, Arc<Scripted>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let port = dead().port();
    let body = format!(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{{ addr = \"one.test:{port}\" }}, {{ addr = \"two.test:{port}\" }}]\n"
    );
    let text = file(&body);
    std::fs::write(&path, &text).unwrap();
    let resolver = Arc::new(Scripted::default());
    resolver.set("one.test", Ok(vec![[127, 0, 0, 1].into()]));
    resolver.set("two.test", Ok(vec![[127, 0, 0, 2].into()]));
    let (config, source) = Source::from_text(&path, text, resolver.clone()).unwrap();
    let (_, handle) = Supervisor::new();
    let metrics = crate::metrics::Metrics::detached();
    let rt = Runtime::start(config, Some(source), handle, None, metrics, None).await;
    (dir, rt, resolver)
}

fn addresses(rt: &Runtime) -> Vec<SocketAddr> {
    let snapshot = rt.snapshot().load();
    snapshot.upstreams[0]
        .backends
        .iter()
        .map(|b| b.addr)
        .collect()
}

#[tokio::test]
async fn a_failed_lookup_keeps_the_backends_publishes_nothing_and_is_noted_once() {
    let (_dir, rt, resolver) = two_names().await;
    let before = addresses(&rt);
    assert_eq!(before.len(), 2);
    let failures = "fulcrum_dns_lookup_failures_total";
    assert_eq!(counter(&rt, failures), 0.0);

    resolver.set("one.test", Err("resolver failure"));
    for round in 1..=2 {
        assert_eq!(rt.refresh_dns().await, Some(DnsRefresh::Unchanged));
        assert_eq!(addresses(&rt), before);
        assert_eq!(rt.snapshot().load().generation, 1);
        assert_eq!(counter(&rt, failures), f64::from(round));
        let noted = rt.applied.lock().await.noted.clone();
        let one = before[0].port();
        assert_eq!(
            noted,
            HashMap::from([(format!("one.test:{one}"), Noted::LookupFailed)])
        );
    }
    // It answers again: nothing noted any more, and nothing to publish.
    resolver.set("one.test", Ok(vec![[127, 0, 0, 1].into()]));
    assert_eq!(rt.refresh_dns().await, Some(DnsRefresh::Unchanged));
    assert!(rt.applied.lock().await.noted.is_empty());
    assert_eq!(counter(&rt, failures), 2.0);
}

#[tokio::test]
async fn a_change_published_beside_a_failed_lookup_counts_as_changed() {
    let (_dir, rt, resolver) = two_names().await;
    let port = addresses(&rt)[0].port();
    resolver.set("one.test", Err("resolver failure"));
    resolver.set("two.test", Ok(vec![[127, 0, 0, 3].into()]));
    assert_eq!(rt.refresh_dns().await, Some(DnsRefresh::Changed));
    assert_eq!(
        addresses(&rt),
        [
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from(([127, 0, 0, 3], port))
        ]
    );
    assert_eq!(rt.snapshot().load().generation, 2);
    assert_eq!(reloads(&rt, "success") + reloads(&rt, "failure"), 0.0);
    assert_eq!(counter(&rt, "fulcrum_dns_lookup_failures_total"), 1.0);
}

#[tokio::test]
async fn a_name_without_an_address_at_start_is_noted_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    let text = file(
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{ addr = \"gone.test:80\" }]\n",
    );
    std::fs::write(&path, &text).unwrap();
    let resolver = Arc::new(Scripted::default());
    let (config, source) = Source::from_text(&path, text, resolver.clone()).unwrap();
    let (_, handle) = Supervisor::new();
    let metrics = crate::metrics::Metrics::detached();
    let rt = Runtime::start(config, Some(source), handle, None, metrics, None).await;
    // Start warned about it (`fulcrum run` logs the config's warnings): a refresh does not again.
    let noted = HashMap::from([("gone.test:80".to_owned(), Noted::NoAddress)]);
    assert_eq!(rt.applied.lock().await.noted, noted);
    assert_eq!(rt.refresh_dns().await, Some(DnsRefresh::Unchanged));
    assert_eq!(rt.applied.lock().await.noted, noted);
    // Its lookup fails now: another state, warned about once.
    resolver.set("gone.test", Err("resolver failure"));
    assert_eq!(rt.refresh_dns().await, Some(DnsRefresh::Unchanged));
    let failed = HashMap::from([("gone.test:80".to_owned(), Noted::LookupFailed)]);
    assert_eq!(rt.applied.lock().await.noted, failed);
}
