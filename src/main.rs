//! The `fulcrum` command line: `run`, `check`, `demo`, and `completions` / `man` generated from
//! the same definitions.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use fulcrum::config::{self, Config};
use fulcrum::server::{LogControl, RunOptions, Source};
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
    about = "A layer-7 reverse proxy and load balancer",
    long_about = "A layer-7 reverse proxy and load balancer on pingora. Routes by one TOML file, \
which it reloads on change without dropping a request; Prometheus metrics on the admin listener."
)]
struct Cli {
    /// Config file (`fulcrum --config PATH` alone is `fulcrum run PATH`).
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Largest config file `run`, `demo` and `check` read, e.g. "128MiB" (reloads are held to
    /// the running config's `[server] max_config_size`).
    #[arg(long, global = true, value_name = "SIZE", default_value = "64MiB", value_parser = size)]
    max_config_size: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a config file; reload it on change, SIGHUP or `POST /reload` on the admin listener.
    Run {
        /// The config file (or `--config PATH`).
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
        /// Take the listening sockets over from a running fulcrum, which hands them over when it
        /// gets SIGQUIT (see the README's graceful upgrade).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file: exit 0, or print every problem and exit 1 (like `nginx -t`).
    Check {
        /// The config file to check (or `--config PATH`).
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
    },
    /// Start three demo backends and the proxy on the bundled config/demo.toml (or `--config`).
    Demo,
    /// Print a shell completion script: `fulcrum completions bash > /etc/bash_completion.d/fulcrum`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `fulcrum man > /usr/local/share/man/man1/fulcrum.1`; with
    /// `--dir DIR`, write it and one page per command (fulcrum-run.1, ...) into DIR.
    Man {
        /// Where to write fulcrum.1 and the command pages.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Ask a running fulcrum's admin listener for /healthz: exit 0 when it answers 200 within 2 s
    /// (for container HEALTHCHECKs, where there is no curl).
    Healthcheck {
        /// The admin listener, IP:PORT or localhost:PORT (as admin_listen takes it).
        #[arg(default_value = "127.0.0.1:9901", value_name = "ADDR", value_parser = admin_address)]
        addr: std::net::SocketAddr,
    },
}

/// The one config path of a command that takes it as `PATH` or `--config PATH`; both at once is
/// an error rather than a silent choice.
fn one_path(
    positional: Option<PathBuf>,
    flag: Option<PathBuf>,
    usage: &str,
) -> anyhow::Result<PathBuf> {
    match (positional, flag) {
        (Some(p), Some(f)) => Err(anyhow::anyhow!(
            "two config files given ({} and --config {}); {usage}",
            p.display(),
            f.display()
        )),
        (Some(p), None) | (None, Some(p)) => Ok(p),
        (None, None) => Err(anyhow::anyhow!("no config given; {usage}")),
    }
}

/// A size argument: "64MiB", "512KiB", "1GB" or bytes.
fn size(s: &str) -> Result<u64, String> {
    config::units::parse_size(s)
}

const RUN_USAGE: &str = "use `fulcrum run PATH` (or `fulcrum demo` to try it out)";

fn main() -> ExitCode {
    // SIGHUP (`systemctl reload`) must never end fulcrum; its default action does. Every SIGHUP
    // sets this flag; until the reloader listens for SIGHUP that is all it does, and the
    // reloader reads it first.
    let sighup = match fulcrum::server::sighup_flag() {
        Ok(flag) => Some(flag),
        Err(e) => {
            eprintln!("fulcrum: cannot handle SIGHUP: {e}");
            None
        }
    };
    let cli = Cli::parse();
    let max = cli.max_config_size;
    let result =
        match cli.command {
            Some(Command::Check { path }) => {
                match one_path(path, cli.config, "use `fulcrum check PATH`") {
                    Ok(path) => return check(&path, max),
                    Err(e) => Err(e),
                }
            }
            Some(Command::Demo) => demo(cli.config.as_deref(), sighup, max),
            Some(Command::Run { path, upgrade }) => one_path(path, cli.config, RUN_USAGE)
                .and_then(|path| run(&path, upgrade, sighup, max)),
            Some(Command::Completions { shell }) => {
                // Into a buffer first: clap_complete panics when it cannot write (`| head`).
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "fulcrum", &mut script);
                print(&script)
            }
            Some(Command::Man { dir: Some(dir) }) => clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display())),
            Some(Command::Man { dir: None }) => {
                let mut page = Vec::new();
                clap_mangen::Man::new(Cli::command())
                    .render(&mut page)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| print(&page))
            }
            Some(Command::Healthcheck { addr }) => healthcheck(addr),
            None => one_path(None, cli.config, RUN_USAGE)
                .and_then(|path| run(&path, false, sighup, max)),
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /healthz` on the admin listener at `addr`; Ok only for a 200 within 2 s.
fn healthcheck(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let limit = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit)
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(s, "GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .with_context(|| format!("no answer from {addr}"))?;
    let text = String::from_utf8_lossy(&reply);
    let status = text.lines().next().unwrap_or("");
    // The admin listener's own answer, not any 200 (a proxy listener may route /healthz).
    let ours = reply.ends_with(&[b"\r\n\r\n", fulcrum::admin::HEALTHZ_BODY].concat());
    match status.split(' ').nth(1) {
        Some("200") if ours => Ok(()),
        Some("200") => Err(anyhow::anyhow!(
            "{addr}/healthz answered 200, but not as fulcrum's admin listener does"
        )),
        _ => Err(anyhow::anyhow!("{addr}/healthz answered {status:?}")),
    }
}

/// `healthcheck`'s address, read as `admin_listen` is.
fn admin_address(text: &str) -> Result<std::net::SocketAddr, String> {
    config::listen_address(text).ok_or_else(|| {
        format!("invalid address \"{text}\"; expected IP:PORT like \"127.0.0.1:9901\", or localhost:PORT")
    })
}

/// Writes generated text to stdout; a reader that went away (`| head`) is not an error.
fn print(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn check(path: &Path, max_size: u64) -> ExitCode {
    // What `run` would refuse at start is refused here too, but for binding the listeners.
    let loaded = config::load(path, max_size).and_then(|mut c| {
        let found = config::preflight(&c, path);
        c.warnings.extend(found.warnings);
        if found.errors.is_empty() {
            Ok(c)
        } else {
            Err(config::ConfigErrors::by_place(found.errors))
        }
    });
    match loaded {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            let tls = &c.server.tls;
            let certificates: usize = tls.iter().map(|t| t.certificates.len()).sum();
            let tls = match tls.len() {
                0 => String::new(),
                n => format!(", {n} TLS listeners, {certificates} certificates"),
            };
            println!(
                "{}: ok ({} routes, {} upstreams{tls})",
                path.display(),
                c.routes.len(),
                c.upstreams.len()
            );
            let listeners: Vec<String> = (c.server.proxy_listeners().chain(c.server.admin_listen))
                .map(|a| a.to_string())
                .collect();
            println!(
                "note: listeners are not bound by check; run binds {}",
                listeners.join(", ")
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

/// The config at `path` (at most `max_size` bytes), and where it came from (what reloads and
/// DNS refreshes start from).
fn load(path: &Path, max_size: u64) -> anyhow::Result<(Config, Source)> {
    Source::load(path, max_size, Arc::new(config::SystemResolver))
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Logs to stderr with `RUST_LOG`, or else the config's `log_level`, pingora's own lines held
/// back unless the filter asks for them ([`fulcrum::server::log_filter`]); in the latter case
/// the returned control applies a reloaded `log_level`.
fn init_logging(config: &Config) -> Option<LogControl> {
    let from_env = std::env::var("RUST_LOG").map_err(|e| e.to_string());
    let from_env = from_env.and_then(|level| {
        EnvFilter::try_new(fulcrum::server::log_filter(&level)).map_err(|e| e.to_string())
    });
    let control = match from_env {
        Ok(filter) => {
            tracing_subscriber::registry()
                .with(filter)
                .with(fmt_layer())
                .init();
            None
        }
        Err(_) => {
            let filter = EnvFilter::new(fulcrum::server::log_filter(&config.server.log_level));
            let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
            tracing_subscriber::registry()
                .with(filter)
                .with(fmt_layer())
                .init();
            let control: LogControl = Box::new(move |level: &str| {
                let filter = EnvFilter::try_new(fulcrum::server::log_filter(level))
                    .map_err(|e| e.to_string())?;
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

fn run(
    path: &Path,
    upgrade: bool,
    sighup: Option<Arc<AtomicBool>>,
    max_size: u64,
) -> anyhow::Result<()> {
    let (config, source) = load(path, max_size)?;
    let log = init_logging(&config);
    let options = RunOptions {
        source: Some(source),
        sighup,
        upgrade,
        log,
    };
    fulcrum::server::run(config, options)?;
    Ok(())
}

fn demo(path: Option<&Path>, sighup: Option<Arc<AtomicBool>>, max_size: u64) -> anyhow::Result<()> {
    let (config, source) = match path {
        Some(p) => {
            let (config, source) = load(p, max_size)?;
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
        sighup,
        upgrade: false,
        log,
    };
    fulcrum::server::run(config, options)?;
    Ok(())
}
