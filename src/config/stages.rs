//! Loading a config in typed stages: text → [`Prepared`] (`${VAR}`s expanded, parsed, validated,
//! certificate, key and CA files read; every error and warning found) → [`Resolved`] (backend
//! names looked up by a [`Resolve`]) → the [`Config`] the proxy runs on. A reload starts from the
//! text; a DNS refresh starts from the running config's `Prepared` and redoes only the lookups.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::env::{self, EnvError, EnvProblem};
use super::error::LineIndex;
use super::mistakes::{every_mistake, syntax_error};
use super::resolve::{self, BackendSource, Note, Resolve, SystemResolver, Unresolved};
use super::{certs, file, schema, sections, validate, Config, ConfigError, ConfigErrors, Kind};

/// A config text made ready to run but for its backend host names: expanded, parsed, validated,
/// its certificate, key and CA files read (and held, so that resolving again reads nothing).
#[derive(Debug)]
pub struct Prepared {
    /// Complete but for the upstreams' backends (and [`Config::dns`]).
    config: Config,
    /// `config.warnings` before this many come from validation, the rest from the files read:
    /// a resolution's notes go between them, as they are found between them.
    validated: usize,
    backends: Vec<BackendSource>,
    /// The file named in errors, and the text (after `${VAR}` expansion) they are located in.
    path: PathBuf,
    text: Arc<str>,
}

/// A [`Prepared`] config with its backend names resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What runs; its `warnings` hold each note's warning, and `dns` what each name resolved to.
    pub config: Config,
    /// The names that did not resolve, in file order.
    pub notes: Vec<Note>,
}

impl Prepared {
    /// Resolves the backend names with `resolver` (blocking, for a resolver that asks DNS). A
    /// name whose lookup fails keeps the addresses it has in `previous` ([`Config::dns`] of the
    /// config running now). Never an error: a name that does not resolve is a [`Note`], and two
    /// backends written as one address were refused while preparing.
    pub fn resolve(
        &self,
        resolver: &dyn Resolve,
        previous: &[(String, Vec<SocketAddr>)],
    ) -> Resolved {
        let (mut config, notes) = LineIndex::scope(&self.text, || {
            let at = (self.path.as_path(), &*self.text);
            resolve::resolve(&self.config, &self.backends, at, previous, resolver)
        });
        let warnings = notes.iter().map(|n| n.warning.clone());
        config
            .warnings
            .splice(self.validated..self.validated, warnings);
        Resolved { config, notes }
    }
}

/// Reads the config file at `path` (a regular file of at most `max_size` bytes: see
/// [`file`](mod@file)) and prepares and resolves it. Blocking (file IO, DNS).
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

/// Prepares config text and resolves its backend names with the [`SystemResolver`]; `path`
/// only names it in errors. Blocking when a backend is named by a host name (DNS).
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
    Ok(prepare(source, path)?.resolve(&SystemResolver, &[]).config)
}

/// [`parse`] without leaving the text, for the fuzz targets: no backend host name is looked up
/// (each resolves to no address, a warning) and no certificate, key or CA file is read (none is
/// loaded, and none is checked).
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_offline(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let prepared = prepare_with(source, path, CertFiles::Skip)?;
    Ok(prepared.resolve(&resolve::OfflineResolver, &[]).config)
}

/// Expands, parses and validates config text and reads the files it names; `path` only names
/// it in errors. Blocking (file IO), but no DNS: see [`Prepared::resolve`].
pub fn prepare(source: &str, path: &Path) -> Result<Prepared, ConfigErrors> {
    prepare_with(source, path, CertFiles::Read)
}

/// Whether preparing reads the certificate, key and CA files a config names.
#[derive(Clone, Copy)]
enum CertFiles {
    Read,
    /// None is loaded, and none is checked (the fuzz targets').
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    Skip,
}

fn prepare_with(source: &str, path: &Path, files: CertFiles) -> Result<Prepared, ConfigErrors> {
    let env_errors = match env::expand(source, |name| std::env::var(name).ok()) {
        // One line index for every error of this load, however many there are.
        Ok(expanded) => {
            let prepared = LineIndex::scope(&expanded, || prepare_indexed(&expanded, path, files))?;
            return fits_its_own_limit(prepared, source, path);
        }
        Err(errors) => errors,
    };
    // The variables that are missing without a default.
    let missing: Vec<&str> = env_errors
        .iter()
        .filter_map(|e| match &e.problem {
            EnvProblem::Missing { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut errors: Vec<ConfigError> = LineIndex::scope(source, || {
        env_errors
            .iter()
            .map(|e| env_error(e, source, path))
            .collect()
    });
    // The rest of the file is still checked, with a stand-in for each missing variable; what
    // is then wrong on a line that has one of them is the variable's fault, not another error.
    let stand_in = |name: &str| {
        // Set but empty is missing too (as the expansion says): it gets the stand-in.
        let real = std::env::var(name).ok().filter(|v| !v.is_empty());
        real.or_else(|| missing.contains(&name).then(|| "unset".to_owned()))
    };
    if let Ok(text) = env::expand(source, stand_in) {
        if let Err(more) = LineIndex::scope(&text, || prepare_indexed(&text, path, files)) {
            let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
            errors.extend(more.0.into_iter().filter(|e| !lines.contains(&e.line)));
        }
    }
    Err(ConfigErrors::by_place(errors))
}

/// The config error for a problem with a `${...}` in `source`; a missing variable's is of
/// [`Kind::MissingEnv`].
fn env_error(e: &EnvError, source: &str, path: &Path) -> ConfigError {
    let error = ConfigError::at(
        path,
        source,
        Some(e.span.clone()),
        "",
        e.problem.to_string(),
    );
    match &e.problem {
        EnvProblem::Missing { name } => error.kind(Kind::MissingEnv {
            name: name.as_str().into(),
        }),
        _ => error,
    }
}

fn prepare_indexed(source: &str, path: &Path, files: CertFiles) -> Result<Prepared, ConfigErrors> {
    let de = toml::Deserializer::parse(source).map_err(|e| syntax_error(&e, source, path))?;
    let file: schema::FileConfig = serde_path_to_error::deserialize(de)
        .map_err(|e| ConfigErrors::by_place(every_mistake(Some(e), source, path)))?;
    // serde fills a table's fields from a list by position, and takes an enum's table form:
    // what passes it that way is refused here.
    if !sections::shape_mistakes(source).is_empty() {
        return Err(ConfigErrors::by_place(every_mistake(None, source, path)));
    }
    let (unresolved, named, mut errors) = validate::validate(file, path, source);
    let Unresolved {
        mut config,
        backends,
    } = unresolved;
    errors.extend(resolve::repeated_literals(&backends, path, source));
    let validated = config.warnings.len();
    if let CertFiles::Read = files {
        errors.extend(certs::load(&mut config, named, path, source));
    }
    if !errors.is_empty() {
        return Err(ConfigErrors::by_place(errors));
    }
    Ok(Prepared {
        config,
        validated,
        backends,
        path: path.to_path_buf(),
        text: Arc::from(source),
    })
}

/// A file larger than its own `max_config_size` would be refused by the next reload, even
/// unchanged: an error now, not a surprise then.
fn fits_its_own_limit(
    prepared: Prepared,
    source: &str,
    path: &Path,
) -> Result<Prepared, ConfigErrors> {
    let config = &prepared.config;
    let (size, limit) = (source.len() as u64, config.server.max_config_size);
    if size <= limit {
        return Ok(prepared);
    }
    let limit = file::Limit::Running(limit);
    let message = format!("this file is {size} bytes, more than its own max_config_size ({limit}): a reload of it would be refused; raise max_config_size to at least {size} bytes");
    let field = "server.max_config_size";
    Err(config.places.error(Some(path), field, message).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_of_its_own_kind() {
        // Names no environment sets; `${...}` problems other than a missing variable stay
        // `Kind::Invalid`.
        let name = "FULCRUM_UNIT_SURELY_UNSET_4C1E";
        let source = format!(
            "[server]\nlisten = [\"${{{name}}}\"]\nlog_level = \"${{BAD NAME}}\"\n\n\
             [[route]]\nupstream = \"web\"\n\n\
             [upstream.web]\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n"
        );
        let errors = prepare(&source, Path::new("t.toml")).unwrap_err().0;
        let kinds: Vec<(usize, &Kind)> = errors.iter().map(|e| (e.line, &e.kind)).collect();
        assert_eq!(
            kinds,
            [
                (2, &Kind::MissingEnv { name: name.into() }),
                (3, &Kind::Invalid),
            ],
            "{errors:?}"
        );
    }
}
