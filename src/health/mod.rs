//! Health: the timers that turn instances unhealthy and healthy again, without ever
//! adding or removing one.
//!
//! - **Watches:** registry snapshots, through a publish hook that names the services a
//!   change touched, for instances with a heartbeat TTL; heartbeats from the REST API
//!   ([`Health::heartbeat`]).
//! - **Emits:** `Change::HeartbeatExpired` when an instance's deadline passes without a
//!   heartbeat, `Change::Heartbeat` when one arrives after that. Neither is logged: after
//!   a restart every heartbeat instance gets one full TTL of grace.
//! - **Readiness:** nothing to wait for; timers start from the replayed registry.
//! - **Metrics:** `muster_health_heartbeat_expired_total`,
//!   `muster_health_expiry_lateness_seconds` (deadline to the registry's answer).
//!
//! One scheduler (a `DelayQueue` of per-instance deadlines) serves every timer, so a
//! renewal costs a queue reset, not a registry change: the revision and the DNS zone move
//! only when health does.

mod probe;
mod scheduler;

pub use scheduler::{Health, HealthMetrics, HeartbeatError};
