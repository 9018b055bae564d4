//! The ECS source's metrics, named `muster_ecs_*`; one set shared by every ECS source.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::mapping::Out;
use super::state::Drift;
use crate::logging::LabelText;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cluster {
    cluster: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    cluster: LabelText,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Why an event is not applied (`muster_ecs_events_ignored_total{reason}`).
pub const IGNORED: [&str; 5] = [
    "duplicate",
    "stale",
    "other_cluster",
    "other_event",
    "deferred",
];
/// The AWS operations the source calls (`muster_ecs_api_calls_total{operation}`).
pub const OPERATIONS: [&str; 7] = [
    "ListTasks",
    "DescribeTasks",
    "DescribeTaskDefinition",
    "DescribeContainerInstances",
    "DescribeInstances",
    "ReceiveMessage",
    "DeleteMessageBatch",
];

/// Counters and timings of the ECS sources, registered once in the process registry.
pub struct EcsMetrics {
    received: Counter,
    applied: Counter,
    ignored: Family<Reason, Counter>,
    malformed: Counter,
    lag: Histogram,
    reconcile_duration: HistogramFamily<Cluster>,
    drift: Family<DriftLabels, Counter>,
    api_calls: Family<Operation, Counter>,
    api_errors: Family<Operation, Counter>,
    tasks: Family<Cluster, Gauge>,
    skipped: Family<Reason, Counter>,
    container_instances: Gauge,
    leader: Gauge,
    transitions: Counter,
}

fn seconds() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for EcsMetrics {
    /// Every family whose label values are known beforehand starts with them at zero, so
    /// a query for one finds a series before the first event.
    fn default() -> Self {
        let metrics = Self {
            received: Counter::default(),
            applied: Counter::default(),
            ignored: Family::default(),
            malformed: Counter::default(),
            lag: seconds(),
            reconcile_duration: Family::new_with_constructor(seconds),
            drift: Family::default(),
            api_calls: Family::default(),
            api_errors: Family::default(),
            tasks: Family::default(),
            skipped: Family::default(),
            container_instances: Gauge::default(),
            leader: Gauge::default(),
            transitions: Counter::default(),
        };
        for reason in IGNORED {
            drop(metrics.ignored.get_or_create(&Reason { reason }));
        }
        for reason in Out::PROBLEMS {
            drop(metrics.skipped.get_or_create(&Reason { reason }));
        }
        for operation in OPERATIONS {
            drop(metrics.api_calls.get_or_create(&Operation { operation }));
            drop(metrics.api_errors.get_or_create(&Operation { operation }));
        }
        metrics
    }
}

impl EcsMetrics {
    /// Registers every metric under `muster_ecs_`.
    pub fn register(&self, registry: &mut Registry) {
        let ecs = registry.sub_registry_with_prefix("muster_ecs");
        ecs.register(
            "events_received",
            "Queue messages received",
            self.received.clone(),
        );
        ecs.register(
            "events_applied",
            "Task events applied (the newest state of their task)",
            self.applied.clone(),
        );
        ecs.register(
            "events_ignored",
            "Events not applied: duplicate, stale, other_cluster, other_event, deferred (left in the queue: too many wait for container instance lookups)",
            self.ignored.clone(),
        );
        ecs.register(
            "events_malformed",
            "Queue messages that are not readable events",
            self.malformed.clone(),
        );
        ecs.register(
            "event_lag_seconds",
            "From the task's change (updatedAt, else the event time) to the change applied",
            self.lag.clone(),
        );
        ecs.register(
            "reconcile_duration_seconds",
            "Listing and describing one cluster and applying its sync",
            self.reconcile_duration.clone(),
        );
        ecs.register(
            "reconcile_drift",
            "Instances a reconcile added, removed or changed: events that were missed",
            self.drift.clone(),
        );
        ecs.register(
            "api_calls",
            "AWS API calls made, by operation",
            self.api_calls.clone(),
        );
        ecs.register(
            "api_errors",
            "AWS API calls that failed, by operation",
            self.api_errors.clone(),
        );
        ecs.register("tasks", "Tasks in DNS, by cluster", self.tasks.clone());
        ecs.register(
            "tasks_skipped",
            "Times a running task was kept out of DNS: bad_name, no_address",
            self.skipped.clone(),
        );
        ecs.register(
            "container_instances",
            "Container instances whose address is cached (bridge and host networking)",
            self.container_instances.clone(),
        );
        ecs.register(
            "leader",
            "With [etcd]: 1 while this replica is the elected one that runs the ECS source (with several [[sources.ecs]], how many it runs)",
            self.leader.clone(),
        );
        ecs.register(
            "leader_transitions",
            "With [etcd]: times this replica became or stopped being the ECS source's leader",
            self.transitions.clone(),
        );
    }

    /// With `[etcd]`: this replica starts or stops running the source. What it tracked
    /// goes with the term (the next leader reports it), so a follower shows no tasks.
    pub fn leading(&self, leads: bool) {
        self.leader.inc_by(if leads { 1 } else { -1 });
        self.transitions.inc();
        if !leads {
            self.tasks.clear();
            self.container_instances.set(0);
        }
    }

    pub fn received(&self) {
        self.received.inc();
    }

    pub fn applied(&self, lag: Option<Duration>) {
        self.applied.inc();
        if let Some(lag) = lag {
            self.lag.observe(lag.as_secs_f64());
        }
    }

    pub fn ignored(&self, reason: &'static str) {
        self.ignored.get_or_create(&Reason { reason }).inc();
    }

    pub fn malformed(&self) {
        self.malformed.inc();
    }

    pub fn skipped(&self, reason: &'static str) {
        self.skipped.get_or_create(&Reason { reason }).inc();
    }

    /// Counts one AWS call and whether it failed.
    pub fn api_call(&self, operation: &'static str, ok: bool) {
        let labels = Operation { operation };
        self.api_calls.get_or_create(&labels).inc();
        if !ok {
            self.api_errors.get_or_create(&labels).inc();
        }
    }

    pub fn reconciled(&self, cluster: &str, took: Duration, drift: Drift, tasks: usize) {
        let cluster = Cluster {
            cluster: LabelText(cluster.to_owned()),
        };
        self.reconcile_duration
            .get_or_create(&cluster)
            .observe(took.as_secs_f64());
        for (kind, count) in [
            ("added", drift.added),
            ("removed", drift.removed),
            ("changed", drift.changed),
        ] {
            let labels = DriftLabels {
                cluster: cluster.cluster.clone(),
                kind,
            };
            self.drift.get_or_create(&labels).inc_by(count);
        }
        self.tasks(&cluster.cluster.0, tasks);
    }

    pub fn container_instances(&self, cached: usize) {
        self.container_instances
            .set(i64::try_from(cached).unwrap_or(i64::MAX));
    }

    pub fn tasks(&self, cluster: &str, tasks: usize) {
        let labels = Cluster {
            cluster: LabelText(cluster.to_owned()),
        };
        self.tasks
            .get_or_create(&labels)
            .set(i64::try_from(tasks).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_that_stops_leading_reports_no_tasks() {
        let metrics = EcsMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let text = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        metrics.leading(true);
        metrics.tasks("prod", 3);
        assert!(text().contains("muster_ecs_tasks{cluster=\"prod\"} 3"));
        metrics.leading(false);
        let after = text();
        assert!(!after.contains("muster_ecs_tasks{"), "{after}");
        assert!(after.contains("muster_ecs_leader 0"), "{after}");
    }
}
