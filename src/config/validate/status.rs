//! HTTP statuses as written: a code (`502`) or a class (`"5xx"`), for a health check's
//! `expect_status` and the `failure_status` of `[upstream.NAME.outlier]` and
//! `[upstream.NAME.circuit_breaker]`.

use toml::Spanned;

use super::Checker;
use crate::config::runtime::*;
use crate::config::schema::*;

/// One status as written, or `None` (reported) when it is neither a code nor a class.
pub(super) fn status_match(
    c: &mut Checker,
    v: &Spanned<toml::Value>,
    field: &str,
) -> Option<StatusMatch> {
    let parsed = match v.get_ref() {
        toml::Value::Integer(n) if (100..=599).contains(n) => Some(StatusMatch::Code(*n as u16)),
        toml::Value::String(s) => {
            let b = s.as_bytes();
            (b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && b[1..].eq_ignore_ascii_case(b"xx"))
                .then(|| StatusMatch::Class(u16::from(b[0] - b'0')))
        }
        _ => None,
    };
    if parsed.is_none() {
        let msg = format!(
            "invalid status {}; expected a code from 100 to 599 (200) or a class (\"2xx\")",
            v.get_ref()
        );
        c.error(v.span(), field, msg);
    }
    parsed
}

/// `failure_status` of `[upstream.NAME.outlier]` or `[upstream.NAME.circuit_breaker]` (`field`
/// is the section's): codes or classes, resolved to one set; `[]` is allowed (only connect
/// errors, timeouts and broken responses count).
pub(super) fn failure_status(
    c: &mut Checker,
    list: Option<&Spanned<StatusList>>,
    field: &str,
) -> StatusSet {
    match list {
        None => StatusSet::of(&DEFAULT_FAILURE_STATUS.map(StatusMatch::Code)),
        Some(list) => {
            let matches: Vec<StatusMatch> = list
                .get_ref()
                .items(list.span(), &format!("{field}.failure_status"))
                .iter()
                .filter_map(|(v, name)| status_match(c, v, name))
                .collect();
            StatusSet::of(&matches)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, StatusSet};

    const POOL: &str =
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n";

    #[test]
    fn failure_status_takes_codes_and_classes() {
        let set = |list: &str| {
            let text = format!("{POOL}[upstream.u.outlier]\nfailure_status = {list}\n");
            let c = parse(&text, Path::new("t.toml")).expect("parses");
            c.upstreams[0].outlier.clone().expect("on").failure_status
        };
        let fives = set("[\"5xx\"]");
        assert!((500..600).all(|s| fives.contains(s)) && !fives.contains(499));
        let mixed = set("[429, \"5XX\"]");
        assert!(mixed.contains(429) && mixed.contains(500) && !mixed.contains(428));
        assert_eq!(set("[]"), StatusSet::EMPTY);
        assert_eq!(set("502"), set("[502]"), "one value is a list of one");
        assert_eq!(set("\"5xx\""), fives);
        let err = parse(
            &format!("{POOL}[upstream.u.circuit_breaker]\nfailure_status = [\"5xy\", 700]\n"),
            Path::new("t.toml"),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("upstream.u.circuit_breaker.failure_status[0]"),
            "{err}"
        );
        assert!(
            err.contains("upstream.u.circuit_breaker.failure_status[1]"),
            "{err}"
        );
    }
}
