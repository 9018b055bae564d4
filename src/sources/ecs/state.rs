//! The source's memory of every task it has seen: which state of each task is the
//! newest, and so which `Change`s an event or a reconcile makes. Pure: the caller passes
//! the clock.
//!
//! Ordering: ECS bumps a task's `version` on every change, so an event or description
//! with a lower version than the one applied is stale and one with the same version a
//! duplicate; without versions (moto), `updatedAt` decides, and without either the
//! later arrival wins. A stop (desired STOPPED, or past RUNNING) is one-way in ECS, so a
//! task known to be stopping never comes back, whatever arrives after. Stopped tasks
//! are remembered for [`TOMBSTONE_TTL`] so a late RUNNING event cannot resurrect them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use super::mapping::Placement;
use super::parse::TaskFacts;
use crate::registry::{Change, InstanceKey, InstanceSpec, SourceId};

/// How long a stopped task is remembered after anything last mentioned it.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);

/// The source id of one cluster: a sync replaces exactly that cluster's instances.
pub fn source_id(cluster: &str) -> SourceId {
    SourceId::new(format!("ecs:{cluster}"))
}

/// Every task of the source's clusters that it has heard of.
#[derive(Default)]
pub struct Tasks {
    known: HashMap<String, Known>,
    /// Bumped by every event applied, so a reconcile can tell events newer than its list.
    generation: u64,
    /// Clusters reconciled at least once: drift is only counted after the first.
    reconciled: HashSet<String>,
}

struct Known {
    cluster: String,
    version: Option<u64>,
    updated_at: Option<SystemTime>,
    terminal: bool,
    placed: Option<(InstanceKey, InstanceSpec)>,
    /// The container instance it runs on (EC2 launch type).
    host: Option<String>,
    /// The generation of the event that last set this state (0: set by a reconcile).
    generation: u64,
    seen: Instant,
}

/// How an event relates to what is known of its task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Same version (or update time) as the state already applied.
    Duplicate,
    /// Older than the state already applied, or a sign of life after a stop.
    Stale,
}

/// Instances a reconcile had to add, remove or change: each one is a missed event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

impl Tasks {
    /// The number of events applied so far; a reconcile reads it before it lists.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Instances of `cluster` currently placed in DNS.
    pub fn placed(&self, cluster: &str) -> usize {
        self.known
            .values()
            .filter(|k| k.cluster == cluster && k.placed.is_some())
            .count()
    }

    /// The container instances of the tasks that are not stopping: those whose
    /// addresses are worth keeping.
    pub fn hosts_in_use(&self) -> impl Iterator<Item = &str> {
        self.known
            .values()
            .filter(|k| !k.terminal)
            .filter_map(|k| k.host.as_deref())
    }

    /// Whether an event about `facts.task_arn` carries news.
    pub fn freshness(&self, facts: &TaskFacts) -> Freshness {
        let Some(known) = self.known.get(&facts.task_arn) else {
            return Freshness::Fresh;
        };
        if known.terminal && !facts.is_terminal() {
            return Freshness::Stale;
        }
        match order(facts, known) {
            Some(std::cmp::Ordering::Greater) | None => Freshness::Fresh,
            Some(std::cmp::Ordering::Equal) => Freshness::Duplicate,
            Some(std::cmp::Ordering::Less) => Freshness::Stale,
        }
    }

    /// Records a fresh event's state and returns the changes that bring DNS in line.
    pub fn record(&mut self, facts: &TaskFacts, placement: Placement, now: Instant) -> Vec<Change> {
        self.generation += 1;
        let new = placed(placement);
        let old = self
            .known
            .get(&facts.task_arn)
            .and_then(|k| k.placed.clone());
        let source = source_id(&facts.cluster);
        self.known.insert(
            facts.task_arn.clone(),
            Known::new(facts, new.clone(), self.generation, now),
        );
        changes(&source, old, new)
    }

    /// Merges a full description of `cluster` (listed after event `since` was applied)
    /// and returns the one sync of that cluster, with the drift it corrected.
    pub fn reconcile(
        &mut self,
        cluster: &str,
        described: Vec<(TaskFacts, Placement)>,
        since: u64,
        now: Instant,
    ) -> (Change, Drift) {
        let mut drift = Drift::default();
        let mut listed = HashSet::new();
        for (facts, placement) in described {
            listed.insert(facts.task_arn.clone());
            if let Some(known) = self.known.get_mut(&facts.task_arn) {
                let stopped = known.terminal && !facts.is_terminal();
                let newer_event = known.generation > since
                    && order(&facts, known) != Some(std::cmp::Ordering::Greater);
                let not_newer =
                    matches!((facts.version, known.version), (Some(new), Some(old)) if new <= old);
                if stopped || newer_event || not_newer {
                    known.seen = now;
                    continue;
                }
            }
            let new = placed(placement);
            let old = self
                .known
                .get(&facts.task_arn)
                .and_then(|k| k.placed.clone());
            drift.count(old.as_ref(), new.as_ref());
            self.known
                .insert(facts.task_arn.clone(), Known::new(&facts, new, 0, now));
        }
        for (arn, known) in &mut self.known {
            if known.cluster != cluster || listed.contains(arn) || known.generation > since {
                continue;
            }
            // Not desired RUNNING any more: stopped, or gone.
            drift.count(known.placed.take().as_ref(), None);
            known.terminal = true;
        }
        self.known.retain(|_, k| {
            k.cluster != cluster || !k.terminal || now.duration_since(k.seen) < TOMBSTONE_TTL
        });
        // The first reconcile is the initial load, not a correction.
        if self.reconciled.insert(cluster.to_owned()) {
            drift = Drift::default();
        }
        let instances = self
            .known
            .values()
            .filter(|k| k.cluster == cluster)
            .filter_map(|k| k.placed.clone())
            .collect();
        let sync = Change::Sync {
            source: source_id(cluster),
            instances,
        };
        (sync, drift)
    }
}

impl Known {
    fn new(
        facts: &TaskFacts,
        placed: Option<(InstanceKey, InstanceSpec)>,
        generation: u64,
        now: Instant,
    ) -> Self {
        Self {
            cluster: facts.cluster.clone(),
            version: facts.version,
            updated_at: facts.updated_at,
            terminal: facts.is_terminal(),
            placed,
            host: facts.container_instance_arn.clone(),
            generation,
            seen: now,
        }
    }
}

impl Drift {
    fn count(
        &mut self,
        old: Option<&(InstanceKey, InstanceSpec)>,
        new: Option<&(InstanceKey, InstanceSpec)>,
    ) {
        match (old, new) {
            (None, Some(_)) => self.added += 1,
            (Some(_), None) => self.removed += 1,
            (Some(old), Some(new)) if old != new => self.changed += 1,
            _ => {}
        }
    }

    pub fn total(&self) -> u64 {
        self.added + self.removed + self.changed
    }
}

/// `facts` compared with the known state: by version, else by update time.
fn order(facts: &TaskFacts, known: &Known) -> Option<std::cmp::Ordering> {
    match (facts.version, known.version) {
        (Some(new), Some(old)) => Some(new.cmp(&old)),
        _ => match (facts.updated_at, known.updated_at) {
            (Some(new), Some(old)) => Some(new.cmp(&old)),
            _ => None,
        },
    }
}

fn placed(placement: Placement) -> Option<(InstanceKey, InstanceSpec)> {
    match placement {
        Placement::In(key, spec) => Some((key, *spec)),
        Placement::Out(_) => None,
    }
}

/// The changes that turn `old` into `new` for one task.
fn changes(
    source: &SourceId,
    old: Option<(InstanceKey, InstanceSpec)>,
    new: Option<(InstanceKey, InstanceSpec)>,
) -> Vec<Change> {
    let remove = |key| Change::Remove {
        key,
        source: source.clone(),
    };
    let upsert = |key, spec| Change::Upsert {
        key,
        spec,
        source: source.clone(),
    };
    match (old, new) {
        (Some((old, _)), Some((key, spec))) if old != key => vec![remove(old), upsert(key, spec)],
        (Some((_, old)), Some((key, spec))) if old != spec => vec![upsert(key, spec)],
        (Some(_), Some(_)) | (None, None) => Vec::new(),
        (Some((old, _)), None) => vec![remove(old)],
        (None, Some((key, spec))) => vec![upsert(key, spec)],
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
