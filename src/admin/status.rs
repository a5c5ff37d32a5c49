//! `GET /status`: what the proxy runs now, as JSON. Read from the published snapshot and the
//! registry at request time; nothing here is cached.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::config::{HostPattern, RateKey};
use crate::registry::Circuit;
use crate::reload::Runtime;
use crate::snapshot::Snapshot;
use crate::upstream::Upstream;

/// The status document.
pub fn status(runtime: &Runtime) -> Value {
    let snap = runtime.snapshot().load();
    let last = runtime.last_load();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": {
            "path": runtime.path().map(|p| p.display().to_string()),
            "generation": snap.generation,
            "last_load": {
                "time": rfc3339(last.at),
                "success": last.success,
                "message": last.message,
            },
        },
        "tls": tls(&snap),
        "routes": routes(&snap),
        "upstreams": snap.upstreams.iter().map(upstream).collect::<Vec<_>>(),
    })
}

/// Each TLS listener and the certificates it serves: names, files, expiry.
fn tls(snap: &Snapshot) -> Vec<Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    snap.tls
        .iter()
        .map(|set| {
            let certificates: Vec<Value> = set
                .certificates
                .iter()
                .map(|c| {
                    let expires = UNIX_EPOCH + Duration::from_secs(c.not_after.max(0) as u64);
                    json!({
                        "names": c.names,
                        "cert": c.cert_path.display().to_string(),
                        "key": c.key_path.display().to_string(),
                        "expires": rfc3339(expires),
                        "expires_in_days": (c.not_after - now).div_euclid(86_400),
                    })
                })
                .collect();
            json!({
                "listen": set.listen.to_string(),
                "default_certificate": set.default().map(|c| c.cert_path.display().to_string()),
                "certificates": certificates,
            })
        })
        .collect()
}

fn routes(snap: &Snapshot) -> Vec<Value> {
    snap.routes
        .iter()
        .map(|r| {
            let c = &r.config;
            let host = match &c.host {
                HostPattern::Any => None,
                HostPattern::Exact(h) => Some(h.clone()),
                HostPattern::Wildcard(suffix) => Some(format!("*{suffix}")),
            };
            let limit = c.rate_limit.as_ref().map(|l| {
                let key = match &l.key {
                    RateKey::ClientIp => "client_ip".to_owned(),
                    RateKey::Header(h) => format!("header:{h}"),
                    RateKey::Global => "global".to_owned(),
                };
                json!({
                    "rate": l.quota.rate,
                    "per_seconds": l.quota.per.as_secs(),
                    "burst": l.quota.burst,
                    "key": key,
                })
            });
            json!({
                "name": c.name,
                "host": host,
                "path": c.path,
                "upstream": snap.upstreams[c.upstream].name,
                "retries": c.retries,
                "timeout_seconds": c.timeout.as_secs_f64(),
                "rate_limit": limit,
            })
        })
        .collect()
}

fn upstream(u: &Upstream) -> Value {
    let backends: Vec<Value> = u
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let health = &b.state.health;
            let last_check = health.last_probe().map(|p| {
                json!({
                    "time": rfc3339(p.at),
                    "ok": p.error.is_none(),
                    "error": p.error,
                })
            });
            let ejected_for = health.ejected_until().map(|until| {
                until
                    .saturating_duration_since(tokio::time::Instant::now())
                    .as_secs_f64()
            });
            json!({
                "address": b.name,
                "resolved": b.addr.to_string(),
                "weight": b.weight,
                "health": health.describe(u.check().is_some()),
                "in_service": u.in_service(i),
                "last_check": last_check,
                "ejected": health.is_ejected(),
                "trial": health.on_trial(),
                "ejected_for_seconds": ejected_for,
                "breaker": match u.circuit(i) {
                    Circuit::Closed => "closed",
                    Circuit::Open => "open",
                    Circuit::HalfOpen => "half_open",
                },
                "in_flight": b.state.in_flight(),
            })
        })
        .collect();
    json!({
        "name": u.name,
        "strategy": u.strategy(),
        "health_check": u.check().map(|c| json!({
            "kind": format!("{:?}", c.kind).to_lowercase(),
            "interval_seconds": c.interval.as_secs_f64(),
        })),
        "in_panic": u.in_panic(),
        "in_flight": u.state().in_flight(),
        "backends": backends,
    })
}

/// RFC 3339 UTC with milliseconds.
fn rfc3339(t: SystemTime) -> String {
    let t = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    humantime::format_rfc3339_millis(UNIX_EPOCH + t).to_string()
}
