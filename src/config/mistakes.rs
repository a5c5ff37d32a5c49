//! What is wrong with a file that serde refuses: every unknown key and type error, explained
//! in the file's words, and the semantic errors of what is left without them.

use std::path::Path;

use super::error::{ConfigError, Kind};
use super::field_path::FieldPath;
use super::forms::Problem;
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
        let field = FieldPath::of_serde(first.path());
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
            let kind = Problem::read(message).kind();
            let message = explain(&field.to_string(), message, found_at);
            ConfigError::at(path, source, span.clone(), field.clone(), message).kind(kind)
        })
        .collect();
    if let Some(sections::Remains { file, removed }) = sections::without_mistakes(source, &found) {
        let (_, _, semantic) = validate::validate(file, path, source);
        // Not what taking the wrong sections out caused.
        let caused = |e: &ConfigError| {
            let section_gone = match &e.kind {
                Kind::NoRoute => removed.routes > 0,
                Kind::UndefinedUpstream { name } => {
                    removed.all_upstreams || removed.upstreams.iter().any(|u| **u == **name)
                }
                _ => false,
            };
            // A list that lost its wrong elements may be left too short.
            section_gone || removed.lost_from(&e.field)
        };
        errors.extend(semantic.into_iter().filter(|e| !caused(e)).map(|mut e| {
            e.field = removed.file_field(&e.field);
            e
        }));
    }
    errors
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

/// The error of a text that is not TOML, at the place toml gives.
pub(super) fn syntax_error(e: &toml::de::Error, source: &str, path: &Path) -> ConfigError {
    let message = format!("invalid TOML: {}", e.message().trim());
    ConfigError::at(path, source, e.span(), "", message).kind(Kind::Syntax)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, ConfigError, FieldPath, Kind};

    const ROUTE: &str = "[[route]]\nupstream = \"web\"\n";
    const UPSTREAM: &str = "[upstream.web]\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n";

    fn errors(text: &str) -> Vec<ConfigError> {
        parse(text, Path::new("t.toml")).unwrap_err().0
    }

    fn kinds(text: &str) -> Vec<(String, Kind)> {
        let errors = errors(text);
        errors
            .into_iter()
            .map(|e| (e.field.to_string(), e.kind))
            .collect()
    }

    #[test]
    fn a_file_that_is_not_toml_is_a_syntax_error() {
        assert_eq!(kinds("[[route]\n"), [(String::new(), Kind::Syntax)]);
    }

    #[test]
    fn serde_mistakes_are_an_unknown_key_a_missing_key_or_a_wrong_type() {
        let wrong = kinds(&format!("[server]\nh2c = \"yes\"\n{ROUTE}{UPSTREAM}"));
        assert_eq!(wrong, [("server.h2c".to_owned(), Kind::WrongType)]);
        let missing = kinds(&format!("{ROUTE}[upstream.web]\nbalance = \"random\"\n"));
        assert_eq!(missing, [("upstream.web".to_owned(), Kind::MissingKey)]);
        let unknown = errors(&format!("[server]\nthreds = 2\n{ROUTE}{UPSTREAM}"));
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert_eq!(unknown[0].kind, Kind::UnknownKey);
        assert!(unknown[0].field.starts_with(&FieldPath::from("server")));
    }

    #[test]
    fn a_route_to_an_upstream_taken_out_for_its_mistakes_is_not_also_undefined() {
        // Taken out whole, for its missing `backends`; decided by the kind and the name.
        for name in ["web", "api.v1", "a \\\"quoted\\\" one"] {
            let text = format!(
                "[[route]]\nupstream = \"{name}\"\n[upstream.\"{name}\"]\nbalance = \"random\"\n"
            );
            let found = errors(&text);
            assert_eq!(found.len(), 1, "{name}: {found:?}");
            assert_eq!(found[0].kind, Kind::MissingKey, "{name}: {found:?}");
        }
    }

    #[test]
    fn errors_about_what_is_left_of_a_list_name_the_files_index() {
        let text = format!(
            "{ROUTE}[upstream.web]\nbackends = [[\"127.0.0.1:1\", 2], {{ addr = \"backend.internal\" }}]\n"
        );
        // The list's first element is taken out whole; the second is `[0]` of what is left.
        let found = kinds(&text);
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["upstream.web.backends[0]", "upstream.web.backends[1].addr"]
        );
        assert_eq!(
            (&found[0].1, &found[1].1),
            (&Kind::WrongType, &Kind::Invalid)
        );
    }

    /// The fields of `text`'s errors, as shown.
    fn fields(text: &str) -> Vec<String> {
        errors(text).iter().map(|e| e.field.to_string()).collect()
    }

    #[test]
    fn an_upstream_named_with_brackets_has_its_backends_named_by_the_files_index() {
        // `a[1]` reads back as `a`, `[1]`: the list that lost elements must still be found by
        // the field validate names. Nothing is taken out here, nor blamed on a list left empty.
        let route = "[[route]]\nupstream = \"a[1]\"\n[upstream.\"a[1]\"]\n";
        let backends = "backends = [[\"127.0.0.1:1\", 2], { addr = \"backend.internal\" }, \
                        { addr = \"127.0.0.1:1\", weight = 0 }]\n";
        assert_eq!(
            fields(&format!("{route}{backends}")),
            [
                "upstream.a[1].backends[0]",
                "upstream.a[1].backends[1].addr",
                "upstream.a[1].backends[2].weight"
            ]
        );
        let one = format!("{route}backends = [[\"127.0.0.1:1\", 2, 3]]\n");
        assert_eq!(fields(&one), ["upstream.a[1].backends[0]"]);
    }

    #[test]
    fn an_upstream_name_shows_as_written_in_its_fields() {
        for name in ["[0]", "x.[0]", "v[01]"] {
            let text = format!(
                "[[route]]\nupstream = \"{name}\"\n[upstream.\"{name}\"]\n\
                 backends = [{{ addr = \"not an addr:xx\" }}]\n"
            );
            assert_eq!(fields(&text), [format!("upstream.{name}.backends[0].addr")]);
        }
    }

    #[test]
    fn an_empty_key_first_in_serdes_path_is_no_field() {
        let top = errors("\"\" = 1\n");
        assert_eq!(top.len(), 1, "{top:?}");
        assert!(top[0].field.is_empty());
        assert!(
            top[0]
                .to_string()
                .starts_with("t.toml:1:1: unknown field ``"),
            "{}",
            top[0]
        );
        let nested = fields(&format!("{ROUTE}{UPSTREAM}[upstream.web.\"\"]\nx = 1\n"));
        assert_eq!(nested, ["upstream.web"]);
    }
}
