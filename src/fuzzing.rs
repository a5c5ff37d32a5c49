//! The seam the fuzz targets in `fuzz/` call (cargo feature `fuzzing`, off in every normal
//! build): the crate's internals stay `pub(crate)`, and this module is their only door.
//!
//! Each function runs one part of fulcrum on bytes the fuzzer made and checks what must hold of
//! the answer beyond "no panic"; a property that does not hold panics, which is the crash
//! libFuzzer reports. A target is one call, so a crash input replays as a unit test of the same
//! call (see `fuzz/README.md`).
//!
//! - [`normalize`]: request path normalisation (`proxy::normalize`).
//! - [`guard_scan`]: the header guard's scanner (`server::guard`).
//! - [`route`]: normalisation, then the router, on a route table written in the input.
//! - [`check`]: config text → what `fulcrum check` finds (backend names not looked up, files
//!   not read).
//! - [`expand_env`]: `${VAR}` expansion in config text.
//! - [`http1`]: bytes into a listener, through the proxy to echo backends (`fuzzing::http1`).

mod http1;

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use crate::config::env;
use crate::config::runtime::ClientLimits;
use crate::config::{Config, ConfigError, HostPattern, RouteConfig};
use crate::proxy::normalize::normalize as normalize_path;
use crate::router::Router;
use crate::server::guard::{Header, Scan};

/// Normalises `path` with and without `merge_slashes` and checks the answer: a path accepted
/// comes out starting with '/', without `//` when merging, with nothing a backend could read as
/// climbing ([`escapes`]), and in normal form (normalising it again changes nothing);
/// `Ok(Some(_))` is never the path itself.
pub fn normalize(path: &[u8]) {
    for merge in [false, true] {
        let rewritten = match normalize_path(path, merge) {
            Ok(rewritten) => rewritten,
            Err(_) => continue,
        };
        let out = match &rewritten {
            None => path,
            Some(out) => {
                assert_ne!(out, path, "{}: rewritten to itself", shown(path));
                out
            }
        };
        let why = || format!("{} -> {} (merge_slashes {merge})", shown(path), shown(out));
        assert!(out.starts_with(b"/"), "{}", why());
        assert!(!merge || !contains(out, b"//"), "{}", why());
        assert_eq!(escapes(out), None, "{}", why());
        assert_eq!(normalize_path(out, merge), Ok(None), "{}", why());
    }
}

/// Feeds a header to the guard's scanner three ways, whole, in the reads the input asks for and
/// one byte per read, and checks that the verdict (and, for a complete header, its length) is
/// the same. The input: a byte for `max_header_size` (8 to 2048 bytes), one for `max_headers`
/// (1 to 16), one whose low bit says whether this is the connection's first header (the only
/// place for the HTTP/2 preface) and whose other bits count the cuts, then that many bytes
/// placing the cuts, then the bytes read.
pub fn guard_scan(data: &[u8]) {
    let [size, headers, flags, rest @ ..] = data else {
        return;
    };
    let limits = ClientLimits {
        request_header_timeout: Duration::from_secs(10),
        keepalive_timeout: Duration::from_secs(10),
        client_body_timeout: Duration::from_secs(10),
        client_body_min_rate: 512,
        send_timeout: Duration::from_secs(10),
        max_header_size: 8 * (usize::from(*size) + 1),
        max_headers: usize::from(headers % 16) + 1,
    };
    let first = flags & 1 == 1;
    let cuts = usize::from(flags >> 1).min(rest.len());
    let (places, bytes) = rest.split_at(cuts);
    let mut at: Vec<usize> = places
        .iter()
        .map(|&p| usize::from(p) * bytes.len() / 256)
        .collect();
    at.sort_unstable();
    let mut reads = Vec::with_capacity(at.len() + 1);
    let mut from = 0;
    for &to in &at {
        reads.push(&bytes[from..to]);
        from = to;
    }
    reads.push(&bytes[from..]);
    let whole = scan_reads(&[bytes], &limits, first);
    let split = scan_reads(&reads, &limits, first);
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    let single = scan_reads(&bytewise, &limits, first);
    let why = || format!("{} ({limits:?}, first {first})", shown(bytes));
    assert_eq!(split, whole, "split at {at:?}: {}", why());
    assert_eq!(single, whole, "one byte per read: {}", why());
    if let (Scan::Complete, n) = whole {
        assert!(n <= limits.max_header_size, "{}", why());
        assert_eq!(bytes.get(n.wrapping_sub(1)), Some(&b'\n'), "{}", why());
    }
}

/// The guard's verdict on `reads`, and the header's length when it is complete (0 otherwise:
/// how much of an incomplete or refused header was counted depends on where the reads end).
fn scan_reads(reads: &[&[u8]], limits: &ClientLimits, first: bool) -> (Scan, usize) {
    let mut header = Header::new(Duration::from_secs(10), first);
    for read in reads {
        match header.scan(read, limits) {
            Scan::More => {}
            Scan::Complete => return (Scan::Complete, header.bytes()),
            Scan::TooLarge => return (Scan::TooLarge, 0),
        }
    }
    (Scan::More, 0)
}

/// Routes a request on a route table, both written in the input as lines of text: first the
/// request, then one line per route (at most 32), each `HOST PATH` or just `PATH` (no host: any
/// host for a route, none sent for the request). A first line starting with `!` turns
/// `merge_slashes` off. The table goes through the config loader (a table it refuses is
/// skipped), the request's path through normalisation (a refused path is skipped), then the
/// router must choose what the documented precedence chooses: the most specific host, then
/// the longest prefix of the normalised path; and the route chosen has a prefix of that path.
pub fn route(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let Some(request) = lines.next() else {
        return;
    };
    let (merge, request) = match request.strip_prefix('!') {
        Some(rest) => (false, rest),
        None => (true, request),
    };
    let (host, path) = host_and_path(request);
    let mut config = format!(
        "[server]\nmerge_slashes = {merge}\n[upstream.u]\nbackends = [{{ addr = \"127.0.0.1:9\" }}]\n"
    );
    for line in lines.take(32) {
        let (route_host, route_path) = host_and_path(line);
        config.push_str("[[route]]\nupstream = \"u\"\n");
        config.push_str(&format!("path = {}\n", toml_string(route_path)));
        if let Some(h) = route_host {
            config.push_str(&format!("host = {}\n", toml_string(h)));
        }
    }
    let Ok(config) = crate::config::parse_offline(&config, Path::new("route.toml")) else {
        return;
    };
    let path = match normalize_path(path.as_bytes(), merge) {
        Ok(None) => Cow::Borrowed(path),
        Ok(Some(p)) => match String::from_utf8(p) {
            Ok(p) => Cow::Owned(p),
            Err(_) => return,
        },
        Err(_) => return,
    };
    let router = Router::new(&config.routes);
    let chosen = router.route(host, &path);
    let why = || {
        let table: Vec<(String, &str)> = config
            .routes
            .iter()
            .map(|r| (r.host.display(), r.path.as_str()))
            .collect();
        format!("host {host:?} path {path:?} routes {table:?}")
    };
    assert_eq!(
        chosen,
        model_route(&config.routes, host, &path),
        "{}",
        why()
    );
    if let Some(i) = chosen {
        assert!(path.starts_with(&config.routes[i].path), "{}", why());
    }
}

fn host_and_path(line: &str) -> (Option<&str>, &str) {
    match line.split_once(' ') {
        Some((host, path)) => (Some(host), path),
        None => (None, line),
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The router's precedence as plainly as it can be written: exact host, then the wildcard
/// suffixes longest first, then routes without a host; in the first of them with a route whose
/// path prefixes `path`, the longest such prefix.
fn model_route(routes: &[RouteConfig], host: Option<&str>, path: &str) -> Option<usize> {
    let longest = |host_matches: &dyn Fn(&HostPattern) -> bool| {
        (0..routes.len())
            .filter(|&i| host_matches(&routes[i].host) && path.starts_with(&routes[i].path))
            .max_by_key(|&i| routes[i].path.len())
    };
    let host = host.map(|h| {
        let name = if h.starts_with('[') {
            h.find(']').map_or(h, |end| &h[..=end])
        } else {
            h.rsplit_once(':').map_or(h, |(name, _port)| name)
        };
        name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
    });
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        if let Some(i) = longest(&|p| matches!(p, HostPattern::Exact(e) if *e == host)) {
            return Some(i);
        }
        let mut suffixes: Vec<&str> = routes
            .iter()
            .filter_map(|r| match &r.host {
                HostPattern::Wildcard(s) if host.len() > s.len() && host.ends_with(s.as_str()) => {
                    Some(s.as_str())
                }
                _ => None,
            })
            .collect();
        suffixes.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for suffix in suffixes {
            if let Some(i) = longest(&|p| matches!(p, HostPattern::Wildcard(s) if s == suffix)) {
                return Some(i);
            }
        }
    }
    longest(&|p| matches!(p, HostPattern::Any))
}

/// Loads config text as `fulcrum check` does, but offline (no backend name is looked up, no
/// certificate file read), and checks what it reports: every problem is placed on a line of
/// the file (or on none), at a column within that line when the text has no `${...}` (which may
/// move columns), in order of place; a second load of the same text reports the same problems;
/// a config that loads builds the snapshot the proxy would run on.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let placed = |e: &ConfigError| {
        assert!(!e.message.is_empty(), "{e:?}");
        if e.line == 0 {
            assert_eq!(e.column, 0, "{e:?}");
            return;
        }
        assert!(e.line <= lines.len(), "{e:?} in {} lines", lines.len());
        assert!(e.column >= 1, "{e:?}");
        if !text.contains('$') {
            let width = lines[e.line - 1].chars().count();
            assert!(
                e.column <= width + 1,
                "{e:?}: line {} is {width} long",
                e.line
            );
        }
    };
    let path = Path::new("fuzz.toml");
    match crate::config::parse_offline(text, path) {
        Ok(config) => {
            config.warnings.iter().for_each(placed);
            build_snapshot(&config);
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            errors.0.iter().for_each(placed);
            let places: Vec<(bool, usize, usize)> = errors
                .0
                .iter()
                .map(|e| (e.line == 0, e.line, e.column))
                .collect();
            assert!(places.is_sorted(), "{places:?}");
            let again = crate::config::parse_offline(text, path).err();
            assert_eq!(again.as_ref(), Some(&errors), "a second load differs");
            assert!(!errors.to_string().is_empty());
        }
    }
}

/// What a reload builds from a config that loads: router, routes, upstreams and balancers.
fn build_snapshot(config: &Config) {
    let registry = crate::registry::Registry::default();
    let metrics = crate::metrics::Metrics::detached();
    let (_supervisor, handle) = crate::health::Supervisor::new();
    let snapshot = crate::snapshot::Snapshot::build(config, &registry, 1, &handle, &metrics);
    assert_eq!(snapshot.routes.len(), config.routes.len());
    assert_eq!(snapshot.upstreams.len(), config.upstreams.len());
}

/// Values that try to break out of the string they are expanded into.
const HOSTILE_VALUES: [&str; 8] = [
    "\"",
    "\\",
    "'",
    "\n[injected]\nkey = 1\n",
    "\" \n injected = \"",
    "\"\"\"",
    "''' injected = 1",
    "\u{7f}\u{1}\t\r ${NAME} $$",
];

/// Expands `${VAR}` in config text (as the loader does, before parsing) and checks: text without
/// a `$` comes back as it is; every problem's span lies in the text and starts at its `${`; and
/// no value can change the structure of the file: when the text with every variable set to
/// `x` parses as TOML, the text with every variable set to a hostile value (a quote, a newline,
/// a backslash ...) either is refused by the expansion (a literal string cannot hold it) or
/// parses into the same tables, keys and types.
pub fn expand_env(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !text.contains('$') {
        for lookup in [|_: &str| None, |_: &str| Some("x".to_owned())] {
            match env::expand(text, lookup) {
                Ok(Cow::Borrowed(out)) => assert_eq!(out, text),
                other => panic!("text without $ changed: {other:?}"),
            }
        }
        return;
    }
    if let Err(errors) = env::expand(text, |_| None) {
        for env::EnvError { span, problem } in &errors {
            assert!(span.start < span.end && span.end <= text.len(), "{span:?}");
            let at = text.get(span.clone());
            assert!(at.is_some_and(|s| s.starts_with("${")), "{span:?}: {at:?}");
            // A missing variable's place names it.
            if let env::EnvProblem::Missing { name } = problem {
                let named = at.is_some_and(|s| s.contains(name.as_str()));
                assert!(named, "{problem} at {span:?}: {at:?}");
            }
        }
    }
    let shape_with = |value: &str| {
        let out = env::expand(text, |_| Some(value.to_owned())).ok()?;
        Some(toml::from_str::<toml::Table>(&out).map(|t| shape(&toml::Value::Table(t))))
    };
    let Some(Ok(plain)) = shape_with("x") else {
        return;
    };
    for value in HOSTILE_VALUES {
        if let Some(hostile) = shape_with(value) {
            match hostile {
                Ok(hostile) => assert_eq!(hostile, plain, "value {value:?} changed the file"),
                Err(e) => panic!("value {value:?} made the file unparsable: {e}"),
            }
        }
    }
}

/// A TOML value with every string emptied and every other leaf replaced by its type.
fn shape(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(t) => {
            let fields: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{k:?}:{}", shape(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(shape).collect();
            format!("[{}]", items.join(","))
        }
        other => other.type_str().to_owned(),
    }
}

/// Writes `data` to fulcrum's listener, half-closes and reads the answer; the proxy (started
/// once per process, in-process, with echo backends behind it) must not panic, no backend may
/// get a request the proxy did not send it (smuggling), and each backend gets only normalised
/// paths of its own route. See `fuzzing::http1`.
pub fn http1(data: &[u8]) {
    http1::exchange(data);
}

/// What in a normalised path would let a backend that decodes it climb out of a prefix: a `.`
/// or `..` segment, before or after percent-decoding, an encoded '/' or '\\', or a raw '\\'.
/// Judged independently of the normaliser, so that a bug in its decoding shows.
pub(crate) fn escapes(path: &[u8]) -> Option<&'static str> {
    let upper = path.to_ascii_uppercase();
    if contains(&upper, b"%2F") || contains(&upper, b"%5C") || path.contains(&b'\\') {
        return Some("an encoded slash or a backslash");
    }
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = path
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if path[i] == b'%' => {
                decoded.push(byte);
                i += 3;
            }
            _ => {
                decoded.push(path[i]);
                i += 1;
            }
        }
    }
    let dots = |p: &[u8]| p.split(|&b| b == b'/').any(|s| s == b"." || s == b"..");
    (dots(path) || dots(&decoded)).then_some("a dot segment")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Bytes as an escaped string, for a failure message.
fn shown(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Runs the seeds (`fuzz/corpus/<target>/seed-*`, not what a run added there) and the
    /// saved crash inputs (`fuzz/regressions/<target>/*`) through `run`; each file's name is
    /// printed first, so that a failure names it.
    fn replay(target: &str, run: fn(&[u8])) {
        let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = Vec::new();
        for (kind, prefix) in [("corpus", "seed-"), ("regressions", "")] {
            if let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) {
                let paths = dir.map(|e| e.expect("a directory entry").path());
                files.extend(paths.filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                }));
            }
        }
        files.sort();
        assert!(!files.is_empty(), "no seeds for {target}");
        for file in files {
            eprintln!("{}", file.display());
            run(&std::fs::read(&file).expect("read a seed"));
        }
    }

    #[test]
    fn normalize_inputs() {
        replay("normalize", normalize);
    }

    #[test]
    fn guard_scan_inputs() {
        replay("guard_scan", guard_scan);
    }

    #[test]
    fn route_inputs() {
        replay("route", route);
    }

    #[test]
    fn check_inputs() {
        replay("check", check);
    }

    #[test]
    fn expand_env_inputs() {
        replay("expand_env", expand_env);
    }

    #[test]
    fn http1_inputs() {
        replay("http1", http1);
    }

    #[test]
    fn escapes_finds_what_a_decoding_backend_could_climb_with() {
        for ok in [
            "/",
            "/a/b/",
            "/a..b/.c/",
            "/%41/%2Bx",
            "/%252e%252e/",
            "/a%zz",
            "/%",
        ] {
            assert_eq!(escapes(ok.as_bytes()), None, "{ok}");
        }
        for (bad, why) in [
            ("/a/../b", "a dot segment"),
            ("/a/.", "a dot segment"),
            ("/a/%2e%2E/b", "a dot segment"),
            ("/a/.%2e", "a dot segment"),
            ("/a/%2E/", "a dot segment"),
            ("/a%2fb", "an encoded slash or a backslash"),
            ("/a%5Cb", "an encoded slash or a backslash"),
            ("/a\\b", "an encoded slash or a backslash"),
        ] {
            assert_eq!(escapes(bad.as_bytes()), Some(why), "{bad}");
        }
    }

    /// The model gives the router's documented answers (the cases of `router::tests`).
    #[test]
    fn the_route_model_follows_the_precedence() {
        use HostPattern::*;
        let routes = [
            crate::router::plain_route(Any, "/"),
            crate::router::plain_route(Any, "/static/"),
            crate::router::plain_route(Exact("api.example.com".into()), "/v1/"),
            crate::router::plain_route(Exact("api.example.com".into()), "/v1/admin/"),
            crate::router::plain_route(Wildcard(".example.com".into()), "/"),
            crate::router::plain_route(Wildcard(".eu.example.com".into()), "/"),
        ];
        let m = |host: Option<&str>, path: &str| model_route(&routes, host, path);
        assert_eq!(m(Some("api.example.com"), "/v1/users"), Some(2));
        assert_eq!(m(Some("API.Example.COM.:8443"), "/v1/admin/x"), Some(3));
        assert_eq!(m(Some("api.example.com"), "/other"), Some(4));
        assert_eq!(m(Some("x.eu.example.com"), "/"), Some(5));
        assert_eq!(m(Some("example.com"), "/static/a"), Some(1));
        assert_eq!(m(Some("[::1]:8080"), "/"), Some(0));
        assert_eq!(m(None, "x"), None);
    }

    /// The guard's verdicts as `scan_reads` reports them.
    #[test]
    fn scan_reads_reports_the_verdict_and_the_header_length() {
        let limits = ClientLimits {
            request_header_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            client_body_timeout: Duration::from_secs(1),
            client_body_min_rate: 512,
            send_timeout: Duration::from_secs(1),
            max_header_size: 64,
            max_headers: 3,
        };
        let get: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(scan_reads(&[get], &limits, true), (Scan::Complete, 27));
        assert_eq!(scan_reads(&[&get[..20]], &limits, true), (Scan::More, 0));
        assert_eq!(
            scan_reads(&[&[b'a'; 65]], &limits, true),
            (Scan::TooLarge, 0)
        );
    }

    /// Where a value changes the structure of a file, the shapes differ.
    #[test]
    fn shapes_tell_structure_apart() {
        let shape_of = |text: &str| shape(&toml::Value::Table(toml::from_str(text).unwrap()));
        assert_eq!(shape_of("a = \"x\""), shape_of("a = \"\\\"\""));
        assert_ne!(shape_of("a = \"x\""), shape_of("a = \"\"\nb = 1"));
        assert_ne!(shape_of("a = [\"x\"]"), shape_of("a = [\"x\", \"y\"]"));
        assert_ne!(shape_of("a = \"1\""), shape_of("a = 1"));
    }
}
