//! Client latency during a reload storm vs steady state, through the release binary: the
//! 1 000-route / 200-upstream config, 16 kept-alive clients on 127.0.0.1, alternating 3 s
//! phases of steady traffic and of traffic while `POST /reload` runs back to back (a full
//! reload of that config each time). Target: p99 during reloads ≤ 2 × steady p99.
//!
//! `cargo bench --bench reload_storm`

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Backend, Conn, Fulcrum};

const CLIENTS: usize = 16;
const PHASE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;
const ROUTES: usize = 1000;
const UPSTREAMS: usize = 200;

fn config(a: &Backend, b: &Backend) -> String {
    let mut text = String::new();
    for r in 0..ROUTES {
        text.push_str(&format!(
            "[[route]]\nhost = \"h{}.example.com\"\npath = \"/p{r}/\"\nupstream = \"u{}\"\n",
            r % 100,
            r % UPSTREAMS
        ));
    }
    for u in 0..UPSTREAMS {
        text.push_str(&format!(
            "[upstream.u{u}]\nbalance = \"least_connections\"\nbackends = [{{ addr = \"{}\" }}, {{ addr = \"{}\" }}]\n",
            a.addr, b.addr
        ));
    }
    text
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let f = Fulcrum::start("", &config(&a, &b));
    let storming = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // (during a storm?, latency) of every request.
    let samples: Arc<Mutex<Vec<(bool, Duration)>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (storming, stop, samples) = (storming.clone(), stop.clone(), samples.clone());
            let addr = f.addr;
            tokio::spawn(async move {
                let mut conn = Conn::new(addr);
                let host = format!("h{}.example.com", i % 100);
                let path = format!("/p{}/x", i % 100);
                let mut mine = Vec::new();
                let mut failed = 0;
                while !stop.load(Ordering::Relaxed) {
                    let phase = storming.load(Ordering::Relaxed);
                    let started = Instant::now();
                    match conn.get(&host, &path).await {
                        Ok(r) if r.status == 200 => mine.push((phase, started.elapsed())),
                        _ => failed += 1,
                    }
                }
                samples.lock().unwrap().extend(mine);
                failed
            })
        })
        .collect();

    let mut reloads = Vec::new();
    for _ in 0..ROUNDS {
        storming.store(false, Ordering::Relaxed);
        tokio::time::sleep(PHASE).await;
        storming.store(true, Ordering::Relaxed);
        let until = Instant::now() + PHASE;
        while Instant::now() < until {
            let started = Instant::now();
            let r = f.admin_post("/reload").await;
            assert_eq!(r.status, 200, "{}", r.body);
            reloads.push(started.elapsed());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for c in clients {
        failed += c.await.unwrap();
    }

    let samples = samples.lock().unwrap();
    let phase = |storm: bool| {
        let mut v: Vec<Duration> = samples
            .iter()
            .filter(|(s, _)| *s == storm)
            .map(|(_, d)| *d)
            .collect();
        v.sort();
        v
    };
    let (steady, storm) = (phase(false), phase(true));
    reloads.sort();
    println!(
        "reload storm: {CLIENTS} kept-alive clients, {ROUTES} routes / {UPSTREAMS} upstreams, {ROUNDS} × ({PHASE:?} steady + {PHASE:?} reloading)"
    );
    println!("| phase | requests | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for (name, v) in [("steady", &steady), ("reload storm", &storm)] {
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            v.len(),
            percentile(v, 0.50).as_secs_f64() * 1e3,
            percentile(v, 0.99).as_secs_f64() * 1e3,
            v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    println!(
        "reloads: {} (POST /reload round trip p50 {:.1} ms, p99 {:.1} ms); failed requests: {failed}",
        reloads.len(),
        percentile(&reloads, 0.5).as_secs_f64() * 1e3,
        percentile(&reloads, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "p99 during reloads / steady p99 = {:.2}",
        percentile(&storm, 0.99).as_secs_f64() / percentile(&steady, 0.99).as_secs_f64()
    );
}
