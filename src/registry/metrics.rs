//! `muster_registry_*` metrics: gauges read from the snapshot when `/metrics` is scraped
//! (not per change), and the change → DNS lag the writer observes once per published
//! change.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::change::Change;
use super::snapshot::Snapshot;
use crate::logging::LabelText;

/// The causes `muster_registry_publish_lag_seconds{cause}` tells apart: a fixed set, so
/// the label is bounded whatever clients send.
pub const CAUSES: [&str; 6] = [
    "api",
    "file",
    "ecs",
    "dns_update",
    "health_check",
    "heartbeat_expiry",
];

/// The lag's buckets: 100 µs (an in-memory apply and publish) to 10 s (a change stuck
/// behind a slow disk or etcd).
const LAG_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

fn lag_histogram() -> Histogram {
    Histogram::new(LAG_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    namespace: LabelText,
    health: &'static str,
}

/// `muster_registry_*`: gauges read from the snapshot when scraped, and the change → DNS
/// lag histogram the writer feeds.
pub struct RegistryMetrics {
    revision: Gauge,
    instances: Family<InstanceLabels, Gauge>,
    services: Family<NamespaceLabels, Gauge>,
    /// The namespaces the families have series for.
    observed: Mutex<BTreeSet<String>>,
    /// From a change's arrival at the writer to the publish of the snapshot that holds it.
    publish_lag: Family<CauseLabels, Histogram, fn() -> Histogram>,
}

impl Default for RegistryMetrics {
    fn default() -> Self {
        let publish_lag = Family::new_with_constructor(lag_histogram as fn() -> Histogram);
        // Every cause is served from the start, at zero.
        for cause in CAUSES {
            let _ = publish_lag.get_or_create(&CauseLabels { cause });
        }
        Self {
            revision: Gauge::default(),
            instances: Family::default(),
            services: Family::default(),
            observed: Mutex::default(),
            publish_lag,
        }
    }
}

/// Why a change came (one of [`CAUSES`]): its source's kind for a source's change, the
/// health task's for a check's verdict or an expired heartbeat, else the API's (REST,
/// Cloud Map: health, drain, heartbeats, namespaces and services).
pub(super) fn cause(change: &Change) -> &'static str {
    let source = match change {
        Change::Upsert { source, .. }
        | Change::Remove { source, .. }
        | Change::Sync { source, .. }
        | Change::Batch { source, .. } => source,
        Change::CheckResult { .. } => return "health_check",
        Change::HeartbeatExpired { .. } => return "heartbeat_expiry",
        _ => return "api",
    };
    match source.as_str().split_once(':').map(|(kind, _)| kind) {
        Some("file") => "file",
        Some("ecs") => "ecs",
        Some("update") => "dns_update",
        _ => "api",
    }
}

impl RegistryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("muster_registry");
        sub.register(
            "revision",
            "Registry revision (the SOA serial of a change)",
            self.revision.clone(),
        );
        sub.register(
            "instances",
            "Registered instances, by namespace and health",
            self.instances.clone(),
        );
        sub.register("services", "Services, by namespace", self.services.clone());
        sub.register(
            "publish_lag_seconds",
            "From a change's arrival at the registry to the publish of the snapshot (and DNS zone) that serves it, by cause",
            self.publish_lag.clone(),
        );
    }

    /// Observes the lag of one change that arrived at `received` (for `cause`) and was
    /// published at `published`.
    pub(super) fn published(&self, cause: &'static str, received: Instant, published: Instant) {
        let lag = published.saturating_duration_since(received);
        self.publish_lag
            .get_or_create(&CauseLabels { cause })
            .observe(lag.as_secs_f64());
    }

    /// Sets the gauges from `snapshot`. Series of namespaces that no longer exist go:
    /// without that, creating and deleting namespaces grew `/metrics` without bound.
    pub fn observe(&self, snapshot: &Snapshot) {
        self.revision.set(snapshot.revision as i64);
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        for gone in observed.iter().filter(|n| snapshot.namespace(n).is_none()) {
            for health in ["healthy", "unhealthy"] {
                self.instances.remove(&InstanceLabels {
                    namespace: LabelText(gone.clone()),
                    health,
                });
            }
            self.services.remove(&NamespaceLabels {
                namespace: LabelText(gone.clone()),
            });
        }
        observed.clear();
        observed.extend(snapshot.namespaces.keys().cloned());
        for (name, namespace) in &snapshot.namespaces {
            let healthy: usize = namespace.services.values().map(|s| s.healthy_count()).sum();
            let total = namespace.instance_count();
            let labels = |health| InstanceLabels {
                namespace: LabelText(name.clone()),
                health,
            };
            self.instances
                .get_or_create(&labels("healthy"))
                .set(healthy as i64);
            self.instances
                .get_or_create(&labels("unhealthy"))
                .set((total - healthy) as i64);
            let namespace_labels = NamespaceLabels {
                namespace: LabelText(name.clone()),
            };
            self.services
                .get_or_create(&namespace_labels)
                .set(namespace.services.len() as i64);
        }
    }
}
