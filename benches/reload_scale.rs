//! Reload time and memory of the release binary on large configs: 10 000 and 100 000 routes
//! (over 100 upstreams of 2 backends). For each size fulcrum starts on the file, then:
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
//! `cargo bench --bench reload_scale` (Linux; builds the release binary)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::Fulcrum;

const SIZES: [usize; 2] = [10_000, 100_000];
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
    println!("| routes | file | start | reload | time | RSS before | peak RSS during |");
    println!("|---|---|---|---|---|---|---|");
    for routes in SIZES {
        let text = body(routes, "r");
        let mut f = Fulcrum::launch("127.0.0.1", "warn", "", &text);
        let started = Instant::now();
        f.wait_ready(LIMIT).expect("fulcrum serves");
        let start = started.elapsed().as_secs_f64();
        let size = format!("{:.1} MB", text.len() as f64 / 1e6);
        let (took, before, peak) = reload(&f).await;
        println!(
            "| {routes} | {size} | {start:.2} s | same | {took:.2} s | {before:.0} MiB | {peak:.0} MiB |"
        );
        // Rewritten with new names: the watcher's reload comes after its 200 ms debounce, so
        // the POST is the one that applies it (the watcher then finds the text it read).
        f.rewrite(&body(routes, "s"));
        let (took, before, peak) = reload(&f).await;
        println!(
            "| {routes} | {size} | | renamed | {took:.2} s | {before:.0} MiB | {peak:.0} MiB |"
        );
    }
}
