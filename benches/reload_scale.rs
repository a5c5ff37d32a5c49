//! Reload time and memory of the release binary on large configs:
//!
//! - `narrow`: 10 000 and 100 000 routes (name, path) over 100 upstreams of 2 backends;
//! - `wide`: 20 000 routes (a third with an exact host, a third with a wildcard, every tenth
//!   rate-limited) over 10 000 upstreams of 2 backends (one by IP, one by the name
//!   `localhost`), every strategy, every fifth upstream with outlier ejection and a breaker.
//!
//! For each file fulcrum starts on it, then:
//!
//! - `same`: `POST /reload` of the unchanged file (every route keeps its metric series);
//! - `renamed`: the file rewritten with every route renamed, then `POST /reload` (every
//!   series of the old routes goes, one of each new route comes).
//!
//! Each row gives the reload's wall time (the `POST /reload` round trip: read, parse, validate,
//! build, publish, prune) and the process's peak RSS during it (`VmHWM` after the peak was
//! reset through `/proc/PID/clear_refs` just before), beside the RSS before it. Reload must be
//! linear: the 100 000 row about ten times the 10 000 one.
//!
//! `cargo bench --bench reload_scale` (Linux; builds the release binary). `FULCRUM_BIN=PATH`
//! measures another build instead (the revision before a change, say).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::Fulcrum;

/// (shape, routes)
const CASES: [(&str, usize); 3] = [("narrow", 10_000), ("narrow", 100_000), ("wide", 20_000)];
const UPSTREAMS: usize = 100;
/// How long a start or a reload of the largest file may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(300);

/// `routes` routes named `{prefix}{i}`, path `/p{i}/`, over [`UPSTREAMS`] upstreams.
fn body(routes: usize, prefix: &str) -> String {
    let mut text = String::with_capacity(routes * 64 + UPSTREAMS * 96);
    for r in 0..routes {
        text.push_str(&format!(
            "[[route]]\nname = \"{prefix}{r}\"\npath = \"/p{r}/\"\nupstream = \"u{}\"\n",
            r % UPSTREAMS
        ));
    }
    for u in 0..UPSTREAMS {
        text.push_str(&format!(
            "[upstream.u{u}]\nbackends = [{{ addr = \"127.0.0.1:{}\" }}, {{ addr = \"127.0.0.1:{}\" }}]\n",
            10_000 + 2 * u,
            10_001 + 2 * u
        ));
    }
    text
}

/// `routes` routes named `{prefix}{i}` over `routes / 2` upstreams; see the module doc.
fn wide(routes: usize, prefix: &str) -> String {
    const STRATEGIES: [&str; 7] = [
        "round_robin",
        "weighted_round_robin",
        "least_connections",
        "p2c",
        "random",
        "ip_hash",
        "consistent_hash",
    ];
    let upstreams = routes / 2;
    let mut text = String::with_capacity(routes * 180);
    for r in 0..routes {
        let host = match r % 3 {
            0 => format!("host = \"*.h{r}.example.com\"\n"),
            1 => format!("host = \"h{r}.example.com\"\n"),
            _ => String::new(),
        };
        let limit = match r % 10 {
            0 => "rate_limit = { rate = 100, per = \"1s\", burst = 50 }\n",
            _ => "",
        };
        text.push_str(&format!(
            "[[route]]\nname = \"{prefix}{r}\"\n{host}path = \"/p{r}/\"\nupstream = \"u{}\"\n{limit}",
            r % upstreams
        ));
    }
    for u in 0..upstreams {
        let strategy = STRATEGIES[u % STRATEGIES.len()];
        let key = match strategy {
            "consistent_hash" => "hash_key = \"path\"\n",
            _ => "",
        };
        let port = 20_000 + (2 * u) % 40_000;
        text.push_str(&format!(
            "[upstream.u{u}]\nbalance = \"{strategy}\"\n{key}backends = [{{ addr = \"127.0.{}.{}:{port}\", weight = 2 }}, {{ addr = \"localhost:{}\" }}]\n",
            (u / 250) % 250,
            u % 250 + 1,
            port + 1
        ));
        if u % 5 == 0 {
            text.push_str(&format!(
                "[upstream.u{u}.outlier]\nconsecutive_failures = 5\n[upstream.u{u}.circuit_breaker]\nconsecutive_failures = 5\n"
            ));
        }
    }
    text
}

/// A `kB` field of `/proc/PID/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: f64 = status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb / 1024.0
}

/// Resets the process's peak RSS (`VmHWM`) to its RSS now.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// `POST /reload`, timed, with the peak RSS during it: (seconds, RSS before, peak), in MiB.
async fn reload(f: &Fulcrum) -> (f64, f64, f64) {
    let pid = f.child.id();
    let before = status_mib(pid, "VmRSS:");
    reset_peak(pid);
    let started = Instant::now();
    let r = tokio::time::timeout(LIMIT, f.admin_post("/reload"))
        .await
        .expect("reload within the limit");
    let took = started.elapsed().as_secs_f64();
    assert_eq!(r.status, 200, "{}", r.body);
    (took, before, status_mib(pid, "VmHWM:"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("| config | routes | file | start | reload | time | RSS before | peak RSS during |");
    println!("|---|---|---|---|---|---|---|---|");
    for (shape, routes) in CASES {
        let file = |prefix| match shape {
            "wide" => wide(routes, prefix),
            _ => body(routes, prefix),
        };
        let text = file("r");
        let mut f = Fulcrum::launch("127.0.0.1", "warn", "", &text);
        let started = Instant::now();
        f.wait_ready(LIMIT).expect("fulcrum serves");
        let start = started.elapsed().as_secs_f64();
        let size = format!("{:.1} MB", text.len() as f64 / 1e6);
        let (took, before, peak) = reload(&f).await;
        println!(
            "| {shape} | {routes} | {size} | {start:.2} s | same | {took:.2} s | {before:.0} MiB | {peak:.0} MiB |"
        );
        // Rewritten with new names: the watcher's reload comes after its 200 ms debounce, so
        // the POST is the one that applies it (the watcher then finds the text it read).
        f.rewrite(&file("s"));
        let (took, before, peak) = reload(&f).await;
        println!(
            "| {shape} | {routes} | {size} | | renamed | {took:.2} s | {before:.0} MiB | {peak:.0} MiB |"
        );
    }
}
