//! Reload and DNS refresh metrics, registered by the reload owner into the admin listener's
//! registry.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts};

use super::DnsRefresh;
use crate::config::Note;

pub struct ReloadMetrics {
    reloads: IntCounterVec,
    dns_refreshes: IntCounterVec,
    lookup_failures: IntCounter,
    last_success: IntGauge,
    last_timestamp: Gauge,
}

impl ReloadMetrics {
    /// Registers the reload metrics in `registry`; the config the process started with counts
    /// as a successful load at start time (not as a reload).
    pub fn register(registry: &prometheus::Registry) -> ReloadMetrics {
        let m = ReloadMetrics {
            reloads: IntCounterVec::new(
                Opts::new(
                    "fulcrum_config_reloads_total",
                    "Config reloads by result: success (the whole file is in effect) or failure (rejected, or keys only a restart changes)",
                ),
                &["result"],
            )
            .expect("valid metric"),
            dns_refreshes: IntCounterVec::new(
                Opts::new(
                    "fulcrum_dns_refreshes_total",
                    "DNS refreshes of the running config's backend names (not config reloads) by result: changed (new addresses were published), unchanged (nothing to publish; a failed lookup keeps its addresses), failure (the new addresses could not be applied, or the resolution did not finish; the previous ones keep serving)",
                ),
                &["result"],
            )
            .expect("valid metric"),
            lookup_failures: IntCounter::new(
                "fulcrum_dns_lookup_failures_total",
                "Backend host names whose lookup failed, once per host per resolution (at start, a reload or a DNS refresh); each such name kept the addresses it had, or stayed without any",
            )
            .expect("valid metric"),
            last_success: IntGauge::new(
                "fulcrum_config_last_reload_success",
                "1 if the last config load applied the whole file, 0 if not",
            )
            .expect("valid metric"),
            last_timestamp: Gauge::new(
                "fulcrum_config_last_reload_timestamp_seconds",
                "Unix time of the last config load (start or reload), successful or not",
            )
            .expect("valid metric"),
        };
        for c in [
            Box::new(m.reloads.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.dns_refreshes.clone()),
            Box::new(m.lookup_failures.clone()),
            Box::new(m.last_success.clone()),
            Box::new(m.last_timestamp.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                tracing::error!(error = %e, "cannot register reload metrics");
            }
        }
        // Both label values exist from the start, so that rate() sees the first failure.
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result]);
        }
        for result in [
            DnsRefresh::Changed,
            DnsRefresh::Unchanged,
            DnsRefresh::Failure,
        ] {
            m.dns_refreshes.with_label_values(&[result.label()]);
        }
        m.last_success.set(1);
        m.last_timestamp.set(now());
        m
    }

    /// The file again describes the running config after a failed load: the state is success,
    /// and no reload is counted (nothing was loaded).
    pub fn restored(&self) {
        self.last_success.set(1);
    }

    pub fn record(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).inc();
        self.last_success.set(i64::from(success));
        self.last_timestamp.set(now());
    }

    /// Counts the failed lookups among a resolution's `notes`: one per host, however many
    /// backends (and ports) name it, as the resolver is asked once per host.
    pub fn lookup_failures(&self, notes: &[Note]) {
        let hosts: HashSet<&str> = (notes.iter())
            .filter(|n| n.kind.is_failure())
            .map(|n| {
                n.name
                    .rsplit_once(':')
                    .map_or(n.name.as_str(), |(host, _)| host)
            })
            .collect();
        self.lookup_failures.inc_by(hosts.len() as u64);
    }

    /// Counts a DNS refresh; a reload's counters and state are left alone.
    pub fn dns_refresh(&self, result: DnsRefresh) {
        self.dns_refreshes
            .with_label_values(&[result.label()])
            .inc();
    }
}

impl DnsRefresh {
    /// The `result` label.
    fn label(self) -> &'static str {
        match self {
            DnsRefresh::Changed => "changed",
            DnsRefresh::Unchanged => "unchanged",
            DnsRefresh::Failure => "failure",
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
