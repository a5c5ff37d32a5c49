//! What protection costs a request: a rate-limit check (the bucket alone, and the whole route
//! check with its key hashing), a breaker's admission read and outcome record, and the
//! `max_inflight` admission.
//!
//! `cargo bench --features internals --bench protect`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use fulcrum::config::{BreakerConfig, RateKey, RateLimitConfig, RateQuota};
use fulcrum::ratelimit::{RouteLimit, Verdict};
use fulcrum::registry::{Buckets, Registry};
use pingora::http::RequestHeader;

/// A limit that never triggers in a benchmark's lifetime.
const GENEROUS: RateQuota = RateQuota {
    rate: u32::MAX,
    per: Duration::from_secs(1),
    burst: u32::MAX,
};

fn limit(key: RateKey, registry: &Registry) -> RouteLimit {
    let config = RateLimitConfig {
        quota: GENEROUS,
        key,
        headers: true,
    };
    RouteLimit::new("bench", &config, registry)
}

fn ratelimit(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit");
    let global = Buckets::new(GENEROUS, false);
    g.bench_function("bucket_global", |b| b.iter(|| global.check(black_box(0))));
    let keyed = Buckets::new(GENEROUS, true);
    for k in 0..10_000 {
        keyed.check(k);
    }
    let mut k = 0u64;
    g.bench_function("bucket_keyed_10k_keys", |b| {
        b.iter(|| {
            k = (k + 1) % 10_000;
            keyed.check(black_box(k))
        })
    });

    let registry = Registry::default();
    let req = {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("x-api-key", "k-0123456789abcdef").unwrap();
        r
    };
    let by_ip = limit(RateKey::ClientIp, &registry);
    let mut n = 0u32;
    g.bench_function("route_check_client_ip_10k_clients", |b| {
        b.iter(|| {
            n = (n + 1) % 10_000;
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            with_value(&by_ip, by_ip.check(black_box(&req), Some(ip)))
        })
    });
    let by_header = limit(
        RateKey::Header(http::HeaderName::from_static("x-api-key")),
        &registry,
    );
    let ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    g.bench_function("route_check_header", |b| {
        b.iter(|| with_value(&by_header, by_header.check(black_box(&req), ip)))
    });
    let quiet = RouteLimit::new(
        "quiet",
        &RateLimitConfig {
            quota: GENEROUS,
            key: RateKey::ClientIp,
            headers: false,
        },
        &registry,
    );
    g.bench_function("route_check_client_ip_no_headers", |b| {
        b.iter(|| quiet.check(black_box(&req), ip))
    });
    g.finish();
}

/// What an allowed response costs in all: the verdict and the `RateLimit` value it carries.
fn with_value(limit: &RouteLimit, v: Verdict) -> Option<http::HeaderValue> {
    match v {
        Verdict::Allowed { state } => state.map(|s| limit.header(s)),
        Verdict::Limited { state, .. } => Some(limit.header(state)),
    }
}

fn breaker_and_admission(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    let registry = Registry::default();
    let upstream = registry.upstream("u");
    let backend = registry.backend(&upstream, "127.0.0.1:1".parse().unwrap());
    let config = BreakerConfig {
        consecutive_failures: 5,
        failure_rate: Some(0.5),
        min_requests: 20,
        window: Duration::from_secs(10),
        open_duration: Duration::from_secs(30),
        half_open_requests: 3,
        failure_status: fulcrum::config::StatusSet::EMPTY,
    };
    g.bench_function("admits_closed", |b| {
        b.iter(|| backend.breaker.admits(black_box(&config)))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    g.bench_function("record_success_with_failure_rate", |b| {
        b.iter(|| {
            fulcrum::circuit::record(&backend, black_box(&config), true, None);
        })
    });
    g.bench_function("max_inflight_admission", |b| {
        b.iter(|| drop(black_box(upstream.admit(Some(1000)))))
    });
    g.finish();
}

criterion_group!(benches, ratelimit, breaker_and_admission);
criterion_main!(benches);
