//! How long `fulcrum check` takes on a huge config: `config::load` (read, parse, validate,
//! resolve), the function `check` calls, on two generated files:
//!
//! - 1 000 000 valid routes (about 60 MB), one upstream with one backend;
//! - 40 000 routes that repeat the first route's name, so every one of them is an error.
//!
//! Loading must be linear in the size of the file, however many problems it has.
//!
//! `cargo bench --bench config_check`

use std::path::Path;
use std::time::{Duration, Instant};

use fulcrum::config::{self, Config, ConfigErrors};

const ROUTES: usize = 1_000_000;
const DUPLICATES: usize = 40_000;
/// Each case is loaded this many times; the fastest run is reported beside the slowest.
const RUNS: usize = 3;

/// One upstream, then `routes` routes with distinct paths, named `r0`, `r1`, … or, with
/// `same_name`, all named `r0`.
fn generated(routes: usize, same_name: bool) -> String {
    let mut text = String::with_capacity(routes * 56 + 64);
    text.push_str("[upstream.u]\nbackends = [{ addr = \"127.0.0.1:9\" }]\n");
    for r in 0..routes {
        let name = if same_name { 0 } else { r };
        text.push_str(&format!(
            "[[route]]\nname = \"r{name}\"\npath = \"/p{r}/\"\nupstream = \"u\"\n"
        ));
    }
    text
}

/// Loads `path` `RUNS` times: (fastest, slowest) and the last result.
fn time_load(path: &Path) -> (Duration, Duration, Result<Config, ConfigErrors>) {
    let mut fastest = Duration::MAX;
    let mut slowest = Duration::ZERO;
    let mut last = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let result = config::load(path, config::schema::DEFAULT_MAX_CONFIG_SIZE);
        let took = start.elapsed();
        fastest = fastest.min(took);
        slowest = slowest.max(took);
        last = Some(result);
    }
    (fastest, slowest, last.expect("RUNS > 0"))
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("valid", ROUTES, false),
        ("duplicate names", DUPLICATES + 1, true),
    ];
    for (label, routes, same_name) in cases {
        let text = generated(routes, same_name);
        let path = dir.path().join(format!("{}.toml", label.replace(' ', "_")));
        std::fs::write(&path, &text).expect("write config");
        let (fastest, slowest, result) = time_load(&path);
        let outcome = match &result {
            Ok(c) => format!("ok, {} routes", c.routes.len()),
            Err(e) => format!("{} errors", e.0.len()),
        };
        match (same_name, &result) {
            (false, Ok(c)) => assert_eq!(c.routes.len(), routes),
            (true, Err(e)) => assert_eq!(e.0.len(), DUPLICATES),
            _ => panic!("{label}: unexpected outcome: {outcome}"),
        }
        println!(
            "config_check {label}: {routes} routes, {:.1} MB: {outcome}; load {:.3} s (slowest of {RUNS}: {:.3} s)",
            text.len() as f64 / 1e6,
            fastest.as_secs_f64(),
            slowest.as_secs_f64(),
        );
    }
}
