//! fulcrum: a layer-7 reverse proxy and load balancer on pingora.
//!
//! Modules in the order a request meets them:
//! - `server`: process lifecycle: pingora server, listeners, signals, graceful drain.
//! - `proxy`: the pingora `ProxyHttp` phases, each delegating to the modules below.
//! - `router`: host + path → route.
//! - `upstream`: a route's pool: backends, peers with timeouts, retry bookkeeping.
//! - `health`: active checks, passive outlier ejection, panic mode (the balancers' eligibility).
//! - `balance`: the balancing strategies behind one trait, and in-flight leases.
//! - `registry`: state that outlives a config (per-backend in-flight counts), by upstream + address.
//! - `snapshot`: the immutable per-config view the request path reads (arc-swap).
//! - `config`: TOML schema → validation → runtime config, with located errors.
//! - `admin`: the admin listener (`/healthz`).
//! - `demo`: built-in demo backends for `fulcrum demo`.

pub mod admin;
pub mod balance;
pub mod config;
pub mod demo;
pub mod health;
pub mod proxy;
pub mod registry;
pub mod router;
pub mod server;
pub mod snapshot;
pub mod upstream;
