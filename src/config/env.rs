//! Environment variables in string values: `${VAR}`, `${VAR:-default}` (the default when `VAR`
//! is unset or empty, as in a POSIX shell) and `$$` for a literal `$`, expanded in the file's text
//! before it is parsed. Only inside string *values*: keys, table headers and comments are left as
//! they are. A value expanded into a basic string (`"..."`) is escaped, so it cannot end the
//! string early; a literal string (`'...'`) takes no escapes, so a value that would need one
//! there is an error.
//!
//! Line numbers of later errors are those of the file; a column after an expansion on the same
//! line is counted in the expanded text.

use std::borrow::Cow;
use std::ops::Range;

/// A problem with one `${...}`: where it is in the original text, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    /// The `${...}` in the original text (up to its `}`; only the `${` when it has none).
    pub span: Range<usize>,
    /// What is wrong with it.
    pub problem: EnvProblem,
}

/// What is wrong with one `${...}`, for code that acts on it; `Display` says it to people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvProblem {
    /// A `${` with no `}` after it.
    #[error("unclosed ${{ (write $$ for a literal $)")]
    Unclosed,
    /// A `${...}` inside a default: `${A:-${B}}`.
    #[error("a ${{...}} inside a default is not supported; write the default out")]
    NestedDefault,
    /// A name that is not letters, digits and `_` (or is empty).
    #[error("invalid variable name in ${{{inner}}}; expected ${{NAME}} or ${{NAME:-default}} with NAME of letters, digits and _")]
    InvalidName {
        /// What is between `${` and `}`.
        inner: String,
    },
    /// `${NAME}` without a default, and `NAME` is unset or empty.
    #[error(
        "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
    )]
    Missing {
        /// The variable's name.
        name: String,
    },
    /// A value in a `'...'` string that holds what only an escape could write there.
    #[error("environment variable {name} holds a quote, newline or control character, which a '...' string cannot; use a \"...\" string")]
    UnfitForLiteral {
        /// The variable's name.
        name: String,
    },
}

impl EnvError {
    fn new(span: Range<usize>, problem: EnvProblem) -> Self {
        EnvError { span, problem }
    }
}

/// `source` with every `${...}` in a string value replaced by `lookup`'s answer; every problem
/// when some cannot be.
pub fn expand(
    source: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Cow<'_, str>, Vec<EnvError>> {
    if !source.contains('$') {
        return Ok(Cow::Borrowed(source));
    }
    let mut out = String::with_capacity(source.len());
    let mut errors = Vec::new();
    let mut lexer = Lexer {
        src: source.as_bytes(),
        at: 0,
        copied: 0,
        depth: 0,
        line_start: true,
        header: false,
    };
    while let Some(s) = lexer.next_string() {
        if !s.is_value || !source[s.body.clone()].contains('$') {
            continue;
        }
        out.push_str(&source[lexer.copied..s.body.start]);
        expand_body(
            source,
            s.body.clone(),
            s.kind,
            &lookup,
            &mut out,
            &mut errors,
        );
        lexer.copied = s.body.end;
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.push_str(&source[lexer.copied..]);
    Ok(Cow::Owned(out))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Basic,
    Literal,
}

/// A string literal in the source: its contents (without quotes) and whether it is a value.
struct Str {
    body: Range<usize>,
    kind: Kind,
    is_value: bool,
}

/// Just enough of TOML's lexical structure to find strings and tell values from keys: comments,
/// the four kinds of string, and `[...]` depth (a `[` at the start of a line outside any array is
/// a table header, whose strings are keys).
struct Lexer<'a> {
    src: &'a [u8],
    at: usize,
    /// How far the output has been copied.
    copied: usize,
    /// Open `[` / `{` of values.
    depth: usize,
    /// Only whitespace since the last newline.
    line_start: bool,
    /// Inside a `[table]` / `[[table]]` header, whose strings are all keys.
    header: bool,
}

impl Lexer<'_> {
    fn next_string(&mut self) -> Option<Str> {
        while self.at < self.src.len() {
            let b = self.src[self.at];
            match b {
                b'#' => {
                    while self.at < self.src.len() && self.src[self.at] != b'\n' {
                        self.at += 1;
                    }
                    continue;
                }
                b'\n' => {
                    self.line_start = true;
                    self.header = false;
                    self.at += 1;
                    continue;
                }
                b' ' | b'\t' | b'\r' => {
                    self.at += 1;
                    continue;
                }
                b'[' if self.line_start && self.depth == 0 => self.header = true,
                b'[' | b'{' if !self.header => self.depth += 1,
                b']' | b'}' if !self.header => self.depth = self.depth.saturating_sub(1),
                b'"' | b'\'' => {
                    let (body, kind, end) = self.string_at(self.at)?;
                    self.at = end;
                    self.line_start = false;
                    let is_value = !self.header && !self.followed_by_key_end();
                    return Some(Str {
                        body,
                        kind,
                        is_value,
                    });
                }
                _ => {}
            }
            self.line_start = false;
            self.at += 1;
        }
        None
    }

    /// Whether the next non-blank byte makes the string just read a key (`=` or a dotted key's
    /// `.`).
    fn followed_by_key_end(&self) -> bool {
        let rest = &self.src[self.at..];
        let next = rest.iter().find(|&&b| b != b' ' && b != b'\t');
        matches!(next, Some(b'=') | Some(b'.'))
    }

    /// The string starting at `start` (its quote): contents, kind and where it ends.
    fn string_at(&self, start: usize) -> Option<(Range<usize>, Kind, usize)> {
        let quote = self.src[start];
        let kind = if quote == b'"' {
            Kind::Basic
        } else {
            Kind::Literal
        };
        let triple = self.src[start..].starts_with(if quote == b'"' { b"\"\"\"" } else { b"'''" });
        let open = if triple { 3 } else { 1 };
        let mut i = start + open;
        while i < self.src.len() {
            let b = self.src[i];
            if b == b'\\' && kind == Kind::Basic {
                i += 2;
                continue;
            }
            if !triple && b == b'\n' {
                return None;
            }
            if b == quote {
                if !triple {
                    return Some((start + 1..i, kind, i + 1));
                }
                if self.src[i..].starts_with(&[quote; 3]) {
                    // Up to two quotes may end the contents of a multi-line string.
                    let mut end = i + 3;
                    while end < self.src.len() && self.src[end] == quote && end - i < 5 {
                        end += 1;
                    }
                    return Some((start + 3..end - 3, kind, end));
                }
            }
            i += 1;
        }
        None
    }
}

fn expand_body(
    source: &str,
    body: Range<usize>,
    kind: Kind,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    errors: &mut Vec<EnvError>,
) {
    let text = &source[body.clone()];
    let mut i = 0;
    while let Some(off) = text[i..].find('$') {
        let at = i + off;
        out.push_str(&text[i..at]);
        let rest = &text[at..];
        if rest.starts_with("$$") {
            out.push('$');
            i = at + 2;
            continue;
        }
        // In a basic string, a `$` after an odd run of backslashes is escaped (`\$`, which TOML
        // refuses): not an expansion, so the parser reports it as it would without one.
        let escaped = kind == Kind::Basic
            && text[..at].bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1;
        if !rest.starts_with("${") || escaped {
            out.push('$');
            i = at + 1;
            continue;
        }
        let span = body.start + at..body.start + at + rest.find('}').map_or(2, |e| e + 1);
        let Some(close) = rest.find('}') else {
            errors.push(EnvError::new(span, EnvProblem::Unclosed));
            return;
        };
        let inner = &rest[2..close];
        if inner.contains("${") {
            errors.push(EnvError::new(span, EnvProblem::NestedDefault));
            i = at + close + 1;
            continue;
        }
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let inner = inner.to_owned();
            errors.push(EnvError::new(span, EnvProblem::InvalidName { inner }));
        } else {
            let value = lookup(name).filter(|v| !v.is_empty());
            match (value, default) {
                (Some(v), _) => push_value(&v, kind, name, span.clone(), out, errors),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    let name = name.to_owned();
                    errors.push(EnvError::new(span, EnvProblem::Missing { name }));
                }
            }
        }
        i = at + close + 1;
    }
    out.push_str(&text[i..]);
}

/// Puts a variable's value into a string of `kind`: escaped in a basic string; as it is in a
/// literal string, where it cannot hold what would need an escape.
fn push_value(
    value: &str,
    kind: Kind,
    name: &str,
    span: Range<usize>,
    out: &mut String,
    errors: &mut Vec<EnvError>,
) {
    match kind {
        Kind::Basic => {
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
        }
        Kind::Literal => {
            if value.contains(['\'', '\n', '\r'])
                || value.chars().any(|c| c.is_control() && c != '\t')
            {
                let name = name.to_owned();
                errors.push(EnvError::new(span, EnvProblem::UnfitForLiteral { name }));
            } else {
                out.push_str(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9090".into()),
            "QUOTE" => Some("a\"b\\c".into()),
            "EMPTY" => Some(String::new()),
            "APOS" => Some("it's".into()),
            _ => None,
        }
    }

    fn ok(src: &str) -> String {
        expand(src, env)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_owned()
    }

    #[test]
    fn a_dollar_escaped_by_a_backslash_is_not_an_expansion() {
        // `\${PORT}` in a basic string: the `$` is escaped (TOML refuses `\$`), left as written.
        assert_eq!(ok(r#"a = "x\${PORT}""#), r#"a = "x\${PORT}""#);
        // Two backslashes are one escaped backslash: the `$` is free.
        assert_eq!(ok(r#"a = "x\\${PORT}""#), r#"a = "x\\9090""#);
        // A literal string takes no escapes.
        assert_eq!(ok(r#"a = 'x\${PORT}'"#), r#"a = 'x\9090'"#);
    }

    #[test]
    fn expands_values_with_defaults_and_escapes() {
        assert_eq!(
            ok("listen = [\"0.0.0.0:${PORT}\"]"),
            "listen = [\"0.0.0.0:9090\"]"
        );
        assert_eq!(ok("a = \"${NOPE:-x y}\""), "a = \"x y\"");
        assert_eq!(ok("a = \"${EMPTY:-d}\""), "a = \"d\"");
        assert_eq!(ok("a = \"$${PORT} $5 $$\""), "a = \"${PORT} $5 $\"");
        assert_eq!(ok("a = \"${QUOTE}\""), "a = \"a\\\"b\\\\c\"");
        assert_eq!(ok("a = '${PORT}'"), "a = '9090'");
        assert_eq!(ok("a = \"\"\"\n${PORT}\"\"\""), "a = \"\"\"\n9090\"\"\"");
        assert_eq!(
            ok("b = [{ addr = \"h:${PORT}\" }, { addr = \"${NOPE:-k}:1\" }]"),
            "b = [{ addr = \"h:9090\" }, { addr = \"k:1\" }]"
        );
        // Escaped quotes inside a basic string do not end it.
        assert_eq!(ok("a = \"x\\\"${PORT}\""), "a = \"x\\\"9090\"");
        // The parsed result is the value itself.
        let parsed: toml::Value = toml::from_str(&ok("a = \"${QUOTE}\"")).unwrap();
        assert_eq!(parsed["a"].as_str(), Some("a\"b\\c"));
    }

    #[test]
    fn leaves_keys_headers_and_comments_alone() {
        for src in [
            "\"${PORT}\" = 1",
            "[upstream.\"${PORT}\"]\nx = 1",
            "a.\"${PORT}\".b = 1",
            "# ${NOPE}\na = 1",
            "a = 1 # \"${NOPE}\"",
            "[[route]]\nname = 'x' # ${NOPE}",
            "[upstream.\"web\".\"${NOPE}\"]\nx = 1",
            "[[\"a\".\"$$\"]]\nx = 1",
        ] {
            assert_eq!(ok(src), src);
        }
        assert_eq!(ok("[t]\n\"k\" = \"${PORT}\""), "[t]\n\"k\" = \"9090\"");
        // A nested array value is a value, not a table header.
        assert_eq!(ok("a = [\n[\"${PORT}\"]\n]"), "a = [\n[\"9090\"]\n]");
    }

    #[test]
    fn reports_every_problem_where_it_is() {
        let src = "a = \"${NOPE}\"\nb = \"${BAD NAME}\"\nc = '${APOS}'\ne = \"${NOPE:-${PORT}}\"\nd = \"${OPEN\"";
        let errors = expand(src, env).unwrap_err();
        let found: Vec<(&str, &EnvProblem)> = errors
            .iter()
            .map(|e| (&src[e.span.clone()], &e.problem))
            .collect();
        let name = |n: &str| n.to_owned();
        assert_eq!(
            found,
            [
                ("${NOPE}", &EnvProblem::Missing { name: name("NOPE") }),
                (
                    "${BAD NAME}",
                    &EnvProblem::InvalidName {
                        inner: name("BAD NAME")
                    }
                ),
                (
                    "${APOS}",
                    &EnvProblem::UnfitForLiteral { name: name("APOS") }
                ),
                ("${NOPE:-${PORT}", &EnvProblem::NestedDefault),
                ("${", &EnvProblem::Unclosed),
            ]
        );
    }

    #[test]
    fn says_each_problem_as_before() {
        let text = |problem: EnvProblem| problem.to_string();
        assert_eq!(
            text(EnvProblem::Unclosed),
            "unclosed ${ (write $$ for a literal $)"
        );
        assert_eq!(
            text(EnvProblem::NestedDefault),
            "a ${...} inside a default is not supported; write the default out"
        );
        assert_eq!(
            text(EnvProblem::InvalidName { inner: "A B".into() }),
            "invalid variable name in ${A B}; expected ${NAME} or ${NAME:-default} with NAME of letters, digits and _"
        );
        assert_eq!(
            text(EnvProblem::Missing { name: "P".into() }),
            "environment variable P is not set (write ${P:-default} to give a default)"
        );
        assert_eq!(
            text(EnvProblem::UnfitForLiteral { name: "Q".into() }),
            "environment variable Q holds a quote, newline or control character, which a '...' string cannot; use a \"...\" string"
        );
    }
}
