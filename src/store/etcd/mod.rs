//! The registry on etcd: what the APIs own, shared by every replica on one prefix.
//!
//! Owns: the connection to etcd, this replica's membership ([`members`]: a lease, a
//! key on it, the member set) and the elections held on it ([`election`]), the leases
//! behind shared heartbeats ([`heartbeats`]), the key layout and value codec ([`keys`]), the
//! load-then-watch loop ([`follow`]), and running transactions ([`Etcd::commit`]). It
//! knows records ([`crate::registry::Record`]), not the rules that produce them: the
//! registry's writer validates each API change against the state it has applied, turns
//! it into records and the compares that make the same rules hold against etcd's state,
//! and applies what the watch delivers, one batch per watch response (docs/etcd.md).
//!
//! Nothing is written to `data_dir` in this mode: a replica's state is etcd's at the
//! revision it has applied, and a restarted replica reads it again.
//!
//! Metrics: `muster_etcd_request_seconds{operation}`,
//! `muster_etcd_request_errors_total{operation}`, `muster_etcd_conflicts_total`,
//! `muster_etcd_revision`, `muster_etcd_applied_revision`,
//! `muster_etcd_watch_lag_revisions`, `muster_etcd_up`, `muster_etcd_reloads_total`,
//! `muster_etcd_load_seconds`, `muster_etcd_skipped_records_total`, `muster_etcd_members`.

mod client;
mod election;
mod heartbeats;
pub mod keys;
mod members;
mod metrics;
mod migrate;
mod watch;

pub use client::{
    Committed, Etcd, EtcdError, Expect, Loaded, MAX_TXN_BYTES, MAX_TXN_OPS, MAX_TXN_WRITES, Op,
    Stored,
};
pub use election::{Election, Fence};
pub use heartbeats::{HeartbeatLeases, Lease, MIN_TTL as MIN_HEARTBEAT_TTL};
pub use members::{Members, run as keep_membership};
pub use metrics::EtcdMetrics;
pub use migrate::{MigrateError, export, import};
pub use watch::{Connection, Update, follow};
