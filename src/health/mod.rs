//! Health: the timers and checks that turn instances unhealthy and healthy again, and
//! the one removal it makes: an API-owned instance unhealthy for its `deregister_after`
//! is deregistered.
//!
//! - **Watches:** registry snapshots, through a publish hook that names the services a
//!   change touched, for instances with a heartbeat TTL or an active check; heartbeats
//!   from the REST API ([`Health::heartbeat`]).
//! - **Emits:** `Change::HeartbeatExpired` when an instance's deadline passes without a
//!   heartbeat, `Change::Heartbeat` when one arrives after that, `Change::CheckResult`
//!   when a check crosses a threshold (or its target is denied and it is not run). None
//!   is logged: after a restart every heartbeat instance gets one full TTL of grace.
//! - **Config:** `[health]` ([`CheckLimits`]): which networks checks may target, the
//!   shortest interval.
//! - **Readiness:** nothing to wait for; timers start from the replayed registry.
//! - **Metrics:** `muster_health_heartbeat_expired_total`,
//!   `muster_health_deregistered_total` (instances past their `deregister_after`),
//!   `muster_health_expiry_lateness_seconds` (deadline to the registry's answer),
//!   `muster_health_checks_total{result}` (`pass`, `fail`, `inconclusive`: the check
//!   could not run for a local reason and changed nothing),
//!   `muster_health_transitions_total{result}`, `muster_health_checks_owned` (checks
//!   this replica runs: with `[etcd]`, its share of them).
//! - **Replicas:** with `[etcd]` ([`Share`]), an instance that etcd holds is checked by
//!   one live member, chosen by rendezvous hashing of its key over the members; that
//!   member writes the verdicts into the instance's record (through the registry's
//!   writer), and every replica serves them. When a member's lease expires its checks
//!   move with the member set. Instances of per-replica sources (files) are checked by
//!   every replica, as without etcd. Heartbeats of the instances etcd holds renew an etcd
//!   lease per instance, from any replica; the member that owns the instance keeps its
//!   deadline, asks etcd about the lease when it passes, and writes the expiry into the
//!   instance's record once etcd expired it (`store::etcd::HeartbeatLeases`).
//!
//! One scheduler (a `DelayQueue` of per-instance deadlines) serves every timer, so a
//! renewal costs a queue reset, not a registry change: the revision and the DNS zone move
//! only when health does. The task ([`HealthTask`]) runs under the process's supervisor
//! (`crate::task`), which restarts it after a panic; its command channel outlives a run.

mod handle;
mod metrics;
mod probe;
mod scheduler;
mod targets;
#[cfg(test)]
mod tests;

pub use handle::{Health, HealthTask, HeartbeatError, Share};
pub use metrics::HealthMetrics;
pub use targets::{CheckLimits, check_target};
