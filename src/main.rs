//! The `fulcrum` command line: `run`, `check` and `demo`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fulcrum::config::{self, Config};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "fulcrum",
    version,
    about = "A layer-7 reverse proxy and load balancer"
)]
struct Cli {
    /// Config file to serve (same as `fulcrum run --config PATH`).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a config file.
    Run,
    /// Validate a config file: exit 0, or print every problem and exit 1 (like `nginx -t`).
    Check {
        /// The config file to check.
        path: Option<PathBuf>,
    },
    /// Start three demo backends and the proxy on the bundled config/demo.toml.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { path }) => match path.or(cli.config) {
            Some(path) => return check(&path),
            None => Err(anyhow::anyhow!("usage: fulcrum check PATH")),
        },
        Some(Command::Demo) => demo(cli.config.as_deref()),
        Some(Command::Run) | None => match cli.config {
            Some(path) => run(&path),
            None => Err(anyhow::anyhow!(
                "no config given: use `fulcrum run --config PATH` (or `fulcrum demo` to try it out)"
            )),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} routes, {} upstreams)",
                path.display(),
                c.routes.len(),
                c.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{}: {} problem(s) found", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&config.server.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    init_logging(&config);
    fulcrum::server::run(&config)?;
    Ok(())
}

fn demo(path: Option<&Path>) -> anyhow::Result<()> {
    let config = match path {
        Some(p) => load(p)?,
        None => config::parse(fulcrum::demo::CONFIG, Path::new(fulcrum::demo::CONFIG_PATH))
            .map_err(|e| anyhow::anyhow!("invalid demo config:\n{e}"))?,
    };
    init_logging(&config);
    let backends = fulcrum::demo::start_backends(&config).context("demo backends")?;
    let url = config
        .server
        .listen
        .first()
        .map(|a| format!("http://{a}/"))
        .unwrap_or_default();
    println!(
        "fulcrum demo: {} demo backends on {backends:?}",
        backends.len()
    );
    println!("fulcrum demo: proxy on {url}");
    println!("fulcrum demo: try `curl {url}` a few times (the backends take turns); Ctrl-C stops");
    fulcrum::server::run(&config)?;
    Ok(())
}
