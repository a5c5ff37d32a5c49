//! `[[route]].rate_limit`, `[upstream.NAME.circuit_breaker]` and `[upstream.NAME].max_inflight`:
//! what protects backends from clients and clients from failing backends.

use std::time::Duration;

use toml::Spanned;

use super::status::failure_status;
use super::{nonzero_count, positive, Checker};
use crate::config::runtime::*;
use crate::config::schema::*;

/// The longest a bucket may take to fill from empty: far below the ~584 years of u64
/// nanoseconds that governor's arithmetic can hold.
const MAX_RATE_FILL: Duration = Duration::from_secs(100 * 31_557_600);

/// `rate_limit = { rate, per, burst, key, headers }` of route `field`.
pub(super) fn rate_limit(
    c: &mut Checker,
    field: &str,
    r: &Spanned<RateLimitSection>,
) -> Option<RateLimitConfig> {
    let field = format!("{field}.rate_limit");
    let l = r.get_ref();
    let errors = c.errors.len();
    let rate = nonzero_count(c, Some(&l.rate), format!("{field}.rate"), 1);
    let per = match &l.per {
        None => DEFAULT_RATE_PER,
        Some(p) => {
            let d = p.get_ref().0;
            if d.is_zero() || d.subsec_nanos() != 0 {
                let msg = format!("per must be a whole number of seconds, e.g. \"1s\" or \"1m\" (got {d:?}); for 10 requests per 100ms write rate = 100, per = \"1s\"");
                c.error(p.span(), format!("{field}.per"), msg);
            }
            d
        }
    };
    let burst = nonzero_count(c, l.burst.as_ref(), format!("{field}.burst"), rate);
    if per.as_nanos() < u128::from(rate) {
        let msg = format!(
            "rate = {rate} per {} is more than one request per nanosecond; the most is 1000000000 per second",
            humantime::format_duration(per)
        );
        c.error(l.rate.span(), format!("{field}.rate"), msg);
    }
    // governor keeps the time a bucket takes to fill (burst × per / rate) in u64 nanoseconds.
    let fill = per.as_nanos() / u128::from(rate.max(1)) * u128::from(burst);
    if fill > MAX_RATE_FILL.as_nanos() {
        let span = l.burst.as_ref().map_or(l.rate.span(), |b| b.span());
        let msg = format!(
            "burst = {burst} at rate = {rate} per {} takes {} to fill; the most is {} (lower burst or per)",
            humantime::format_duration(per),
            humantime::format_duration(Duration::from_secs((fill / 1_000_000_000) as u64)),
            humantime::format_duration(MAX_RATE_FILL),
        );
        c.error(span, format!("{field}.burst"), msg);
    }
    let key = match &l.key {
        None => RateKey::ClientIp,
        Some(k) => match RateKey::parse(k.get_ref()) {
            Ok(key) => key,
            Err(msg) => {
                c.error(k.span(), format!("{field}.key"), msg);
                RateKey::Global
            }
        },
    };
    (c.errors.len() == errors).then_some(RateLimitConfig {
        quota: RateQuota { rate, per, burst },
        key,
        headers: l.headers.unwrap_or(true),
    })
}

/// `[upstream.NAME.circuit_breaker]` of upstream `field`.
pub(super) fn circuit_breaker(
    c: &mut Checker,
    field: &str,
    section: &Spanned<CircuitBreakerSection>,
) -> BreakerConfig {
    let field = format!("{field}.circuit_breaker");
    let b = section.get_ref();
    let consecutive_failures = b
        .consecutive_failures
        .as_ref()
        .map_or(DEFAULT_BREAKER_CONSECUTIVE_FAILURES, |n| *n.get_ref());
    let failure_rate = b.failure_rate.as_ref().and_then(|r| {
        let v = *r.get_ref();
        if v > 0.0 && v <= 1.0 {
            Some(v)
        } else {
            let msg = format!(
                "failure_rate must be a share above 0 and at most 1, e.g. 0.5 for 50 % (got {v})"
            );
            c.error(r.span(), format!("{field}.failure_rate"), msg);
            None
        }
    });
    if consecutive_failures == 0 && b.failure_rate.is_none() {
        let span = b.consecutive_failures.as_ref().map(|n| n.span());
        let msg = "consecutive_failures = 0 and no failure_rate: the breaker could never trip; set either";
        c.error(
            span.unwrap_or_else(|| section.span()),
            format!("{field}.consecutive_failures"),
            msg,
        );
    }
    let half_open_requests = nonzero_count(
        c,
        b.half_open_requests.as_ref(),
        format!("{field}.half_open_requests"),
        DEFAULT_BREAKER_HALF_OPEN_REQUESTS,
    );
    if let Some(h) = b
        .half_open_requests
        .as_ref()
        .filter(|h| *h.get_ref() > MAX_BREAKER_HALF_OPEN_REQUESTS)
    {
        let msg = format!(
            "half_open_requests must be at most {MAX_BREAKER_HALF_OPEN_REQUESTS} (got {})",
            h.get_ref()
        );
        c.error(h.span(), format!("{field}.half_open_requests"), msg);
    }
    BreakerConfig {
        consecutive_failures,
        failure_rate,
        min_requests: nonzero_count(
            c,
            b.min_requests.as_ref(),
            format!("{field}.min_requests"),
            DEFAULT_BREAKER_MIN_REQUESTS,
        ),
        window: positive(
            c,
            &b.window,
            format!("{field}.window"),
            DEFAULT_BREAKER_WINDOW,
        ),
        open_duration: positive(
            c,
            &b.open_duration,
            format!("{field}.open_duration"),
            DEFAULT_BREAKER_OPEN_DURATION,
        ),
        half_open_requests: half_open_requests.min(MAX_BREAKER_HALF_OPEN_REQUESTS),
        failure_status: failure_status(c, b.failure_status.as_ref(), &field),
    }
}
