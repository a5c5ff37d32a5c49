//! The crate's layout: no import circle between its source files.
//!
//! An edge runs from a file to the file that defines what each of its paths names. Read are the
//! paths from the crate root, the file's parent or itself (`crate::…`, `super::…`, `self::…`),
//! and those that start with a name a `use` binds (`use crate::config as cfg;` then
//! `cfg::schema::Item`), in `use` trees and in code. A path leads to the deepest module along
//! it that is a file and, when the rest starts with a name that file imports (a re-export: by
//! name, or through a glob whose module has the name), on to what that name stands for, and so
//! on. Not edges: a file naming its child modules or an extern crate by a plain name (also
//! through a `use` of one), and anything inside an inline `#[cfg(test)]` module: nothing
//! imports a unit test, so it closes no circle of the library's own (such tests call the front
//! door, `config::parse`). Comments and literals are skipped; an inline `mod` moves `super::`
//! one level down. `main.rs` (a crate of its own) is not read.
//!
//! Limits, since it reads text and does not resolve names as the compiler does: a plain name
//! is looked up only among the names `use`s bind, each seen in its whole module (one in a
//! function body too) and in the inline modules inside it; a glob's module "has" a name when it
//! binds it, has a child module of it, or declares it with `fn`, `struct`, … anywhere in the
//! file (a method of that name counts); `#[cfg(test)]` counts only right before `mod` (or its
//! visibility); paths that macros build are not seen.

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
        fn x() { crate::i::j(); let s = "crate::quoted"; let c = '{'; let q = '\''; }
        mod tests { use super::*; use super::super::k::L; }
        #[cfg(test)]
        pub(crate) mod unit { use crate::o::P; fn f() { let b = '}'; } }
        fn after() { crate::r::S; }
    "#;
    assert_eq!(
        paths(code),
        ["a::b::C", "a::b::d", "a::e", "a", "m::g::H", "i::j", "m::n", "m::k::L", "r::S"]
    );
}

#[test]
fn the_scan_follows_module_aliases() {
    let code = r#"
        use crate::config as cfg;
        use super::x as y;
        use crate::a::{b as c, self as a2};
        fn f() { cfg::schema::Item::new(); y::z::W; c::D; a2::e::F; cfg2::Out; }
    "#;
    assert_eq!(
        paths(code),
        [
            "config",
            "m::x",
            "a::b",
            "a",
            "config::schema::Item::new",
            "m::x::z::W",
            "a::b::D",
            "a::e::F",
        ]
    );
}

#[test]
fn the_scan_follows_re_exports() {
    let files = [
        ("lib.rs", "mod a; mod p; mod q; mod r; mod s; mod t;"),
        (
            "a/mod.rs",
            "mod b; mod runtime; pub use b::Thing; pub use runtime::*;",
        ),
        // `crate::a::Thing` is `a/b.rs`'s (re-exported by name from a child).
        ("a/b.rs", "pub struct Thing; fn f() { crate::q::g(); }"),
        ("q.rs", "pub fn g() { let _ = crate::a::Thing; }"),
        // `crate::p::Y` is `s.rs`'s (re-exported from elsewhere).
        ("p.rs", "pub use crate::s::Y;"),
        ("r.rs", "pub fn z() { crate::p::Y::new(); }"),
        ("s.rs", "pub struct Y; fn h() { crate::r::z(); }"),
        // `crate::a::Config` is `a/runtime.rs`'s (through a glob).
        (
            "a/runtime.rs",
            "pub struct Config; fn i() { crate::t::u(); }",
        ),
        ("t.rs", "pub fn u() { crate::a::Config; }"),
    ];
    let files = files.map(|(f, t)| (f.to_owned(), t.to_owned()));
    let graph = Graph::of(files.into());
    assert!(!graph.has_edge("r.rs", "p.rs"));
    let circles: Vec<Vec<String>> = graph
        .circles()
        .into_iter()
        .map(|c| c.into_iter().collect())
        .collect();
    assert_eq!(
        circles,
        [
            ["a/b.rs", "q.rs"],
            ["a/runtime.rs", "t.rs"],
            ["r.rs", "s.rs"]
        ]
    );
}

/// The paths `code`, a file of module `m::n`, names, as module paths.
fn paths(code: &str) -> Vec<String> {
    let scan = Scan::of(code, &["m".to_owned(), "n".to_owned()]);
    scan.paths.iter().map(|(_, p)| p.join("::")).collect()
}

/// File → files it names, each with the line of its first mention.
struct Graph {
    edges: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut files = Vec::new();
        walk(src, &mut files);
        let files = files
            .iter()
            .map(|f| (relative(src, f), std::fs::read_to_string(f).unwrap()))
            // The binary is a crate of its own: it names the library as `fulcrum::`.
            .filter(|(name, _)| name != "main.rs")
            .collect();
        Graph::of(files)
    }

    /// The graph of `files`: (path relative to `src/`, text).
    fn of(files: Vec<(String, String)>) -> Graph {
        let scans: BTreeMap<String, Scan> = files
            .iter()
            .map(|(name, text)| (name.clone(), Scan::of(text, &module_of(name))))
            .collect();
        let krate = Crate { scans };
        let mut edges = BTreeMap::new();
        for (name, text) in &files {
            let mut to: BTreeMap<String, usize> = BTreeMap::new();
            for (at, path) in &krate.scans[name].paths {
                let target = krate.resolve(path, 0);
                if target != *name {
                    let line = text[..*at].matches('\n').count() + 1;
                    to.entry(target).or_insert(line);
                }
            }
            edges.insert(name.clone(), to);
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

/// The scanned files, by path relative to `src/`.
struct Crate {
    scans: BTreeMap<String, Scan>,
}

/// How many imports a path is followed through, at most (a guard against import loops).
const MAX_HOPS: usize = 16;

impl Crate {
    /// The file that defines what `path` names: the file of the deepest module along it, and
    /// when the rest of the path starts with a name that file imports (a re-export, by name or
    /// by glob), the file of what that name stands for, and so on.
    fn resolve(&self, path: &[String], hops: usize) -> String {
        let (file, n) = self.deepest(path);
        if let Some(name) = path.get(n) {
            if let Some(mut next) = self.import(&file, name) {
                assert!(
                    hops < MAX_HOPS,
                    "{path:?}: more than {MAX_HOPS} imports deep (a loop?)"
                );
                next.extend_from_slice(&path[n + 1..]);
                return self.resolve(&next, hops + 1);
            }
        }
        file
    }

    /// What `name` stands for at the top level of `file` when the file imports it: by name,
    /// or through a glob whose module has it.
    fn import(&self, file: &str, name: &str) -> Option<Vec<String>> {
        let scan = self.scans.get(file)?;
        if let Some(path) = scan.names.get(name) {
            return Some(path.clone());
        }
        let glob = scan.globs.iter().find(|g| self.has(g, name, 0))?;
        Some([glob.as_slice(), &[name.to_owned()]].concat())
    }

    /// Whether the module `module` (a file) has `name`: declares it, imports it, or has a
    /// child module file of that name.
    fn has(&self, module: &[String], name: &str, hops: usize) -> bool {
        let (file, n) = self.deepest(module);
        let Some(scan) = self.scans.get(&file).filter(|_| n == module.len()) else {
            return false;
        };
        let child = [module, &[name.to_owned()]].concat();
        scan.declared.contains(name)
            || scan.names.contains_key(name)
            || self.deepest(&child).1 == child.len()
            || (hops < MAX_HOPS && scan.globs.iter().any(|g| self.has(g, name, hops + 1)))
    }

    /// The file of the deepest module along `path`, and how many segments name that module
    /// (`lib.rs` and 0 when none does).
    fn deepest(&self, path: &[String]) -> (String, usize) {
        for n in (1..=path.len()).rev() {
            let stem = path[..n].join("/");
            for candidate in [format!("{stem}.rs"), format!("{stem}/mod.rs")] {
                if self.scans.contains_key(&candidate) {
                    return (candidate, n);
                }
            }
        }
        ("lib.rs".to_owned(), 0)
    }
}

/// What one file names and binds.
#[derive(Default)]
struct Scan {
    /// Every module path it names (absolute), with the byte offset where each starts.
    paths: Vec<(usize, Vec<String>)>,
    /// The names its top-level `use`s bind (the alias, or the last segment) → what each is.
    names: BTreeMap<String, Vec<String>>,
    /// The modules its top-level `use … ::*` import.
    globs: Vec<Vec<String>>,
    /// The names its items declare (`fn`, `struct`, `mod`, …), at any depth.
    declared: BTreeSet<String>,
}

/// One leaf of a use tree, or a path in code.
struct Leaf {
    /// As written below `crate`, or as the module path of `self`/`super`; starting with a plain
    /// name (a child module, an extern crate or an imported name) when `plain`.
    path: Vec<String>,
    plain: bool,
    /// The name a `use` binds: its alias, else the last segment; `None` for `*` and `as _`.
    bind: Option<String>,
    glob: bool,
}

/// Keywords that a declared item's name follows.
const ITEMS: &[&str] = &[
    "const", "enum", "fn", "mod", "static", "struct", "trait", "type", "union",
];

impl Scan {
    /// The scan of `text`, a file of module `module`.
    fn of(text: &str, module: &[String]) -> Scan {
        let code = blank_comments_and_literals(text);
        let bytes = code.as_bytes();
        let mut scan = Scan::default();
        // Use-tree leaves and paths in code, each with where it starts and its module; none
        // from inside a `#[cfg(test)]` inline module.
        let mut leaves: Vec<(usize, Vec<String>, Leaf)> = Vec::new();
        let mut in_code: Vec<(usize, Vec<String>, Leaf)> = Vec::new();
        // Inline modules open here: (name, the brace depth inside it, whether it is tests').
        let mut inline: Vec<(String, usize, bool)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => {
                    if inline.last().is_some_and(|(_, d, _)| *d == depth) {
                        inline.pop();
                    }
                    depth -= 1;
                }
                _ if starts_word(bytes, i) => {
                    let word = ident(bytes, i);
                    let here: Vec<String> = module
                        .iter()
                        .cloned()
                        .chain(inline.iter().map(|(n, _, _)| n.clone()))
                        .collect();
                    let after = skip_space(bytes, i + word.len());
                    let name = ident(bytes, after);
                    if ITEMS.contains(&word) && (i == 0 || bytes[i - 1] != b'\'') {
                        scan.declared.insert(name.to_owned());
                    }
                    let opens = bytes.get(skip_space(bytes, after + name.len())) == Some(&b'{');
                    if word == "mod" && !name.is_empty() && opens {
                        let test = cfg_test_before(&code[..i]);
                        inline.push((name.to_owned(), depth + 1, test));
                    }
                    let tree = if word == "use" && after > i + word.len() {
                        Some((after, &mut leaves))
                    } else if code[i + word.len()..].starts_with("::") {
                        Some((i, &mut in_code))
                    } else {
                        None
                    };
                    if let Some((at, into)) = tree {
                        let mut found = Vec::new();
                        i = use_tree(bytes, at, &here, None, word == "use", &mut found);
                        if !inline.iter().any(|(_, _, test)| *test) {
                            into.extend(found.into_iter().map(|l| (at, here.clone(), l)));
                        }
                        continue;
                    }
                    i += word.len().max(1);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        // A brace miscounted would leave a module open and drop every path after it.
        assert!(
            depth == 0 && inline.is_empty(),
            "the scan lost count of braces in module {module:?} (depth {depth}, open {inline:?})"
        );
        scan.bind(module, leaves, in_code);
        scan
    }

    /// Resolves plain names through the `use`s in scope; records every path and binding.
    fn bind(
        &mut self,
        module: &[String],
        leaves: Vec<(usize, Vec<String>, Leaf)>,
        in_code: Vec<(usize, Vec<String>, Leaf)>,
    ) {
        // (module, name) → what the name is, and whether naming it is an edge (not when it
        // was bound by a plain path: a file naming its child modules or an extern crate).
        // Leaves from `crate`/`super`/`self` go first, so that a plain one can start with a
        // name they bind.
        type Names = BTreeMap<(Vec<String>, String), (Vec<String>, bool)>;
        let mut names: Names = BTreeMap::new();
        let lookup = |names: &Names, here: &[String], path: &[String]| {
            // An inline module also sees the names its file binds (as with `use super::*`).
            (module.len()..=here.len()).rev().find_map(|n| {
                let (bound, edge) = names.get(&(here[..n].to_vec(), path[0].clone()))?;
                Some(([bound.as_slice(), &path[1..]].concat(), *edge))
            })
        };
        let (plain, rooted): (Vec<_>, Vec<_>) = leaves.into_iter().partition(|(_, _, l)| l.plain);
        for (at, here, leaf) in rooted.into_iter().chain(plain) {
            let (path, edge) = match leaf.plain {
                false => (leaf.path, true),
                // A plain path that no `use` binds names a child module or an extern crate.
                true => lookup(&names, &here, &leaf.path)
                    .unwrap_or_else(|| ([here.as_slice(), &leaf.path].concat(), false)),
            };
            if edge {
                self.paths.push((at, path.clone()));
            }
            if let Some(name) = &leaf.bind {
                names.insert((here.clone(), name.clone()), (path.clone(), edge));
            }
            if here == module {
                match (&leaf.bind, leaf.glob) {
                    (_, true) => self.globs.push(path),
                    (Some(name), false) => {
                        self.names.insert(name.clone(), path);
                    }
                    (None, false) => {}
                }
            }
        }
        for (at, here, leaf) in in_code {
            let path = match leaf.plain {
                false => Some(leaf.path),
                true => lookup(&names, &here, &leaf.path).and_then(|(p, edge)| edge.then_some(p)),
            };
            self.paths.extend(path.map(|p| (at, p)));
        }
        self.paths.sort_by_key(|(at, _)| *at);
    }
}

/// Reads the path or use tree at `i` in module `here`, below `prefix` (`None`: a path that
/// starts at `i`; else the path above and whether it starts with a plain name), pushing each
/// leaf; in a `use` (`is_use`), with its `as` rename. Returns where it ends.
fn use_tree(
    bytes: &[u8],
    mut i: usize,
    here: &[String],
    prefix: Option<(Vec<String>, bool)>,
    is_use: bool,
    out: &mut Vec<Leaf>,
) -> usize {
    let mut first = prefix.is_none();
    let (mut path, mut plain) = prefix.unwrap_or_default();
    let mut glob = false;
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
                        let below = Some((path.clone(), plain));
                        let end = use_tree(bytes, i, here, below, is_use, out);
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
            ("*", false) => glob = true,
            ("self", false) => {}
            (_, true) => {
                plain = true;
                path.push(word.to_owned());
            }
            _ => path.push(word.to_owned()),
        }
        i += word.len();
        if bytes[i..].starts_with(b"::") {
            i += 2;
        } else {
            break;
        }
    }
    let mut bind = path.last().cloned().filter(|_| !glob);
    let as_at = skip_space(bytes, i);
    if is_use && ident(bytes, as_at) == "as" {
        let alias_at = skip_space(bytes, as_at + 2);
        let alias = ident(bytes, alias_at);
        bind = Some(alias.to_owned()).filter(|a| a != "_");
        i = alias_at + alias.len();
    }
    out.push(Leaf {
        path,
        plain,
        bind,
        glob,
    });
    i
}

/// Whether the code before a `mod` ends with `#[cfg(test)]` (and a visibility).
fn cfg_test_before(code: &str) -> bool {
    let code = code.trim_end();
    let code = ["pub(crate)", "pub(super)", "pub"]
        .iter()
        .find_map(|v| code.strip_suffix(v))
        .unwrap_or(code);
    code.trim_end().ends_with("#[cfg(test)]")
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
                // After the escaped character: `'\''` ends at its third quote.
                Some(find(b, i + 3, b"'").map_or(b.len(), |n| n + 1))
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
