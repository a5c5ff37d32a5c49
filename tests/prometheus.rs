//! fulcrum's metrics checked by the real Prometheus tools (Debian's `prometheus` package, which
//! `.ci/deps` installs): `promtool check metrics` on a scrape after mixed traffic, and a real
//! Prometheus server scraping the admin listener.

mod support;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A tool from the `prometheus` package, or a failure that says how to get it.
fn tool(name: &str) -> std::path::PathBuf {
    ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is missing: run .ci/deps (installs Debian's prometheus)"))
}

/// Routes that answer 200, 404 (no route), 502 (nothing listens), 503 (no healthy backend)
/// and 429 (rate limit), and one request of each.
async fn mixed_traffic() -> (Fulcrum, Backend, Backend) {
    let a = Backend::start("a").await;
    let sick = Backend::with(
        "sick",
        Behaviour {
            health_status: 500,
            ..Behaviour::default()
        },
    )
    .await;
    let body = format!(
        "[[route]]\nname = \"api\"\nhost = \"api.test\"\nupstream = \"u\"\n\
         rate_limit = {{ rate = 1, per = \"1m\", burst = 2 }}\n\
         [[route]]\nname = \"dead\"\nhost = \"dead.test\"\nupstream = \"d\"\nretries = 0\n\
         [[route]]\nname = \"sick\"\nhost = \"sick.test\"\nupstream = \"s\"\n{}{}{}\
         [upstream.s.health_check]\npath = \"/healthz\"\n",
        upstream("u", &[a.addr], ""),
        upstream("d", &[dead_addr()], ""),
        upstream("s", &[sick.addr], ""),
    );
    let f = Fulcrum::start("", &body);
    for (host, status) in [
        ("api.test", 200),
        ("api.test", 200),
        ("api.test", 429),
        ("nowhere.test", 404),
        ("dead.test", 502),
        ("sick.test", 503),
    ] {
        assert_eq!(get(f.addr, host, "/").await.status, status, "{host}");
    }
    (f, a, sick)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_scrape_after_mixed_traffic() {
    let promtool = tool("promtool");
    let (f, _a, _sick) = mixed_traffic().await;
    // A request is counted in its logging phase, just after its response went out: the last
    // one may not be counted yet when the client has read it.
    let counted = |scrape: &str, code: &str| {
        scrape.lines().any(|l| {
            l.starts_with("fulcrum_requests_total{") && l.contains(&format!("code=\"{code}\""))
        })
    };
    let codes = ["200", "404", "502", "503", "429"];
    let what = format!("fulcrum_requests_total with every code of {codes:?}");
    let scrape = f
        .wait_metrics(&what, |m| codes.iter().all(|c| counted(m, c)))
        .await;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}",
        out.status
    );
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second.
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: fulcrum\n    metrics_path: /metrics\n\
                 \x20   static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The result vector of an instant query, or `None` while Prometheus cannot answer.
    async fn query(&self, q: &str) -> Option<Vec<serde_json::Value>> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("/api/v1/query?query={q}"))
            .header("host", "prometheus")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.ok()?;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .ok()?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v["data"]["result"].as_array().cloned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_admin_listener() {
    let (f, a, _sick) = mixed_traffic().await;
    let prom = Prometheus::start(f.admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    let series = loop {
        let found = prom.query("fulcrum_requests_total").await.and_then(|r| {
            r.into_iter().find(|s| {
                let m = &s["metric"];
                m["route"] == "api"
                    && m["upstream"] == "u"
                    && m["method"] == "GET"
                    && m["code"] == "200"
            })
        });
        if let Some(s) = found {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never showed fulcrum_requests_total{{route=\"api\",code=\"200\"}}:\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(series["value"][1], "2", "{series}");
    // The scrape itself is healthy, and a backend gauge made it too.
    let up = prom.query("up").await.unwrap_or_default();
    assert!(up.iter().any(|s| s["value"][1] == "1"), "{up:?}");
    let backend = a.addr.to_string();
    let gauges = prom.query("fulcrum_backend_up").await.unwrap_or_default();
    assert!(
        gauges
            .iter()
            .any(|s| s["metric"]["backend"] == backend.as_str() && s["value"][1] == "1"),
        "{gauges:?}"
    );
}
