//! fulcrum: a layer-7 reverse proxy and load balancer on pingora.
//!
//! **The public surface** is what an embedder (`examples/embed.rs`, the `fulcrum` binary) uses:
//! [`config`] (parse or load a config, and the types it holds), [`server::run`] with
//! [`server::RunOptions`] (a config file that reloads: [`server::Source::load`]), [`demo`] (the
//! demo backends) and [`admin::HEALTHZ_BODY`]. Every other
//! module is internal: `pub(crate)`, or `pub` with the cargo feature `internals`, which the
//! benchmarks in `benches/` build with.
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
//! - `circuit`: per-backend circuit breaking on the request path (claims, outcomes, logs).
//! - `health`: active checks (one supervisor owns the probe tasks) and passive outlier ejection.
//! - `balance`: the balancing strategies behind one trait, and in-flight leases.
//! - `registry`: state that outlives a config (health, ejection, breaker, in-flight counts,
//!   rate-limit buckets), keyed by upstream + address or route name; imports no feature module.
//! - `snapshot`: the immutable per-config view the request path reads (arc-swap).
//! - `cert_set`: a TLS listener's certificates in a snapshot, and which one a server name gets.
//! - `reload`: the one owner that applies a config, and the task that reloads on file change,
//!   SIGHUP and `POST /reload`.
//! - `config`: TOML schema → validation → DNS → runtime config, with located errors.
//! - `metrics`: Prometheus metric families and the per-snapshot handles the request path
//!   records into.
//! - `admin`: the admin listener (`/healthz`, `/readyz`, `/status`, `/reload`, `/metrics`), and
//!   the gauges `/metrics` reads from the snapshot at scrape time.
//! - `demo`: built-in demo backends for `fulcrum demo`.
//! - `fuzzing` (cargo feature `fuzzing` only): the calls the fuzz targets in `fuzz/` make.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod demo;
pub mod server;

// Internal modules: `pub(crate)`, or `pub` with the cargo feature `internals`.
#[cfg(feature = "internals")]
pub mod access_log;
#[cfg(not(feature = "internals"))]
pub(crate) mod access_log;

#[cfg(feature = "internals")]
pub mod balance;
#[cfg(not(feature = "internals"))]
pub(crate) mod balance;

#[cfg(feature = "internals")]
pub mod cert_set;
#[cfg(not(feature = "internals"))]
pub(crate) mod cert_set;

#[cfg(feature = "internals")]
pub mod circuit;
#[cfg(not(feature = "internals"))]
pub(crate) mod circuit;

#[cfg(feature = "internals")]
pub mod health;
#[cfg(not(feature = "internals"))]
pub(crate) mod health;

#[cfg(feature = "internals")]
pub mod metrics;
#[cfg(not(feature = "internals"))]
pub(crate) mod metrics;

#[cfg(feature = "internals")]
pub mod outcome;
#[cfg(not(feature = "internals"))]
pub(crate) mod outcome;

#[cfg(feature = "internals")]
pub mod proxy;
#[cfg(not(feature = "internals"))]
pub(crate) mod proxy;

#[cfg(feature = "internals")]
pub mod ratelimit;
#[cfg(not(feature = "internals"))]
pub(crate) mod ratelimit;

#[cfg(feature = "internals")]
pub mod registry;
#[cfg(not(feature = "internals"))]
pub(crate) mod registry;

#[cfg(feature = "internals")]
pub mod reload;
#[cfg(not(feature = "internals"))]
pub(crate) mod reload;

#[cfg(feature = "internals")]
pub mod router;
#[cfg(not(feature = "internals"))]
pub(crate) mod router;

#[cfg(feature = "internals")]
pub mod snapshot;
#[cfg(not(feature = "internals"))]
pub(crate) mod snapshot;

#[cfg(feature = "internals")]
pub mod upstream;
#[cfg(not(feature = "internals"))]
pub(crate) mod upstream;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
