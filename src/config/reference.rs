//! The configuration reference (`docs/src/reference.md`) names every key the schema accepts,
//! and no other: a doc that cannot drift.
//!
//! The page's convention: each section is a heading whose first code span is the section as
//! written in TOML (`[server]`, `[[route]]`, `[upstream.NAME.health_check]`; the file's own
//! top-level keys under [`TOP_LEVEL`]), and each key a table row that starts with the key in
//! a code span (`` | `listen` | ... ``). The keys come from [`super::forms::FORMS`], whose own
//! test proves it and the schema agree both ways. The manual's relative links are checked too.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::forms::FORMS;

/// The reference page, built in so that the test is rebuilt when the page changes.
const PAGE: &str = include_str!("../../docs/src/reference.md");

/// The heading of the section that lists the file's top-level keys (`server`, `route`,
/// `upstream`).
const TOP_LEVEL: &str = "## The file";

/// A key as the page places it: (the heading of its section, the key).
type Key = (String, String);

/// A FORMS pattern's section (`upstream.*.health_check`) as the page writes its heading:
/// `[upstream.NAME.health_check]`; a list element's as an array of tables (`route[]`:
/// `[[route]]`); the file itself as [`TOP_LEVEL`].
fn heading_of(section: &str) -> String {
    if section.is_empty() {
        return TOP_LEVEL.to_owned();
    }
    let name = section.replace("[]", "").replace('*', "NAME");
    if section.ends_with("[]") {
        format!("[[{name}]]")
    } else {
        format!("[{name}]")
    }
}

/// Every key of the schema as (section heading, key): FORMS without its element patterns
/// (`route[]`, `upstream.*`: one value of a key, not a key).
fn schema_keys() -> BTreeSet<Key> {
    FORMS
        .iter()
        .map(|&(pattern, _, _)| pattern)
        .filter(|p| !p.ends_with("[]") && !p.ends_with(".*"))
        .map(|p| {
            let (section, key) = p.rsplit_once('.').unwrap_or(("", p));
            (heading_of(section), key.to_owned())
        })
        .collect()
}

/// The first code span of `line`, if it has one.
fn first_code_span(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once('`')?;
    rest.split_once('`').map(|(span, _)| span)
}

/// Every key the page documents as (section heading, key), and the keys it documents twice.
/// Rows under a heading that is no section (prose, other tables) are not keys.
fn documented_keys(page: &str) -> (BTreeSet<Key>, Vec<Key>) {
    let mut keys = BTreeSet::new();
    let mut twice = Vec::new();
    let mut section: Option<String> = None;
    let mut in_fence = false;
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence {
            continue;
        }
        if line.starts_with('#') {
            section = if line.trim_end() == TOP_LEVEL {
                Some(TOP_LEVEL.to_owned())
            } else {
                first_code_span(line)
                    .filter(|s| s.starts_with('[') && s.ends_with(']'))
                    .map(str::to_owned)
            };
            continue;
        }
        let (Some(section), Some(row)) = (&section, line.strip_prefix("| `")) else {
            continue;
        };
        let key = row.split_once('`').map_or(row, |(key, _)| key);
        let entry = (section.clone(), key.to_owned());
        if !keys.insert(entry.clone()) {
            twice.push(entry);
        }
    }
    (keys, twice)
}

#[test]
fn every_key_the_schema_accepts_is_in_the_reference_and_no_other() {
    let schema = schema_keys();
    let (page, twice) = documented_keys(PAGE);
    let missing: Vec<_> = schema.difference(&page).collect();
    assert!(
        missing.is_empty(),
        "docs/src/reference.md lacks these keys (a row `| `KEY` | ...` under the section's \
         heading): {missing:?}"
    );
    let unknown: Vec<_> = page.difference(&schema).collect();
    assert!(
        unknown.is_empty(),
        "docs/src/reference.md documents keys the schema does not accept: {unknown:?}"
    );
    assert!(
        twice.is_empty(),
        "docs/src/reference.md documents keys twice: {twice:?}"
    );
}

#[test]
fn the_reading_of_the_page_finds_sections_and_keys() {
    let page = "## The file\n| `server` | a table |\n### `[upstream.NAME.health_check]`: checks\n\
                | key | type |\n|---|---|\n| `path` | a path |\n## Balancing\n| `p2c` | x |\n\
                ```toml\n| `inside_a_fence` |\n```\n";
    let (keys, twice) = documented_keys(page);
    let want: BTreeSet<_> = [
        (TOP_LEVEL.to_owned(), "server".to_owned()),
        ("[upstream.NAME.health_check]".to_owned(), "path".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, want);
    assert!(twice.is_empty());
    assert_eq!(heading_of("route[]"), "[[route]]");
    assert_eq!(heading_of("route[].rate_limit"), "[route.rate_limit]");
    assert_eq!(
        heading_of("server.tls[].certificates[]"),
        "[[server.tls.certificates]]"
    );
    assert_eq!(heading_of("upstream.*"), "[upstream.NAME]");
}

/// The anchor a heading gets on a forge and in mdBook: lower case, letters, digits, `-` and
/// `_` kept, spaces as `-`, the rest dropped; a repeated one gets `-1`, `-2`, ...
fn anchors(page: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut in_fence = false;
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim();
        let base: String = text
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of the inline links `[text](target)` of `page`, outside code.
fn link_targets(page: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_fence = false;
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence {
            continue;
        }
        // Code spans hold no links.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn relative_links_of_the_readme_and_the_manual_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<PathBuf> = vec![root.join("README.md")];
    let src = root.join("docs/src");
    for entry in std::fs::read_dir(&src).expect("docs/src") {
        let path = entry.expect("docs/src entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("a page");
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a folder").join(file)
            };
            if !file.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
                continue;
            }
            if anchor.is_empty() || file.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let linked = std::fs::read_to_string(&file).expect("a linked page");
            if !anchors(&linked).contains(anchor) {
                broken.push(format!("{}: {target} (no such heading)", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
