//! The crate's layout: no import circle between its source files.
//!
//! An edge runs from a file to the file of every module it names by a path from the crate root,
//! its parent or itself (`crate::…`, `super::…`, `self::…`, in `use` trees and in code), to the
//! deepest module of that path that is a file. A `mod.rs` naming its own children by their bare
//! names (`child::Item`) is a folder's front naming its parts, not an edge. Comments and string
//! literals are skipped; an inline `mod` (tests) moves `super::` one level down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Circles let be for now (none today), each in files that another change owns: the files of
/// each (relative to `src/`). The test fails on any other circle, and on an entry here that is
/// no longer one.
const KNOWN: &[&[&str]] = &[];

#[test]
fn no_import_circle_between_source_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::read(&src);
    assert!(
        graph.has_edge("snapshot.rs", "router.rs"),
        "the scan found no edge snapshot.rs -> router.rs; is it reading the sources?"
    );
    let circles = graph.circles();
    let known: BTreeSet<BTreeSet<String>> = KNOWN
        .iter()
        .map(|files| files.iter().map(|f| (*f).to_owned()).collect())
        .collect();
    let mut problems = Vec::new();
    for circle in &circles {
        if !known.contains(circle) {
            problems.push(format!(
                "import circle between {}:\n{}",
                circle.iter().cloned().collect::<Vec<_>>().join(", "),
                graph.describe(circle)
            ));
        }
    }
    for files in &known {
        if !circles.contains(files) {
            problems.push(format!(
                "no longer a circle (remove it from KNOWN in tests/layout.rs): {files:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scan_reads_use_trees_paths_and_inline_modules() {
    let code = r#"
        use crate::a::{b::{C, d}, e as f, self};
        use super::g::H; // crate::commented::Out
        fn x() { crate::i::j(); let s = "crate::quoted"; let c = '{'; }
        mod tests { use super::*; use super::super::k::L; }
    "#;
    let mut paths = Vec::new();
    for (_, path) in paths_in(code, &["m".to_owned(), "n".to_owned()]) {
        paths.push(path.join("::"));
    }
    assert_eq!(
        paths,
        ["a::b::C", "a::b::d", "a::e", "a", "m::g::H", "i::j", "m::n", "m::k::L"]
    );
}

/// File → files it names, each with the line of its first mention.
struct Graph {
    edges: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut files = Vec::new();
        walk(src, &mut files);
        let names: BTreeSet<String> = files.iter().map(|f| relative(src, f)).collect();
        let mut edges = BTreeMap::new();
        for file in &files {
            let name = relative(src, file);
            // The binary is a crate of its own: it names the library as `fulcrum::`.
            if name == "main.rs" {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            let mut to: BTreeMap<String, usize> = BTreeMap::new();
            for (at, path) in paths_in(&text, &module_of(&name)) {
                let Some(target) = file_of(&path, &names) else {
                    continue;
                };
                if target != name {
                    let line = text[..at].matches('\n').count() + 1;
                    to.entry(target).or_insert(line);
                }
            }
            edges.insert(name, to);
        }
        Graph { edges }
    }

    fn has_edge(&self, from: &str, to: &str) -> bool {
        self.edges.get(from).is_some_and(|t| t.contains_key(to))
    }

    /// The strongly connected sets of more than one file (Tarjan).
    fn circles(&self) -> BTreeSet<BTreeSet<String>> {
        struct Walk<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            found: BTreeSet<BTreeSet<String>>,
        }
        impl<'a> Walk<'a> {
            fn visit(&mut self, v: &'a str) {
                let i = self.index.len();
                self.index.insert(v, i);
                self.low.insert(v, i);
                self.stack.push(v);
                for w in self.graph.edges.get(v).into_iter().flat_map(|t| t.keys()) {
                    let w = w.as_str();
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let low = self.low[v].min(self.low[w]);
                        self.low.insert(v, low);
                    } else if self.stack.contains(&w) {
                        let low = self.low[v].min(self.index[w]);
                        self.low.insert(v, low);
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut set = BTreeSet::new();
                    while let Some(w) = self.stack.pop() {
                        set.insert(w.to_owned());
                        if w == v {
                            break;
                        }
                    }
                    if set.len() > 1 {
                        self.found.insert(set);
                    }
                }
            }
        }
        let mut walk = Walk {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            found: BTreeSet::new(),
        };
        for v in self.edges.keys() {
            if !walk.index.contains_key(v.as_str()) {
                walk.visit(v);
            }
        }
        walk.found
    }

    /// The edges inside `circle`, one a line, with where each is first named.
    fn describe(&self, circle: &BTreeSet<String>) -> String {
        let mut out = String::new();
        for from in circle {
            for (to, line) in &self.edges[from] {
                if circle.contains(to) {
                    out.push_str(&format!("  src/{from}:{line} -> src/{to}\n"));
                }
            }
        }
        out
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn relative(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The module path of a file: `a/b.rs` and `a/b/mod.rs` are `a::b`, `lib.rs` is the root.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file of the deepest module along `path` (the rest names items inside it).
fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let stem = path[..n].join("/");
        for candidate in [format!("{stem}.rs"), format!("{stem}/mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    files.get("lib.rs").cloned()
}

/// Every `crate::`/`super::`/`self::` path in `text` (a file of module `module`), as absolute
/// module paths, with the byte offset where each starts.
fn paths_in(text: &str, module: &[String]) -> Vec<(usize, Vec<String>)> {
    let code = blank_comments_and_literals(text);
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    // Inline modules open here: (name, the brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            _ if starts_word(bytes, i) => {
                let word = ident(bytes, i);
                if word == "mod" {
                    let name_at = skip_space(bytes, i + 3);
                    let name = ident(bytes, name_at);
                    let after = skip_space(bytes, name_at + name.len());
                    if !name.is_empty() && bytes.get(after) == Some(&b'{') {
                        inline.push((name.to_owned(), depth + 1));
                    }
                }
                if matches!(word, "crate" | "super" | "self")
                    && code[i + word.len()..].starts_with("::")
                {
                    let mut here: Vec<String> = module.to_vec();
                    here.extend(inline.iter().map(|(n, _)| n.clone()));
                    let mut paths = Vec::new();
                    let end = use_tree(bytes, i, &here, None, &mut paths);
                    found.extend(paths.into_iter().map(|p| (i, p)));
                    i = end;
                    continue;
                }
                i += word.len().max(1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Reads the path or use tree at `i` in module `here`, below `prefix` (`None`: a path that
/// starts at `i`), pushing each leaf path; returns where it ends.
fn use_tree(
    bytes: &[u8],
    mut i: usize,
    here: &[String],
    prefix: Option<Vec<String>>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut first = prefix.is_none();
    let mut path = prefix.unwrap_or_default();
    loop {
        i = skip_space(bytes, i);
        if bytes.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i = skip_space(bytes, i);
                match bytes.get(i) {
                    None => return i,
                    Some(b'}') => return i + 1,
                    Some(b',') => i += 1,
                    _ => {
                        let end = use_tree(bytes, i, here, Some(path.clone()), out);
                        // Past an `as` rename, to the next item.
                        i = end.max(i + 1);
                        while !matches!(bytes.get(i), None | Some(b',' | b'}')) {
                            i += 1;
                        }
                    }
                }
            }
        }
        let word = if bytes.get(i) == Some(&b'*') {
            "*"
        } else {
            ident(bytes, i)
        };
        if word.is_empty() {
            break;
        }
        match (word, std::mem::take(&mut first)) {
            ("crate", true) => {}
            ("self", true) => path = here.to_vec(),
            ("super", true) => path = here[..here.len().saturating_sub(1)].to_vec(),
            ("super", false) => {
                path.pop();
            }
            ("self" | "*", false) => {}
            _ => path.push(word.to_owned()),
        }
        i += word.len();
        if bytes[i..].starts_with(b"::") {
            i += 2;
        } else {
            break;
        }
    }
    out.push(path);
    i
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether an identifier starts at `i` (not in the middle of one, nor after `::`).
fn starts_word(bytes: &[u8], i: usize) -> bool {
    is_ident(bytes[i]) && (i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == b':'))
}

fn ident(bytes: &[u8], i: usize) -> &str {
    let end = (i..bytes.len())
        .find(|&j| !is_ident(bytes[j]))
        .unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[i.min(end)..end]).unwrap()
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// `text` with comments, string and char literals turned into spaces (lines kept).
fn blank_comments_and_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        // `r"`, `r#"`, `br"` start a raw string; `r#ident` is an identifier.
        let raw_at = match i.checked_sub(1).map(|p| b[p]) {
            Some(b'b') if i < 2 || !is_ident(b[i - 2]) => true,
            Some(c) => !is_ident(c),
            None => true,
        };
        let literal_end = if rest.starts_with(b"//") {
            Some(
                rest.iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n),
            )
        } else if rest.starts_with(b"/*") {
            Some(find(b, i + 2, b"*/").map_or(b.len(), |n| n + 2))
        } else if raw_at && rest[0] == b'r' {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            (rest.get(1 + hashes) == Some(&b'"')).then(|| {
                let close = [b"\"".as_slice(), &vec![b'#'; hashes]].concat();
                find(b, i + 2 + hashes, &close).map_or(b.len(), |n| n + close.len())
            })
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            Some(j + 1)
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or else a lifetime (left as it is).
            let len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
            if rest.get(1) == Some(&b'\\') {
                Some(find(b, i + 2, b"'").map_or(b.len(), |n| n + 1))
            } else {
                (rest.get(1 + len) == Some(&b'\'')).then_some(i + 2 + len)
            }
        } else {
            None
        };
        match literal_end {
            Some(end) => {
                blank(&mut out, i, end);
                i = end;
            }
            None => i += 1,
        }
    }
    String::from_utf8(out).unwrap()
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    (from..b.len()).find(|&j| b[j..].starts_with(needle))
}
