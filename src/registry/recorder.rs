//! Turns each publish into [`ChangeEntry`](super::ChangeEntry)s: what differs between
//! the last snapshot and the new one, in the namespaces and services the publish touched.
//!
//! Works the same for the local writer and the writer on etcd (it sees snapshots, not
//! `Change`s), and costs what the publish changed: persistent maps are compared with
//! their shared nodes skipped. Runs in the writer, after the snapshot is made current,
//! so a waiter it wakes reads a snapshot at least as new as the index it is told.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use imbl::ordmap::DiffItem;

use super::changes::{ChangeEntry, ChangeFeed, Event, RecentChanges};
use super::model::{Instance, InstanceSpec, Service};
use super::snapshot::{Namespace, Snapshot};
use super::state::Touched;

/// The writer's side of the change feed.
pub(super) struct Recorder {
    feed: Arc<ChangeFeed>,
    previous: Arc<Snapshot>,
    recent: RecentChanges,
}

impl Recorder {
    /// Records the changes made after `initial`, into `feed`.
    pub fn new(feed: Arc<ChangeFeed>, initial: Arc<Snapshot>) -> Self {
        let recent = (*feed.recent()).clone();
        Self {
            feed,
            previous: initial,
            recent,
        }
    }

    /// Records what `snapshot` changed in `touched`, and wakes the waiters.
    pub fn record(&mut self, snapshot: &Arc<Snapshot>, touched: &Touched) {
        let drafts = drafts(&self.previous, snapshot, touched);
        self.previous = snapshot.clone();
        if drafts.is_empty() {
            return;
        }
        self.recent
            .append(drafts, snapshot.revision, SystemTime::now());
        self.feed.publish(self.recent.clone());
    }
}

/// The changes from `old` to `new` in what `touched` names: namespaces created and
/// updated first, then services and instances, then namespaces deleted.
pub(super) fn drafts(old: &Snapshot, new: &Snapshot, touched: &Touched) -> Vec<ChangeEntry> {
    let mut first = Vec::new();
    let mut last = Vec::new();
    let mut services: BTreeSet<(&str, &str)> = touched
        .services
        .iter()
        .map(|(ns, svc)| (ns.as_str(), svc.as_str()))
        .collect();
    let empty = imbl::OrdMap::new();
    for name in &touched.namespaces {
        let (before, after) = (old.namespace(name), new.namespace(name));
        match namespace_event(before, after) {
            Some(Event::NamespaceDeleted) => last.push(draft(Event::NamespaceDeleted, name)),
            Some(event) => first.push(draft(event, name)),
            None => {}
        }
        let before = before.map_or(&empty, |ns| &ns.services);
        let after = after.map_or(&empty, |ns| &ns.services);
        // Services are compared by pointer: the writer copies only those it changes.
        let changed = after.iter().filter(|(service, new)| {
            before
                .get(*service)
                .is_none_or(|old| !Arc::ptr_eq(old, new))
        });
        let removed = before
            .keys()
            .filter(|service| !after.contains_key(*service));
        for service in changed.map(|(service, _)| service).chain(removed) {
            services.insert((name.as_str(), service));
        }
    }
    for (namespace, name) in services {
        let before = old.service(namespace, name);
        let after = new.service(namespace, name);
        service_drafts(namespace, before, after, &mut first);
    }
    first.extend(last);
    first
}

fn namespace_event(
    before: Option<&Arc<Namespace>>,
    after: Option<&Arc<Namespace>>,
) -> Option<Event> {
    match (before, after) {
        (None, Some(_)) => Some(Event::NamespaceCreated),
        (Some(_), None) => Some(Event::NamespaceDeleted),
        (Some(before), Some(after))
            if !Arc::ptr_eq(&before.settings, &after.settings)
                || !Arc::ptr_eq(&before.meta, &after.meta) && before.meta != after.meta =>
        {
            Some(Event::NamespaceUpdated)
        }
        _ => None,
    }
}

/// A change found, before [`RecentChanges`] numbers and times it.
fn draft(event: Event, namespace: &str) -> ChangeEntry {
    ChangeEntry {
        index: 0,
        time: SystemTime::UNIX_EPOCH,
        event,
        namespace: namespace.to_owned(),
        service: None,
        instance: None,
        source: None,
        reason: None,
    }
}

/// The changes of one service: its creation, its instances', its update or deletion.
fn service_drafts(
    namespace: &str,
    before: Option<&Arc<Service>>,
    after: Option<&Arc<Service>>,
    out: &mut Vec<ChangeEntry>,
) {
    if let (Some(before), Some(after)) = (before, after)
        && Arc::ptr_eq(before, after)
    {
        return;
    }
    let Some(name) = after.or(before).map(|s| s.name.as_str()) else {
        return;
    };
    let of_service = |event| ChangeEntry {
        service: Some(name.to_owned()),
        ..draft(event, namespace)
    };
    match (before, after) {
        (None, Some(_)) => out.push(of_service(Event::ServiceCreated)),
        (Some(before), Some(after))
            if *before.meta != *after.meta || *before.policy != *after.policy =>
        {
            out.push(of_service(Event::ServiceUpdated));
        }
        _ => {}
    }
    let empty = imbl::OrdMap::new();
    let old = before.map_or(&empty, |s| &s.instances);
    let new = after.map_or(&empty, |s| &s.instances);
    for item in old.diff(new) {
        let (instance, events) = match item {
            DiffItem::Add(_, added) => (added, vec![(Event::Registered, None)]),
            DiffItem::Remove(_, removed) => (removed, vec![(Event::Deregistered, None)]),
            DiffItem::Update {
                old: (_, old),
                new: (_, new),
            } => (new, instance_events(old, new)),
        };
        for (event, reason) in events {
            out.push(ChangeEntry {
                instance: Some(instance.id.clone()),
                source: Some(instance.source.clone()),
                reason,
                ..of_service(event)
            });
        }
    }
    if before.is_some() && after.is_none() {
        out.push(of_service(Event::ServiceDeleted));
    }
}

/// What changed in one instance, each with its reason.
pub(super) fn instance_events(old: &Instance, new: &Instance) -> Vec<(Event, Option<String>)> {
    let mut events = Vec::new();
    // The source's word on health is in the spec, but is a health change, not a new
    // registration (`PUT .../health`).
    let same_health = || InstanceSpec {
        healthy: old.spec.healthy,
        ..new.spec.clone()
    };
    if old.source != new.source || old.spec != new.spec && old.spec != same_health() {
        events.push((Event::Replaced, None));
    }
    if old.is_healthy() != new.is_healthy() {
        let event = match new.is_healthy() {
            true => Event::Healthy,
            false => Event::Unhealthy,
        };
        events.push((event, Some(health_reason(old, new))));
    }
    if old.is_draining() != new.is_draining() {
        let event = match new.is_draining() {
            true => Event::Drained,
            false => Event::Undrained,
        };
        events.push((event, None));
    }
    if events.is_empty() {
        events.push((Event::Updated, Some(health_reason(old, new))));
    }
    events
}

/// Why an instance's health changed (or, for [`Event::Updated`], what else did): the
/// first of its check, heartbeat and source's word that moved.
fn health_reason(old: &Instance, new: &Instance) -> String {
    let check = || match &new.check_reason {
        Some(reason) => format!("check: {reason}"),
        None if new.check_ok => "check passing".to_owned(),
        None => "check failing".to_owned(),
    };
    if old.check_ok != new.check_ok || old.check_reason != new.check_reason {
        check()
    } else if old.heartbeat_ok != new.heartbeat_ok {
        match new.heartbeat_ok {
            true => "heartbeat received".to_owned(),
            false => "heartbeat expired".to_owned(),
        }
    } else if old.spec.healthy != new.spec.healthy {
        match new.spec.healthy {
            true => format!("reported healthy ({})", new.source),
            false => format!("reported unhealthy ({})", new.source),
        }
    } else if !new.is_healthy() {
        // Registered again while unhealthy for a reason that stayed.
        match (new.check_ok, new.heartbeat_ok) {
            (false, _) => check(),
            (_, false) => "heartbeat expired".to_owned(),
            _ => format!("reported unhealthy ({})", new.source),
        }
    } else {
        "registered again".to_owned()
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
