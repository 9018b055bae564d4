//! `muster_health_*` metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The label of a check result or a health transition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub result: &'static str,
}

/// `muster_health_*` metrics.
#[derive(Clone)]
pub struct HealthMetrics {
    pub(super) expired: Counter,
    pub(super) lateness: Histogram,
    pub(super) checks: Family<ResultLabels, Counter>,
    pub(super) transitions: Family<ResultLabels, Counter>,
    pub(super) owned: Gauge,
    pub(super) deregistered: Counter,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        Self {
            expired: Counter::default(),
            lateness: Histogram::new(exponential_buckets(0.000_1, 2.0, 14)),
            checks: Family::default(),
            transitions: Family::default(),
            owned: Gauge::default(),
            deregistered: Counter::default(),
        }
    }
}

impl HealthMetrics {
    /// Adds the metrics to the process's registry, under `muster_health_`, every
    /// labelled series at zero.
    pub fn register(&self, registry: &mut Registry) {
        for result in ["pass", "fail", "inconclusive"] {
            drop(self.checks.get_or_create(&ResultLabels { result }));
        }
        for result in ["healthy", "unhealthy"] {
            drop(self.transitions.get_or_create(&ResultLabels { result }));
        }
        let health = registry.sub_registry_with_prefix("muster_health");
        health.register(
            "heartbeat_expired",
            "Instances marked unhealthy by a missed heartbeat",
            self.expired.clone(),
        );
        health.register(
            "deregistered",
            "API-owned instances deregistered after being unhealthy for their deregister_after",
            self.deregistered.clone(),
        );
        health.register(
            "expiry_lateness_seconds",
            "From a heartbeat deadline to the registry applying the expiry",
            self.lateness.clone(),
        );
        health.register(
            "checks",
            "Active checks run, by result (pass, fail, inconclusive: could not run for a local reason)",
            self.checks.clone(),
        );
        health.register(
            "transitions",
            "Instances a check turned healthy or unhealthy, by result",
            self.transitions.clone(),
        );
        health.register(
            "checks_owned",
            "Active checks this replica runs (with [etcd]: its share of the instances etcd holds, and its own)",
            self.owned.clone(),
        );
    }

    /// Counts one check result.
    pub(super) fn checked(&self, result: &'static str) {
        self.checks.get_or_create(&ResultLabels { result }).inc();
    }
}
