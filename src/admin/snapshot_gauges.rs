//! The gauges `/metrics` reads from the published snapshot at each scrape, so that they always
//! describe the backends and certificates that exist now (a reload leaves no series behind):
//! `fulcrum_backend_up`, `fulcrum_backend_inflight`, `fulcrum_circuit_state` (mirrors of the
//! registry's state) and `fulcrum_tls_certificate_expiry_timestamp_seconds`.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGaugeVec, Opts};

use crate::metrics::Metrics;
use crate::snapshot::SharedSnapshot;

/// Serves the backend gauges and the certificates' expiry from whatever `snapshot` holds at
/// scrape time, in `metrics`' registry.
pub fn register(metrics: &Metrics, snapshot: &SharedSnapshot) {
    metrics.add(Box::new(BackendGauges::new(Arc::clone(snapshot))));
    metrics.add(Box::new(CertificateExpiry::new(Arc::clone(snapshot))));
}

/// `fulcrum_backend_up`, `fulcrum_backend_inflight` and `fulcrum_circuit_state`, read from the
/// published snapshot at each scrape.
struct BackendGauges {
    snapshot: SharedSnapshot,
    descs: Vec<Desc>,
}

const GAUGES: [(&str, &str); 3] = [
    (
        "fulcrum_backend_up",
        "1 if the backend takes traffic (healthy and not ejected), else 0",
    ),
    (
        "fulcrum_backend_inflight",
        "Requests in flight to the backend",
    ),
    (
        "fulcrum_circuit_state",
        "Circuit breaker: 0 closed, 1 open, 2 half-open (0 without a breaker)",
    ),
];

impl BackendGauges {
    fn new(snapshot: SharedSnapshot) -> BackendGauges {
        let descs = GAUGES
            .iter()
            .map(|(name, help)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    vec!["upstream".into(), "backend".into()],
                    Default::default(),
                )
                .expect("valid metric")
            })
            .collect();
        BackendGauges { snapshot, descs }
    }
}

impl Collector for BackendGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snap = self.snapshot.load();
        let vecs: Vec<IntGaugeVec> = GAUGES
            .iter()
            .map(|(name, help)| {
                IntGaugeVec::new(Opts::new(*name, *help), &["upstream", "backend"])
                    .expect("valid metric")
            })
            .collect();
        for u in &snap.upstreams {
            for (i, b) in u.backends.iter().enumerate() {
                let labels = [u.name.as_str(), b.name.as_str()];
                vecs[0]
                    .with_label_values(&labels)
                    .set(i64::from(u.in_service(i)));
                vecs[1]
                    .with_label_values(&labels)
                    .set(i64::try_from(b.state.in_flight()).unwrap_or(i64::MAX));
                vecs[2]
                    .with_label_values(&labels)
                    .set(i64::from(u.circuit(i).code()));
            }
        }
        vecs.iter().flat_map(|v| v.collect()).collect()
    }
}

const EXPIRY: (&str, &str) = (
    "fulcrum_tls_certificate_expiry_timestamp_seconds",
    "When the certificates the TLS listeners serve expire (notAfter, Unix seconds), by first name; of two with one name, the sooner",
);

/// `fulcrum_tls_certificate_expiry_timestamp_seconds`, read from the snapshot at scrape time (so
/// a reload that replaces a certificate leaves no series behind).
struct CertificateExpiry {
    snapshot: SharedSnapshot,
    desc: Desc,
}

impl CertificateExpiry {
    fn new(snapshot: SharedSnapshot) -> CertificateExpiry {
        let (name, help) = EXPIRY;
        let desc = Desc::new(
            name.to_owned(),
            help.to_owned(),
            vec!["name".into()],
            Default::default(),
        )
        .expect("valid metric");
        CertificateExpiry { snapshot, desc }
    }
}

impl Collector for CertificateExpiry {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snap = self.snapshot.load();
        let (name, help) = EXPIRY;
        let vec = IntGaugeVec::new(Opts::new(name, help), &["name"]).expect("valid metric");
        // Two certificates known by one name (on two listeners, say): the one that expires
        // first, which is what an expiry alert is for.
        let mut soonest: HashMap<String, i64> = HashMap::new();
        for c in snap.tls.iter().flat_map(|set| &set.certificates) {
            let at = soonest.entry(c.label()).or_insert(c.not_after);
            *at = (*at).min(c.not_after);
        }
        for (name, at) in soonest {
            vec.with_label_values(&[name.as_str()]).set(at);
        }
        vec.collect()
    }
}
