//! Where a field is in the config file, as keys and list indices: the typed path every
//! error and warning names, displayed as the dotted text users read.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A key of a table: `server`, `backends`, an upstream's name (or a piece of it: without
    /// dots, and without the `[N]`s it ends in).
    Key(String),
    /// An element of a list: `[1]`.
    Index(usize),
}

/// Where a field is in the file: keys and list indices. Displays as the dotted text users read:
/// `route[1].upstream`, `upstream.api.backends[0].addr`, `server.tls[0].certificates[1].cert`.
///
/// A path is kept in one form per text: a key with a dot in it (an upstream named `api.v1`) as
/// its pieces, one ending in `[N]` (`a[1]`) as a key and an index, as the dotted text reads; so
/// two paths are equal exactly when their texts are, however each was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// This path, then `key`: the path of this path's text followed by `.key` (by `key` alone
    /// where this path is empty), so that a path built key by key and one read from its text
    /// are equal. `a.b` is two keys, `a[1]` a key and an index, an empty key first is none.
    pub fn key(mut self, key: &str) -> Self {
        let mut parts = key.split('.').peekable();
        let mut first = self.0.is_empty();
        while let Some(part) = parts.next() {
            let (name, indices) = trailing_indices(part);
            // The text's first part names no key where it is empty but for indices (`[0].x`)
            // or empty altogether (``); anywhere else an empty key is one (`upstream..x`).
            let no_key =
                first && name.is_empty() && (!indices.is_empty() || parts.peek().is_none());
            if !no_key {
                self.0.push(Segment::Key(name.to_owned()));
            }
            self.0.extend(indices.into_iter().map(Segment::Index));
            first = false;
        }
        self
    }

    /// This path, then list element `index`.
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }

    /// This path, then every segment of `inner`.
    pub fn join(mut self, inner: &FieldPath) -> Self {
        self.0.extend(inner.0.iter().cloned());
        self
    }

    /// The keys and indices, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this names no field (a problem of the whole file).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this is `outer` or a field inside it.
    pub fn starts_with(&self, outer: &FieldPath) -> bool {
        self.0.starts_with(&outer.0)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The dotted text read back, exactly: `route[1].upstream` is `route`, `[1]`, `upstream`; a part
/// is a key and the `[N]`s it ends in (`N` as a number writes itself: `v[01]` is one key).
impl From<&str> for FieldPath {
    fn from(text: &str) -> Self {
        FieldPath::default().key(text)
    }
}

/// `part` without the `[N]`s it ends in, and those `N`, in order.
fn trailing_indices(part: &str) -> (&str, Vec<usize>) {
    let mut name = part;
    let mut indices = Vec::new();
    while let Some((before, index)) = last_index(name) {
        indices.push(index);
        name = before;
    }
    indices.reverse();
    (name, indices)
}

/// `[N]` at the end of `text`, with `N` as [`Segment::Index`] displays it: what precedes it,
/// and `N`.
fn last_index(text: &str) -> Option<(&str, usize)> {
    let (before, inside) = text.strip_suffix(']')?.rsplit_once('[')?;
    let canonical = !inside.is_empty()
        && inside.bytes().all(|b| b.is_ascii_digit())
        && (inside == "0" || !inside.starts_with('0'));
    Some((before, inside.parse().ok().filter(|_| canonical)?))
}

impl From<String> for FieldPath {
    fn from(text: String) -> Self {
        FieldPath::from(text.as_str())
    }
}

impl From<&String> for FieldPath {
    fn from(text: &String) -> Self {
        FieldPath::from(text.as_str())
    }
}

/// Compares with the dotted text (for tests and logs; code compares paths).
impl PartialEq<str> for FieldPath {
    fn eq(&self, text: &str) -> bool {
        /// What is left of the text as the path writes itself; an error at the first difference.
        struct Rest<'a>(&'a str);
        impl fmt::Write for Rest<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        let mut rest = Rest(text);
        fmt::write(&mut rest, format_args!("{self}")).is_ok() && rest.0.is_empty()
    }
}

impl PartialEq<&str> for FieldPath {
    fn eq(&self, text: &&str) -> bool {
        self == *text
    }
}

impl FieldPath {
    /// `route[0].timeout`: serde's path without the private field `toml::Spanned` wraps values in.
    pub(super) fn of_serde(path: &serde_path_to_error::Path) -> FieldPath {
        use serde_path_to_error::Segment;
        let mut out = FieldPath::default();
        for segment in path.iter() {
            let name = match segment {
                Segment::Seq { index } => {
                    out = out.index(*index);
                    continue;
                }
                Segment::Map { key } => key.as_str(),
                Segment::Enum { variant } => variant.as_str(),
                Segment::Unknown => "?",
            };
            if name.starts_with("$__serde_spanned_private") {
                continue;
            }
            out = out.key(name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_path_displays_as_the_dotted_text_it_reads_back_from() {
        for text in [
            "",
            "route",
            "route[1].upstream",
            "upstream.api.backends[0].addr",
            "server.tls[0].certificates[1].cert",
            "upstream.api.v1.backends[10]",
            "upstream..backends",
            "upstream.a[x].tls",
            "upstream.a[1]x.tls",
            "a[1][2]",
            "upstream.[0].x",
            "upstream.x.[0]",
            "upstream.v[01].x",
            "[0].x",
            ".x",
            "x.",
        ] {
            assert_eq!(FieldPath::from(text).to_string(), text);
            assert_eq!(FieldPath::from(text), text);
        }
        let built = FieldPath::default()
            .key("upstream")
            .key("api.v1")
            .key("backends")
            .index(2);
        assert_eq!(built, FieldPath::from("upstream.api.v1.backends[2]"));
        use Segment::{Index, Key};
        assert_eq!(
            FieldPath::from("route[1].rate_limit").segments(),
            [Key("route".into()), Index(1), Key("rate_limit".into())]
        );
        assert!(built.starts_with(&FieldPath::from("upstream.api")));
        assert!(!built.starts_with(&FieldPath::from("upstream.ap")));
    }

    /// Every text of up to five characters of `a0.[]`.
    fn short_texts() -> Vec<String> {
        let mut texts = vec![String::new()];
        let mut last = texts.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|t| "a0.[]".chars().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(last.iter().cloned());
        }
        texts
    }

    #[test]
    fn every_text_reads_back_as_itself_and_only_equal_texts_as_equal_paths() {
        let texts = short_texts();
        let paths: Vec<FieldPath> = texts.iter().map(FieldPath::from).collect();
        let mut seen = std::collections::HashMap::new();
        for (text, path) in texts.iter().zip(&paths) {
            assert_eq!(path.to_string(), *text);
            assert_eq!(seen.insert(path.clone(), text), None, "{text:?}");
        }
    }

    #[test]
    fn a_path_built_key_by_key_is_the_one_read_from_its_text() {
        // As serde's path was written: a key after a dot, but the first; an index as `[N]`.
        let keys = ["", "a", "a[1]", "[0]", "v[01]", "x.[0]", "a.b", ".x"];
        for outer in ["", "upstream", "route[1]", "upstream.", "[0]"] {
            for key in keys {
                for index in [None, Some(0), Some(12)] {
                    let mut built = FieldPath::from(outer).key(key);
                    let mut text = match outer {
                        "" => key.to_owned(),
                        _ => format!("{outer}.{key}"),
                    };
                    if let Some(i) = index {
                        built = built.index(i);
                        text = format!("{text}[{i}]");
                    }
                    assert_eq!(built, FieldPath::from(text.as_str()), "{text:?}");
                    assert_eq!(built.to_string(), text);
                    let joined = FieldPath::from(outer).join(&FieldPath::from(key));
                    assert_eq!(joined.to_string().is_empty(), joined.is_empty());
                }
            }
        }
        // An empty first key is none (serde's path of `"" = 1`), as in the text.
        assert!(FieldPath::default().key("").is_empty());
    }
}
