//! Every unknown key and type error of a file in one run. serde stops at a file's first such
//! mistake; when there is one, the file's (already parsed, span-keeping) tree is deserialized
//! again piece by piece: each section on its own, and each key of a section that fails on its
//! own, so that independent mistakes are all reported, each at its place. Linear: every value is
//! deserialized at most three times.
//!
//! [`without_mistakes`] then takes the wrong keys out of the tree (and a section that cannot
//! stand without one, whole, all of them in the next round), so that the rest of the file can
//! still be validated and its semantic errors reported in the same run.

use serde::de::DeserializeOwned;
use std::collections::HashMap;

use toml::de::{DeArray, DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::field_path::{FieldPath, Segment};
use super::forms::Problem;
use super::schema::*;

/// One mistake: field path, span, serde's message.
pub type Mistake = (FieldPath, Option<std::ops::Range<usize>>, String);

/// Every deserialization mistake in `source` (which parses as TOML). Empty if there is none.
pub fn mistakes(source: &str) -> Vec<Mistake> {
    match DeTable::parse(source) {
        Ok(root) => mistakes_in(&root),
        Err(_) => Vec::new(),
    }
}

/// What is left of a file once its mistakes are taken out: the file, and what was taken out
/// (whose absence the validation of the rest must not be blamed for).
pub struct Remains {
    pub file: FileConfig,
    pub removed: Removed,
}

/// What was taken out of a file to validate the rest.
pub struct Removed {
    pub upstreams: Vec<String>,
    /// Whether `upstream` itself was taken out (`upstream = 5`): no route's upstream is defined.
    pub all_upstreams: bool,
    pub routes: usize,
    /// For each list that lost elements (`route`, `upstream.NAME.backends`), the indices in the
    /// file of those it lost, sorted, so that errors about the rest can name their place.
    lists: HashMap<FieldPath, Vec<usize>>,
}

impl Removed {
    /// Whether the list at `path` (`upstream.web.backends`) lost elements.
    pub fn lost_from(&self, path: &FieldPath) -> bool {
        self.lists.contains_key(path)
    }

    /// `field` of the remains as the file names it: `upstream.web.backends[1]` is `[2]` if the
    /// file's `[1]` was taken out.
    pub fn file_field(&self, field: &FieldPath) -> FieldPath {
        let mut out = FieldPath::default();
        for segment in field.segments() {
            out = match segment {
                Segment::Index(kept) => {
                    let original = self
                        .lists
                        .get(&out)
                        .map_or(*kept, |gone| file_index(gone, *kept));
                    out.index(original)
                }
                Segment::Key(key) => out.key(key),
            };
        }
        out
    }
}

/// The index in the file of the `kept`-th element left in a list that lost the (sorted) file
/// indices `gone`.
fn file_index(gone: &[usize], kept: usize) -> usize {
    let mut file = kept;
    loop {
        let next = kept + gone.partition_point(|&g| g <= file);
        if next == file {
            return file;
        }
        file = next;
    }
}

fn index_of(segment: &str) -> Option<usize> {
    segment
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse().ok())
}

/// `source` deserialized without the keys `mistakes` found wrong (and without any section
/// that cannot stand without them); `None` if that does not work out within a few rounds.
pub fn without_mistakes(source: &str, mistakes: &[Mistake]) -> Option<Remains> {
    let root = DeTable::parse(source).ok()?;
    let span = root.span();
    let mut tree = root.into_inner();
    let (routes_before, upstreams_before) = (route_count(&tree), upstream_names(&tree));
    let has_upstream = |t: &DeTable<'_>| t.keys().any(|k| k.get_ref() == "upstream");
    let upstream_before = has_upstream(&tree);
    let mut lists = HashMap::new();
    let mut wrong: Vec<Vec<String>> = mistakes.iter().map(|m| segments(&m.0)).collect();
    for _ in 0..4 {
        // Last first, so that taking an element out of a list leaves the others' indices.
        wrong.sort_by(|a, b| compare_paths(b, a));
        wrong.dedup();
        for path in &wrong {
            remove(&mut tree, path, FieldPath::default(), &mut lists);
        }
        let value = Spanned::new(span.clone(), DeValue::Table(tree.clone()));
        if let Ok(file) = deserialize::<FileConfig>(value) {
            let after = upstream_names(&tree);
            return Some(Remains {
                file,
                removed: Removed {
                    upstreams: upstreams_before
                        .into_iter()
                        .filter(|u| !after.contains(u))
                        .collect(),
                    all_upstreams: upstream_before && !has_upstream(&tree),
                    routes: routes_before - route_count(&tree),
                    lists,
                },
            });
        }
        // What is still wrong now (a section missing a required key that was taken out), all
        // of it at once.
        wrong = mistakes_in(&Spanned::new(span.clone(), tree.clone()))
            .iter()
            .map(|m| segments(&m.0))
            .collect();
        if wrong.is_empty() {
            return None;
        }
    }
    None
}

/// Routes in the file: the `[[route]]` list's length (a `[route]` table counts as one).
fn route_count(tree: &DeTable<'_>) -> usize {
    match tree.iter().find(|(k, _)| k.get_ref() == "route") {
        Some((_, v)) => match v.get_ref() {
            DeValue::Array(items) => items.len(),
            _ => 1,
        },
        None => 0,
    }
}

fn upstream_names(tree: &DeTable<'_>) -> Vec<String> {
    match tree.iter().find(|(k, _)| k.get_ref() == "upstream") {
        Some((_, v)) => match v.get_ref() {
            DeValue::Table(t) => t.keys().map(|k| k.get_ref().to_string()).collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

/// Orders paths segment by segment, list indices as numbers.
fn compare_paths(a: &[String], b: &[String]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (index_of(x), index_of(y)) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// `route[1].rate_limit` → `["route", "[1]", "rate_limit"]`. (A key with a '.' in it, such as an
/// upstream named "api.v1", is in pieces in a [`FieldPath`]; [`remove`] puts them back together.
/// One ending in `[N]`, `a[1]`, is `a`, `[1]`, which it does not: such a key's mistakes stay.)
fn segments(path: &FieldPath) -> Vec<String> {
    path.segments()
        .iter()
        .map(|segment| match segment {
            Segment::Key(key) => key.clone(),
            Segment::Index(index) => format!("[{index}]"),
        })
        .collect()
}

/// Takes `path` out of `table`. `at` is the path so far, as the file names it (list indices
/// are the file's), and `lists` gets the file index of each list element taken out.
fn remove(
    table: &mut DeTable<'_>,
    path: &[String],
    at: FieldPath,
    lists: &mut HashMap<FieldPath, Vec<usize>>,
) {
    // The longest run of segments that is a key: "api.v1" is one key if the table has it.
    let keys = path.iter().take_while(|s| index_of(s).is_none()).count();
    let found = (1..=keys).rev().find_map(|n| {
        let name = path[..n].join(".");
        let key = table
            .keys()
            .find(|k| k.get_ref() == name.as_str())
            .cloned()?;
        Some((key, name, n))
    });
    let Some((key, name, n)) = found else {
        return;
    };
    let at = at.key(&name);
    let rest = &path[n..];
    if rest.is_empty() {
        table.remove(&key);
        return;
    }
    let Some(value) = table.get_mut(&key) else {
        return;
    };
    remove_in(value.get_mut(), rest, at, lists);
}

fn remove_in(
    value: &mut DeValue<'_>,
    path: &[String],
    at: FieldPath,
    lists: &mut HashMap<FieldPath, Vec<usize>>,
) {
    match value {
        DeValue::Table(table) => remove(table, path, at, lists),
        DeValue::Array(items) => {
            let Some(i) = index_of(&path[0]).filter(|&i| i < items.len()) else {
                return;
            };
            let gone = lists.get(&at).map(Vec::as_slice).unwrap_or_default();
            let file_i = file_index(gone, i);
            if path.len() == 1 {
                let kept: DeArray<'_> = std::mem::replace(items, std::iter::empty().collect())
                    .into_iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, v)| v)
                    .collect();
                *items = kept;
                let gone = lists.entry(at).or_default();
                let place = gone.partition_point(|&g| g < file_i);
                gone.insert(place, file_i);
            } else {
                let inner = at.index(file_i);
                if let Some(item) = items.get_mut(i) {
                    remove_in(item.get_mut(), &path[1..], inner, lists);
                }
            }
        }
        _ => {}
    }
}

/// Where the schema takes a table (or a list of tables) below a key, and which keys below it
/// take tables in turn.
enum Shape {
    /// A table, with the keys of it that are tables themselves.
    Table(&'static [(&'static str, Shape)]),
    /// A list of such tables.
    Tables(&'static [(&'static str, Shape)]),
    /// A table of named such tables (`upstream.NAME`).
    Named(&'static [(&'static str, Shape)]),
    /// One of a few words, in quotes (`balance = "random"`): toml would also take an enum's
    /// table form (`balance = { random = {} }`), which the file does not mean.
    Word,
}

const FILE_SHAPE: Shape = Shape::Table(&[
    (
        "server",
        Shape::Table(&[(
            "tls",
            Shape::Tables(&[("certificates", Shape::Tables(&[]))]),
        )]),
    ),
    ("route", Shape::Tables(&[("rate_limit", Shape::Table(&[]))])),
    (
        "upstream",
        Shape::Named(&[
            ("balance", Shape::Word),
            ("health_check", Shape::Table(&[("kind", Shape::Word)])),
            ("outlier", Shape::Table(&[])),
            ("circuit_breaker", Shape::Table(&[])),
            ("backends", Shape::Tables(&[])),
        ]),
    ),
]);

/// Every place in `source` where a list is written for a table (`server = []`,
/// `backends = [["10.0.0.1:80", 2]]`), or anything but a string for one of a few words
/// (`balance = { random = {} }`). Decided by the parsed tree, not by serde, which fills a
/// table's fields from a list by position and takes an enum's table form, and so passes some of
/// these.
pub fn shape_mistakes(source: &str) -> Vec<Mistake> {
    match DeTable::parse(source) {
        Ok(root) => {
            let mut out = Vec::new();
            let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
            walk(&root, &FieldPath::default(), &FILE_SHAPE, &mut out);
            out
        }
        Err(_) => Vec::new(),
    }
}

fn walk(value: &Spanned<DeValue<'_>>, field: &FieldPath, shape: &Shape, out: &mut Vec<Mistake>) {
    let join = |key: &str| field.clone().key(key);
    match (shape, value.get_ref()) {
        (Shape::Table(_) | Shape::Named(_), DeValue::Array(_)) => {
            let message = list_for_table(&field.to_string());
            out.push((field.clone(), Some(value.span()), message));
        }
        (Shape::Word, DeValue::String(_)) => {}
        (Shape::Word, other) => {
            let found = found_words(other);
            let message = match super::forms::form(&field.to_string()) {
                Some((form, example)) => format!("expected {form}, e.g. {example} (found {found})"),
                None => format!("expected a word in quotes (found {found})"),
            };
            out.push((field.clone(), Some(value.span()), message));
        }
        (Shape::Table(keys), DeValue::Table(table)) => {
            for (key, v) in table {
                let name = key.get_ref().as_ref();
                if let Some((_, inner)) = keys.iter().find(|(k, _)| *k == name) {
                    walk(v, &join(name), inner, out);
                }
            }
        }
        (Shape::Named(keys), DeValue::Table(table)) => {
            for (name, v) in table {
                walk(v, &join(name.get_ref()), &Shape::Table(keys), out);
            }
        }
        (Shape::Tables(keys), DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &field.clone().index(i), &Shape::Table(keys), out);
            }
        }
        _ => {}
    }
}

/// The message for a list written where `field` takes a table.
fn list_for_table(field: &str) -> String {
    match super::forms::form(field) {
        Some((form, example)) => format!("expected {form}, e.g. {example} (found a list)"),
        None => "expected a table (found a list)".to_owned(),
    }
}

/// What the file has at `field` (`upstream.api.v1.backends[0].weight`), in the file's words,
/// by the parsed value's type: `the string "x"`, `a list`, `a date/time (07:32:00)`. `None`
/// where the path leads to nothing.
pub fn found_at(root: &DeTable<'_>, field: &FieldPath) -> Option<String> {
    lookup(root, &segments(field)).map(found_words)
}

/// A value in the file's words, by its type.
fn found_words(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("the string {:?}", s.as_ref()),
        DeValue::Integer(n) if n.as_str().starts_with('-') => {
            format!("{}, a negative number", n.as_str())
        }
        DeValue::Integer(n) => format!("the whole number {}", n.as_str()),
        DeValue::Float(x) => format!("the number {}", x.as_str()),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => format!("a date/time ({d})"),
        DeValue::Array(_) => "a list".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

/// The value at `path` below `table` (keys with dots in them put back together, as in
/// [`remove`]).
fn lookup<'a, 'i>(table: &'a DeTable<'i>, path: &[String]) -> Option<&'a DeValue<'i>> {
    let keys = path.iter().take_while(|s| index_of(s).is_none()).count();
    let (value, n) = (1..=keys).rev().find_map(|n| {
        let name = path[..n].join(".");
        let (_, v) = table.iter().find(|(k, _)| k.get_ref() == name.as_str())?;
        Some((v.get_ref(), n))
    })?;
    let mut value = value;
    let mut rest = &path[n..];
    while let Some(i) = rest.first().and_then(|s| index_of(s)) {
        let DeValue::Array(items) = value else {
            return None;
        };
        value = items.get(i)?.get_ref();
        rest = &rest[1..];
    }
    match (rest.is_empty(), value) {
        (true, v) => Some(v),
        (false, DeValue::Table(t)) => lookup(t, rest),
        _ => None,
    }
}

/// Whether `out` holds a mistake at `field` or inside it.
fn reported(out: &[Mistake], field: &FieldPath) -> bool {
    out.iter().any(|(at, _, _)| at.starts_with(field))
}

fn mistakes_in(root: &Spanned<DeTable<'_>>) -> Vec<Mistake> {
    let mut out = Vec::new();
    let span = root.span();
    let tree = Spanned::new(span.clone(), DeValue::Table(root.get_ref().clone()));
    let top = FieldPath::default();
    walk(&tree, &top, &FILE_SHAPE, &mut out);
    for (key, value) in root.get_ref() {
        let field = top.clone().key(key.get_ref());
        match key.get_ref().as_ref() {
            "server" => probe::<ServerSection>(value, &field, &SERVER_NESTED, &mut out),
            "route" => list::<RouteSection>(value, &field, &ROUTE_NESTED, &mut out),
            "upstream" => match value.get_ref() {
                DeValue::Table(upstreams) => {
                    for (name, u) in upstreams {
                        let field = field.clone().key(name.get_ref());
                        probe::<UpstreamSection>(u, &field, &UPSTREAM_NESTED, &mut out);
                    }
                }
                DeValue::Array(_) => {}
                _ => whole::<FileConfig>(one(span.clone(), key, value), &top, &mut out),
            },
            _ => whole::<FileConfig>(one(span.clone(), key, value), &top, &mut out),
        }
    }
    out
}

/// A key of a section whose value is itself a section (or a list of them), checked key by key
/// too.
type Nested = (
    &'static str,
    fn(&Spanned<DeValue<'_>>, &FieldPath, &mut Vec<Mistake>),
);

const SERVER_NESTED: [Nested; 1] = [("tls", |v, f, out| {
    list::<TlsListenerSection>(v, f, &TLS_NESTED, out)
})];

const TLS_NESTED: [Nested; 1] = [("certificates", |v, f, out| {
    list::<CertificateSection>(v, f, &[], out)
})];

const ROUTE_NESTED: [Nested; 1] = [("rate_limit", |v, f, out| {
    probe::<RateLimitSection>(v, f, &[], out)
})];

const UPSTREAM_NESTED: [Nested; 4] = [
    ("health_check", |v, f, out| {
        probe::<HealthCheckSection>(v, f, &[], out)
    }),
    ("outlier", |v, f, out| {
        probe::<OutlierSection>(v, f, &[], out)
    }),
    ("circuit_breaker", |v, f, out| {
        probe::<CircuitBreakerSection>(v, f, &[], out)
    }),
    ("backends", |v, f, out| {
        list::<BackendSection>(v, f, &[], out)
    }),
];

/// A list of sections: each item checked as a `T` key by key (`field[i]`); a value that is not
/// a list, as a whole.
fn list<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    field: &FieldPath,
    nested: &[Nested],
    out: &mut Vec<Mistake>,
) {
    match value.get_ref() {
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                probe::<T>(item, &field.clone().index(i), nested, out);
            }
        }
        _ => whole::<Vec<T>>(value.clone(), field, out),
    }
}

/// Checks `value` as a `T`; if it is not one, checks each of its keys alone (a missing required
/// key is reported only when no key is wrong on its own), and `nested` sections key by key.
fn probe<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    field: &FieldPath,
    nested: &[Nested],
    out: &mut Vec<Mistake>,
) {
    // A list for this table: reported already, by [`walk`].
    if matches!(value.get_ref(), DeValue::Array(_)) || deserialize::<T>(value.clone()).is_ok() {
        return;
    }
    let DeValue::Table(table) = value.get_ref() else {
        return whole::<T>(value.clone(), field, out);
    };
    for (key, v) in table {
        let name = key.get_ref().as_ref();
        let inner = field.clone().key(name);
        if let Some((_, check)) = nested.iter().find(|(n, _)| *n == name) {
            check(v, &inner, out);
            continue;
        }
        // Reported already, by [`walk`].
        if reported(out, &inner) {
            continue;
        }
        if let Err(m) = deserialize::<T>(one(value.span(), key, v)) {
            if !matches!(Problem::read(&m.2), Problem::Missing { .. }) {
                out.push(prefixed(field, m));
            }
        }
    }
    // Not when a list for a table inside it was reported, by [`walk`].
    if !reported(out, field) {
        whole::<T>(value.clone(), field, out);
    }
}

/// The first mistake of `value` as a `T`, if any.
fn whole<T: DeserializeOwned>(
    value: Spanned<DeValue<'_>>,
    field: &FieldPath,
    out: &mut Vec<Mistake>,
) {
    if let Err(m) = deserialize::<T>(value) {
        out.push(prefixed(field, m));
    }
}

/// A table with the one entry `key = value`, spanning `span`.
fn one<'i>(
    span: std::ops::Range<usize>,
    key: &Spanned<toml::de::DeString<'i>>,
    value: &Spanned<DeValue<'i>>,
) -> Spanned<DeValue<'i>> {
    let mut table = DeTable::new();
    table.insert(key.clone(), value.clone());
    Spanned::new(span, DeValue::Table(table))
}

fn deserialize<T: DeserializeOwned>(value: Spanned<DeValue<'_>>) -> Result<T, Mistake> {
    serde_path_to_error::deserialize(ValueDeserializer::from(value)).map_err(|e| {
        let field = FieldPath::of_serde(e.path());
        let inner = e.into_inner();
        (field, inner.span(), inner.message().trim().to_owned())
    })
}

fn prefixed(field: &FieldPath, (inner, span, message): Mistake) -> Mistake {
    (field.clone().join(&inner), span, message)
}
