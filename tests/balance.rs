//! Balancing strategies through the real binary against real backends.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

async fn three(prefix: &str) -> [Backend; 3] {
    [
        Backend::start(&format!("{prefix}0")).await,
        Backend::start(&format!("{prefix}1")).await,
        Backend::start(&format!("{prefix}2")).await,
    ]
}

/// Which backend answered, per request, for `n` requests with the given headers.
async fn hits(f: &Fulcrum, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = get_with(f.addr, "h.test", "/", headers).await;
        assert_eq!(r.status, 200, "{}", r.body);
        *counts.entry(r.backend().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_shares_are_exact_over_3000_requests() {
    let [a, b, c] = three("w").await;
    let f = Fulcrum::start(
        "",
        &weighted(
            "w",
            &[(&a, 3), (&b, 2), (&c, 1)],
            "balance = \"weighted_round_robin\"",
        ),
    );
    let counts = hits(&f, 3000, &[]).await;
    assert_eq!(
        (counts["w0"], counts["w1"], counts["w2"]),
        (1500, 1000, 500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_shares_follow_weights_over_3000_requests() {
    let [a, b, c] = three("r").await;
    let f = Fulcrum::start(
        "",
        &weighted("r", &[(&a, 3), (&b, 2), (&c, 1)], "balance = \"random\""),
    );
    let counts = hits(&f, 3000, &[]).await;
    for (name, want) in [("r0", 0.5), ("r1", 1.0 / 3.0), ("r2", 1.0 / 6.0)] {
        let share = counts.get(name).copied().unwrap_or(0) as f64 / 3000.0;
        // ±4 % is over 4 standard deviations at 3 000 draws
        assert!(
            (share - want).abs() < 0.04,
            "{name}: {share:.3} vs {want:.3}"
        );
    }
}

/// Requests with each of `keys` (as a header built by `header`) go to one backend each, and
/// the keys do not all land on the same backend.
async fn assert_sticky(
    f: &Fulcrum,
    keys: &[String],
    header: impl Fn(&str) -> (&'static str, String),
) -> HashMap<String, String> {
    let mut owner = HashMap::new();
    for key in keys {
        let (name, value) = header(key);
        let counts = hits(f, 5, &[(name, &value)]).await;
        assert_eq!(counts.len(), 1, "key {key} was spread over {counts:?}");
        owner.insert(key.clone(), counts.into_keys().next().unwrap());
    }
    let distinct: std::collections::HashSet<_> = owner.values().collect();
    assert!(distinct.len() > 1, "all keys on one backend: {owner:?}");
    owner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_is_sticky_by_header_and_by_cookie() {
    let [a, b, c] = three("h").await;
    let keys: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();

    let f = Fulcrum::start(
        "",
        &weighted(
            "h",
            &[(&a, 1), (&b, 1), (&c, 1)],
            "balance = \"consistent_hash\"\nhash_key = \"header:X-User\"",
        ),
    );
    assert_sticky(&f, &keys, |k| ("x-user", k.to_owned())).await;
    // No key: round-robin.
    let counts = hits(&f, 6, &[]).await;
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    drop(f);

    let f = Fulcrum::start(
        "",
        &weighted(
            "h",
            &[(&a, 1), (&b, 1), (&c, 1)],
            "balance = \"consistent_hash\"\nhash_key = \"cookie:sid\"",
        ),
    );
    assert_sticky(&f, &keys, |k| ("cookie", format!("theme=dark; sid={k}"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_follows_the_real_client_ip_and_ignores_spoofing() {
    let [a, b, c] = three("ip").await;
    let body = weighted("ip", &[(&a, 1), (&b, 1), (&c, 1)], "balance = \"ip_hash\"");
    let ips: Vec<String> = (0..20).map(|i| format!("203.0.113.{i}")).collect();

    // Behind a trusted proxy (the test client is 127.0.0.1), X-Forwarded-For names the client.
    let f = Fulcrum::start("trusted_proxies = [\"127.0.0.0/8\"]", &body);
    assert_sticky(&f, &ips, |ip| ("x-forwarded-for", ip.to_owned())).await;
    drop(f);

    // From an untrusted peer the header is ignored: every request is the same client.
    let f = Fulcrum::start("", &body);
    let mut seen = std::collections::HashSet::new();
    for ip in &ips {
        seen.extend(hits(&f, 1, &[("x-forwarded-for", ip)]).await.into_keys());
    }
    assert_eq!(
        seen.len(),
        1,
        "spoofed X-Forwarded-For moved requests: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_placement_is_identical_across_processes() {
    let [a, b, c] = three("x").await;
    let body = weighted(
        "x",
        &[(&a, 2), (&b, 1), (&c, 1)],
        "balance = \"consistent_hash\"\nhash_key = \"query:uid\"",
    );
    // Two instances of a fleet, started separately: no per-process seed may differ.
    let (f1, f2) = (Fulcrum::start("", &body), Fulcrum::start("", &body));
    let mut owners = std::collections::HashSet::new();
    for uid in 0..40 {
        let path = format!("/?uid={uid}");
        let (r1, r2) = (
            get(f1.addr, "h.test", &path).await,
            get(f2.addr, "h.test", &path).await,
        );
        assert_eq!(r1.backend(), r2.backend(), "uid {uid}");
        owners.insert(r1.backend().to_owned());
    }
    assert_eq!(owners.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_sends_less_to_a_slow_backend_under_concurrency() {
    let slow = Backend::with(
        "slow",
        Behaviour {
            delay: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await;
    let (f1, f2) = (Backend::start("fast1").await, Backend::start("fast2").await);
    let f = Fulcrum::start(
        "",
        &weighted(
            "lc",
            &[(&slow, 1), (&f1, 1), (&f2, 1)],
            "balance = \"least_connections\"",
        ),
    );
    let addr = f.addr;
    let clients: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..40 {
                    assert_eq!(get(addr, "h.test", "/").await.status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let total = slow.hits() + f1.hits() + f2.hits();
    assert_eq!(total, 240);
    // Round-robin would give it a third (80); least-connections keeps it near one at a time.
    assert!(
        slow.hits() < 40,
        "slow backend got {} of {total}",
        slow.hits()
    );
}
