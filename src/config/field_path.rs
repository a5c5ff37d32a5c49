//! Where a field is in the config file, as keys and list indices: the typed path every
//! error and warning names, displayed as the dotted text users read.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A key of a table: `server`, `backends`, an upstream's name (or one dot-free piece of it).
    Key(String),
    /// An element of a list: `[1]`.
    Index(usize),
}

/// Where a field is in the file: keys and list indices. Displays as the dotted text users read:
/// `route[1].upstream`, `upstream.api.backends[0].addr`, `server.tls[0].certificates[1].cert`.
///
/// A key with a dot in it (an upstream named `api.v1`) is kept as its pieces, as the dotted text
/// reads, so that a path built key by key and one read from that text are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// This path, then `key` (split at its dots).
    pub fn key(mut self, key: &str) -> Self {
        self.0
            .extend(key.split('.').map(|piece| Segment::Key(piece.to_owned())));
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

/// The dotted text read back: `route[1].upstream` is `route`, `[1]`, `upstream`. A part that
/// does not end in `[N]`s alone (`a[x]`, `a[1]x`) is one key.
impl From<&str> for FieldPath {
    fn from(text: &str) -> Self {
        let mut path = FieldPath::default();
        if text.is_empty() {
            return path;
        }
        for part in text.split('.') {
            // The key before the first `[`, then each `[N]` up to the part's end.
            let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
            let mut indices = Vec::new();
            while let Some((index, after)) = index_at(rest) {
                indices.push(Segment::Index(index));
                rest = after;
            }
            if !rest.is_empty() {
                path.0.push(Segment::Key(part.to_owned()));
                continue;
            }
            if !key.is_empty() || indices.is_empty() {
                path.0.push(Segment::Key(key.to_owned()));
            }
            path.0.extend(indices);
        }
        path
    }
}

/// `[N]` at the start of `text`: `N` and what follows it.
fn index_at(text: &str) -> Option<(usize, &str)> {
    let (inside, after) = text.strip_prefix('[')?.split_once(']')?;
    let index = inside
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| inside.parse().ok())??;
    Some((index, after))
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
}
