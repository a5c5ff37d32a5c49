//! Cost of one pick (and its release) for every strategy at 3, 100 and 1 000 backends:
//! `cargo bench --features internals --bench balance`. Target: ≤ 50 ns per pick at 1 000
//! backends. A second group measures picks during an outage (900 of 1 000 backends out of
//! service).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fulcrum::balance::{self, Balancer, Pick};
use fulcrum::config::{BackendConfig, BalanceKind, HashKey, UpstreamConfig};
use fulcrum::registry::Registry;

fn upstream(kind: BalanceKind, n: usize, factor: Option<f64>) -> UpstreamConfig {
    UpstreamConfig {
        name: "bench".into(),
        balance: kind,
        hash_key: matches!(kind, BalanceKind::ConsistentHash | BalanceKind::IpHash)
            .then_some(HashKey::Path),
        hash_balance_factor: factor,
        panic_threshold: 0,
        health_check: None,
        outlier: None,
        circuit_breaker: None,
        max_inflight: None,
        dns_refresh: std::time::Duration::from_secs(30),
        unresolved: Vec::new(),
        named: false,
        tls: None,
        backends: (0..n)
            .map(|i| BackendConfig {
                name: format!("b{i}"),
                addr: SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 8080)),
                // mixed weights 1..=5 so that the weighted strategies do weighted work
                weight: (i % 5) as u32 + 1,
            })
            .collect(),
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
    }
}

/// The strategy over `n` backends, with its in-flight state in a fresh registry.
fn balancer(kind: BalanceKind, n: usize, factor: Option<f64>) -> Arc<dyn Balancer> {
    let config = upstream(kind, n, factor);
    let registry = Registry::default();
    let upstream = registry.upstream("bench");
    let states: Vec<_> = config
        .backends
        .iter()
        .map(|b| registry.backend(&upstream, b.addr))
        .collect();
    balance::build(&config, &states)
}

fn picks(c: &mut Criterion) {
    let strategies = [
        ("round_robin", BalanceKind::RoundRobin, None),
        (
            "weighted_round_robin",
            BalanceKind::WeightedRoundRobin,
            None,
        ),
        ("least_connections", BalanceKind::LeastConnections, None),
        ("p2c", BalanceKind::P2c, None),
        ("random", BalanceKind::Random, None),
        ("ip_hash", BalanceKind::IpHash, None),
        ("consistent_hash", BalanceKind::ConsistentHash, None),
        (
            "consistent_hash_bounded",
            BalanceKind::ConsistentHash,
            Some(1.25),
        ),
    ];
    let keys: Vec<Vec<u8>> = (0..1024)
        .map(|i| format!("/user/{i}").into_bytes())
        .collect();
    let mut group = c.benchmark_group("pick");
    for (name, kind, factor) in strategies {
        for n in [3, 100, 1000] {
            let balancer = balancer(kind, n, factor);
            let eligible = |_: usize| true;
            let mut k = 0usize;
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    k = (k + 1) & 1023;
                    let pick = Pick {
                        eligible: &eligible,
                        key: Some(&keys[k]),
                        available: n,
                    };
                    let i = balancer.pick(black_box(&pick));
                    if let Some(i) = i {
                        balancer.release(i);
                    }
                    i
                })
            });
        }
    }
    group.finish();

    // An outage: 900 of 1 000 backends out of service, as health reports them.
    let mut group = c.benchmark_group("pick_900_of_1000_down");
    for (name, kind, factor) in strategies {
        let n = 1000;
        let balancer = balancer(kind, n, factor);
        let up = |i: usize| i % 10 == 0;
        balancer.sync(&up);
        let mut k = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                k = (k + 1) & 1023;
                let pick = Pick {
                    eligible: &up,
                    key: Some(&keys[k]),
                    available: n / 10,
                };
                let i = balancer.pick(black_box(&pick));
                if let Some(i) = i {
                    balancer.release(i);
                }
                i
            })
        });
    }
    group.finish();

    // A pool too large for a smooth-WRR table (weights 1..=1000), with everything down.
    let weights: Vec<u32> = (1..=1000).collect();
    let mut config = upstream(BalanceKind::WeightedRoundRobin, 1000, None);
    for (b, w) in config.backends.iter_mut().zip(&weights) {
        b.weight = *w;
    }
    let balancer = balance::build(&config, &[]);
    let down = |_: usize| false;
    c.bench_function("weighted_round_robin_live_mode_all_down/1000", |b| {
        b.iter(|| {
            balancer.pick(black_box(&Pick {
                eligible: &down,
                key: None,
                available: 0,
            }))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = picks
}
criterion_main!(benches);
