//! Embedding fulcrum as a library: parse a config from a string and serve it, with the demo
//! backends behind it.
//!
//! `cargo run --example embed`, then `curl http://127.0.0.1:8081/` a few times.

use std::path::Path;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:8081"]

[[route]]
upstream = "pool"

[upstream.pool]
backends = [{ addr = "127.0.0.1:9101", weight = 2 }, { addr = "127.0.0.1:9102" }]
"#;

fn main() -> anyhow::Result<()> {
    let config = fulcrum::config::parse(CONFIG, Path::new("<embedded>"))?;
    fulcrum::demo::start_backends(&config)?;
    println!("serving on http://127.0.0.1:8081/ (Ctrl-C stops)");
    // No file to watch: an embedded config does not reload. For one that does, load it with
    // `fulcrum::server::Source::load` and pass the source in `RunOptions::source`.
    fulcrum::server::run(config, fulcrum::server::RunOptions::default())?;
    Ok(())
}
