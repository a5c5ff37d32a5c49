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
//! - `error`: the error type that names file, line, column, field, problem and what is accepted.
//! - `file`: reading the config file: a regular file only, at most a limit of bytes, never
//!   blocking on what the path points at, abandoned past a timeout.
//! - `preflight`: what `run` would meet at start beyond the file (the access log file; the
//!   upgrade socket's directory, a warning), for `fulcrum check`; it opens and binds nothing.

mod certs;
pub(crate) mod env;
mod error;
pub mod file;
mod forms;
mod preflight;
mod resolve;
pub mod runtime;
pub mod schema;
mod sections;
mod stages;
pub mod units;
mod validate;

use std::path::Path;

pub use certs::AcceptAnyCertificate;
pub use error::{ConfigError, ConfigErrors};
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

/// serde stops at a file's first unknown key or type error: this finds the others section by
/// section, then validates what is left without them, so that one run reports every mistake
/// (but for a backend name's resolution, which waits for a file without them).
fn every_mistake(
    first: Option<serde_path_to_error::Error<toml::de::Error>>,
    source: &str,
    path: &Path,
) -> Vec<ConfigError> {
    let mut found = sections::mistakes(source);
    if let (true, Some(first)) = (found.is_empty(), first) {
        let field = field_path(first.path());
        let inner = first.into_inner();
        found.push((field, inner.span(), inner.message().trim().to_owned()));
    }
    let tree = toml::de::DeTable::parse(source).ok();
    let mut errors: Vec<ConfigError> = found
        .iter()
        .map(|(field, span, message)| {
            let found_at = tree
                .as_ref()
                .and_then(|t| sections::found_at(t.get_ref(), field));
            let message = explain(field, message, found_at);
            ConfigError::at(path, source, span.clone(), field.clone(), message)
        })
        .collect();
    if let Some(sections::Remains { file, removed }) = sections::without_mistakes(source, &found) {
        let (_, _, semantic) = validate::validate(file, path, source);
        // Not what taking the wrong sections out caused.
        let caused = |e: &ConfigError| {
            (removed.routes > 0 && e.field == "route")
                || (removed.all_upstreams && e.field.ends_with(".upstream"))
                || (e.field.ends_with(".upstream")
                    && removed.upstreams.iter().any(|u| {
                        e.message
                            .starts_with(&format!("upstream \"{u}\" is not defined"))
                    }))
                // A list that lost its wrong elements may be left too short.
                || removed.lost_from(&e.field)
        };
        errors.extend(semantic.into_iter().filter(|e| !caused(e)).map(|mut e| {
            e.field = removed.file_field(&e.field);
            e
        }));
    }
    errors
}

/// `route[0].timeout`: serde's path without the private field `toml::Spanned` wraps values in.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        let name = match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                continue;
            }
            Segment::Map { key } => key.as_str(),
            Segment::Enum { variant } => variant.as_str(),
            Segment::Unknown => "?",
        };
        if name.starts_with("$__serde_spanned_private") {
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
    }
    out
}

/// serde's message, in the file's words and with a hint where a common mistake is behind it:
/// for a wrong type, what the key takes with an example (`forms`: `[[route]]` for a
/// `[route]`); "did you mean" for a misspelt key or value (the closest accepted one, as
/// HAProxy does).
fn explain(field: &str, message: &str, found_at: Option<String>) -> String {
    // A wrong type or value: what the key takes and an example, not serde's Rust names.
    if let Some(explained) = forms::explain(field, message, found_at) {
        return explained;
    }
    // serde's "unknown variant `x`, expected one of `a`, `b`" is a value, written in quotes.
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let given = rest.split_once('`').map_or(rest, |(g, _)| g);
        let accepted: Vec<String> = rest
            .split_once("expected ")
            .map_or("", |(_, c)| c)
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|c| format!("\"{c}\""))
            .collect();
        let accepted = accepted.join(", ");
        return match closest_choice(message) {
            Some(choice) => format!(
                "unknown value \"{given}\"; accepted: {accepted}; did you mean \"{choice}\"?"
            ),
            None => format!("unknown value \"{given}\"; accepted: {accepted}"),
        };
    }
    match closest_choice(message) {
        Some(choice) => format!("{message}; did you mean `{choice}`?"),
        None => message.to_owned(),
    }
}

/// For "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), the accepted word
/// nearest to `x`, if it is near enough to be a typo.
fn closest_choice(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (given, rest) = rest.split_once('`')?;
    // "expected one of `a`, `b`, `c`", "expected `a` or `b`", "expected `a`".
    let choices = rest.split_once("expected ")?.1;
    choices
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|c| (strsim::levenshtein(&given.to_ascii_lowercase(), c), c))
        .filter(|&(d, c)| d > 0 && d <= (c.len() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn syntax_message(e: &toml::de::Error) -> String {
    format!("invalid TOML: {}", e.message().trim())
}

#[cfg(test)]
mod tests;
