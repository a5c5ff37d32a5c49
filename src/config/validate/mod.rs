//! Schema → runtime: every semantic check, collecting all problems instead of stopping at the
//! first one (like `nginx -t`, but listing every problem). One file per section of the file;
//! this one holds the entry point and the checks several sections share. Validation is pure:
//! backend host names are resolved afterwards, by `resolve`.
//!
//! - `server`: `[server]`.
//! - `tls`: `[[server.tls]]` listeners and an upstream's TLS.
//! - `listen`: listen addresses, for `[server]` and `[[server.tls]]`.
//! - `route`: `[[route]]`.
//! - `upstream`: `[upstream.NAME]` and its backends.
//! - `health`: `[upstream.NAME.health_check]` and `[upstream.NAME.outlier]`.
//! - `protect`: `rate_limit`, `[upstream.NAME.circuit_breaker]` and `max_inflight`.
//!
//! Values that several sections write alike are checked in files of their own, not in one of
//! those sections (which made the section files import each other in a circle):
//! - `host`: a host written as a URL (a route's `host`, `host_rewrite`, a health check's `host`).
//! - `status`: HTTP statuses as codes or classes (`expect_status`, `failure_status`).

mod health;
mod host;
mod listen;
mod protect;
mod route;
mod server;
mod status;
mod tls;
mod upstream;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::certs::Files;
use super::error::{ConfigError, Kind};
use super::field_path::FieldPath;
use super::resolve::Unresolved;
use super::runtime::*;
use super::schema::*;
use super::units::HumanDuration;

/// What a backend `addr` may be, for error messages.
pub(super) const BACKEND_ADDR_ACCEPTED: &str =
    "expected HOST:PORT like \"127.0.0.1:9001\" or \"backend.internal:80\"";

/// Collects errors with their place in the file.
struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(
        &mut self,
        span: Range<usize>,
        field: impl Into<FieldPath>,
        message: impl Into<String>,
    ) {
        self.error_of(Kind::Invalid, span, field, message);
    }

    /// An error of `kind`, for one that code acts on.
    fn error_of(
        &mut self,
        kind: Kind,
        span: Range<usize>,
        field: impl Into<FieldPath>,
        message: impl Into<String>,
    ) {
        let e = ConfigError::at(self.file, self.source, Some(span), field, message);
        self.errors.push(e.kind(kind));
    }

    fn warn(
        &mut self,
        span: Range<usize>,
        field: impl Into<FieldPath>,
        message: impl Into<String>,
    ) {
        self.warn_of(Kind::Invalid, span, field, message);
    }

    /// A warning of `kind`, for one that code acts on.
    fn warn_of(
        &mut self,
        kind: Kind,
        span: Range<usize>,
        field: impl Into<FieldPath>,
        message: impl Into<String>,
    ) {
        let e = ConfigError::at(self.file, self.source, Some(span), field, message);
        self.warnings.push(e.kind(kind).warning());
    }

    /// A path as written in the file: relative ones are relative to the file's directory.
    fn relative(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        self.file.parent().unwrap_or(Path::new("")).join(path)
    }

    /// Line and column of a span, for [`Config::places`].
    fn place(&self, span: Range<usize>) -> Place {
        let e = ConfigError::at(self.file, self.source, Some(span), "", "");
        Place {
            line: e.line,
            column: e.column,
        }
    }
}

/// Validates a deserialized file into the config the proxy runs on, but for backend addresses,
/// which are left for `resolve`, and the files it names (certificates, CAs), left for `certs`.
/// Returns every problem found beside what could be validated.
pub(super) fn validate(
    file: FileConfig,
    path: &Path,
    source: &str,
) -> (Unresolved, Files, Vec<ConfigError>) {
    let mut c = Checker {
        file: path,
        source,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let mut places = Places::default();
    let mut files = Files::default();
    let server = server::server(&mut c, file.server, &mut places, &mut files);
    let mut backends = Vec::new();
    let upstreams: Vec<UpstreamConfig> = file
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, (name, u))| {
            upstream::upstream(&mut c, i, name, u.get_ref(), &mut backends, &mut files)
        })
        .collect();
    let names: Vec<&str> = file.upstreams.keys().map(String::as_str).collect();
    let routes = route::routes(&mut c, &file.routes, &names);
    if file.routes.is_empty() {
        // Also what an emptied or truncated file looks like: never apply it.
        let msg = "no [[route]]: every request would get 404; add one, e.g. [[route]] with upstream = \"NAME\"";
        let e = ConfigError::at(path, source, None, "route", msg);
        c.errors.push(e.kind(Kind::NoRoute));
    }

    let mut used = vec![false; file.upstreams.len()];
    for r in &routes {
        used[r.upstream] = true;
    }
    for ((name, u), used) in file.upstreams.iter().zip(used) {
        if !used {
            let msg = format!("upstream \"{name}\" is not used by any route");
            let kind = Kind::UnusedUpstream {
                name: name.as_str().into(),
            };
            let field = FieldPath::default().key("upstream").key(name);
            c.warn_of(kind, u.span(), field, msg);
        }
    }
    let unresolved = Unresolved {
        config: Config {
            server,
            routes,
            upstreams,
            warnings: c.warnings,
            places,
            dns: Vec::new(),
        },
        backends,
    };
    (unresolved, files, c.errors)
}

/// A duration that must be longer than zero (timeouts, intervals, ejection times).
fn positive(
    c: &mut Checker,
    d: &Option<Spanned<HumanDuration>>,
    field: String,
    default: Duration,
) -> Duration {
    match d {
        Some(d) if d.get_ref().0.is_zero() => {
            c.error(d.span(), field, "must be longer than 0s, e.g. \"2s\"");
            default
        }
        Some(d) => d.get_ref().0,
        None => default,
    }
}

/// A percentage 0..=max; out of range is reported and read as `max`.
fn percent(c: &mut Checker, p: &Spanned<u32>, field: &str, max: u32) -> u32 {
    let v = *p.get_ref();
    if v > max {
        c.error(
            p.span(),
            field,
            format!("must be a percentage between 0 and {max} (got {v})"),
        );
        return max;
    }
    v
}

/// A count that must be at least 1; 0 is reported and read as 1, a missing one is `default`.
fn nonzero_count(c: &mut Checker, v: Option<&Spanned<u32>>, field: String, default: u32) -> u32 {
    match v {
        None => default,
        Some(n) if *n.get_ref() >= 1 => *n.get_ref(),
        Some(n) => {
            c.error(n.span(), field, "must be at least 1");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, FieldPath, Kind, Severity};

    #[test]
    fn an_undefined_upstream_is_its_kind_with_the_name() {
        let errors = parse("[[route]]\nupstream = \"nope\"\n", Path::new("t.toml"))
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        let name = "nope".into();
        assert_eq!(e.kind, Kind::UndefinedUpstream { name });
        assert_eq!(e.severity, Severity::Error);
        let field = FieldPath::default().key("route").index(0).key("upstream");
        assert_eq!(e.field, field);
    }

    #[test]
    fn no_route_and_an_unused_upstream_are_their_kinds() {
        let upstream = "[upstream.web]\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n";
        let errors = parse(upstream, Path::new("t.toml")).unwrap_err().0;
        let kinds: Vec<&Kind> = errors.iter().map(|e| &e.kind).collect();
        assert_eq!(kinds, [&Kind::NoRoute]);
        let text = format!("[[route]]\nupstream = \"web\"\n{upstream}[upstream.\"old.v1\"]\nbackends = [{{ addr = \"127.0.0.1:9002\" }}]\n");
        let config = parse(&text, Path::new("t.toml")).unwrap();
        let w = &config.warnings[0];
        let name = "old.v1".into();
        assert_eq!(w.kind, Kind::UnusedUpstream { name });
        assert_eq!(w.severity, Severity::Warning);
        assert_eq!(w.field, "upstream.old.v1");
    }
}
