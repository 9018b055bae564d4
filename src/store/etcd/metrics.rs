//! `muster_etcd_*` metrics, and the status line `/healthz?verbose` prints from them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

fn request_histogram() -> Histogram {
    // 0.25 ms to ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// What muster sees of etcd: latency, errors, how far this replica has applied.
pub struct EtcdMetrics {
    requests: Family<OperationLabels, Histogram, fn() -> Histogram>,
    errors: Family<OperationLabels, Counter>,
    pub(super) conflicts: Counter,
    /// The newest etcd revision seen (commits, watch responses, loads).
    revision: Gauge,
    /// The revision of the last change this replica applied.
    applied: Gauge,
    lag: Gauge,
    up: Gauge,
    pub(super) reloads: Counter,
    pub(super) load_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub(super) skipped: Counter,
    members: Gauge,
    seen: AtomicI64,
    applied_at: AtomicI64,
    problem: Mutex<Option<String>>,
}

/// The operations [`Etcd::timed`](super::client::Etcd) names: their error counts are
/// served at zero from the start.
const OPERATIONS: [&str; 8] = [
    "range",
    "txn",
    "watch",
    "put",
    "lease_grant",
    "lease_keep_alive",
    "lease_revoke",
    "lease_time_to_live",
];

impl Default for EtcdMetrics {
    fn default() -> Self {
        let errors = Family::default();
        for operation in OPERATIONS {
            drop(errors.get_or_create(&OperationLabels { operation }));
        }
        Self {
            requests: Family::new_with_constructor(request_histogram),
            errors,
            conflicts: Counter::default(),
            revision: Gauge::default(),
            applied: Gauge::default(),
            lag: Gauge::default(),
            up: Gauge::default(),
            reloads: Counter::default(),
            load_seconds: Gauge::default(),
            skipped: Counter::default(),
            members: Gauge::default(),
            seen: AtomicI64::new(0),
            applied_at: AtomicI64::new(0),
            problem: Mutex::new(Some("not connected yet".to_owned())),
        }
    }
}

impl EtcdMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("muster_etcd");
        sub.register(
            "request_seconds",
            "etcd requests by operation (range, txn, watch)",
            self.requests.clone(),
        );
        sub.register(
            "request_errors",
            "etcd requests that failed or timed out, by operation",
            self.errors.clone(),
        );
        sub.register(
            "conflicts",
            "Transactions whose compares failed (a concurrent write won; validated again)",
            self.conflicts.clone(),
        );
        sub.register(
            "revision",
            "Newest etcd revision seen",
            self.revision.clone(),
        );
        sub.register(
            "applied_revision",
            "Revision of the last change this replica applied (its SOA serial)",
            self.applied.clone(),
        );
        sub.register(
            "watch_lag_revisions",
            "Revisions etcd is known to have that this replica has not applied",
            self.lag.clone(),
        );
        sub.register(
            "up",
            "1 while etcd answers and the watch runs",
            self.up.clone(),
        );
        sub.register(
            "reloads",
            "Full reads of the prefix (start, compacted watch)",
            self.reloads.clone(),
        );
        sub.register(
            "load_seconds",
            "How long the last full read of the prefix took",
            self.load_seconds.clone(),
        );
        sub.register(
            "skipped_records",
            "Records not applied (undecodable, naming what this replica lacks, health settings out of bounds)",
            self.skipped.clone(),
        );
        sub.register(
            "members",
            "Live replicas on the prefix as this one sees them (0 while it is not a member)",
            self.members.clone(),
        );
    }

    pub(super) fn set_members(&self, count: usize) {
        self.members.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(super) fn observe_request(&self, operation: &'static str, took: Duration, ok: bool) {
        let labels = OperationLabels { operation };
        self.requests
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.errors.get_or_create(&labels).inc();
        }
    }

    /// A record that was not applied (it names what this replica lacks).
    pub fn count_skipped(&self) {
        self.skipped.inc();
    }

    /// A revision etcd reported.
    pub fn observe_revision(&self, revision: i64) {
        let seen = self
            .seen
            .fetch_max(revision, Ordering::Relaxed)
            .max(revision);
        self.revision.set(seen);
        self.update_lag();
    }

    /// The registry applied changes up to `revision`.
    pub fn observe_applied(&self, revision: i64) {
        self.applied_at.store(revision, Ordering::Relaxed);
        self.applied.set(revision);
        self.observe_revision(revision);
    }

    fn update_lag(&self) {
        let lag = self.seen.load(Ordering::Relaxed) - self.applied_at.load(Ordering::Relaxed);
        self.lag.set(lag.max(0));
    }

    /// etcd answers again, or does not (`problem` says why).
    pub fn set_reachable(&self, problem: Option<String>) {
        self.up.set(i64::from(problem.is_none()));
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    /// Whether the watch is connected: a write waiting on it while it is not wakes it.
    pub fn reachable(&self) -> bool {
        self.up.get() == 1
    }

    /// One line for `/healthz?verbose`.
    pub fn status(&self) -> String {
        let applied = self.applied_at.load(Ordering::Relaxed);
        let behind = (self.seen.load(Ordering::Relaxed) - applied).max(0);
        match &*self.problem.lock().unwrap_or_else(|e| e.into_inner()) {
            None => format!("etcd: reachable; applied revision {applied}, {behind} behind"),
            Some(problem) => format!(
                "etcd: unreachable ({problem}); DNS serves revision {applied}, at least {behind} behind"
            ),
        }
    }
}
