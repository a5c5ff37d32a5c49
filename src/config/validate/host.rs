//! A host written as a URL where a bare host belongs: a route's `host`, `host_rewrite` and a
//! health check's `host`. Each gets an error that names what to write instead.

/// What is wrong with a route `host` written as a URL: a scheme, or a path. `None` when it has
/// neither.
pub(super) fn url_host(host: &str) -> Option<String> {
    let (scheme, authority, path) = url_parts(host)?;
    // The port is not matched either: leave it out of what to write.
    let name = match authority.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty() && !name.ends_with(':') && port.parse::<u16>().is_ok() =>
        {
            name
        }
        _ => authority,
    };
    let mut fix = match name.is_empty() {
        true => "leave host out (to match any host)".to_owned(),
        false => format!("write host = \"{name}\""),
    };
    if !path.is_empty() && path != "/" {
        let and = if name.is_empty() { "and write" } else { "and" };
        fix.push_str(&format!(" {and} path = \"{path}\""));
    }
    let what = match scheme {
        Some(scheme) => format!("has a scheme ({scheme}://); a route's host is the name alone, matched for http and https alike"),
        None => format!("has a path ({path}); a route's host is the name alone, and path is its own key"),
    };
    Some(format!("invalid host \"{host}\": {what}: {fix}"))
}

/// What is wrong with a Host header value (`host_rewrite`, a health check's `host`) written
/// as a URL: a scheme, or a path. `None` when it has neither.
pub(super) fn url_host_header(value: &str, key: &str) -> Option<String> {
    let (scheme, authority, path) = url_parts(value)?;
    let what = match scheme {
        Some(scheme) => format!("has a scheme ({scheme}://)"),
        None => format!("has a path ({path})"),
    };
    let fix = match authority.is_empty() {
        true => "write the host alone, e.g. \"api.internal\"".to_owned(),
        false => format!("write {key} = \"{authority}\""),
    };
    Some(format!(
        "invalid {key} \"{value}\": {what}; it is sent as the Host header, a host (and port) alone: {fix}"
    ))
}

/// A URL-like host's scheme (if any), authority (without user info) and path; `None` when it
/// has neither a scheme nor a path.
fn url_parts(host: &str) -> Option<(Option<&str>, &str, &str)> {
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, host),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None if scheme.is_some() => (rest, ""),
        None => return None,
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    Some((scheme, authority, path))
}
