//! What each key takes, in the file's words, with a line to copy: the text of a type error.
//!
//! serde names what it expected in Rust's terms ("expected u32", "expected struct
//! BackendSection", "a sequence"). When a value has the wrong type or an impossible value, the
//! message says instead what the key takes and how to write it, and what was found:
//!
//! ```text
//! route[0].rate_limit.rate: expected a whole number of requests per `per`, e.g.
//!     rate_limit = { rate = 10, per = "1s" } (found the string "10r/s")
//! ```
//!
//! What was found is taken from the parsed file, by the value's type
//! ([`super::sections::found_at`]). [`Problem::read`] is the one place that reads serde's
//! text, for what toml's errors carry nowhere else: whether a message is about a value (or a
//! missing key, and its name) at all. serde's words for what was found are a fallback, for a
//! path the parsed file does not lead to.

use super::error::Kind;

/// A key path pattern (`[]` for any list index, `*` for an upstream's name), what the key
/// takes, and an example of it as written in the file.
pub(super) const FORMS: &[(&str, &str, &str)] = &[
    // The file's sections.
    ("server", "a table", "[server] above its keys, such as listen = \"0.0.0.0:8080\""),
    ("route", "a list of tables", "[[route]] (two brackets) above each route's keys, such as upstream = \"web\""),
    ("route[]", "a table", "[[route]] with upstream = \"web\""),
    ("upstream", "a table of upstreams", "[upstream.web] with backends = [{ addr = \"10.0.0.5:80\" }]"),
    ("upstream.*", "a table", "[upstream.web] with backends = [{ addr = \"10.0.0.5:80\" }]"),
    // [server]
    ("server.listen", "an address IP:PORT, or a list of them", "listen = \"0.0.0.0:8080\" or listen = [\"0.0.0.0:80\", \"[::]:80\"]"),
    ("server.listen[]", "an address IP:PORT in quotes", "listen = [\"0.0.0.0:8080\"]"),
    ("server.threads", "a whole number of worker threads", "threads = 4"),
    ("server.admin_listen", "an address IP:PORT in quotes", "admin_listen = \"127.0.0.1:9901\""),
    ("server.trusted_proxies", "a CIDR or IP in quotes, or a list of them", "trusted_proxies = [\"10.0.0.0/8\", \"192.168.1.7\"]"),
    ("server.trusted_proxies[]", "a CIDR or IP in quotes", "trusted_proxies = [\"10.0.0.0/8\"]"),
    ("server.grace_period", "a duration in quotes", "grace_period = \"10s\""),
    ("server.max_request_body", "a size in quotes or a whole number of bytes", "max_request_body = \"10MiB\""),
    ("server.log_level", "a log level or filter in quotes", "log_level = \"info\""),
    ("server.upgrade_sock", "an absolute path in quotes", "upgrade_sock = \"/run/fulcrum/upgrade.sock\""),
    ("server.access_log", "\"stdout\", \"stderr\", \"off\" or a file path, in quotes", "access_log = \"/var/log/fulcrum/access.log\""),
    ("server.access_log_format", "\"json\" or \"combined\"", "access_log_format = \"json\""),
    ("server.access_log_query", "true or false", "access_log_query = true"),
    ("server.request_header_timeout", "a duration in quotes", "request_header_timeout = \"10s\""),
    ("server.keepalive_timeout", "a duration in quotes", "keepalive_timeout = \"75s\""),
    ("server.client_body_timeout", "a duration in quotes", "client_body_timeout = \"60s\""),
    ("server.client_body_min_rate", "a size per second in quotes or a whole number of bytes", "client_body_min_rate = \"512B\""),
    ("server.send_timeout", "a duration in quotes", "send_timeout = \"60s\""),
    ("server.max_header_size", "a size in quotes or a whole number of bytes", "max_header_size = \"32KiB\""),
    ("server.max_headers", "a whole number of header lines", "max_headers = 100"),
    ("server.max_connections", "a whole number of connections", "max_connections = 16384"),
    ("server.merge_slashes", "true or false", "merge_slashes = true"),
    ("server.tls", "a list of tables", "[[server.tls]] with listen = \"0.0.0.0:443\" and certificates = [{ cert = \"site.pem\", key = \"site.key\" }]"),
    ("server.tls[]", "a table", "[[server.tls]] with listen = \"0.0.0.0:443\" and certificates = [{ cert = \"site.pem\", key = \"site.key\" }]"),
    ("server.redirect_http_to_https", "true or false", "redirect_http_to_https = true"),
    ("server.h2c", "true or false", "h2c = true"),
    ("server.max_config_size", "a size in quotes or a whole number of bytes", "max_config_size = \"64MiB\""),
    // [[server.tls]]
    ("server.tls[].listen", "an address IP:PORT in quotes", "listen = \"0.0.0.0:443\""),
    ("server.tls[].certificates", "a list of { cert, key } tables", "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]"),
    ("server.tls[].certificates[]", "a { cert, key } table", "certificates = [{ cert = \"site.pem\", key = \"site.key\" }]"),
    ("server.tls[].certificates[].cert", "a file path in quotes", "cert = \"site.pem\""),
    ("server.tls[].certificates[].key", "a file path in quotes", "key = \"site.key\""),
    ("server.tls[].default_certificate", "the cert path of one of the certificates, in quotes", "default_certificate = \"site.pem\""),
    ("server.tls[].http2", "true or false", "http2 = true"),
    ("server.tls[].min_version", "\"1.2\" or \"1.3\", in quotes", "min_version = \"1.2\""),
    // [[route]]
    ("route[].name", "a name in quotes", "name = \"api\""),
    ("route[].host", "a host name in quotes", "host = \"app.example.com\" or host = \"*.example.com\""),
    ("route[].path", "a path prefix in quotes", "path = \"/api/\""),
    ("route[].strip_prefix", "true or false", "strip_prefix = true"),
    ("route[].host_rewrite", "a host in quotes", "host_rewrite = \"api.internal\""),
    ("route[].upstream", "the name of an [upstream.NAME] table, in quotes", "upstream = \"web\""),
    ("route[].retries", "a whole number of retries", "retries = 1"),
    ("route[].timeout", "a duration in quotes", "timeout = \"60s\""),
    ("route[].upgrade_idle_timeout", "a duration in quotes", "upgrade_idle_timeout = \"1h\""),
    ("route[].rate_limit", "a table", "rate_limit = { rate = 10, per = \"1s\" }"),
    ("route[].rate_limit.rate", "a whole number of requests per `per`", "rate_limit = { rate = 10, per = \"1s\" }"),
    ("route[].rate_limit.per", "a duration in quotes", "rate_limit = { rate = 10, per = \"1s\" }"),
    ("route[].rate_limit.burst", "a whole number of requests", "rate_limit = { rate = 10, per = \"1s\", burst = 20 }"),
    ("route[].rate_limit.key", "\"client_ip\", \"header:NAME\" or \"global\", in quotes", "rate_limit = { rate = 10, key = \"client_ip\" }"),
    ("route[].rate_limit.headers", "true or false", "rate_limit = { rate = 10, headers = false }"),
    // [upstream.NAME]
    ("upstream.*.balance", "a strategy name in quotes", "balance = \"round_robin\""),
    ("upstream.*.backends", "a list of { addr } tables", "backends = [{ addr = \"10.0.0.5:80\" }, { addr = \"10.0.0.6:80\", weight = 2 }]"),
    ("upstream.*.backends[]", "a table with addr (and weight), not a bare address", "backends = [{ addr = \"10.0.0.5:80\" }]"),
    ("upstream.*.backends[].addr", "HOST:PORT in quotes", "backends = [{ addr = \"10.0.0.5:80\" }]"),
    ("upstream.*.backends[].weight", "a whole number from 1 to 1000", "backends = [{ addr = \"10.0.0.5:80\", weight = 2 }]"),
    ("upstream.*.hash_key", "\"header:NAME\", \"cookie:NAME\", \"query:NAME\", \"path\" or \"client_ip\", in quotes", "hash_key = \"cookie:session\""),
    ("upstream.*.hash_balance_factor", "a number from 1.0 to 10.0", "hash_balance_factor = 1.25"),
    ("upstream.*.connect_timeout", "a duration in quotes", "connect_timeout = \"5s\""),
    ("upstream.*.read_timeout", "a duration in quotes", "read_timeout = \"60s\""),
    ("upstream.*.write_timeout", "a duration in quotes", "write_timeout = \"60s\""),
    ("upstream.*.idle_timeout", "a duration in quotes", "idle_timeout = \"60s\""),
    ("upstream.*.panic_threshold", "a whole number of percent, 0 to 100", "panic_threshold = 50"),
    ("upstream.*.health_check", "a table", "[upstream.web.health_check] with path = \"/healthz\""),
    ("upstream.*.outlier", "a table", "[upstream.web.outlier] with consecutive_failures = 5"),
    ("upstream.*.circuit_breaker", "a table", "[upstream.web.circuit_breaker] with consecutive_failures = 5"),
    ("upstream.*.max_inflight", "a whole number of requests", "max_inflight = 1000"),
    ("upstream.*.dns_refresh", "a duration in quotes", "dns_refresh = \"30s\""),
    ("upstream.*.tls", "true or false", "tls = true"),
    ("upstream.*.sni", "a host name in quotes", "sni = \"api.example.com\""),
    ("upstream.*.ca_file", "a file path in quotes", "ca_file = \"internal-ca.pem\""),
    ("upstream.*.insecure_skip_verify", "true or false", "insecure_skip_verify = false"),
    // [upstream.NAME.health_check]
    ("upstream.*.health_check.kind", "\"http\" or \"tcp\", in quotes", "kind = \"http\""),
    ("upstream.*.health_check.path", "a path in quotes", "path = \"/healthz\""),
    ("upstream.*.health_check.host", "a host in quotes", "host = \"app.internal\""),
    ("upstream.*.health_check.expect_status", "a list of status codes or classes", "expect_status = [200, \"3xx\"]"),
    ("upstream.*.health_check.interval", "a duration in quotes", "interval = \"5s\""),
    ("upstream.*.health_check.timeout", "a duration in quotes", "timeout = \"1s\""),
    ("upstream.*.health_check.jitter", "a percentage in quotes", "jitter = \"10%\""),
    ("upstream.*.health_check.healthy_threshold", "a whole number of probes", "healthy_threshold = 2"),
    ("upstream.*.health_check.unhealthy_threshold", "a whole number of probes", "unhealthy_threshold = 3"),
    // [upstream.NAME.outlier]
    ("upstream.*.outlier.enabled", "true or false (passive ejection, on by default)", "enabled = false"),
    ("upstream.*.outlier.consecutive_failures", "a whole number of failures", "consecutive_failures = 5"),
    ("upstream.*.outlier.failure_status", "a status code or a class in quotes, or a list of them", "failure_status = [502, 503, 504] or failure_status = [\"5xx\"]"),
    ("upstream.*.outlier.base_ejection", "a duration in quotes", "base_ejection = \"30s\""),
    ("upstream.*.outlier.max_ejection", "a duration in quotes", "max_ejection = \"300s\""),
    ("upstream.*.outlier.max_ejected_percent", "a whole number of percent, 0 to 100", "max_ejected_percent = 50"),
    // [upstream.NAME.circuit_breaker]
    ("upstream.*.circuit_breaker.consecutive_failures", "a whole number of failures", "consecutive_failures = 5"),
    ("upstream.*.circuit_breaker.failure_status", "a status code or a class in quotes, or a list of them", "failure_status = [502, 503, 504] or failure_status = [\"5xx\"]"),
    ("upstream.*.circuit_breaker.failure_rate", "a share above 0 and at most 1", "failure_rate = 0.5"),
    ("upstream.*.circuit_breaker.min_requests", "a whole number of requests", "min_requests = 20"),
    ("upstream.*.circuit_breaker.window", "a duration in quotes", "window = \"10s\""),
    ("upstream.*.circuit_breaker.open_duration", "a duration in quotes", "open_duration = \"30s\""),
    ("upstream.*.circuit_breaker.half_open_requests", "a whole number of requests", "half_open_requests = 3"),
];

/// A deserialization problem, read once from serde's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Problem<'a> {
    /// A value of the wrong type, or of the right type but impossible (a negative count):
    /// what was found, in serde's words (`string "x"`, `integer `5``, `map`).
    Value { found: &'a str },
    /// A required key that is not there.
    Missing { key: &'a str },
    /// A key the section does not have.
    Unknown,
    /// An unknown variant, or a message of fulcrum's own (which already says what is
    /// accepted).
    Other,
}

impl<'a> Problem<'a> {
    /// The one reading of serde's text: `invalid type: FOUND, expected ...` and
    /// `invalid value: FOUND, expected ...` are what serde writes for a wrong type or value,
    /// ``missing field `KEY` `` for a required key.
    pub(super) fn read(message: &'a str) -> Problem<'a> {
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'));
        if let Some(key) = missing {
            return Problem::Missing { key };
        }
        if message.starts_with("unknown field `") {
            return Problem::Unknown;
        }
        let rest = message
            .strip_prefix("invalid type: ")
            .or_else(|| message.strip_prefix("invalid value: "));
        match rest.and_then(|r| r.rsplit_once(", expected ")) {
            Some((found, _)) => Problem::Value { found },
            None => Problem::Other,
        }
    }

    /// The diagnostic's kind: an unknown key, a missing one, or else a value the key cannot
    /// take (a wrong type, an unknown word, a list for a table).
    pub(super) fn kind(self) -> Kind {
        match self {
            Problem::Unknown => Kind::UnknownKey,
            Problem::Missing { .. } => Kind::MissingKey,
            Problem::Value { .. } | Problem::Other => Kind::WrongType,
        }
    }
}

/// What the key at `field` takes and an example, if the table knows it.
pub(super) fn form(field: &str) -> Option<(&'static str, &'static str)> {
    let shape = shape(field);
    FORMS
        .iter()
        .find(|(pattern, _, _)| *pattern == shape)
        .map(|&(_, form, example)| (form, example))
}

/// `field` as a [`FORMS`] pattern: list indices are `[]`, an upstream's name is `*` (a name may
/// hold dots: the keys after it are the longest tail that is a pattern's).
fn shape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut in_index = false;
    for ch in field.chars() {
        match ch {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(ch),
        }
    }
    let Some(rest) = out.strip_prefix("upstream.") else {
        return out;
    };
    // The longest tail after `upstream.NAME.` that is a known key path.
    let tails = rest.match_indices('.').map(|(i, _)| &rest[i + 1..]);
    for tail in tails {
        let candidate = format!("upstream.*.{tail}");
        if FORMS.iter().any(|(p, _, _)| *p == candidate) {
            return candidate;
        }
    }
    "upstream.*".to_owned()
}

/// serde's words for what it found, in the file's: `string "x"` → the string "x".
fn found_words(found: &str) -> String {
    let unquote = |s: &str| s.trim_matches('`').to_owned();
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the string {s}");
    }
    if let Some(n) = found.strip_prefix("integer ") {
        return format!("the whole number {}", unquote(n));
    }
    if let Some(n) = found.strip_prefix("floating point ") {
        return format!("the number {}", unquote(n));
    }
    if let Some(b) = found.strip_prefix("boolean ") {
        return unquote(b);
    }
    match found {
        "sequence" => "a list".to_owned(),
        "map" => "a table".to_owned(),
        other => other.to_owned(),
    }
}

/// The message for `message` about `field`: for a wrong type or value, what the key takes
/// and an example instead of serde's Rust names; other messages as they are. `None` when the
/// message is not about a value's type.
pub(super) fn explain(field: &str, message: &str, found_at: Option<String>) -> Option<String> {
    let found = match Problem::read(message) {
        Problem::Value { found } => found,
        Problem::Missing { key } => {
            let inner = if field.is_empty() {
                key.to_owned()
            } else {
                format!("{field}.{key}")
            };
            let (form, example) = form(&inner)?;
            return Some(format!(
                "missing key `{key}`, {form}; add it, e.g. {example}"
            ));
        }
        Problem::Unknown | Problem::Other => return None,
    };
    let found = found_at.unwrap_or_else(|| found_words(found));
    Some(match form(field) {
        Some((form, example)) => format!("expected {form}, e.g. {example} (found {found})"),
        None => {
            let expected = message.rsplit_once(", expected ").map_or("", |(_, e)| e);
            format!("expected {} (found {found})", user_words(expected))
        }
    })
}

/// serde's name for an expected type in the file's words, for a key the table does not know.
fn user_words(expected: &str) -> String {
    let number = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
    ];
    if number.contains(&expected) {
        return "a whole number".to_owned();
    }
    if expected == "f32" || expected == "f64" {
        return "a number".to_owned();
    }
    if expected.starts_with("struct ") || expected == "a map" {
        return "a table".to_owned();
    }
    match expected {
        "a sequence" => "a list".to_owned(),
        "a boolean" => "true or false".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_name_list_elements_and_upstreams_generically() {
        assert_eq!(shape("route[3].rate_limit.rate"), "route[].rate_limit.rate");
        assert_eq!(
            shape("upstream.api.v1.backends[0].addr"),
            "upstream.*.backends[].addr"
        );
        assert_eq!(shape("upstream.web"), "upstream.*");
        assert_eq!(
            shape("server.tls[1].certificates[0]"),
            "server.tls[].certificates[]"
        );
    }

    #[test]
    fn a_wrong_type_names_the_form_an_example_and_what_was_found() {
        let got = explain(
            "route[0].rate_limit.rate",
            "invalid type: string \"10r/s\", expected u32",
            None,
        );
        assert_eq!(
            got.as_deref(),
            Some("expected a whole number of requests per `per`, e.g. rate_limit = { rate = 10, per = \"1s\" } (found the string \"10r/s\")")
        );
        assert_eq!(
            explain("route[0].rate_limit.rate", "unknown field `x`", None),
            None
        );
        assert_eq!(
            explain("route[0]", "missing field `upstream`", None).as_deref(),
            Some("missing key `upstream`, the name of an [upstream.NAME] table, in quotes; add it, e.g. upstream = \"web\"")
        );
        let unknown = explain("server.new_key", "invalid type: map, expected usize", None);
        assert_eq!(
            unknown.as_deref(),
            Some("expected a whole number (found a table)")
        );
    }

    /// The keys of section `T`, as its unknown-key error lists them.
    fn keys_of<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let err = toml::from_str::<T>("zz_not_a_key = 1").unwrap_err();
        let message = err.message().to_owned();
        let list = message.split_once("expected ").map_or("", |(_, l)| l);
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_key_of_every_section_has_its_form() {
        use crate::config::schema::*;
        let sections = [
            ("", keys_of::<FileConfig>()),
            ("server.", keys_of::<ServerSection>()),
            ("server.tls[].", keys_of::<TlsListenerSection>()),
            (
                "server.tls[].certificates[].",
                keys_of::<CertificateSection>(),
            ),
            ("route[].", keys_of::<RouteSection>()),
            ("route[].rate_limit.", keys_of::<RateLimitSection>()),
            ("upstream.*.", keys_of::<UpstreamSection>()),
            ("upstream.*.backends[].", keys_of::<BackendSection>()),
            ("upstream.*.health_check.", keys_of::<HealthCheckSection>()),
            ("upstream.*.outlier.", keys_of::<OutlierSection>()),
            (
                "upstream.*.circuit_breaker.",
                keys_of::<CircuitBreakerSection>(),
            ),
        ];
        let mut keys_of_schema = Vec::new();
        for (prefix, keys) in sections {
            assert!(!keys.is_empty(), "no keys read for {prefix:?}");
            for key in keys {
                let path = format!("{prefix}{key}");
                assert!(
                    FORMS.iter().any(|(p, _, _)| *p == path),
                    "{path} has no entry in FORMS: add what it takes and an example"
                );
                keys_of_schema.push(path);
            }
        }
        // And the other way: FORMS names no key the schema lacks (`route[]`: an element of one).
        for (pattern, _, _) in FORMS {
            // `upstream.*`: one upstream, a value of `upstream`.
            let key = pattern.strip_suffix("[]").unwrap_or(pattern);
            let key = key.strip_suffix(".*").unwrap_or(key);
            assert!(
                keys_of_schema.iter().any(|k| k == key),
                "{pattern} is in FORMS but is no key of the schema"
            );
        }
    }

    #[test]
    fn every_pattern_is_unique() {
        for (i, (p, _, _)) in FORMS.iter().enumerate() {
            assert!(
                FORMS[i + 1..].iter().all(|(q, _, _)| q != p),
                "{p} is listed twice"
            );
        }
    }
}
