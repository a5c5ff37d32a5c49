//! How long a reload of a large config takes: a generated file of 1 000 routes and 200
//! upstreams (1 000 backends), the steps a reload runs, and the whole of it. Target: < 50 ms.
//!
//! `cargo bench --features internals --bench reload`

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use fulcrum::config::{self, Config};
use fulcrum::health::Supervisor;
use fulcrum::registry::Registry;
use fulcrum::reload::Runtime;
use fulcrum::snapshot::Snapshot;

pub const ROUTES: usize = 1000;
pub const UPSTREAMS: usize = 200;
pub const BACKENDS_PER_UPSTREAM: usize = 5;

/// 1 000 routes (host + path) over 200 upstreams of 5 backends each, mixed strategies.
fn generated() -> String {
    let mut text = String::from("[server]\nlisten = [\"127.0.0.1:1\"]\nthreads = 1\n");
    for r in 0..ROUTES {
        text.push_str(&format!(
            "[[route]]\nhost = \"h{}.example.com\"\npath = \"/p{r}/\"\nupstream = \"u{}\"\ntimeout = \"30s\"\n",
            r % 100,
            r % UPSTREAMS
        ));
    }
    let strategies = [
        "round_robin",
        "least_connections",
        "p2c",
        "weighted_round_robin",
    ];
    for u in 0..UPSTREAMS {
        let backends: Vec<String> = (0..BACKENDS_PER_UPSTREAM)
            .map(|b| {
                format!(
                    "{{ addr = \"10.{}.{}.{b}:8080\", weight = {} }}",
                    u / 250,
                    u % 250,
                    b + 1
                )
            })
            .collect();
        text.push_str(&format!(
            "[upstream.u{u}]\nbalance = \"{}\"\nbackends = [{}]\nconnect_timeout = \"1s\"\n",
            strategies[u % strategies.len()],
            backends.join(", ")
        ));
    }
    text
}

fn parse(text: &str) -> Config {
    config::parse(text, Path::new("bench.toml")).expect("generated config is valid")
}

fn reload(c: &mut Criterion) {
    let text = generated();
    let config = parse(&text);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_supervisor, handle) = Supervisor::new();
    let runtime = rt.block_on(Runtime::start(
        config.clone(),
        None,
        handle.clone(),
        None,
        fulcrum::metrics::Metrics::detached(),
        None,
    ));

    let mut group = c.benchmark_group("reload_1000_routes_200_upstreams");
    group.sample_size(30);
    group.bench_function("parse_validate", |b| b.iter(|| parse(black_box(&text))));
    let registry = Registry::default();
    let metrics = fulcrum::metrics::Metrics::detached();
    group.bench_function("build_snapshot", |b| {
        b.iter(|| Snapshot::build(black_box(&config), &registry, 2, &handle, &metrics))
    });
    group.bench_function("apply", |b| {
        b.iter_batched(
            || config.clone(),
            |config| rt.block_on(runtime.apply(config)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("parse_and_apply", |b| {
        b.iter(|| rt.block_on(runtime.apply(parse(black_box(&text)))))
    });
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
