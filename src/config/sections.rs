//! Every unknown key and type error of a file in one run. serde stops at a file's first such
//! mistake; when there is one, the file's (already parsed, span-keeping) tree is deserialized
//! again piece by piece: each section on its own, and each key of a section that fails on its
//! own, so that independent mistakes are all reported, each at its place. Linear: every value is
//! deserialized at most three times.
//!
//! [`without_mistakes`] then takes the wrong keys out of the tree (and a section that cannot
//! stand without one, whole), so that the rest of the file can still be validated and its
//! semantic errors reported in the same run.

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::schema::*;

/// One mistake: field path, span, serde's message.
pub type Mistake = (String, Option<std::ops::Range<usize>>, String);

/// Every deserialization mistake in `source` (which parses as TOML). Empty if there is none.
pub fn mistakes(source: &str) -> Vec<Mistake> {
    match DeTable::parse(source) {
        Ok(root) => mistakes_in(&root),
        Err(_) => Vec::new(),
    }
}

/// What is left of a file once its mistakes are taken out: the file, and the names of the
/// upstreams and the number of routes taken out whole (whose absence the validation of the
/// rest must not be blamed for).
pub struct Remains {
    pub file: FileConfig,
    pub removed: Removed,
}

/// What was taken out of a file to validate the rest.
pub struct Removed {
    pub upstreams: Vec<String>,
    pub routes: usize,
    /// For each list that lost elements (`route`, `upstream.NAME.backends`), the indices in the
    /// file of those it lost, so that errors about the rest can name their place in the file.
    lists: std::collections::HashMap<String, Vec<usize>>,
}

impl Removed {
    /// `field` of the remains as the file names it: `upstream.web.backends[1]` is `[2]` if the
    /// file's `[1]` was taken out.
    pub fn file_field(&self, field: &str) -> String {
        let mut out = String::new();
        let mut list = String::new();
        for segment in segments(field) {
            let index = segment
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<usize>().ok());
            match (index, self.lists.get(&list)) {
                (Some(kept), Some(gone)) => {
                    let original = (0..)
                        .filter(|i| !gone.contains(i))
                        .nth(kept)
                        .unwrap_or(kept);
                    out.push_str(&format!("[{original}]"));
                    list.push_str(&format!("[{original}]"));
                }
                _ => {
                    if !out.is_empty() && index.is_none() {
                        out.push('.');
                        list.push('.');
                    }
                    out.push_str(&segment);
                    list.push_str(&segment);
                }
            }
        }
        out
    }
}

/// `source` deserialized without the keys `mistakes` found wrong (and without any section
/// that cannot stand without them); `None` if that does not work out within a few rounds.
pub fn without_mistakes(source: &str, mistakes: &[Mistake]) -> Option<Remains> {
    let root = DeTable::parse(source).ok()?;
    let span = root.span();
    let mut tree = DeValue::Table(root.into_inner());
    let (mut removed_upstreams, mut removed_routes) = (Vec::new(), 0);
    let mut removed = std::collections::HashMap::new();
    let mut wrong: Vec<String> = mistakes.iter().map(|m| m.0.clone()).collect();
    for _ in 0..8 {
        for path in &wrong {
            let path = segments(path);
            match path.as_slice() {
                [section, _] if section == "route" => removed_routes += 1,
                [section, name] if section == "upstream" => removed_upstreams.push(name.clone()),
                _ => {}
            }
            remove(&mut tree, &path);
        }
        sweep(&mut tree, String::new(), &mut removed);
        match deserialize::<FileConfig>(Spanned::new(span.clone(), tree.clone())) {
            Ok(file) => {
                return Some(Remains {
                    file,
                    removed: Removed {
                        upstreams: removed_upstreams,
                        routes: removed_routes,
                        lists: removed,
                    },
                })
            }
            // What is still wrong (a section missing a required key now) goes next.
            Err((field, ..)) if !field.is_empty() => wrong = vec![field],
            Err(_) => return None,
        }
    }
    None
}

/// `route[1].rate_limit` → ["route", "[1]", "rate_limit"].
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        while let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(rest[..i].to_owned());
            }
            let end = rest[i..].find(']').map_or(rest.len(), |e| i + e + 1);
            out.push(rest[i..end].to_owned());
            rest = &rest[end..];
        }
        if !rest.is_empty() {
            out.push(rest.to_owned());
        }
    }
    out
}

/// What an array element taken out is replaced with until [`sweep`] drops it, so that the
/// indices of the other paths of the same round still hold. (No list in the schema holds a
/// boolean.)
const GONE: DeValue<'static> = DeValue::Boolean(false);

/// Takes `path` out of `tree`.
fn remove(tree: &mut DeValue<'_>, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match tree {
        DeValue::Table(table) => {
            let key = table
                .keys()
                .find(|k| k.get_ref().as_ref() == first)
                .cloned();
            let Some(key) = key else {
                return;
            };
            if rest.is_empty() {
                table.remove(&key);
            } else if let Some(v) = table.get_mut(&key) {
                remove(v.get_mut(), rest);
            }
        }
        DeValue::Array(items) => {
            let index = first
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<usize>().ok());
            if let Some(item) = index.and_then(|i| items.get_mut(i)) {
                if rest.is_empty() {
                    *item.get_mut() = GONE;
                } else {
                    remove(item.get_mut(), rest);
                }
            }
        }
        _ => {}
    }
}

/// Drops the array elements [`remove`] marked, at any depth, and notes which (by their index
/// in the file) under the list's path.
fn sweep<'i>(
    tree: &mut DeValue<'i>,
    path: String,
    removed: &mut std::collections::HashMap<String, Vec<usize>>,
) {
    match tree {
        DeValue::Table(table) => {
            for (key, v) in table.iter_mut() {
                let key = key.get_ref().as_ref();
                let inner = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                sweep(v.get_mut(), inner, removed);
            }
        }
        DeValue::Array(items) => {
            let gone = |v: &Spanned<DeValue<'_>>| matches!(v.get_ref(), DeValue::Boolean(false));
            if items.iter().any(gone) {
                // Indices in the file: those already taken out in an earlier round come first.
                let earlier = removed.get(&path).cloned().unwrap_or_default();
                let in_file: Vec<usize> = (0..)
                    .filter(|i| !earlier.contains(i))
                    .take(items.len())
                    .collect();
                let now: Vec<usize> = items
                    .iter()
                    .zip(&in_file)
                    .filter(|(v, _)| gone(v))
                    .map(|(_, &i)| i)
                    .collect();
                removed.entry(path.clone()).or_default().extend(now);
                let empty: DeArray<'i> = std::iter::empty().collect();
                let kept: DeArray<'i> = std::mem::replace(items, empty)
                    .into_iter()
                    .filter(|v| !gone(v))
                    .collect();
                *items = kept;
            }
            // Elements keep the file's index in their path.
            let gone_here = removed.get(&path).cloned().unwrap_or_default();
            let in_file = (0..).filter(|i| !gone_here.contains(i));
            for (v, i) in items.iter_mut().zip(in_file) {
                sweep(v.get_mut(), format!("{path}[{i}]"), removed);
            }
        }
        _ => {}
    }
}

fn mistakes_in(root: &Spanned<DeTable<'_>>) -> Vec<Mistake> {
    let mut out = Vec::new();
    let span = root.span();
    for (key, value) in root.get_ref() {
        match key.get_ref().as_ref() {
            "server" => probe::<ServerSection>(value, "server", &[], &mut out),
            "route" => match value.get_ref() {
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let field = format!("route[{i}]");
                        probe::<RouteSection>(item, &field, &ROUTE_NESTED, &mut out);
                    }
                }
                _ => whole::<FileConfig>(one(span.clone(), key, value), "", &mut out),
            },
            "upstream" => match value.get_ref() {
                DeValue::Table(upstreams) => {
                    for (name, u) in upstreams {
                        let field = format!("upstream.{}", name.get_ref());
                        probe::<UpstreamSection>(u, &field, &UPSTREAM_NESTED, &mut out);
                    }
                }
                _ => whole::<FileConfig>(one(span.clone(), key, value), "", &mut out),
            },
            _ => whole::<FileConfig>(one(span.clone(), key, value), "", &mut out),
        }
    }
    out
}

/// A key of a section whose value is itself a section (or a list of them), checked key by key
/// too.
type Nested = (
    &'static str,
    fn(&Spanned<DeValue<'_>>, &str, &mut Vec<Mistake>),
);

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
    ("backends", |v, f, out| match v.get_ref() {
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                probe::<BackendSection>(item, &format!("{f}[{i}]"), &[], out);
            }
        }
        _ => whole::<Vec<BackendSection>>(v.clone(), f, out),
    }),
];

/// Checks `value` as a `T`; if it is not one, checks each of its keys alone (a missing required
/// key is reported only when no key is wrong on its own), and `nested` sections key by key.
fn probe<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    field: &str,
    nested: &[Nested],
    out: &mut Vec<Mistake>,
) {
    if deserialize::<T>(value.clone()).is_ok() {
        return;
    }
    let DeValue::Table(table) = value.get_ref() else {
        return whole::<T>(value.clone(), field, out);
    };
    let before = out.len();
    for (key, v) in table {
        let name = key.get_ref().as_ref();
        if let Some((_, check)) = nested.iter().find(|(n, _)| *n == name) {
            check(v, &format!("{field}.{name}"), out);
            continue;
        }
        if let Err(m) = deserialize::<T>(one(value.span(), key, v)) {
            if !m.2.starts_with("missing field") {
                out.push(prefixed(field, m));
            }
        }
    }
    if out.len() == before {
        whole::<T>(value.clone(), field, out);
    }
}

/// The first mistake of `value` as a `T`, if any.
fn whole<T: DeserializeOwned>(value: Spanned<DeValue<'_>>, field: &str, out: &mut Vec<Mistake>) {
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
        let field = super::field_path(e.path());
        let inner = e.into_inner();
        (field, inner.span(), inner.message().trim().to_owned())
    })
}

fn prefixed(field: &str, (inner, span, message): Mistake) -> Mistake {
    let path = match (field.is_empty(), inner.is_empty()) {
        (true, _) => inner,
        (false, true) => field.to_owned(),
        (false, false) if inner.starts_with('[') => format!("{field}{inner}"),
        (false, false) => format!("{field}.{inner}"),
    };
    (path, span, message)
}
