//! What is wrong with a file that serde refuses: every unknown key and type error, explained
//! in the file's words, and the semantic errors of what is left without them.

use std::path::Path;

use super::error::ConfigError;
use super::{forms, sections, validate};

/// serde stops at a file's first unknown key or type error: this finds the others section by
/// section, then validates what is left without them, so that one run reports every mistake
/// (but for a backend name's resolution, which waits for a file without them).
pub(super) fn every_mistake(
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
pub(super) fn field_path(path: &serde_path_to_error::Path) -> String {
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

pub(super) fn syntax_message(e: &toml::de::Error) -> String {
    format!("invalid TOML: {}", e.message().trim())
}
