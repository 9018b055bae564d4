//! Sources: watchers that turn what they watch into registry `Change`s.
//!
//! Every source lives in its own folder with the same shape (`mod.rs` documenting what
//! it watches, emits and when it is ready; `config.rs`; a pure `parse.rs`; the I/O loop)
//! and starts the same way: `run(config, SourceContext)`. A source tags every change
//! with its [`SourceId`](crate::registry::SourceId), marks itself synced with its first
//! `Change::Sync`, keeps its last good state when what it watches fails, and returns
//! promptly when the context's shutdown token fires. The REST/Cloud Map API is the one
//! source that is not a watcher; it lives in `crate::api`. `contract_tests.rs` checks
//! this contract (readiness, a sync replaces what the source owns, owner rules) on each
//! source's real changes.
//!
//! Every watcher also keeps its sync state in the one shape of [`status`] (when it last
//! synced, its last error), registered in the context's [`SourceStatuses`] under its
//! source id: `muster_source_*` (`metrics.rs`) and the status page read it there.

#[cfg(test)]
pub(crate) mod contract_tests;
pub mod ecs;
pub mod file;
mod metrics;
pub mod status;
pub mod update;

pub use status::{SourceStatus, SourceStatuses, SyncState};

use tokio_util::sync::CancellationToken;

use crate::registry::RegistryHandle;
use crate::reload::ConfigUpdates;

/// What every source is given to run.
#[derive(Clone)]
pub struct SourceContext {
    pub registry: RegistryHandle,
    pub shutdown: CancellationToken,
    /// Reloaded configurations (SIGHUP): a source that can follow one does.
    pub reload: ConfigUpdates,
    /// Where each source registers its sync state.
    pub statuses: SourceStatuses,
}
