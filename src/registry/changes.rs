//! The registry's recent changes: a bounded, numbered record of what each publish
//! changed, for blocking queries, the `/v1/watch` stream and the status page.
//!
//! Owns: the [`ChangeEntry`] format, the index that numbers entries, each service's
//! index (the index of its last change), and the notification that wakes waiters. The
//! writer records every publish ([`recorder`](super::recorder) turns a publish into
//! entries); readers take an immutable [`RecentChanges`] from a
//! [`RegistryHandle`](super::RegistryHandle) without reaching the writer or taking a
//! lock, but for a service's index, read under a lock the writer takes for one insertion
//! per change (a namespace's deletion: one pass over the table). Must not: hold more than [`RECENT_CHANGES`] entries, or wake a waiter for a
//! publish that changed nothing visible.
//!
//! **The index.** Each entry's index is `max(revision, previous index + 1)`, where
//! `revision` is the registry revision (the SOA serial) of the snapshot that holds the
//! change: it increases by at least one per entry, never goes back within a process, and
//! follows the revision (in local mode, a change that makes one entry gets the revision
//! itself as its index). With `[etcd]` the revision is etcd's: changes every replica
//! applies are numbered near the same etcd revision everywhere, but per-replica changes
//! (a file source's) add entries on one replica only, so two replicas may number the
//! same change differently. After a restart the index starts again from the revision,
//! possibly below indexes handed out before: readers treat an index above the current
//! one as "start over" (as Consul does).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::{Serialize, Serializer};
use tokio::sync::watch;

use super::model::SourceId;
use super::recorder::Draft;

/// Entries kept at most: enough for a client that reconnects within seconds of a burst
/// (a deploy) to resume, small enough to copy for a status page (~100 KiB).
pub const RECENT_CHANGES: usize = 512;

/// What happened to an instance, a service or a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A new instance.
    Registered,
    /// An instance registered again with a different address, port, attributes, check
    /// or owner.
    Replaced,
    Deregistered,
    /// The instance turned healthy (its source, its check or a heartbeat says so).
    Healthy,
    /// The instance turned unhealthy; `reason` says why (check, heartbeat, source).
    Unhealthy,
    /// Taken out of answers (`PUT .../drain`, or the `drain` attribute).
    Drained,
    Undrained,
    /// Something else an instance shows changed (the reason of a check that still fails,
    /// a heartbeat that expired while the instance was already unhealthy).
    Updated,
    ServiceCreated,
    /// A service's answer policy, description, attributes or tags changed.
    ServiceUpdated,
    ServiceDeleted,
    NamespaceCreated,
    NamespaceUpdated,
    NamespaceDeleted,
}

impl Event {
    /// The name used in JSON and as the SSE `event:` field (`registered`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Replaced => "replaced",
            Self::Deregistered => "deregistered",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Drained => "drained",
            Self::Undrained => "undrained",
            Self::Updated => "updated",
            Self::ServiceCreated => "service_created",
            Self::ServiceUpdated => "service_updated",
            Self::ServiceDeleted => "service_deleted",
            Self::NamespaceCreated => "namespace_created",
            Self::NamespaceUpdated => "namespace_updated",
            Self::NamespaceDeleted => "namespace_deleted",
        }
    }
}

/// One change, as readers see it (its JSON is documented in docs/rest.md, "Watching").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeEntry {
    pub index: u64,
    /// When the registry published it (RFC 3339 in JSON, milliseconds).
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub event: Event,
    pub namespace: String,
    /// None for a namespace's own events.
    pub service: Option<String>,
    /// None for a service's or a namespace's own events.
    pub instance: Option<String>,
    /// The instance's owner (`api`, `file:...`, `ecs:...`), for instance events.
    pub source: Option<SourceId>,
    /// Why, when the registry knows: a failing check's reason, `heartbeat expired`.
    pub reason: Option<String>,
}

fn rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*time))
}

/// The recent changes as of one publish: immutable (but for each service's index, one
/// live table every copy shares: [`RecentChanges::service_index`]) and O(1) to clone.
#[derive(Clone, Debug)]
pub struct RecentChanges {
    /// Oldest first, at most [`RECENT_CHANGES`].
    entries: imbl::Vector<Arc<ChangeEntry>>,
    /// Each service's index, shared by every copy.
    services: Arc<ServiceIndexes>,
    /// The index of the changes no longer held: every change after it is in `entries`.
    evicted: u64,
    /// The latest index.
    last: u64,
}

/// The index of each service's last change: one live table that every copy of
/// [`RecentChanges`] shares, so a copy read now may tell a service's index newer than
/// its own entries (never newer than the snapshot current when it is read: the writer
/// numbers changes after it makes their snapshot current).
///
/// Not a persistent map, as it was: a publish then copied the nodes on each changed
/// service's path, and copying a node counted a reference on every sibling (cold cache
/// lines, one atomic each): ~9% of muster's CPU in a churn of REST batches at 100,000
/// instances, where this costs one hash and one insertion per change.
#[derive(Debug)]
struct ServiceIndexes {
    /// By the hashes of the namespace's and the service's names, for services changed
    /// since the start that still exist. Two services whose hashes collide (about one in
    /// 2^64 pairs) share an index: a waiter on either may be woken early, never late.
    by_hash: RwLock<HashMap<(u64, u64), u64, foldhash::fast::RandomState>>,
    hasher: foldhash::fast::RandomState,
    /// The index of every service not in `by_hash`: the start's, or the last deletion's.
    unlisted: AtomicU64,
}

impl ServiceIndexes {
    fn new(index: u64) -> Self {
        Self {
            by_hash: RwLock::default(),
            hasher: foldhash::fast::RandomState::default(),
            unlisted: AtomicU64::new(index),
        }
    }

    fn key(&self, namespace: &str, service: &str) -> (u64, u64) {
        (
            self.hasher.hash_one(namespace),
            self.hasher.hash_one(service),
        )
    }

    fn get(&self, namespace: &str, service: &str) -> u64 {
        let key = self.key(namespace, service);
        let by_hash = self.by_hash.read().unwrap_or_else(PoisonError::into_inner);
        match by_hash.get(&key) {
            Some(index) => *index,
            None => self.unlisted.load(Ordering::Acquire),
        }
    }

    fn set(&self, namespace: &str, service: &str, index: u64) {
        let key = self.key(namespace, service);
        let mut by_hash = self.by_hash.write().unwrap_or_else(PoisonError::into_inner);
        by_hash.insert(key, index);
    }

    /// Forgets `service` of `namespace` (all of its services, for `None`), which now
    /// have the deletion's `index`: raised before the entries go, so a reader between
    /// the two sees the old index or the new one, never an older one.
    fn delete(&self, namespace: &str, service: Option<&str>, index: u64) {
        self.unlisted.fetch_max(index, Ordering::AcqRel);
        let mut by_hash = self.by_hash.write().unwrap_or_else(PoisonError::into_inner);
        match service {
            Some(service) => {
                by_hash.remove(&self.key(namespace, service));
            }
            None => {
                let gone = self.hasher.hash_one(namespace);
                by_hash.retain(|(namespace, _), _| *namespace != gone);
            }
        }
    }
}

/// Why [`RecentChanges::since`] cannot list the changes after an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missed {
    /// The oldest index the ring can resume after.
    pub oldest: u64,
    /// The latest index.
    pub last: u64,
}

impl RecentChanges {
    /// A record that starts at `index` (the registry revision at start).
    pub(super) fn new(index: u64) -> Self {
        Self {
            entries: imbl::Vector::new(),
            services: Arc::new(ServiceIndexes::new(index)),
            evicted: index,
            last: index,
        }
    }

    /// The latest index (of the last change, or the start's).
    pub fn index(&self) -> u64 {
        self.last
    }

    /// The index of `namespace/service`'s last change: what a blocking query compares.
    /// It only grows while the process runs (a service never seen, or deleted, has the
    /// index of the start or of the last deletion of any service: such a service may be
    /// woken early, never late).
    pub fn service_index(&self, namespace: &str, service: &str) -> u64 {
        self.services.get(namespace, service)
    }

    /// The entries held, oldest first (the status page's "recent changes").
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &Arc<ChangeEntry>> + '_ {
        self.entries.iter()
    }

    /// Every change after `index`, oldest first; [`Missed`] when some are no longer held
    /// (too old) or `index` is not one of this process's (above the latest: a restart, or
    /// another replica's).
    pub fn since(
        &self,
        index: u64,
    ) -> Result<impl Iterator<Item = &Arc<ChangeEntry>> + '_, Missed> {
        if index < self.evicted || index > self.last {
            return Err(Missed {
                oldest: self.evicted,
                last: self.last,
            });
        }
        // Indexes increase along the ring: skip the ones at or before `index`.
        let skip = self.entries.iter().take_while(|e| e.index <= index).count();
        Ok(self.entries.iter().skip(skip))
    }

    /// Numbers the changes `found` hands its sink (those of the snapshot at `revision`,
    /// made at `time`) and appends them, dropping the oldest beyond [`RECENT_CHANGES`]:
    /// only the last ones become entries, so a sync of a million registrations builds
    /// [`RECENT_CHANGES`] entries, not a million.
    pub(super) fn append<'a>(
        &mut self,
        revision: u64,
        time: SystemTime,
        found: impl FnOnce(&mut dyn FnMut(Draft<'a>)),
    ) {
        let mut kept = VecDeque::new();
        found(&mut |draft| {
            let index = self.number(&draft, revision);
            if kept.len() == RECENT_CHANGES
                && let Some((dropped, _)) = kept.pop_front()
            {
                self.evicted = dropped;
            }
            kept.push_back((index, draft));
        });
        for (index, draft) in kept {
            self.entries.push_back(Arc::new(draft.entry(index, time)));
            if self.entries.len() > RECENT_CHANGES
                && let Some(oldest) = self.entries.pop_front()
            {
                // A draft dropped above was newer than the entries held before.
                self.evicted = self.evicted.max(oldest.index);
            }
        }
    }

    /// The index of `draft`, the next one; its service's index moves to it.
    fn number(&mut self, draft: &Draft<'_>, revision: u64) -> u64 {
        let index = revision.max(self.last.saturating_add(1));
        self.last = index;
        match (draft.event, draft.service) {
            (Event::NamespaceDeleted, _) => self.services.delete(draft.namespace, None, index),
            (Event::ServiceDeleted, Some(service)) => {
                self.services.delete(draft.namespace, Some(service), index);
            }
            (_, Some(service)) => self.services.set(draft.namespace, service, index),
            (_, None) => {}
        }
        index
    }
}

/// The recent changes and their notification, shared by the writer and every handle.
pub(super) struct ChangeFeed {
    recent: ArcSwap<RecentChanges>,
    /// The latest index, sent after `recent` is stored.
    notify: watch::Sender<u64>,
}

impl ChangeFeed {
    pub fn new(index: u64) -> Self {
        Self {
            recent: ArcSwap::from_pointee(RecentChanges::new(index)),
            notify: watch::Sender::new(index),
        }
    }

    pub fn recent(&self) -> Arc<RecentChanges> {
        self.recent.load_full()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Makes `recent` current and wakes the waiters, when it holds new changes.
    pub fn publish(&self, recent: RecentChanges) {
        let index = recent.index();
        if index == self.recent.load().index() {
            return;
        }
        self.recent.store(Arc::new(recent));
        self.notify.send_replace(index);
    }
}

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;
