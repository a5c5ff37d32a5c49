//! Configuration: `fulcrum.toml → schema::FileConfig → validate → Prepared → resolve →
//! runtime::Config`.
//!
//! - `stages`: the load in typed stages: text → [`Prepared`] (parsed, validated, files read,
//!   every problem found) → [`Resolved`] (backend names looked up) → [`Config`].
//! - `env`: `${VAR}` and `${VAR:-default}` in string values, expanded before parsing.
//! - `schema`: what the user writes (serde, unknown keys rejected, `Option`s, `DEFAULT_*`).
//! - `units`: human durations and sizes inside the file.
//! - `validate`: every semantic check, one file per section; all problems are collected, each
//!   with file:line:column. Pure: no IO.
//! - `resolve`: backend host names → addresses through a [`Resolve`] (DNS, the one step a DNS
//!   refresh redoes).
//! - `certs`: the certificate, key and CA files the config names, read and checked.
//! - `runtime`: what the proxy runs on, with no `Option`s left.
//! - `forms`: what each key takes, in the file's words with an example, for type errors.
//! - `mistakes`: every unknown key and type error serde refuses a file for, in the file's words.
//! - `error`: the error type that names file, line, column, field, problem and what is accepted.
//! - `field_path`: where a field is (keys and list indices), as errors name it.
//! - `file`: reading the config file: a regular file only, at most a limit of bytes, never
//!   blocking on what the path points at, abandoned past a timeout.
//! - `preflight`: what `run` would meet at start beyond the file (the access log file; the
//!   upgrade socket's directory, a warning), for `fulcrum check`; it opens and binds nothing.

mod certs;
pub(crate) mod env;
mod error;
mod field_path;
pub mod file;
mod forms;
mod mistakes;
mod preflight;
mod resolve;
pub mod runtime;
pub mod schema;
mod sections;
mod stages;
pub mod units;
mod validate;

#[cfg(test)]
mod reference;

pub use certs::AcceptAnyCertificate;
pub use error::{ConfigError, ConfigErrors, Kind, Severity};
pub use field_path::{FieldPath, Segment};
pub use preflight::{preflight, Preflight};
pub use resolve::{Answers, Note, NoteKind, OfflineResolver, Resolve, SystemResolver};
pub use runtime::*;
#[cfg(feature = "fuzzing")]
pub(crate) use stages::parse_offline;
pub use stages::{load, parse, prepare, read, Prepared, Resolved};

/// A listen address as the file and the command line take it: `IP:PORT`, or `localhost:PORT`,
/// which is 127.0.0.1 (only: not also ::1, which a host without IPv6 cannot bind).
pub fn listen_address(text: &str) -> Option<std::net::SocketAddr> {
    let text = text.trim();
    let localhost = text
        .rsplit_once(':')
        .filter(|(host, port)| host.eq_ignore_ascii_case("localhost") && !port.starts_with('+'))
        .and_then(|(_, port)| port.parse::<u16>().ok());
    if let Some(port) = localhost {
        return Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests;
