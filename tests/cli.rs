//! The command line through the binary: paths, mistakes, generated completions and man page.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn fulcrum(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("f.toml");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nthreads = 1\nupgrade_sock = \"{}\"\n[[route]]\nupstream = \"u\"\n{}",
        dir.join("u.sock").display(),
        upstream("u", &[dead_addr()], "")
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn run_takes_the_config_path_positionally() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(dir.path(), port);
    let mut child = Command::new(bin())
        .arg("run")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "fulcrum exited");
        assert!(Instant::now() < deadline, "not serving");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn two_config_paths_are_an_error_not_a_choice() {
    let (code, _, err) = fulcrum(&["run", "a.toml", "--config", "b.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("two config files given (a.toml and --config b.toml)"),
        "{err}"
    );
    let (code, _, err) = fulcrum(&["check", "-c", "a.toml", "b.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("two config files given (b.toml and --config a.toml)"),
        "{err}"
    );
    let (code, _, err) = fulcrum(&["check", "a.toml", "b.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unexpected argument 'b.toml'"), "{err}");
    let (code, _, err) = fulcrum(&["run"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no config given; use `fulcrum run PATH`"),
        "{err}"
    );
}

#[test]
fn help_says_what_each_command_does() {
    let (code, out, _) = fulcrum(&["--help"]);
    assert_eq!(code, 0);
    for line in [
        "run          Serve a config file",
        "check        Validate a config file",
        "demo         Start three demo backends",
        "completions  Print a shell completion script",
        "man          Print the man page",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
}

#[test]
fn completions_and_man_page_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = fulcrum(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        for word in ["check", "completions", "upgrade"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let (code, out, err) = fulcrum(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(".TH fulcrum 1"), "{out}");
    for command in [
        "fulcrum\\-check(1)",
        "fulcrum\\-completions(1)",
        "fulcrum\\-run(1)",
    ] {
        assert!(out.contains(command), "{command}:\n{out}");
    }
    // Every command gets its own page with --dir.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = fulcrum(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "fulcrum.1",
        "fulcrum-run.1",
        "fulcrum-check.1",
        "fulcrum-healthcheck.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_default();
        let title = format!(".TH {} 1 ", page.trim_end_matches(".1"));
        assert!(text.contains(&title), "{page}: {text}");
    }
    let run = std::fs::read_to_string(dir.path().join("fulcrum-run.1")).unwrap();
    assert!(run.contains("\\fB\\-\\-upgrade\\fR"), "{run}");
    let (code, _, err) = fulcrum(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("possible values: bash"), "{err}");
}

#[test]
fn a_port_clash_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), port);
    let (code, _, err) = fulcrum(&["run", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_asks_the_admin_listener() {
    let f = Fulcrum::start("", &upstream_route_to_nothing());
    let admin = f.admin.to_string();
    // It asks in HTTP/1.0 and reads to the close: the admin listener must close.
    let (code, _, err) = fulcrum(&["healthcheck", &admin]);
    assert_eq!(code, 0, "{err}");
    // Nothing listening: an error naming the address.
    let dead = dead_addr().to_string();
    let (code, _, err) = fulcrum(&["healthcheck", &dead]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("cannot connect to {dead}")), "{err}");
    // Something that is not fulcrum's admin: not healthy.
    let (code, _, err) = fulcrum(&["healthcheck", &f.addr.to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("/healthz answered \"HTTP/1.1 404"), "{err}");
    // A 200 that is not the admin listener's.
    let other = Backend::start("other").await;
    let (code, _, err) = fulcrum(&["healthcheck", &other.addr.to_string()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/healthz answered 200, but not as fulcrum's admin listener does"),
        "{err}"
    );
}

fn upstream_route_to_nothing() -> String {
    format!(
        "[[route]]\npath = \"/app/\"\nupstream = \"u\"\n{}",
        upstream("u", &[dead_addr()], "")
    )
}

#[test]
fn the_bundled_config_listens_where_its_environment_says() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fulcrum.toml");
    let out = Command::new(bin())
        .arg("check")
        .arg(&path)
        .env("FULCRUM_LISTEN", "0.0.0.0:8080")
        .env("FULCRUM_ADMIN_LISTEN", "0.0.0.0:8080")
        .output()
        .unwrap();
    // The same address for both shows that both were read from the environment.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("0.0.0.0:8080 is also a proxy listener"),
        "{err}"
    );
}

#[test]
fn upgrade_with_no_running_fulcrum_fails_at_once_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), free_port());
    let started = Instant::now();
    let (code, _, err) = fulcrum(&["run", path.to_str().unwrap(), "--upgrade"]);
    // pingora alone retried for 6 s, then said "Bootstrap failed on error: EAGAIN".
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("no running fulcrum is listening on 127.0.0.1:")
            && err.contains("start without --upgrade"),
        "{err}"
    );
}
