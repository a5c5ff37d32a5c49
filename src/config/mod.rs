//! Configuration: `fulcrum.toml → schema::FileConfig → validate → resolve → runtime::Config`.
//!
//! - `env`: `${VAR}` and `${VAR:-default}` in string values, expanded before parsing.
//! - `schema`: what the user writes (serde, unknown keys rejected, `Option`s, `DEFAULT_*`).
//! - `units`: human durations and sizes inside the file.
//! - `validate`: every semantic check, one file per section; all problems are collected, each
//!   with file:line:column. Pure: no IO.
//! - `resolve`: backend host names → addresses (DNS, the one blocking step after reading).
//! - `runtime`: what the proxy runs on, with no `Option`s left.
//! - `error`: the error type that names file, line, column, field, problem and what is accepted.

mod env;
mod error;
mod resolve;
pub mod runtime;
pub mod schema;
pub mod units;
mod validate;

use std::path::Path;

use error::LineIndex;
pub use error::{ConfigError, ConfigErrors};
pub use runtime::*;

/// Reads, parses, validates and resolves the config file at `path`. Blocking (file IO, DNS).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read config file: {e}"),
    })?;
    parse(&source, path)
}

/// Parses, validates and resolves config text; `path` only names it in errors. Blocking when a
/// backend is named by a host name (DNS).
///
/// ```
/// use std::path::Path;
///
/// let text = r#"
/// [[route]]
/// path = "/api/"
/// upstream = "api"
///
/// [upstream.api]
/// balance = "least_connections"
/// backends = [{ addr = "127.0.0.1:9001", weight = 2 }, { addr = "127.0.0.1:9002" }]
/// "#;
/// let config = fulcrum::config::parse(text, Path::new("inline.toml")).unwrap();
/// assert_eq!(config.routes[0].name, "*/api/");
/// assert_eq!(config.upstreams[0].backends[0].weight, 2);
///
/// let bad = "[[route]]\nupstream = \"nope\"\n";
/// let errors = fulcrum::config::parse(bad, Path::new("x.toml")).unwrap_err();
/// assert_eq!(
///     errors.to_string(),
///     "x.toml:2:12: route[0].upstream: upstream \"nope\" is not defined; none is defined; add an [upstream.NAME] table"
/// );
/// ```
pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let source = env::expand(source, |name| std::env::var(name).ok()).map_err(|errors| {
        let errors = errors
            .into_iter()
            .map(|(span, message)| ConfigError::at(path, source, Some(span), "", message));
        ConfigErrors(LineIndex::scope(source, || errors.collect()))
    })?;
    // One line index for every error of this load, however many there are.
    LineIndex::scope(&source, || parse_indexed(&source, path))
}

fn parse_indexed(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let de = toml::Deserializer::parse(source)
        .map_err(|e| ConfigError::at(path, source, e.span(), "", syntax_message(&e)))?;
    let file: schema::FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = field_path(e.path());
        let inner = e.into_inner();
        ConfigError::at(path, source, inner.span(), field, inner.message().trim())
    })?;
    let (unresolved, mut errors) = validate::validate(file, path, source);
    let (config, unresolvable) = resolve::resolve(unresolved, path, source);
    errors.extend(unresolvable);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
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

fn syntax_message(e: &toml::de::Error) -> String {
    format!("invalid TOML: {}", e.message().trim())
}

#[cfg(test)]
mod tests;
