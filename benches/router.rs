//! Cost of one route lookup (`cargo bench --features internals --bench router`): the work every
//! request does before it reaches a balancer.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use fulcrum::router::Router;

fn config(hosts: usize) -> String {
    let mut s = String::from("[upstream.u]\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n");
    for i in 0..hosts {
        for path in ["/", "/api/", "/api/v1/", "/static/"] {
            s.push_str(&format!(
                "[[route]]\nhost = \"h{i}.example.com\"\npath = \"{path}\"\nupstream = \"u\"\n"
            ));
        }
    }
    s.push_str("[[route]]\nhost = \"*.example.com\"\nupstream = \"u\"\n");
    s
}

fn lookups(c: &mut Criterion) {
    for hosts in [1, 250] {
        let cfg = fulcrum::config::parse(&config(hosts), Path::new("bench.toml")).expect("valid");
        let router = Router::new(&cfg.routes);
        let last = format!("h{}.example.com", hosts - 1);
        c.bench_function(
            &format!("route exact host, {} routes", cfg.routes.len()),
            |b| b.iter(|| router.route(black_box(Some(last.as_str())), black_box("/api/v1/users"))),
        );
        c.bench_function(
            &format!("route wildcard fallback, {} routes", cfg.routes.len()),
            |b| b.iter(|| router.route(black_box(Some("Other.Example.com:8080")), black_box("/x"))),
        );
    }
}

criterion_group!(benches, lookups);
criterion_main!(benches);
