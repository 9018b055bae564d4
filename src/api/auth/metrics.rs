//! `muster_auth_*`: what authentication, authorization and the write limit refused.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeniedLabels {
    api: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

/// The auth counters (labels are fixed strings: a bounded set of series).
#[derive(Default)]
pub struct AuthMetrics {
    denied: Family<DeniedLabels, Counter>,
    throttled_writes: Family<ApiLabels, Counter>,
    pub(super) rate_buckets: Gauge,
    pub(super) rate_overflow: Counter,
}

/// The (api, reason) pairs [`AuthMetrics::denied`] counts, at zero from the start.
const DENIALS: [(&str, &str); 9] = [
    ("rest", "missing"),
    ("rest", "unknown_credential"),
    ("rest", "forbidden"),
    ("cloudmap", "missing"),
    ("cloudmap", "malformed"),
    ("cloudmap", "unknown_credential"),
    ("cloudmap", "expired"),
    ("cloudmap", "signature"),
    ("cloudmap", "forbidden"),
];

impl AuthMetrics {
    /// Adds the metrics to the process's registry, under `muster_auth_`, every labelled
    /// series at zero.
    pub fn register(&self, registry: &mut Registry) {
        for (api, reason) in DENIALS {
            drop(self.denied.get_or_create(&DeniedLabels { api, reason }));
        }
        for api in ["rest", "cloudmap"] {
            drop(self.throttled_writes.get_or_create(&ApiLabels { api }));
        }
        let sub = registry.sub_registry_with_prefix("muster_auth");
        sub.register(
            "denied",
            "Requests refused by authentication or authorization, by API and reason",
            self.denied.clone(),
        );
        sub.register(
            "throttled",
            "Writes refused by the per-principal write limit, by API",
            self.throttled_writes.clone(),
        );
        sub.register(
            "rate_buckets",
            "Write-limit buckets tracked (principals and anonymous sources)",
            self.rate_buckets.clone(),
        );
        sub.register(
            "rate_overflow",
            "Writes that found the bucket table full and drew from the shared overflow bucket",
            self.rate_overflow.clone(),
        );
    }

    /// Counts a refused request; `reason` is one of the documented values.
    pub fn denied(&self, api: &'static str, reason: &'static str) {
        self.denied
            .get_or_create(&DeniedLabels { api, reason })
            .inc();
    }

    pub(super) fn throttled(&self, api: &'static str) {
        self.throttled_writes
            .get_or_create(&ApiLabels { api })
            .inc();
    }
}
