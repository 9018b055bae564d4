//! The `ecs` source: the tasks of ECS services, in DNS while they serve and out of it
//! the moment ECS decides to stop them.
//!
//! - **Watches:** EventBridge "ECS Task State Change" events that a rule delivers to an
//!   SQS queue (long poll, up to 10 messages per receive), and every
//!   `reconcile_interval` each cluster in full: `ListTasks` (desired status RUNNING,
//!   pages of 100), `DescribeTasks` (batches of 100), `DescribeTaskDefinition` once per
//!   task definition ARN (cached; up to 8 at once), and for bridge and host networking
//!   tasks their container instances' addresses: `DescribeContainerInstances` and EC2
//!   `DescribeInstances` (batches of 100) once per container instance, cached while a
//!   known task uses it (`hosts.rs`). An event of a task on a container instance not yet
//!   cached waits for that lookup without holding up other events (`events.rs`,
//!   `waiting.rs`). A message is deleted only after its change is applied.
//! - **Emits:** per event, `Upsert`/`Remove` of the task's instance; per reconcile, one
//!   `Change::Sync` per cluster. The source id is `ecs:<cluster name>`, so a sync
//!   replaces exactly that cluster's instances. A task of ECS service `S` (`group`
//!   `service:S`) is instance `<task id>` of service `S` in `namespace`, unless a rule
//!   renames, hides or maps it (by ECS service, task definition family, or task
//!   definition tag); see `mapping.rs`. Address: the ENI's private IPv4/IPv6 (awsvpc),
//!   else a specific `bindIP` of a host binding, else (bridge, host) the container
//!   instance's private IPv4/IPv6. Port: the rule's, else the host port bound for the
//!   container's first port mapping, else its fixed host port (bridge) or container
//!   port (awsvpc, host). Every named port mapping (`portMappings[].name`) becomes a
//!   named port, `_<name>._tcp.<svc>.<ns>` in DNS, on the same terms. Attributes as
//!   Cloud Map's ECS integration sets them (`ECS_CLUSTER_NAME`, `ECS_SERVICE_NAME`,
//!   `ECS_TASK_DEFINITION_FAMILY`, `AVAILABILITY_ZONE`, `REGION`, `AWS_INSTANCE_IPV4`,
//!   `AWS_INSTANCE_IPV6`, `AWS_INSTANCE_PORT`, and `EC2_INSTANCE_ID` for a task reached
//!   at its container instance).
//! - **Lifecycle:** a task enters when RUNNING and, if its task definition has
//!   container health checks and `require_healthy` is on, HEALTHY. It leaves when an
//!   event says `desiredStatus` is STOPPED (the stop intent, while it still drains), its
//!   `lastStatus` is past RUNNING, or its health is UNHEALTHY. Duplicates and
//!   out-of-order events are resolved per task by `detail.version` (`state.rs`).
//! - **Names:** a service name that is not a DNS label (ECS allows 255 characters and
//!   leading or trailing `-`) is not guessed at: the task is skipped with a warning and
//!   `muster_ecs_tasks_skipped_total{reason="bad_name"}`; a rule's `name` maps it.
//! - **Faults:** any AWS error keeps the last known state (a failed list never removes
//!   instances) and is retried with capped exponential backoff and jitter; SQS being
//!   down does not stop reconciles. A container instance lookup that still fails after
//!   4 attempts leaves its events in the queue for their next delivery. Malformed
//!   messages are logged, counted and deleted, or kept for a dead-letter queue
//!   (`malformed = "keep"`).
//! - **Config:** [`EcsSourceConfig`] (`[[sources.ecs]]`).
//! - **Readiness:** each cluster's source is synced by its first successful reconcile.
//! - **Sync state** ([`crate::sources::status`], per cluster): synced by every reconcile
//!   the registry took; a failed reconcile is the cluster's last error, a failed SQS
//!   receive every cluster's. With `[etcd]`, only while this replica runs the source.
//! - **Replicas:** with `[etcd]`, one replica elected among the members runs it and its
//!   changes go to etcd, which every replica serves (`elected.rs`, docs/etcd.md); its
//!   readiness is then the etcd store's (the last leader's instances are served).
//! - **Metrics** (`muster_ecs_*`): `events_received_total`, `events_applied_total`,
//!   `events_ignored_total{reason}`, `events_malformed_total`, `event_lag_seconds`,
//!   `reconcile_duration_seconds{cluster}`, `reconcile_drift_total{cluster,kind}`,
//!   `api_calls_total{operation}`, `api_errors_total{operation}`, `tasks{cluster}`,
//!   `tasks_skipped_total{reason}`, `container_instances`, and with `[etcd]` `leader`,
//!   `leader_transitions_total`.

mod aws;
mod backoff;
mod config;
#[cfg(feature = "etcd")]
mod elected;
mod events;
mod hosts;
mod mapping;
mod metrics;
mod parse;
#[cfg(test)]
mod parse_fuzz;
mod state;
mod waiting;
mod watch;

pub use config::{EcsSourceConfig, Malformed, ServiceRule};
#[cfg(feature = "etcd")]
pub use elected::run_elected;
pub use metrics::EcsMetrics;
pub use state::source_id;
pub use watch::{run, source_ids};
