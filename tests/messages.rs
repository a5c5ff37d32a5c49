//! Every kind of wrong type, through `fulcrum check`: each error names its file, line, column
//! and field, what the key takes in the file's words with an example, and never a Rust type.

mod support;

/// Rust's words that must never reach a user.
const RUST_WORDS: &[&str] = &[
    "u8",
    "u16",
    "u32",
    "u64",
    "usize",
    "i64",
    "f64",
    "struct",
    "Section",
    "Spanned",
    "sequence",
    "a map",
    "Vec<",
    "Option<",
    "$__serde",
    "variant",
    "wanted string or table",
];

const ROUTE: &str = "[[route]]\nupstream = \"web\"\n";
const UPSTREAM: &str = "[upstream.web]\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n";

/// `fulcrum check` on `text`: its stderr, with the file's path as `m.toml`. The check must fail.
fn refused(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    std::fs::write(&path, text).unwrap();
    let (ok, _, stderr) = support::check_file(&path, &[]);
    assert!(!ok, "passed:\n{text}");
    stderr.replace(&path.display().to_string(), "m.toml")
}

/// (what the mistake is, the file, the start of its error line, what the line must also say)
fn mistakes() -> Vec<(&'static str, String, &'static str, &'static str)> {
    vec![
        (
            "string for a whole number",
            format!("{ROUTE}rate_limit = {{ rate = \"10r/s\" }}\n{UPSTREAM}"),
            "error: m.toml:3:23: route[0].rate_limit.rate: expected a whole number",
            "e.g. rate_limit = { rate = 10, per = \"1s\" } (found the string \"10r/s\")",
        ),
        (
            "string for a whole number in [server]",
            format!("[server]\nthreads = \"two\"\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:2:11: server.threads: expected a whole number",
            "e.g. threads = 4 (found the string \"two\")",
        ),
        (
            "negative whole number",
            format!("{ROUTE}retries = -1\n{UPSTREAM}"),
            "error: m.toml:3:11: route[0].retries: expected a whole number",
            "e.g. retries = 1 (found -1, a negative number)",
        ),
        (
            "whole number for a string",
            format!("{ROUTE}[upstream.web]\nbackends = [{{ addr = 5 }}]\n"),
            "error: m.toml:4:22: upstream.web.backends[0].addr: expected HOST:PORT in quotes",
            "e.g. backends = [{ addr = \"10.0.0.5:80\" }] (found the whole number 5)",
        ),
        (
            "plain string for a backend table",
            format!("{ROUTE}[upstream.web]\nbackends = [\"10.0.0.5:80\"]\n"),
            "error: m.toml:4:13: upstream.web.backends[0]: expected a table with addr",
            "e.g. backends = [{ addr = \"10.0.0.5:80\" }] (found the string \"10.0.0.5:80\")",
        ),
        (
            "string for a list of backends",
            format!("{ROUTE}[upstream.web]\nbackends = \"10.0.0.5:80\"\n"),
            "error: m.toml:4:12: upstream.web.backends: expected a list of { addr } tables",
            "e.g. backends = [{ addr = \"10.0.0.5:80\" }",
        ),
        (
            "table for a string",
            format!("{ROUTE}host = {{ name = \"a.example.com\" }}\n{UPSTREAM}"),
            "error: m.toml:3:8: route[0].host: expected a host name in quotes",
            "e.g. host = \"app.example.com\" or host = \"*.example.com\" (found a table)",
        ),
        (
            "list for a string",
            format!("[server]\nadmin_listen = [\"127.0.0.1:9901\"]\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:2:16: server.admin_listen: expected an address IP:PORT in quotes",
            "e.g. admin_listen = \"127.0.0.1:9901\" (found a list)",
        ),
        (
            "boolean for a duration",
            format!("{ROUTE}timeout = true\n{UPSTREAM}"),
            "error: m.toml:3:11: route[0].timeout: expected a duration in quotes",
            "e.g. timeout = \"60s\" (found true)",
        ),
        (
            "whole number for a duration",
            format!("{ROUTE}{UPSTREAM}[upstream.web.health_check]\ntimeout = 3\n"),
            "error: m.toml:6:11: upstream.web.health_check.timeout: expected a duration in quotes",
            "e.g. timeout = \"1s\" (found the whole number 3)",
        ),
        (
            "string for true or false",
            format!("[server]\nh2c = \"yes\"\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:2:7: server.h2c: expected true or false",
            "e.g. h2c = true (found the string \"yes\")",
        ),
        (
            "string for a number",
            format!("{ROUTE}{UPSTREAM}[upstream.web.circuit_breaker]\nfailure_rate = \"50%\"\n"),
            "error: m.toml:6:16: upstream.web.circuit_breaker.failure_rate: expected a share above 0 and at most 1",
            "e.g. failure_rate = 0.5 (found the string \"50%\")",
        ),
        (
            "boolean for a size",
            format!("[server]\nmax_request_body = false\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:2:20: server.max_request_body: expected a size in quotes or a whole number of bytes",
            "e.g. max_request_body = \"10MiB\" (found false)",
        ),
        (
            "string for a table",
            format!("{ROUTE}rate_limit = \"10r/s\"\n{UPSTREAM}"),
            "error: m.toml:3:14: route[0].rate_limit: expected a table",
            "e.g. rate_limit = { rate = 10, per = \"1s\" } (found the string \"10r/s\")",
        ),
        (
            "a single-bracket [route]",
            format!("[route]\nupstream = \"web\"\n{UPSTREAM}"),
            "error: m.toml:1:1: route: expected a list of tables",
            "[[route]] (two brackets)",
        ),
        (
            "whole number for a list of addresses",
            format!("[server]\nlisten = 8080\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:2:10: server.listen: expected an address IP:PORT, or a list of them",
            "e.g. listen = \"0.0.0.0:8080\"",
        ),
        (
            "whole number in a list of strings",
            format!("[server]\ntrusted_proxies = [\"10.0.0.0/8\", 7]\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:2:34: server.trusted_proxies[1]: expected a CIDR or IP in quotes",
            "(found the whole number 7)",
        ),
        (
            "string for a list of tables",
            format!("[server]\ntls = \"cert.pem\"\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:2:7: server.tls: expected a list of tables",
            "[[server.tls]] with listen = \"0.0.0.0:443\"",
        ),
        (
            "whole number for a table in a list",
            format!("[[server.tls]]\nlisten = \"127.0.0.1:8443\"\ncertificates = [1]\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:3:17: server.tls[0].certificates[0]: expected a { cert, key } table",
            "certificates = [{ cert = \"site.pem\", key = \"site.key\" }] (found the whole number 1)",
        ),
        (
            "string for a whole number in an upstream with a dotted name",
            "[[route]]\nupstream = \"api.v1\"\n[upstream.\"api.v1\"]\nbackends = [{ addr = \"127.0.0.1:9001\", weight = \"2\" }]\n".to_owned(),
            "error: m.toml:4:49: upstream.api.v1.backends[0].weight: expected a whole number from 1 to 1000",
            "(found the string \"2\")",
        ),
        (
            "a required key left out",
            format!("{ROUTE}[upstream.web]\nbalance = \"random\"\n"),
            "error: m.toml:3:1: upstream.web: missing key `backends`, a list of { addr } tables",
            "add it, e.g. backends = [{ addr = \"10.0.0.5:80\" }",
        ),
        (
            "a backend without its addr",
            format!("{ROUTE}[upstream.web]\nbackends = [{{ weight = 2 }}]\n"),
            "error: m.toml:4:13: upstream.web.backends[0]: missing key `addr`, HOST:PORT in quotes",
            "add it, e.g. backends = [{ addr = \"10.0.0.5:80\" }]",
        ),
        (
            "an empty list for [server]",
            format!("server = []\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:1:10: server: expected a table, e.g. [server] above its keys",
            "(found a list)",
        ),
        (
            "a list for a rate limit, which serde would fill by position",
            format!("{ROUTE}rate_limit = [10, \"1s\", 20, \"client_ip\", true]\n{UPSTREAM}"),
            "error: m.toml:3:14: route[0].rate_limit: expected a table, e.g. rate_limit = { rate = 10",
            "(found a list)",
        ),
        (
            "a list for a backend, which serde would fill by position",
            format!("{ROUTE}[upstream.web]\nbackends = [[\"127.0.0.1:9001\", 2]]\n"),
            "error: m.toml:4:13: upstream.web.backends[0]: expected a table with addr (and weight)",
            "(found a list)",
        ),
        (
            "a list for a TLS listener, with another mistake in [server]",
            format!("[server]\nthreads = \"x\"\ntls = [[]]\n{ROUTE}{UPSTREAM}"),
            "error: m.toml:3:8: server.tls[0]: expected a table, e.g. [[server.tls]]",
            "(found a list)",
        ),
        (
            "a TOML time for a duration (toml presents it as a table)",
            format!("{ROUTE}{UPSTREAM}circuit_breaker = {{ open_duration = 00:00:30 }}\n"),
            "error: m.toml:5:37: upstream.web.circuit_breaker.open_duration: expected a duration in quotes",
            "(found a date/time (00:00:30))",
        ),
        (
            "a whole number for a balance strategy",
            format!("{ROUTE}{UPSTREAM}balance = 5\n"),
            "error: m.toml:5:11: upstream.web.balance: expected a strategy name in quotes",
            "e.g. balance = \"round_robin\" (found the whole number 5)",
        ),
        (
            "an enum's table form for a balance strategy, which toml would take",
            format!("{ROUTE}{UPSTREAM}balance = {{ random = {{}} }}\n"),
            "error: m.toml:5:11: upstream.web.balance: expected a strategy name in quotes",
            "(found a table)",
        ),
        (
            "an enum's table form for a probe kind",
            format!("{ROUTE}{UPSTREAM}health_check = {{ kind = {{ tcp = {{}} }} }}\n"),
            "error: m.toml:5:25: upstream.web.health_check.kind: expected \"http\" or \"tcp\", in quotes",
            "e.g. kind = \"http\" (found a table)",
        ),
        (
            "an empty list for a health check",
            format!("{ROUTE}{UPSTREAM}health_check = []\n"),
            "error: m.toml:5:16: upstream.web.health_check: expected a table",
            "(found a list)",
        ),
    ]
}

#[test]
fn every_kind_of_wrong_type_says_what_to_write_in_the_files_words() {
    for (kind, text, line, also) in mistakes() {
        let stderr = refused(&text);
        let found = stderr.lines().find(|l| l.starts_with(line));
        let Some(found) = found else {
            panic!("{kind}: no line starting {line:?} in:\n{stderr}");
        };
        assert!(found.contains(also), "{kind}: {also:?} not in {found:?}");
        for word in RUST_WORDS {
            assert!(
                !stderr.contains(word),
                "{kind}: Rust's {word:?} in:\n{stderr}"
            );
        }
    }
}

#[test]
fn an_unknown_value_lists_the_accepted_ones_in_the_files_words() {
    let stderr = refused(&format!(
        "{ROUTE}[upstream.web]\nbalance = \"fastest\"\nbackends = [{{ addr = \"127.0.0.1:9001\" }}]\n"
    ));
    assert!(
        stderr.contains("error: m.toml:4:11: upstream.web.balance: unknown value \"fastest\"; accepted: \"round_robin\", \"weighted_round_robin\""),
        "{stderr}"
    );
    let stderr = refused(&format!(
        "{ROUTE}{UPSTREAM}[upstream.web.health_check]\nkind = \"udp\"\n"
    ));
    assert!(
        stderr.contains("error: m.toml:6:8: upstream.web.health_check.kind: unknown value \"udp\"; accepted: \"http\", \"tcp\""),
        "{stderr}"
    );
}
