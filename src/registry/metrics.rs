//! `muster_registry_*` metrics, read from the snapshot when `/metrics` is scraped (not
//! per change).

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::snapshot::Snapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    namespace: String,
    health: &'static str,
}

/// `muster_registry_*` gauges, read from the snapshot when scraped (not per change).
#[derive(Default)]
pub struct RegistryMetrics {
    revision: Gauge,
    instances: Family<InstanceLabels, Gauge>,
    services: Family<NamespaceLabels, Gauge>,
    /// The namespaces the families have series for.
    observed: Mutex<BTreeSet<String>>,
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
    }

    /// Sets the gauges from `snapshot`. Series of namespaces that no longer exist go:
    /// without that, creating and deleting namespaces grew `/metrics` without bound.
    pub fn observe(&self, snapshot: &Snapshot) {
        self.revision.set(snapshot.revision as i64);
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        for gone in observed.iter().filter(|n| snapshot.namespace(n).is_none()) {
            for health in ["healthy", "unhealthy"] {
                self.instances.remove(&InstanceLabels {
                    namespace: gone.clone(),
                    health,
                });
            }
            self.services.remove(&NamespaceLabels {
                namespace: gone.clone(),
            });
        }
        observed.clear();
        observed.extend(snapshot.namespaces.keys().cloned());
        for (name, namespace) in &snapshot.namespaces {
            let healthy: usize = namespace.services.values().map(|s| s.healthy_count()).sum();
            let total = namespace.instance_count();
            let labels = |health| InstanceLabels {
                namespace: name.clone(),
                health,
            };
            self.instances
                .get_or_create(&labels("healthy"))
                .set(healthy as i64);
            self.instances
                .get_or_create(&labels("unhealthy"))
                .set((total - healthy) as i64);
            let namespace_labels = NamespaceLabels {
                namespace: name.clone(),
            };
            self.services
                .get_or_create(&namespace_labels)
                .set(namespace.services.len() as i64);
        }
    }
}
