//! `muster_store_*` metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What the log counts; registered once per process.
#[derive(Clone)]
pub struct StoreMetrics {
    pub records: Counter,
    pub fsync: Histogram,
    pub recovered: Gauge,
    pub truncated: Gauge,
    pub write_failures: Counter,
    pub read_only: Gauge,
    pub compaction_failures: Counter,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            records: Counter::default(),
            fsync: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            recovered: Gauge::default(),
            truncated: Gauge::default(),
            write_failures: Counter::default(),
            read_only: Gauge::default(),
            compaction_failures: Counter::default(),
        }
    }
}

impl StoreMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let store = registry.sub_registry_with_prefix("muster_store");
        store.register(
            "records",
            "Changes written to the write-ahead log",
            self.records.clone(),
        );
        store.register(
            "fsync_seconds",
            "Time to write and fsync one batch",
            self.fsync.clone(),
        );
        store.register(
            "recovered_records",
            "Changes replayed at start",
            self.recovered.clone(),
        );
        store.register(
            "truncated_bytes",
            "Bytes cut from a torn log tail at start",
            self.truncated.clone(),
        );
        store.register(
            "write_failures",
            "Batches the log could not write (the disk full, an I/O error); their writes were refused",
            self.write_failures.clone(),
        );
        store.register(
            "read_only",
            "1 while the log cannot be written and API writes are refused",
            self.read_only.clone(),
        );
        store.register(
            "compaction_failures",
            "Snapshots that could not be written or did not read back; their segments were kept",
            self.compaction_failures.clone(),
        );
    }
}
