//! Backends named by host name: resolved off the request path, again every `dns_refresh`, every
//! address a backend; a name that does not resolve at start is a warning and a 503 that names it.
//! Resolution goes through the test seam `FULCRUM_HOSTS_FILE` (set for the fulcrum that test starts),
//! and `localhost` through the system resolver.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Sends requests until `backend` has answered one more; panics with `what` after 5 s.
async fn served_by(f: &Fulcrum, backend: &Backend, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = backend.hits();
    while backend.hits() == before {
        assert!(Instant::now() < deadline, "{what}");
        get(f.addr, "h.test", "/").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 5 s) until 10 requests in a row go to the backend named `name`, none to
/// `gone`.
async fn only_served_by(f: &Fulcrum, name: &str, gone: &Backend) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = gone.hits();
        let mut answered = Vec::new();
        for _ in 0..10 {
            answered.push(get(f.addr, "h.test", "/").await.backend().to_owned());
        }
        if answered.iter().all(|b| b == name) && gone.hits() == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not only {name} within 5 s: {answered:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 10 requests are answered, and each of `backends` got some of them.
async fn all_serve(f: &Fulcrum, backends: &[&Backend], what: &str) {
    let before: Vec<usize> = backends.iter().map(|b| b.hits()).collect();
    for _ in 0..10 {
        assert_eq!(get(f.addr, "h.test", "/").await.status, 200, "{what}");
    }
    for (b, before) in backends.iter().zip(before) {
        assert!(b.hits() > before, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_late_fan_out_and_follow_changes() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    write_hosts(&hosts, "# nothing yet\n");
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (pa, pb) = (a.addr.port(), b.addr.port());
    // Both backends share a port number only in this test's imagination: the name's addresses
    // all take the port written after it, so each backend gets its own name here.
    let body = format!(
        "[[route]]\nupstream = \"svc\"\n[upstream.svc]\ndns_refresh = \"300ms\"\nbackends = [{{ addr = \"svc-a.test:{pa}\" }}, {{ addr = \"svc-b.test:{pb}\" }}]\n"
    );
    let f = Fulcrum::start_with_hosts(&hosts, "info", &body);
    // Neither name resolves: fulcrum serves anyway, and says which names it waits for.
    let r = get(f.addr, "h.test", "/").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("svc-a.test:"), "{}", r.body);
    assert!(r.body.contains("does not resolve"), "{}", r.body);
    assert!(
        f.log().contains("\"svc-a.test:") && f.log().contains("resolves to no address"),
        "{}",
        f.log()
    );

    // svc-a appears: traffic flows within a refresh or two.
    write_hosts(&hosts, "svc-a.test 127.0.0.1\n");
    served_by(&f, &a, "svc-a never served").await;

    // svc-b appears too: both serve; svc-a keeps its state (its in-flight count, its health)
    // through the change, which is applied like a reload.
    write_hosts(&hosts, "svc-a.test 127.0.0.1\nsvc-b.test 127.0.0.1\n");
    served_by(&f, &b, "svc-b never got traffic").await;
    f.wait_for_log(
        &["backend names resolve differently; applying the new addresses"],
        Duration::from_secs(2),
    )
    .await;
    all_serve(&f, &[&a, &b], "svc-a lost when svc-b appeared").await;

    // svc-a goes away (an answer with no address; a failed lookup would keep what it had):
    // only svc-b is left.
    write_hosts(&hosts, "svc-a.test\nsvc-b.test 127.0.0.1\n");
    only_served_by(&f, "b", &a).await;

    // A name that returns two addresses is two backends (a headless service).
    let c = Backend::on(
        ([127, 0, 0, 2], pb).into(),
        "c",
        support::Behaviour::default(),
    )
    .await;
    write_hosts(&hosts, "svc-b.test 127.0.0.1 127.0.0.2\n");
    served_by(&f, &c, "the second address never got traffic").await;
    all_serve(&f, &[&b, &c], "the first address stopped getting traffic").await;

    // The name stops resolving for a moment (a resolver hiccup): it keeps both addresses.
    write_hosts(&hosts, "svc-b.test !fail\n");
    f.wait_for_log(
        &["svc-b.test", "keeping the 2 address(es) it had"],
        Duration::from_secs(5),
    )
    .await;
    all_serve(&f, &[&b, &c], "an address was lost").await;

    // A broken edit of the config file is rejected, and names still follow DNS meanwhile.
    std::fs::write(f.config_path(), "[server\nbroken").unwrap();
    f.wait_for_log(
        &["config reload rejected; the previous config keeps serving"],
        Duration::from_secs(5),
    )
    .await;
    write_hosts(&hosts, "svc-b.test 127.0.0.2\n");
    only_served_by(&f, "c", &b).await;

    // Writes that leave the file's text as it was, faster than dns_refresh (a config manager
    // rewriting it): each is a no-op, and they do not put the refresh off.
    let path = f.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let reloads = |f: &Fulcrum| f.log().matches("config file changed; reloading").count();
    let reloads_before = reloads(&f);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rewriter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::write(&path, &text).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    write_hosts(&hosts, "svc-b.test 127.0.0.1\n");
    served_by(
        &f,
        &b,
        "names not resolved again while the file was rewritten unchanged",
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rewriter.join().unwrap();
    assert_eq!(reloads(&f), reloads_before, "{}", f.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_resolves_through_the_system_resolver() {
    let a = Backend::start("a").await;
    let body = format!(
        "[[route]]\nupstream = \"l\"\n[upstream.l]\nbackends = [{{ addr = \"localhost:{}\" }}]\n",
        a.addr.port()
    );
    let f = Fulcrum::start("", &body);
    let r = get(f.addr, "h.test", "/").await;
    assert_eq!((r.status, r.backend()), (200, "a"));
}
