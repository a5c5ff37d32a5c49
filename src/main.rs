//! The `fulcrum` command line: `run`, `check` and `demo`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fulcrum::config::{self, Config};
use fulcrum::reload::{LogControl, Source};
use fulcrum::server::RunOptions;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the request path's allocations are pingora's (header maps,
/// buffers, boxed futures); benches/compare.py measured glibc's malloc/free at about 14 % of the
/// proxy's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Serve a config file; reload it on change, SIGHUP or `POST /reload` on the admin listener.
    Run {
        /// Take the listening sockets over from a running fulcrum, which hands them over when it
        /// gets SIGQUIT (see the README's graceful upgrade).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file: exit 0, or print every problem and exit 1 (like `nginx -t`).
    Check {
        /// The config file to check.
        path: Option<PathBuf>,
    },
    /// Start three demo backends and the proxy on the bundled config/demo.toml.
    Demo,
}

fn main() -> ExitCode {
    // SIGHUP (`systemctl reload`) must never end fulcrum; its default action does. Until the
    // reloader listens for it, a SIGHUP only sets this flag, which the reloader reads first.
    let early_sighup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, early_sighup.clone()) {
        eprintln!("fulcrum: cannot handle SIGHUP: {e}");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { path }) => match path.or(cli.config) {
            Some(path) => return check(&path),
            None => Err(anyhow::anyhow!("usage: fulcrum check PATH")),
        },
        Some(Command::Demo) => demo(cli.config.as_deref(), early_sighup),
        Some(Command::Run { upgrade }) => match cli.config {
            Some(path) => run(&path, upgrade, early_sighup),
            None => Err(anyhow::anyhow!(
                "no config given: use `fulcrum run --config PATH` (or `fulcrum demo` to try it out)"
            )),
        },
        None => match cli.config {
            Some(path) => run(&path, false, early_sighup),
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

/// The config at `path`, and the text it was parsed from.
fn load(path: &Path) -> anyhow::Result<(Config, Source)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let config = config::parse(&text, path).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let source = Source {
        path: path.to_path_buf(),
        text,
    };
    Ok((config, source))
}

/// Logs to stderr with `RUST_LOG`, or else the config's `log_level`; in the latter case the
/// returned control applies a reloaded `log_level`.
fn init_logging(config: &Config) -> Option<LogControl> {
    let control = match EnvFilter::try_from_default_env() {
        Ok(filter) => {
            tracing_subscriber::registry()
                .with(filter)
                .with(fmt_layer())
                .init();
            None
        }
        Err(_) => {
            let filter = EnvFilter::new(&config.server.log_level);
            let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
            tracing_subscriber::registry()
                .with(filter)
                .with(fmt_layer())
                .init();
            let control: LogControl = Box::new(move |level: &str| {
                let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            });
            Some(control)
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    control
}

/// Human-readable lines on stderr (colours only on a terminal).
fn fmt_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
}

fn run(path: &Path, upgrade: bool, early_sighup: Arc<AtomicBool>) -> anyhow::Result<()> {
    let (config, source) = load(path)?;
    let log = init_logging(&config);
    let options = RunOptions {
        source: Some(source),
        early_sighup,
        upgrade,
        log,
    };
    fulcrum::server::run(config, options)?;
    Ok(())
}

fn demo(path: Option<&Path>, early_sighup: Arc<AtomicBool>) -> anyhow::Result<()> {
    let (config, source) = match path {
        Some(p) => {
            let (config, source) = load(p)?;
            (config, Some(source))
        }
        None => {
            let config =
                config::parse(fulcrum::demo::CONFIG, Path::new(fulcrum::demo::CONFIG_PATH))
                    .map_err(|e| anyhow::anyhow!("invalid demo config:\n{e}"))?;
            (config, None)
        }
    };
    let log = init_logging(&config);
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
    let options = RunOptions {
        source,
        early_sighup,
        upgrade: false,
        log,
    };
    fulcrum::server::run(config, options)?;
    Ok(())
}
