//! `[upstream.NAME.health_check]` (active probes) and `[upstream.NAME.outlier]` (passive
//! ejection).

use super::host::url_host_header;
use super::status::{failure_status, status_match};
use super::{nonzero_count, percent, positive, Checker};
use crate::config::runtime::*;
use crate::config::schema::*;

pub(super) fn health_check(
    c: &mut Checker,
    upstream: &str,
    h: &HealthCheckSection,
) -> HealthCheckConfig {
    let field = format!("{upstream}.health_check");
    let kind = h.kind.unwrap_or_default();
    if kind == ProbeKind::Tcp {
        let http_only = [
            ("path", h.path.as_ref().map(|p| p.span())),
            ("host", h.host.as_ref().map(|p| p.span())),
            ("expect_status", h.expect_status.as_ref().map(|p| p.span())),
        ];
        for (key, span) in http_only {
            if let Some(span) = span {
                c.error(span, format!("{field}.{key}"), format!("{key} applies only to kind = \"http\" (a tcp check only opens a connection)"));
            }
        }
    }
    let path = match &h.path {
        Some(p) if !p.get_ref().starts_with('/') => {
            let msg = format!(
                "path \"{}\" must start with \"/\", e.g. \"/healthz\"",
                p.get_ref()
            );
            c.error(p.span(), format!("{field}.path"), msg);
            DEFAULT_HEALTH_PATH.to_owned()
        }
        Some(p) => p.get_ref().clone(),
        None => DEFAULT_HEALTH_PATH.to_owned(),
    };
    let expect_status = match &h.expect_status {
        None => vec![StatusMatch::Class(2)],
        Some(list) => {
            if list.get_ref().is_empty() {
                c.error(
                    list.span(),
                    format!("{field}.expect_status"),
                    "needs at least one status, e.g. [200] or [\"2xx\"]",
                );
            }
            list.get_ref()
                .iter()
                .enumerate()
                .filter_map(|(i, v)| status_match(c, v, &format!("{field}.expect_status[{i}]")))
                .collect()
        }
    };
    let jitter = match &h.jitter {
        None => DEFAULT_HEALTH_JITTER,
        Some(j) => {
            let parsed = j
                .get_ref()
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<u32>().ok());
            match parsed {
                Some(p) if p <= MAX_HEALTH_JITTER => p,
                _ => {
                    let msg = format!("invalid jitter \"{}\"; expected a percentage of the interval from \"0%\" to \"{MAX_HEALTH_JITTER}%\"", j.get_ref());
                    c.error(j.span(), format!("{field}.jitter"), msg);
                    0
                }
            }
        }
    };
    let interval = positive(
        c,
        &h.interval,
        format!("{field}.interval"),
        DEFAULT_HEALTH_INTERVAL,
    );
    let timeout = positive(
        c,
        &h.timeout,
        format!("{field}.timeout"),
        DEFAULT_HEALTH_TIMEOUT,
    );
    // Pointed at the timeout if it is written, else at the interval (the defaults never meet
    // this, so one of the two is).
    let written = (h.timeout.as_ref().map(|t| ("timeout", t)))
        .or_else(|| h.interval.as_ref().map(|i| ("interval", i)));
    if let Some((key, written)) = written.filter(|_| timeout >= interval) {
        let msg = format!(
            "timeout ({timeout:?}) is not shorter than interval ({interval:?}): a slow backend is probed again before the last probe ended"
        );
        c.warn(written.span(), format!("{field}.{key}"), msg);
    }
    HealthCheckConfig {
        kind,
        path,
        host: h.host.as_ref().and_then(|h| {
            let url = url_host_header(h.get_ref().trim(), "host");
            match url {
                Some(msg) => {
                    c.error(h.span(), format!("{field}.host"), msg);
                    None
                }
                None => Some(h.get_ref().clone()),
            }
        }),
        expect_status,
        interval,
        timeout,
        jitter: f64::from(jitter) / 100.0,
        healthy_threshold: nonzero_count(
            c,
            h.healthy_threshold.as_ref(),
            format!("{field}.healthy_threshold"),
            DEFAULT_HEALTHY_THRESHOLD,
        ),
        unhealthy_threshold: nonzero_count(
            c,
            h.unhealthy_threshold.as_ref(),
            format!("{field}.unhealthy_threshold"),
            DEFAULT_UNHEALTHY_THRESHOLD,
        ),
    }
}

/// `[upstream.NAME.outlier]`, also when absent (passive ejection is on by default): `None` for
/// `enabled = false`. Without the table only connection-level failures count (connect errors,
/// timeouts, broken responses: nginx's `max_fails`); a written table's `failure_status`
/// defaults to [`DEFAULT_FAILURE_STATUS`]. With `enabled = false` the other keys are still
/// checked (an error stays an error), then each written one gets a warning that it is moot.
pub(super) fn outlier(
    c: &mut Checker,
    upstream: &str,
    section: Option<&OutlierSection>,
) -> Option<OutlierConfig> {
    let empty = OutlierSection::default();
    let o = section.unwrap_or(&empty);
    let field = format!("{upstream}.outlier");
    let base = positive(
        c,
        &o.base_ejection,
        format!("{field}.base_ejection"),
        DEFAULT_BASE_EJECTION,
    );
    let max = positive(
        c,
        &o.max_ejection,
        format!("{field}.max_ejection"),
        DEFAULT_MAX_EJECTION.max(base),
    );
    if let Some(m) = o.max_ejection.as_ref().filter(|_| max < base) {
        let msg = format!("max_ejection ({max:?}) is shorter than base_ejection ({base:?}); it caps every ejection, so it must be at least as long");
        c.error(m.span(), format!("{field}.max_ejection"), msg);
    }
    let config = OutlierConfig {
        consecutive_failures: nonzero_count(
            c,
            o.consecutive_failures.as_ref(),
            format!("{field}.consecutive_failures"),
            DEFAULT_CONSECUTIVE_FAILURES,
        ),
        base_ejection: base,
        max_ejection: max,
        max_ejected_percent: o
            .max_ejected_percent
            .as_ref()
            .map_or(DEFAULT_MAX_EJECTED_PERCENT, |p| {
                percent(c, p, &format!("{field}.max_ejected_percent"), 100)
            }),
        failure_status: match section {
            None => StatusSet::EMPTY,
            Some(_) => failure_status(c, o.failure_status.as_ref(), &field),
        },
    };
    if o.enabled != Some(false) {
        return Some(config);
    }
    let written = [
        (
            "consecutive_failures",
            o.consecutive_failures.as_ref().map(|v| v.span()),
        ),
        ("base_ejection", o.base_ejection.as_ref().map(|v| v.span())),
        ("max_ejection", o.max_ejection.as_ref().map(|v| v.span())),
        (
            "max_ejected_percent",
            o.max_ejected_percent.as_ref().map(|v| v.span()),
        ),
        (
            "failure_status",
            o.failure_status.as_ref().map(|v| v.span()),
        ),
    ];
    for (key, span) in written {
        if let Some(span) = span {
            let msg = format!("{key} has no effect with enabled = false (passive ejection is off); remove it, or remove enabled = false");
            c.warn(span, format!("{field}.{key}"), msg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse, OutlierConfig, StatusSet};

    const POOL: &str =
        "[[route]]\nupstream = \"u\"\n[upstream.u]\nbackends = [{ addr = \"127.0.0.1:9001\" }]\n";

    fn outlier(extra: &str) -> Option<OutlierConfig> {
        let c = parse(&format!("{POOL}{extra}"), Path::new("t.toml")).expect("parses");
        c.upstreams[0].outlier.clone()
    }

    #[test]
    fn passive_ejection_is_on_by_default_and_off_when_disabled() {
        let o = outlier("").expect("on without a section");
        assert_eq!(o.consecutive_failures, DEFAULT_CONSECUTIVE_FAILURES);
        assert_eq!(o.base_ejection, DEFAULT_BASE_EJECTION);
        assert_eq!(
            o.failure_status,
            StatusSet::EMPTY,
            "by default only connection-level failures eject"
        );
        let gateway = outlier("[upstream.u.outlier]\n").unwrap().failure_status;
        assert!(gateway.contains(502) && gateway.contains(503) && gateway.contains(504));
        assert!(!gateway.contains(500) && !gateway.contains(501));
        assert_eq!(
            outlier("[upstream.u.outlier]\nconsecutive_failures = 2\n")
                .unwrap()
                .consecutive_failures,
            2
        );
        assert_eq!(outlier("[upstream.u.outlier]\nenabled = false\n"), None);
        let c = parse(
            &format!("{POOL}[upstream.u.outlier]\nenabled = false\nbase_ejection = \"1s\"\n"),
            Path::new("t.toml"),
        )
        .expect("a warning, not an error");
        let warnings: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("upstream.u.outlier.base_ejection")
                    && w.contains("no effect with enabled = false")),
            "{warnings:?}"
        );
    }

    #[test]
    fn enabled_false_still_checks_the_other_keys() {
        let err = parse(
            &format!("{POOL}[upstream.u.outlier]\nenabled = false\nfailure_status = [\"5xy\"]\nbase_ejection = \"10s\"\nmax_ejection = \"1s\"\n"),
            Path::new("t.toml"),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("upstream.u.outlier.failure_status[0]"),
            "{err}"
        );
        assert!(err.contains("upstream.u.outlier.max_ejection"), "{err}");
    }
}
