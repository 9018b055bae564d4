//! `muster_source_*`: each source's sync state ([`super::status`]), one series per
//! configured source: `muster_source_synced{source}` (0 until its first sync, then 1) and
//! `muster_source_last_sync_timestamp_seconds{source}` (Unix time of its last sync; 0
//! before the first).

use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::logging::LabelText;
use crate::registry::SourceId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: LabelText,
}

/// The sources' gauges, set as each source syncs (not per scrape).
#[derive(Default)]
pub struct SourceMetrics {
    synced: Family<SourceLabels, Gauge>,
    last_sync: Family<SourceLabels, Gauge<f64, AtomicU64>>,
}

fn labels(id: &SourceId) -> SourceLabels {
    SourceLabels {
        source: LabelText(id.to_string()),
    }
}

impl SourceMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("muster_source");
        sub.register(
            "synced",
            "Whether a source has synced since start (1) or not yet (0)",
            self.synced.clone(),
        );
        sub.register(
            "last_sync_timestamp_seconds",
            "Unix time of a source's last successful sync (file read, ECS reconcile, etcd update); 0 before the first",
            self.last_sync.clone(),
        );
    }

    /// Serves `id` as not synced.
    pub fn not_synced(&self, id: &SourceId) {
        let labels = labels(id);
        self.synced.get_or_create(&labels).set(0);
        self.last_sync.get_or_create(&labels).set(0.0);
    }

    pub fn synced(&self, id: &SourceId, at: SystemTime) {
        let labels = labels(id);
        let seconds = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.synced.get_or_create(&labels).set(1);
        self.last_sync
            .get_or_create(&labels)
            .set(seconds.as_secs_f64());
    }

    pub fn remove(&self, id: &SourceId) {
        let labels = labels(id);
        self.synced.remove(&labels);
        self.last_sync.remove(&labels);
    }
}
