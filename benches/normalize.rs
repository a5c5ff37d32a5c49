//! Cost of request path normalisation, which every request pays before routing:
//! `cargo bench --bench normalize`. Three paths: a short one already in normal form (the fast
//! path, no allocation), a 60-byte realistic one in normal form, and one that needs rewriting.
//! Slashes are merged in all three, as an edge proxy would configure it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

// The module is private to `fulcrum::proxy` and pure, so the bench compiles it in by path.
// Only `normalize` is called here; `reason` and the unit tests (compiled by
// `cargo clippy --all-targets`) would be dead code.
#[allow(dead_code)]
#[path = "../src/proxy/normalize.rs"]
mod normalize;

const SHORT: &[u8] = b"/api/items";
const REALISTIC: &[u8] = b"/api/v2/customers/8f14e45f-ceea/orders/2024-06-01/items.json";
const REWRITE: &[u8] = b"/static//assets/%7euser/./css/../img/logo%2epng";

fn normalise(c: &mut Criterion) {
    assert_eq!(REALISTIC.len(), 60);
    assert_eq!(normalize::normalize(REALISTIC, true), Ok(None));
    assert_eq!(
        normalize::normalize(REWRITE, true).unwrap().as_deref(),
        Some(b"/static/assets/~user/img/logo.png".as_slice())
    );
    let mut g = c.benchmark_group("normalize");
    for (name, path) in [
        ("fast_path_10b", SHORT),
        ("normal_60b", REALISTIC),
        ("rewrite_47b", REWRITE),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| normalize::normalize(black_box(path), true))
        });
    }
    g.finish();
}

criterion_group!(benches, normalise);
criterion_main!(benches);
