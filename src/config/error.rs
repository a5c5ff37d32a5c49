//! Config errors: each one names the file, line, column, field, what was found and what is accepted.
//!
//! An error or warning is a value: a [`Kind`] and a [`Severity`] for code that acts on it, a
//! [`FieldPath`], a place, and a message for people. `Display` makes the text users read; no
//! code decides anything by reading it.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::field_path::FieldPath;

/// One problem in a config file, located at a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in, as the user named it.
    pub file: PathBuf,
    /// 1-based line of the offending value (0 when the problem has no place in the file).
    pub line: usize,
    /// 1-based column (in characters) of the offending value (0 when it has no place).
    pub column: usize,
    /// The field, e.g. `route[1].upstream`.
    pub field: FieldPath,
    /// What was wrong and what is accepted.
    pub message: String,
    /// What the problem is, for code that acts on it.
    pub kind: Kind,
    /// Whether the file is refused for it or only warned about.
    pub severity: Severity,
}

/// What a problem is about, for code that acts on it; the message says it to people.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Any other problem: the message says what, and no code acts on it.
    Invalid,
    /// The config file cannot be read (missing, not a regular file, too large, not UTF-8).
    Unreadable,
    /// The text is not TOML.
    Syntax,
    /// A key the section does not have.
    UnknownKey,
    /// A required key that is not there.
    MissingKey,
    /// A value of the wrong type, or one its type cannot take (a misspelt word, a list for a
    /// table).
    WrongType,
    /// `${NAME}` without a default, and `NAME` is unset or empty.
    MissingEnv {
        /// The variable's name.
        name: Box<str>,
    },
    /// The file has no `[[route]]`.
    NoRoute,
    /// A route's `upstream` names no `[upstream.NAME]` table.
    UndefinedUpstream {
        /// The name the route gives.
        name: Box<str>,
    },
    /// An `[upstream.NAME]` no route uses (a warning).
    UnusedUpstream {
        /// The upstream's name.
        name: Box<str>,
    },
    /// A key that only a restart or a graceful upgrade applies changed in a reload.
    RestartOnly,
}

/// Whether a problem refuses the file or is only reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Severity {
    /// The file is refused.
    #[default]
    Error,
    /// The file is applied; the problem is reported (`warning: ...`).
    Warning,
}

impl ConfigError {
    /// An error of [`Kind::Invalid`] at a byte span of `source`. While `parse` loads `source`
    /// its line and column are a lookup in the line index built for the load; elsewhere
    /// `source` is indexed first.
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        field: impl Into<FieldPath>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = span.map_or((0, 0), |s| LineIndex::locate(source, s.start));
        ConfigError::placed(file, line, column, field, message)
    }

    /// An error of [`Kind::Invalid`] at a line and column already known (0, 0: no place).
    pub fn placed(
        file: &Path,
        line: usize,
        column: usize,
        field: impl Into<FieldPath>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
            kind: Kind::Invalid,
            severity: Severity::Error,
        }
    }

    /// This problem, of `kind`.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// This problem, as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in one config file. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// `errors` by place; problems with none (a missing section) last.
    pub fn by_place(mut errors: Vec<ConfigError>) -> ConfigErrors {
        errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
        ConfigErrors(errors)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

thread_local! {
    /// The index of the source that [`LineIndex::scope`] is loading on this thread.
    static LOADING: RefCell<Option<LineIndex>> = const { RefCell::new(None) };
}

/// Bytes per stretch of source whose characters a [`LineIndex`] counts ahead of time.
const CHUNK: usize = 256;

/// Where each line of one source starts, and how many characters come before every
/// [`CHUNK`]th byte: a byte offset's line is a binary search and its column a count of at most
/// `2 * CHUNK` bytes, however long the file or the line. Locating N problems in a file of L
/// bytes costs O(L + N log L) instead of a rescan of the file per problem, O(N L).
pub(super) struct LineIndex {
    /// Address and length of the source it indexes, to recognise it; never dereferenced.
    of: (usize, usize),
    /// Byte offset of the first byte of each line; the first is 0.
    line_starts: Vec<usize>,
    /// Characters before byte `k * CHUNK`, for every `k` up to the source's length / `CHUNK`.
    chars_before_chunk: Vec<usize>,
}

impl LineIndex {
    fn new(source: &str) -> Self {
        let bytes = source.as_bytes();
        let newlines = bytes.iter().enumerate().filter(|&(_, &b)| b == b'\n');
        let line_starts = std::iter::once(0)
            .chain(newlines.map(|(i, _)| i + 1))
            .collect();
        let mut chars_before_chunk = Vec::with_capacity(bytes.len() / CHUNK + 2);
        let mut chars = 0;
        for chunk in bytes.chunks(CHUNK) {
            chars_before_chunk.push(chars);
            chars += char_starts(chunk);
        }
        chars_before_chunk.push(chars);
        LineIndex {
            of: (source.as_ptr() as usize, source.len()),
            line_starts,
            chars_before_chunk,
        }
    }

    /// Runs `f` with `source` indexed once for this thread: every [`ConfigError::at`] about
    /// `source` inside `f` (parsing, validating and resolving alike) is then a lookup.
    ///
    /// The index is kept here rather than handed to every caller because `at` is called from
    /// outside `config` with nothing but the text. Recognising the text by address and length is
    /// sound because `f` runs while `source` is borrowed, so no other text can have them; the
    /// index is gone once `f` returns, before `source` can be freed and its memory reused.
    pub(super) fn scope<R>(source: &str, f: impl FnOnce() -> R) -> R {
        /// Puts back the index of an enclosing scope, also when `f` panics.
        struct Restore(Option<LineIndex>);
        impl Drop for Restore {
            fn drop(&mut self) {
                LOADING.set(self.0.take());
            }
        }
        let _restore = Restore(LOADING.replace(Some(LineIndex::new(source))));
        f()
    }

    /// 1-based line and column (in characters) of byte `offset` of `source`, with the index of
    /// the enclosing [`LineIndex::scope`] if it is for `source`, or else a new one.
    fn locate(source: &str, offset: usize) -> (usize, usize) {
        LOADING.with_borrow(|loading| match loading {
            Some(index) if index.of == (source.as_ptr() as usize, source.len()) => {
                index.line_column(source, offset)
            }
            _ => LineIndex::new(source).line_column(source, offset),
        })
    }

    /// 1-based line and column (in characters) of byte `offset` of `source`, the text this
    /// indexes. An offset past the end is the end; one inside a character is that character.
    fn line_column(&self, source: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        // Lines that start at or before `offset`: at least the first, which starts at 0.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.chars_before(source, offset) - self.chars_before(source, start) + 1;
        (line, column)
    }

    /// Characters in `source` before byte `offset`, a character boundary.
    fn chars_before(&self, source: &str, offset: usize) -> usize {
        let chunk = offset / CHUNK;
        self.chars_before_chunk[chunk] + char_starts(&source.as_bytes()[chunk * CHUNK..offset])
    }
}

/// Characters that start in `bytes`: every byte but UTF-8's continuation bytes, `0b10xx_xxxx`.
fn char_starts(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How `ConfigError::at` located errors before the index: a rescan up to `offset`.
    fn scan(source: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(source.len());
        let before = source.get(..offset).unwrap_or(source);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = \"é\"\n";
        let index = LineIndex::new(src);
        assert_eq!(index.line_column(src, 0), (1, 1));
        assert_eq!(index.line_column(src, 6), (2, 1));
        assert_eq!(index.line_column(src, 11), (2, 6));
        // a multi-byte character counts once
        assert_eq!(index.line_column(src, 14), (2, 8));
    }

    #[test]
    fn index_agrees_with_a_rescan_at_every_offset() {
        let long_line = format!("x = \"{}\"", "é日🦀a".repeat(3 * CHUNK));
        let sources = [
            "",
            "a",
            "\n",
            "\n\n\n",
            "a = 1\nbb = \"é\"\n",
            "no trailing newline = \"ü\"",
            "crlf = 1\r\nname = \"日本語\"\r\n\r\nlast",
            "🦀\n🦀🦀\n\n🦀",
            long_line.as_str(),
        ];
        for src in sources {
            let index = LineIndex::new(src);
            for offset in 0..=src.len() + 2 {
                // A span starts at a character; inside one, the index names that character
                // (the rescan named the end of the file).
                let mut at = offset;
                while at < src.len() && !src.is_char_boundary(at) {
                    at -= 1;
                }
                let got = index.line_column(src, offset);
                assert_eq!(got, scan(src, at), "{src:?} at byte {offset}");
            }
        }
    }

    #[test]
    fn errors_in_a_scope_use_its_index_and_the_scope_ends() {
        let src = "x = 1\ny = \"é\"\nz = 3";
        let z = src.find('z').map(|i| i..i + 1);
        let outside = ConfigError::at(Path::new("f.toml"), src, z.clone(), "z", "bad");
        let inside = LineIndex::scope(src, || {
            let key = (src.as_ptr() as usize, src.len());
            assert!(LOADING.with_borrow(|l| l.as_ref().is_some_and(|i| i.of == key)));
            // another text, even an equal one, is indexed on its own
            let copy = src.to_owned();
            let other = ConfigError::at(Path::new("f.toml"), &copy, z.clone(), "z", "bad");
            assert_eq!(other, outside);
            ConfigError::at(Path::new("f.toml"), src, z.clone(), "z", "bad")
        });
        assert_eq!((inside.line, inside.column), (3, 1));
        assert_eq!(inside, outside);
        assert!(LOADING.with_borrow(Option::is_none));
    }

    #[test]
    fn display_names_file_place_field_and_message() {
        let e = ConfigError::at(Path::new("f.toml"), "x = 1\ny = 2", Some(6..7), "y", "bad");
        assert_eq!(e.to_string(), "f.toml:2:1: y: bad");
    }

    #[test]
    fn kind_and_severity_change_no_text() {
        let plain = ConfigError::at(Path::new("f.toml"), "x = 1", Some(0..1), "x", "bad");
        let typed = plain
            .clone()
            .kind(Kind::UnusedUpstream { name: "x".into() })
            .warning();
        assert_eq!(
            (&plain.kind, plain.severity),
            (&Kind::Invalid, Severity::Error)
        );
        assert_eq!(typed.severity, Severity::Warning);
        assert_eq!(typed.to_string(), plain.to_string());
    }
}
