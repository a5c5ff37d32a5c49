//! fulcrum: a layer-7 reverse proxy and load balancer on pingora.
//!
//! Modules in the order a request meets them:
//! - `server`: process lifecycle: pingora server, listeners, signals, graceful drain, and the
//!   transport layers every connection passes (connection limit, TLS termination, header guard).
//! - `proxy`: the pingora `ProxyHttp` phases, each delegating to the modules below.
//! - `outcome`: how a request ended beside its status (ok, error, aborted, client closed).
//! - `access_log`: one line per request (JSON or combined) through a bounded channel to a
//!   writer thread.
//! - `router`: host + path → route.
//! - `ratelimit`: a route's token buckets (checked right after routing), 429s, key pruning.
//! - `upstream`: a route's pool: backends, peers with timeouts, the one eligibility predicate,
//!   panic mode, `max_inflight` admission.
//! - `breaker`: per-backend circuit breaking on the request path (claims, outcomes, logs).
//! - `health`: active checks (one supervisor owns the probe tasks) and passive outlier ejection.
//! - `balance`: the balancing strategies behind one trait, and in-flight leases.
//! - `registry`: state that outlives a config (health, ejection, breaker, in-flight counts,
//!   rate-limit buckets), keyed by upstream + address or route name; imports no feature module.
//! - `snapshot`: the immutable per-config view the request path reads (arc-swap).
//! - `reload`: the one owner that applies a config, and the task that reloads on file change,
//!   SIGHUP and `POST /reload`.
//! - `config`: TOML schema → validation → DNS → runtime config, with located errors.
//! - `metrics`: Prometheus metric families and the per-snapshot handles the request path
//!   records into.
//! - `admin`: the admin listener (`/healthz`, `/readyz`, `/status`, `/reload`, `/metrics`).
//! - `demo`: built-in demo backends for `fulcrum demo`.
//! - `fuzzing` (cargo feature `fuzzing` only): the calls the fuzz targets in `fuzz/` make.

pub mod access_log;
pub mod admin;
pub mod balance;
pub mod breaker;
pub mod cert_set;
pub mod config;
pub mod demo;
pub mod health;
pub mod metrics;
pub mod outcome;
pub mod proxy;
pub mod ratelimit;
pub mod registry;
pub mod reload;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod upstream;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
