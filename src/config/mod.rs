//! Configuration: `fulcrum.toml → schema::FileConfig → validate → resolve → runtime::Config`.
//!
//! - `env`: `${VAR}` and `${VAR:-default}` in string values, expanded before parsing.
//! - `schema`: what the user writes (serde, unknown keys rejected, `Option`s, `DEFAULT_*`).
//! - `units`: human durations and sizes inside the file.
//! - `validate`: every semantic check, one file per section; all problems are collected, each
//!   with file:line:column. Pure: no IO.
//! - `resolve`: backend host names → addresses (DNS, the one blocking step after reading).
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
pub mod units;
mod validate;

#[cfg(test)]
mod reference;

use std::path::Path;

pub use certs::{AcceptAnyCertificate, Loaded};
use error::LineIndex;
pub use error::{ConfigError, ConfigErrors, Kind, Severity};
pub use field_path::{FieldPath, Segment};
use mistakes::{every_mistake, syntax_error};
pub use preflight::{preflight, Preflight};
use resolve::Names;
pub use runtime::*;

/// Reads the config file at `path` (a regular file of at most `max_size` bytes: see [`file`])
/// and parses, validates and resolves it. Blocking (file IO, DNS).
pub fn load(path: &Path, max_size: u64) -> Result<Config, ConfigErrors> {
    parse(&read(path, max_size)?, path)
}

/// The text of the config file at `path`, for `fulcrum run` and `check`: a regular file of at
/// most `max_size` bytes (`--max-config-size`), read within [`file::READ_TIMEOUT`].
pub fn read(path: &Path, max_size: u64) -> Result<String, ConfigError> {
    file::Reader::default()
        .read(path, file::Limit::Flag(max_size))
        .map_err(|e| e.at(path))
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
    parse_resolving(source, path, &[])
}

/// [`parse`] for a reload: a backend name whose lookup fails keeps the addresses it has in
/// `previous` ([`Config::dns`] of the config running now).
pub fn parse_resolving(
    source: &str,
    path: &Path,
    previous: &[(String, Vec<std::net::SocketAddr>)],
) -> Result<Config, ConfigErrors> {
    parse_with(source, path, previous, None, Names::System)
}

/// [`parse_resolving`] of the text of the config running now, to resolve its backend names
/// again: the certificates, keys and CAs are not read again but taken from `loaded` (the
/// running config's), so that a file changed or broken on disk since is applied, or refused,
/// by a reload, not by a DNS refresh.
pub fn parse_refreshing(
    source: &str,
    path: &Path,
    previous: &[(String, Vec<std::net::SocketAddr>)],
    loaded: &Loaded,
) -> Result<Config, ConfigErrors> {
    parse_with(source, path, previous, Some(loaded), Names::System)
}

/// [`parse`] without leaving the text, for the fuzz targets: no backend host name is looked up
/// (each resolves to no address, a warning) and no certificate, key or CA file is read (none is
/// loaded, and none is checked).
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_offline(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
    parse_with(source, path, &[], Some(&Loaded::default()), Names::Offline)
}

fn parse_with(
    source: &str,
    path: &Path,
    previous: &[(String, Vec<std::net::SocketAddr>)],
    loaded: Option<&Loaded>,
    resolver: Names,
) -> Result<Config, ConfigErrors> {
    let env_errors = match env::expand(source, |name| std::env::var(name).ok()) {
        // One line index for every error of this load, however many there are.
        Ok(expanded) => {
            let config = LineIndex::scope(&expanded, || {
                parse_indexed(&expanded, path, previous, loaded, resolver)
            })?;
            return fits_its_own_limit(config, source, path);
        }
        Err(errors) => errors,
    };
    // The variables that are missing without a default (`${NAME}` at each error's place).
    let missing: Vec<&str> = env_errors
        .iter()
        .filter_map(|(span, _)| {
            source
                .get(span.clone())?
                .strip_prefix("${")?
                .strip_suffix('}')
        })
        .collect();
    let mut errors: Vec<ConfigError> = LineIndex::scope(source, || {
        env_errors
            .iter()
            .map(|(span, message)| {
                ConfigError::at(path, source, Some(span.clone()), "", message.clone())
            })
            .collect()
    });
    // The rest of the file is still checked, with a stand-in for each missing variable; what
    // is then wrong on a line that has one of them is the variable's fault, not another error.
    let stand_in = |name: &str| {
        let real = std::env::var(name).ok();
        real.or_else(|| missing.contains(&name).then(|| "unset".to_owned()))
    };
    if let Ok(text) = env::expand(source, stand_in) {
        if let Err(more) = LineIndex::scope(&text, || {
            parse_indexed(&text, path, previous, loaded, resolver)
        }) {
            let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
            errors.extend(more.0.into_iter().filter(|e| !lines.contains(&e.line)));
        }
    }
    Err(ConfigErrors::by_place(errors))
}

fn parse_indexed(
    source: &str,
    path: &Path,
    previous: &[(String, Vec<std::net::SocketAddr>)],
    loaded: Option<&Loaded>,
    resolver: Names,
) -> Result<Config, ConfigErrors> {
    let de = toml::Deserializer::parse(source).map_err(|e| syntax_error(&e, source, path))?;
    let file: schema::FileConfig = serde_path_to_error::deserialize(de)
        .map_err(|e| ConfigErrors::by_place(every_mistake(Some(e), source, path)))?;
    // serde fills a table's fields from a list by position, and takes an enum's table form:
    // what passes it that way is refused here.
    if !sections::shape_mistakes(source).is_empty() {
        return Err(ConfigErrors::by_place(every_mistake(None, source, path)));
    }
    let (unresolved, files, mut errors) = validate::validate(file, path, source);
    let (mut config, unresolvable) = resolve::resolve(unresolved, path, source, previous, resolver);
    errors.extend(unresolvable);
    match loaded {
        None => errors.extend(certs::load(&mut config, files, path, source)),
        Some(loaded) => loaded.apply(&mut config),
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors::by_place(errors))
    }
}

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

/// A file larger than its own `max_config_size` would be refused by the next reload, even
/// unchanged: an error now, not a surprise then.
fn fits_its_own_limit(config: Config, source: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let (size, limit) = (source.len() as u64, config.server.max_config_size);
    if size <= limit {
        return Ok(config);
    }
    let limit = file::Limit::Running(limit);
    let message = format!("this file is {size} bytes, more than its own max_config_size ({limit}): a reload of it would be refused; raise max_config_size to at least {size} bytes");
    let field = "server.max_config_size";
    Err(config.places.error(Some(path), field, message).into())
}

#[cfg(test)]
mod tests;
