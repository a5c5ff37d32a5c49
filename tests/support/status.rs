//! Waiting on the state `/status` reports (the config generation, each backend's health,
//! ejection and breaker) rather than on the log line that announces it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{get, Fulcrum};

/// How long [`Fulcrum::apply`] and [`Fulcrum::wait_generation`] wait for a reload.
const RELOAD_LIMIT: Duration = Duration::from_secs(5);

/// The entry of backend `addr` of upstream `upstream` in a `/status` document.
pub fn backend_in<'a>(status: &'a Value, upstream: &str, addr: SocketAddr) -> Option<&'a Value> {
    let addr = addr.to_string();
    status["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["name"] == upstream)?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == addr.as_str())
}

impl Fulcrum {
    /// `/status`, parsed.
    pub async fn status(&self) -> Value {
        let body = get(self.admin, "admin", "/status").await.body;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status: {e}: {body}"))
    }

    /// `/status`'s entry for backend `addr` of upstream `upstream`.
    pub async fn backend_status(&self, upstream: &str, addr: SocketAddr) -> Value {
        let status = self.status().await;
        backend_in(&status, upstream, addr)
            .unwrap_or_else(|| panic!("no {upstream} {addr} in /status:\n{status:#}"))
            .clone()
    }

    /// Reads `/status` every 10 ms until `done` holds for it and returns that document; panics
    /// with `what` and the last document after `limit`.
    pub async fn wait_status(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}:\n{status:#}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `/status` shows `key` of backend `addr` in `upstream` as `want` (`"health"`
    /// `"unhealthy"`, `"ejected"` `true`, `"breaker"` `"open"`); returns the backend's entry.
    pub async fn wait_backend(
        &self,
        upstream: &str,
        addr: SocketAddr,
        key: &str,
        want: impl Into<Value>,
        limit: Duration,
    ) -> Value {
        let want = want.into();
        let what = format!("{upstream} {addr}: {key} {want}");
        let status = self
            .wait_status(&what, limit, |s| {
                backend_in(s, upstream, addr).is_some_and(|b| b[key] == want)
            })
            .await;
        backend_in(&status, upstream, addr).unwrap().clone()
    }

    /// Waits until `/status` says the config runs as generation `generation` and the reload
    /// that made it is over: `config.last_load` is no longer `before`'s (a `/status` read before
    /// the reload was asked for). The generation is published with the snapshot, before a
    /// reload's last steps (ejections a new config turns off, the log level, the access log);
    /// the load is recorded after them, and after the reload's log line.
    pub async fn wait_generation(&self, before: &Value, generation: u64) {
        let last = &before["config"]["last_load"];
        let what = format!("generation {generation}, its reload recorded");
        self.wait_status(&what, RELOAD_LIMIT, |s| {
            s["config"]["generation"] == generation && s["config"]["last_load"] != *last
        })
        .await;
    }

    /// Rewrites the config with `body` ([`Fulcrum::rewrite`]) and waits until it runs as
    /// generation `generation` ([`Fulcrum::wait_generation`]).
    pub async fn apply(&self, body: &str, generation: u64) {
        let before = self.status().await;
        self.rewrite(body);
        self.wait_generation(&before, generation).await;
    }
}
