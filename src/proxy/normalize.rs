//! Request path normalisation before routing: what nginx does before location matching, and
//! what Envoy's `normalize_path` + `merge_slashes` + `path_with_escaped_slashes_action:
//! REJECT_REQUEST` do. When the router matches, and the backend receives, the normal form, both
//! see one spelling of a path, so `/public/%2e%2e/admin` cannot reach `/admin` past a rule on
//! `/admin`.
//!
//! Three steps, in one pass over the bytes:
//! 1. Percent-encodings are put in normal form (RFC 3986 §6.2.2): encoded unreserved characters
//!    are decoded, every other encoding is kept with its hex digits upper-cased. `%2F` is refused:
//!    a router sees one segment where a backend that decodes it sees two; so is `%5C` (and a raw
//!    '\\'), which IIS and some URL parsers read as '/'. `%25` and `%00` stay encoded, so that no
//!    backend can decode them into something the router did not see.
//! 2. With `merge_slashes`, runs of '/' collapse to one — before step 3, so `/a//../b` is `/b`
//!    (as in nginx).
//! 3. Dot segments are removed (RFC 3986 §5.2.4), those that became `.` or `..` in step 1 too.
//!    A `..` above the root is refused rather than clamped: no browser sends one, and a scanner
//!    that does gets a 400 instead of a page.
//!
//! A path is refused at its first fault in byte order. The input is the path alone: the caller
//! splits the target at its first '?' and keeps the query as it is.
//!
//! **Path parameters.** Java servlet containers (Tomcat, Jetty, Spring's `UrlPathHelper`) cut
//! each segment at its first ';' (also a decoded `%3B`) before they map it: to them
//! `/app/x/..;/admin/x`, `/app/admin;/x` and `/app/admin%3b/x` all mean `/app/admin/x`, while a
//! proxy that routes on the path as written sends them to an `/app/` route. So a dot segment
//! with parameters (`..;x`, `.;`, `%2e%2e;`) is refused here ([`PathError::DotParameters`]: no
//! client has a reason to send one), and the proxy refuses a path whose route would change if
//! its parameters were cut ([`without_parameters`]). Parameters that change no route
//! (`/shop/cart;jsessionid=1`) pass untouched. nginx does neither; Envoy and HAProxy leave it to
//! a rule of the operator's.

use std::fmt;

/// Why a request path is refused (each maps to 400 Bad Request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The target does not start with '/': absolute-form, authority-form, `*` or empty.
    NotOriginForm,
    /// A '%' not followed by two hex digits.
    BadPercent,
    /// `%2F`, an encoded '/', or `%5C`, an encoded '\\' (which some backends read as '/').
    EncodedSlash,
    /// A `..` segment that would climb above the root.
    AboveRoot,
    /// A raw control character (0x00-0x1F, 0x7F), space, '#' or '\\' (which IIS and some URL
    /// parsers read as '/', so that `/public/..\\admin` would climb out of `/public/` there).
    Control,
    /// A `.` or `..` segment with path parameters (`..;x`), which servlet containers read as a
    /// dot segment that the router did not see.
    DotParameters,
}

impl PathError {
    /// A short text for the access log and the 400 body.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "request target is not an absolute path",
            PathError::BadPercent => "malformed percent-encoding in path",
            PathError::EncodedSlash => "encoded slash (%2F or %5C) in path",
            PathError::AboveRoot => "path climbs above the root",
            PathError::Control => "control character, space, '#' or backslash in path",
            PathError::DotParameters => "dot segment with path parameters (..;) in path",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for PathError {}

/// Normalises the path part of an origin-form request target (everything before the first '?').
/// Returns `Ok(None)` when `path` is already in normal form — the common case, found in a single
/// pass over the bytes without allocating — and `Ok(Some(normal))` otherwise; `Err` names the
/// first fault in byte order. A `*` target is the caller's to handle: here it is `NotOriginForm`.
pub fn normalize(path: &[u8], merge_slashes: bool) -> Result<Option<Vec<u8>>, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    match scan(path, merge_slashes)? {
        None => Ok(None),
        Some(from) => rewrite(path, from, merge_slashes).map(Some),
    }
}

/// How the normaliser treats a raw byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Plain,
    Slash,
    Percent,
    Refused,
}

const CLASS: [Class; 256] = {
    let mut t = [Class::Plain; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = Class::Refused;
        b += 1;
    }
    t[0x7f] = Class::Refused;
    t[b' ' as usize] = Class::Refused;
    t[b'#' as usize] = Class::Refused;
    t[b'\\' as usize] = Class::Refused;
    t[b'/' as usize] = Class::Slash;
    t[b'%' as usize] = Class::Percent;
    t
};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Reads the path up to the first thing that needs rewriting, checking every byte on the way.
/// `Some(start)`: the segment starting at `start` (just after a '/') is the first one not in
/// normal form; everything before it is.
fn scan(path: &[u8], merge_slashes: bool) -> Result<Option<usize>, PathError> {
    let mut seg = 1;
    let mut i = 1;
    while i < path.len() {
        match CLASS[path[i] as usize] {
            Class::Plain => i += 1,
            Class::Slash => {
                if is_dots(&path[seg..i]) || (merge_slashes && i == seg) {
                    return Ok(Some(seg));
                }
                refuse_dot_parameters(&path[seg..i])?;
                i += 1;
                seg = i;
            }
            Class::Percent => {
                let byte = decode(path, i)?;
                // Both are hex digits by now, and only 'a'..='f' are at or above 'a'.
                let lower = path[i + 1] >= b'a' || path[i + 2] >= b'a';
                if lower || is_unreserved(byte) {
                    return Ok(Some(seg));
                }
                i += 3;
            }
            Class::Refused => return Err(PathError::Control),
        }
    }
    refuse_dot_parameters(&path[seg..])?;
    Ok(is_dots(&path[seg..]).then_some(seg))
}

/// Writes the normal form of `path`, whose first `from` bytes are in normal form already and end
/// with a '/'. Each segment is decoded onto the end of the output, then judged: a `.` is dropped,
/// a `..` drops itself and the segment before it, an empty one is dropped when merging slashes.
/// The output ends with '/' between segments, so a trailing `.`, `..` or '/' leaves one.
fn rewrite(path: &[u8], from: usize, merge_slashes: bool) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    out.extend_from_slice(&path[..from]);
    let mut i = from;
    loop {
        let start = out.len();
        while let Some(&b) = path.get(i) {
            match CLASS[b as usize] {
                Class::Plain => {
                    out.push(b);
                    i += 1;
                }
                Class::Slash => break,
                Class::Percent => {
                    let byte = decode(path, i)?;
                    if is_unreserved(byte) {
                        out.push(byte);
                    } else {
                        let (hi, lo) = (usize::from(byte >> 4), usize::from(byte & 15));
                        out.extend_from_slice(&[b'%', HEX_UPPER[hi], HEX_UPPER[lo]]);
                    }
                    i += 3;
                }
                Class::Refused => return Err(PathError::Control),
            }
        }
        let last = i == path.len();
        refuse_dot_parameters(&out[start..])?;
        match &out[start..] {
            b"." => out.truncate(start),
            b".." => {
                out.truncate(start);
                climb(&mut out)?;
            }
            b"" if merge_slashes => {}
            _ if !last => out.push(b'/'),
            _ => {}
        }
        if last {
            return Ok(out);
        }
        i += 1;
    }
}

/// Drops the last segment of `out`, which ends with '/'; refuses when there is none.
fn climb(out: &mut Vec<u8>) -> Result<(), PathError> {
    let parent = out[..out.len() - 1].iter().rposition(|&b| b == b'/');
    match parent {
        Some(p) => {
            out.truncate(p + 1);
            Ok(())
        }
        None => Err(PathError::AboveRoot),
    }
}

/// The byte encoded at `path[i]` (a '%'); refuses `%2F`.
fn decode(path: &[u8], i: usize) -> Result<u8, PathError> {
    let digit = |j: usize| path.get(j).and_then(|&b| (b as char).to_digit(16));
    match (digit(i + 1), digit(i + 2)) {
        (Some(hi), Some(lo)) => match (hi << 4 | lo) as u8 {
            b'/' | b'\\' => Err(PathError::EncodedSlash),
            byte => Ok(byte),
        },
        _ => Err(PathError::BadPercent),
    }
}

/// ALPHA / DIGIT / "-" / "." / "_" / "~" (RFC 3986 §2.3).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_dots(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// Refuses a segment that is `.` or `..` before its first parameter (`;` or `%3B`).
fn refuse_dot_parameters(segment: &[u8]) -> Result<(), PathError> {
    if segment.first() != Some(&b'.') {
        return Ok(());
    }
    match parameter_at(segment) {
        Some(p) if is_dots(&segment[..p]) => Err(PathError::DotParameters),
        _ => Ok(()),
    }
}

/// Where the first path parameter of `bytes` starts: a ';' or a `%3B` (either case).
fn parameter_at(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2_iter(b';', b'%', bytes).find(|&i| {
        bytes[i] == b';'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"3B"))
    })
}

/// A normalised path with every segment's parameters cut (`/a;x/b%3By` → `/a/b`) and the
/// slashes that leaves merged (`/app/;x/admin` → `/app/admin`): the path a servlet container
/// maps (Tomcat cuts, then merges). `None` when it has none, the common case, found with one
/// scan.
pub fn without_parameters(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let first = parameter_at(bytes)?;
    let mut out = String::with_capacity(path.len());
    out.push_str(&path[..first]);
    let mut rest = &path[first..];
    loop {
        // `rest` starts with a parameter: drop it up to the next '/', and that '/' too when
        // the cut left the segment empty.
        match rest.find('/') {
            None => return Some(out),
            Some(slash) if out.ends_with('/') => rest = &rest[slash + 1..],
            Some(slash) => rest = &rest[slash..],
        }
        match parameter_at(rest.as_bytes()) {
            Some(p) => {
                out.push_str(&rest[..p]);
                rest = &rest[p..];
            }
            None => {
                out.push_str(rest);
                return Some(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str, merge: bool) -> Result<String, PathError> {
        normalize(path.as_bytes(), merge).map(|out| match out {
            Some(out) => String::from_utf8(out).unwrap(),
            None => path.to_string(),
        })
    }

    fn unchanged(path: &str, merge: bool) {
        assert_eq!(normalize(path.as_bytes(), merge), Ok(None), "{path}");
    }

    fn rewritten(path: &str, merge: bool, want: &str) {
        let got = normalize(path.as_bytes(), merge).unwrap();
        assert_eq!(got.as_deref(), Some(want.as_bytes()), "{path}");
    }

    fn refused(path: &str, merge: bool, want: PathError) {
        assert_eq!(norm(path, merge), Err(want), "{path}");
    }

    #[test]
    fn normal_paths_are_left_alone() {
        for merge in [false, true] {
            for p in [
                "/",
                "/api/items",
                "/a/b/",
                "/a%2Bb",
                "/%00",
                "/%25",
                "/caf\u{e9}",
                "/a..b/.c/..d/",
                "/a;b=c,d",
            ] {
                unchanged(p, merge);
            }
        }
    }

    #[test]
    fn target_must_be_origin_form() {
        for p in [
            "",
            "*",
            "api/items",
            "http://example.com/",
            "example.com:443",
        ] {
            refused(p, true, PathError::NotOriginForm);
        }
    }

    #[test]
    fn percent_encodings() {
        rewritten("/%7euser", true, "/~user");
        rewritten("/%41%62%30%2D%2E%5F%7E", true, "/Ab0-._~");
        rewritten("/a%2bb", true, "/a%2Bb");
        rewritten("/%e9%3f", true, "/%E9%3F");
        rewritten("/%7e%3f", true, "/~%3F");
        for p in ["/%", "/%4", "/a%zz", "/%4g", "/%g4", "/%%41", "/a%/b"] {
            refused(p, true, PathError::BadPercent);
        }
        for p in ["/%2F", "/%2f", "/a%2fb/", "/public/..%2fadmin"] {
            refused(p, true, PathError::EncodedSlash);
        }
    }

    #[test]
    fn raw_bytes() {
        for p in ["/a b", "/a\tb", "/a\0", "/\x7f", "/a#frag", "/a\r\nX: y"] {
            refused(p, true, PathError::Control);
        }
        assert_eq!(normalize(b"/\x80\xff", true), Ok(None));
    }

    #[test]
    fn dot_segments() {
        for merge in [false, true] {
            rewritten("/public/../admin", merge, "/admin");
            rewritten("/public/%2e%2e/admin", merge, "/admin");
            rewritten("/public/%2E./admin", merge, "/admin");
            rewritten("/a/./b", merge, "/a/b");
            rewritten("/a/.", merge, "/a/");
            rewritten("/a/..", merge, "/");
            rewritten("/a/b/../c/./d/..", merge, "/a/c/");
            rewritten("/.", merge, "/");
            rewritten("/./", merge, "/");
            rewritten("/a/%2e", merge, "/a/");
            refused("/..", merge, PathError::AboveRoot);
            refused("/../a", merge, PathError::AboveRoot);
            refused("/a/../../b", merge, PathError::AboveRoot);
            refused("/%2e%2e", merge, PathError::AboveRoot);
        }
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for merge in [false, true] {
            for p in [
                "/app/x/..;/admin/x",
                "/app/..;x=1/admin",
                "/app/.;/admin",
                "/app/%2e%2e;/admin",
                "/app/..%3b/admin",
                "/app/..%3B",
                "/..;",
            ] {
                refused(p, merge, PathError::DotParameters);
            }
            unchanged("/app/a..;/b", merge);
            unchanged("/app/...;/b", merge);
            unchanged("/shop/cart;jsessionid=1", merge);
        }
    }

    #[test]
    fn parameters_are_cut_as_a_servlet_container_does() {
        let cut = |p: &str| without_parameters(p);
        assert_eq!(cut("/app/admin/x"), None);
        assert_eq!(cut("/app/admin;/x").as_deref(), Some("/app/admin/x"));
        assert_eq!(cut("/app/admin%3B/x").as_deref(), Some("/app/admin/x"));
        assert_eq!(cut("/a;x=1/b;y/c").as_deref(), Some("/a/b/c"));
        assert_eq!(cut("/a/b;jsessionid=1").as_deref(), Some("/a/b"));
        assert_eq!(cut("/a;/").as_deref(), Some("/a/"));
        assert_eq!(cut("/a%20b"), None);
        // A segment the cut leaves empty goes, as Tomcat merges the slashes after cutting.
        assert_eq!(cut("/app/;/admin/x").as_deref(), Some("/app/admin/x"));
        assert_eq!(cut("/app/;x=1/admin/x").as_deref(), Some("/app/admin/x"));
        assert_eq!(cut("/app/%3B/;/admin").as_deref(), Some("/app/admin"));
        assert_eq!(cut("/;").as_deref(), Some("/"));
    }

    #[test]
    fn slashes() {
        unchanged("/x//y", false);
        rewritten("/x//y", true, "/x/y");
        rewritten("//", true, "/");
        rewritten("///a///b///", true, "/a/b/");
        // Merged before dot segments go: nginx's answer, not RFC 3986's (`/a/b`).
        rewritten("/a//../b", true, "/b");
        rewritten("/a//../b", false, "/a/b");
    }

    #[test]
    fn the_first_fault_is_reported() {
        refused("/../%zz", true, PathError::AboveRoot);
        refused("/%zz/..", true, PathError::BadPercent);
        refused("/a b/%2f", true, PathError::Control);
        refused("/ok/%2e%2e/%2f", true, PathError::EncodedSlash);
        refused("/public/..\\admin", true, PathError::Control);
        refused("/public/..%5cadmin", true, PathError::EncodedSlash);
    }

    #[test]
    fn reasons_are_distinct() {
        let all = [
            PathError::NotOriginForm,
            PathError::BadPercent,
            PathError::EncodedSlash,
            PathError::AboveRoot,
            PathError::Control,
        ];
        for (i, a) in all.iter().enumerate() {
            assert_eq!(a.to_string(), a.reason());
            for b in &all[i + 1..] {
                assert_ne!(a.reason(), b.reason());
            }
        }
    }

    /// The rules read as plainly as possible: split into segments, decode each, then walk them
    /// with a stack. The property test checks `normalize` against it.
    fn model(path: &[u8], merge: bool) -> Result<Vec<u8>, PathError> {
        let rest = path.strip_prefix(b"/").ok_or(PathError::NotOriginForm)?;
        let raw: Vec<&[u8]> = rest.split(|&b| b == b'/').collect();
        let mut stack: Vec<Vec<u8>> = Vec::new();
        for (n, segment) in raw.iter().enumerate() {
            let last = n + 1 == raw.len();
            let mut seg = Vec::new();
            let mut i = 0;
            while i < segment.len() {
                match segment[i] {
                    0..=0x1f | 0x7f | b' ' | b'#' | b'\\' => return Err(PathError::Control),
                    b'%' => {
                        let hex = segment.get(i + 1..i + 3).ok_or(PathError::BadPercent)?;
                        let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadPercent)?;
                        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err(PathError::BadPercent);
                        }
                        let byte = u8::from_str_radix(hex, 16).unwrap();
                        match byte {
                            b'/' | b'\\' => return Err(PathError::EncodedSlash),
                            b if is_unreserved(b) => seg.push(b),
                            b => seg.extend(format!("%{b:02X}").bytes()),
                        }
                        i += 3;
                    }
                    b => {
                        seg.push(b);
                        i += 1;
                    }
                }
            }
            match &seg[..] {
                b"." | b".." => {
                    if seg == b".." && stack.pop().is_none() {
                        return Err(PathError::AboveRoot);
                    }
                    if last {
                        stack.push(Vec::new());
                    }
                }
                b"" if merge && !last => {}
                _ => stack.push(seg),
            }
        }
        Ok([b"/".as_slice(), &stack.join(&b'/')].concat())
    }

    /// Every path of up to four segments drawn from `PARTS`.
    fn generated() -> Vec<Vec<u8>> {
        const PARTS: [&str; 10] = [
            "a", ".", "..", "%2e", "%2E%2e", "", "%41", "%2f", "%zz", "~",
        ];
        let mut paths = vec![b"/".to_vec()];
        let mut level = vec![Vec::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for prefix in &level {
                for part in PARTS {
                    let mut p: Vec<u8> = prefix.clone();
                    p.push(b'/');
                    p.extend_from_slice(part.as_bytes());
                    paths.push(p.clone());
                    next.push(p);
                }
            }
            level = next;
        }
        paths
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn generated_paths_hold_the_invariants() {
        let paths = generated();
        assert!(paths.len() > 10_000);
        let (mut ok, mut err) = (0, 0);
        for merge in [false, true] {
            for path in &paths {
                let shown = String::from_utf8_lossy(path);
                let got = normalize(path, merge);
                assert_eq!(
                    got.clone().map(|o| o.unwrap_or_else(|| path.clone())),
                    model(path, merge),
                    "{shown} merge={merge}"
                );
                let out = match got {
                    Ok(Some(out)) => {
                        assert_ne!(&out, path, "{shown}: rewritten to itself");
                        out
                    }
                    Ok(None) => path.clone(),
                    Err(_) => {
                        err += 1;
                        continue;
                    }
                };
                ok += 1;
                let out_shown = String::from_utf8_lossy(&out);
                assert_eq!(normalize(&out, merge), Ok(None), "{shown} -> {out_shown}");
                assert!(out.starts_with(b"/"), "{out_shown}");
                let mut padded = out.clone();
                padded.push(b'/');
                assert!(!contains(&padded, b"/./"), "{out_shown}");
                assert!(!contains(&padded, b"/../"), "{out_shown}");
                assert!(!merge || !contains(&out, b"//"), "{out_shown}");
                for (i, _) in out.iter().enumerate().filter(|(_, &b)| b == b'%') {
                    let hex = &out[i + 1..i + 3];
                    assert!(!hex.iter().any(u8::is_ascii_lowercase), "{out_shown}");
                    let byte = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
                    assert!(!is_unreserved(byte), "{out_shown}");
                }
            }
        }
        // The generator reaches both outcomes often.
        assert!(ok > 1_000 && err > 1_000, "ok={ok} err={err}");
    }
}
