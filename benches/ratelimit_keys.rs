//! Memory of rate-limit buckets under many distinct clients: 1 000 000 client IPs, each seen
//! once, checked as fast as one thread can (the route check a request runs, key hashing
//! included), with the RSS before, after, and after the pruning the background task does.
//!
//! `cargo bench --features internals --bench ratelimit_keys`

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use fulcrum::config::{RateKey, RateLimitConfig, RateQuota};
use fulcrum::ratelimit::{RouteLimit, Verdict};
use fulcrum::registry::Registry;
use pingora::http::RequestHeader;

const KEYS: u32 = 1_000_000;

/// Resident set size of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() {
    // cargo bench passes --bench; any other argument (a filter) is ignored.
    let registry = Registry::default();
    // 100 requests per second, 50 at once: a key used once is full again 10 ms later.
    let config = RateLimitConfig {
        quota: RateQuota {
            rate: 100,
            per: Duration::from_secs(1),
            burst: 50,
        },
        key: RateKey::ClientIp,
        headers: true,
    };
    let limit = RouteLimit::new("keys", &config, &registry);
    let req = RequestHeader::build("GET", b"/", None).unwrap();
    let before = rss_mib();
    let started = Instant::now();
    let mut allowed = 0u32;
    for n in 0..KEYS {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        if matches!(limit.check(&req, Some(ip)), Verdict::Allowed { .. }) {
            allowed += 1;
        }
    }
    let took = started.elapsed();
    let full = rss_mib();
    assert_eq!(allowed, KEYS, "every new key has a full bucket");
    // The pruner runs every 5 s in fulcrum; here once, after the buckets are full again.
    std::thread::sleep(Duration::from_millis(50));
    let buckets = registry.live_buckets();
    let prune_started = Instant::now();
    let left: usize = buckets.iter().map(|b| b.prune()).sum();
    let prune_took = prune_started.elapsed();
    let pruned = rss_mib();
    println!("{KEYS} distinct client IPs, one request each, one thread:");
    println!(
        "  {:.0} ns per check ({:.1} M checks/s)",
        took.as_nanos() as f64 / f64::from(KEYS),
        f64::from(KEYS) / took.as_secs_f64() / 1e6
    );
    println!(
        "  RSS {before:.1} MiB -> {full:.1} MiB with {KEYS} keys (+{:.1} MiB, {:.0} bytes per key)",
        full - before,
        (full - before) * 1024.0 * 1024.0 / f64::from(KEYS)
    );
    println!(
        "  pruned in {prune_took:?}: {left} keys left, RSS {pruned:.1} MiB (+{:.1} MiB over the start)",
        pruned - before
    );
}
