//! Each source's sync state, in one shape for every source (a file, an ECS cluster, the
//! etcd store): when it last synced, and its last error.
//!
//! Owns: [`SourceStatus`], which a source updates as it syncs and fails, and
//! [`SourceStatuses`], the set of them that `/metrics` (`muster_source_*`) and the status
//! page's sources page read. A source registers its own ids (one per configured file or
//! cluster), so the `source` label holds one value per configured source, never one a
//! client chose. Must not: decide readiness (the snapshot's unsynced sources do, through
//! `Change::Sync`) or log (the source logs its errors once, as it always did).
//!
//! "Synced" means a full sync succeeded: a file read and applied (or read again and found
//! unchanged), an ECS cluster's reconcile applied, etcd's prefix loaded or a watch
//! update applied. The last error is kept with its time after the next success, so the
//! page can say "recovered" and when it last failed; only the next error replaces it.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::metrics::SourceMetrics;
use crate::registry::SourceId;

/// The longest error text kept: one line, enough for an AWS error code and message.
const MAX_ERROR_CHARS: usize = 240;

/// One source's sync state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncState {
    /// The last successful sync; `None` until the first one (not synced).
    pub last_sync: Option<SystemTime>,
    /// The last error and when it happened (kept after a later success).
    pub last_error: Option<(SystemTime, String)>,
}

impl SyncState {
    /// Whether the source has synced since start.
    pub fn synced(&self) -> bool {
        self.last_sync.is_some()
    }

    /// Whether the last error came after the last sync (the source is failing now).
    pub fn failing(&self) -> bool {
        match (&self.last_error, self.last_sync) {
            (Some((failed, _)), Some(synced)) => *failed >= synced,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// One source's handle on its state: cheap to clone, updated by the source's tasks.
#[derive(Clone)]
pub struct SourceStatus {
    id: SourceId,
    state: Arc<Mutex<SyncState>>,
    metrics: Arc<SourceMetrics>,
}

impl SourceStatus {
    /// A sync succeeded now.
    pub fn synced(&self) {
        let now = SystemTime::now();
        self.lock().last_sync = Some(now);
        self.metrics.synced(&self.id, now);
    }

    /// A sync failed now with `error`: its first line, at most [`MAX_ERROR_CHARS`]
    /// characters, is kept (a parse error's excerpt of the file is not).
    pub fn failed(&self, error: &dyn Display) {
        let text = error.to_string();
        let line = text.lines().next().unwrap_or_default();
        let mut kept: String = line.chars().take(MAX_ERROR_CHARS).collect();
        if kept.len() < line.len() {
            kept.push('…');
        }
        self.lock().last_error = Some((SystemTime::now(), kept));
    }

    /// The state as it is now.
    pub fn state(&self) -> SyncState {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every source's status, keyed by source id: what `/metrics` and the status page read.
#[derive(Clone, Default)]
pub struct SourceStatuses {
    metrics: Arc<SourceMetrics>,
    sources: Arc<Mutex<BTreeMap<SourceId, SourceStatus>>>,
}

impl SourceStatuses {
    /// The statuses, with `muster_source_*` registered in `registry`.
    pub fn new(registry: &mut prometheus_client::registry::Registry) -> Self {
        let statuses = Self::default();
        statuses.metrics.register(registry);
        statuses
    }

    /// The status of source `id`, made (and served at "not synced") on first use. Called
    /// by the source itself with an id from its configuration.
    pub fn register(&self, id: SourceId) -> SourceStatus {
        let mut sources = self.lock();
        let status = sources.entry(id.clone()).or_insert_with(|| {
            self.metrics.not_synced(&id);
            SourceStatus {
                id,
                state: Arc::default(),
                metrics: self.metrics.clone(),
            }
        });
        status.clone()
    }

    /// Source `id` no longer runs here (an elected source on a replica that lost its
    /// lease): its state and series go until it runs here again.
    pub fn stand_by(&self, id: &SourceId) {
        if self.lock().remove(id).is_some() {
            self.metrics.remove(id);
        }
    }

    /// Every registered source's state, by id.
    pub fn list(&self) -> Vec<(SourceId, SyncState)> {
        self.lock()
            .iter()
            .map(|(id, status)| (id.clone(), status.state()))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<SourceId, SourceStatus>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_kept_after_a_success_and_cut_to_one_short_line() {
        let statuses = SourceStatuses::default();
        let status = statuses.register(SourceId::new("file:a"));
        assert!(!status.state().synced());
        status.failed(&format!("bad TOML\n  | secret = {}\n", "x".repeat(10)));
        assert!(status.state().failing());
        status.synced();
        let state = status.state();
        assert!(state.synced() && !state.failing());
        assert_eq!(
            state.last_error.map(|(_, e)| e).as_deref(),
            Some("bad TOML")
        );
        status.failed(&"y".repeat(1000));
        let error = status.state().last_error.unwrap().1;
        assert_eq!(error.chars().count(), MAX_ERROR_CHARS + 1);
        // The same id is the same status; standing by forgets it.
        assert!(statuses.register(SourceId::new("file:a")).state().synced());
        statuses.stand_by(&SourceId::new("file:a"));
        assert!(statuses.list().is_empty());
    }
}
