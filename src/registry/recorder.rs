//! Turns each publish into [`ChangeEntry`](super::ChangeEntry)s: what differs between
//! the last snapshot and the new one, in the namespaces and services the publish touched.
//!
//! Works the same for the local writer and the writer on etcd (it sees snapshots, not
//! `Change`s), and costs what the publish touched: only the touched services are
//! compared, each one's instances by a walk that passes a shared instance by its pointer
//! ([`InstanceMap::diff`](super::InstanceMap::diff)). Runs in the writer, after the
//! snapshot is made current, so a waiter it wakes reads a snapshot at least as new as the
//! index it is told.

use std::sync::Arc;
use std::time::SystemTime;

use super::changes::{ChangeEntry, ChangeFeed, Event, RecentChanges};
use super::instance_map::Difference;
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
        let before = self.recent.index();
        self.recent
            .append(snapshot.revision, SystemTime::now(), |found| {
                drafts(&self.previous, snapshot, touched, found);
            });
        self.previous = snapshot.clone();
        if self.recent.index() != before {
            self.feed.publish(self.recent.clone());
        }
    }
}

/// The changes from `old` to `new` in what `touched` names, each handed to `found`:
/// namespaces created and updated first, then services and instances, then namespaces
/// deleted. Drafts borrow from the snapshots, so a sync of a million registrations
/// allocates nothing for the changes [`RecentChanges`] will not keep.
pub(super) fn drafts<'a>(
    old: &'a Snapshot,
    new: &'a Snapshot,
    touched: &'a Touched,
    found: &mut dyn FnMut(Draft<'a>),
) {
    let mut last = Vec::new();
    // Each changed service comes with its versions: none is looked up by name, but those
    // of a namespace touched whole (created, deleted, its settings changed).
    let mut services: Vec<Compared<'a>> = touched
        .services()
        .iter()
        .map(|s| (&*s.namespace, &*s.name, s.before.as_ref(), s.after.as_ref()))
        .collect();
    for name in &touched.namespaces {
        let (before, after) = (old.namespace(name), new.namespace(name));
        match namespace_event(before, after) {
            Some(Event::NamespaceDeleted) => last.push(Draft::of(Event::NamespaceDeleted, name)),
            Some(event) => found(Draft::of(event, name)),
            None => {}
        }
        let (Some(before), Some(after)) =
            (before.map(|ns| &ns.services), after.map(|ns| &ns.services))
        else {
            // Created or deleted: every service it has (had) is changed.
            let (all, deleted) = match (before, after) {
                (Some(before), _) => (&before.services, true),
                (_, Some(after)) => (&after.services, false),
                _ => continue,
            };
            services.extend(all.iter().map(|(service, version)| match deleted {
                true => (name.as_str(), &**service, Some(version), None),
                false => (name.as_str(), &**service, None, Some(version)),
            }));
            continue;
        };
        // Services are compared by pointer: the writer copies only those it changes.
        let changed = after.iter().filter_map(|(service, new)| {
            let old = before.get(service);
            let changed = old.is_none_or(|old| !Arc::ptr_eq(old, new));
            changed.then_some((name.as_str(), &**service, old, Some(new)))
        });
        let removed = before
            .iter()
            .filter(|(service, _)| !after.contains_key(*service))
            .map(|(service, old)| (name.as_str(), &**service, Some(old), None));
        services.extend(changed.chain(removed));
    }
    if !touched.namespaces.is_empty() {
        // In namespace and name order, each once (the touched services are already).
        services.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        services.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    }
    for (namespace, _, before, after) in services {
        service_drafts(namespace, before, after, found);
    }
    last.into_iter().for_each(found);
}

/// A changed service: its namespace and name, its versions before and after.
type Compared<'a> = (
    &'a str,
    &'a str,
    Option<&'a Arc<Service>>,
    Option<&'a Arc<Service>>,
);

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

/// A change found, borrowed from the snapshots compared: [`RecentChanges`] numbers it
/// and turns it into a [`ChangeEntry`] only if it is among the entries kept.
#[derive(Clone, Copy, Debug)]
pub(super) struct Draft<'a> {
    pub event: Event,
    pub namespace: &'a str,
    /// None for a namespace's own events.
    pub service: Option<&'a str>,
    /// The instance (its new version, or the one removed), for instance events.
    pub instance: Option<&'a Instance>,
    /// For health and update events, the instance's version before: the reason is read
    /// from both.
    pub was: Option<&'a Instance>,
}

impl<'a> Draft<'a> {
    fn of(event: Event, namespace: &'a str) -> Self {
        Self {
            event,
            namespace,
            service: None,
            instance: None,
            was: None,
        }
    }

    /// The entry this draft is, with its `index` and `time`.
    pub fn entry(&self, index: u64, time: SystemTime) -> ChangeEntry {
        let reason = match (self.event, self.was, self.instance) {
            (Event::Healthy | Event::Unhealthy | Event::Updated, Some(old), Some(new)) => {
                Some(health_reason(old, new))
            }
            _ => None,
        };
        ChangeEntry {
            index,
            time,
            event: self.event,
            namespace: self.namespace.to_owned(),
            service: self.service.map(str::to_owned),
            instance: self.instance.map(|i| i.id.clone()),
            source: self.instance.map(|i| i.source.clone()),
            reason,
        }
    }
}

/// The changes of one service: its creation, its instances', its update or deletion.
fn service_drafts<'a>(
    namespace: &'a str,
    before: Option<&'a Arc<Service>>,
    after: Option<&'a Arc<Service>>,
    found: &mut dyn FnMut(Draft<'a>),
) {
    if let (Some(before), Some(after)) = (before, after)
        && Arc::ptr_eq(before, after)
    {
        return;
    }
    let Some(name) = after.or(before).map(|s| s.name.as_str()) else {
        return;
    };
    let of_service = |event| Draft {
        service: Some(name),
        ..Draft::of(event, namespace)
    };
    match (before, after) {
        (None, Some(_)) => found(of_service(Event::ServiceCreated)),
        (Some(before), Some(after))
            if *before.meta != *after.meta || *before.policy != *after.policy =>
        {
            found(of_service(Event::ServiceUpdated));
        }
        _ => {}
    }
    let of_instance = |event, instance: &'a Arc<Instance>, was: Option<&'a Arc<Instance>>| Draft {
        instance: Some(&**instance),
        was: was.map(|was| &**was),
        ..of_service(event)
    };
    match (before, after) {
        (Some(before), Some(after)) => {
            for item in before.instances.diff(&after.instances) {
                match item {
                    Difference::Added(added) => found(of_instance(Event::Registered, added, None)),
                    Difference::Removed(removed) => {
                        found(of_instance(Event::Deregistered, removed, None));
                    }
                    Difference::Updated { old, new } => {
                        for event in instance_events(old, new) {
                            found(of_instance(event, new, Some(old)));
                        }
                    }
                }
            }
        }
        // Created or deleted: a walk, without comparing anything.
        (None, Some(after)) => {
            for added in after.instances.values() {
                found(of_instance(Event::Registered, added, None));
            }
        }
        (Some(before), None) => {
            for removed in before.instances.values() {
                found(of_instance(Event::Deregistered, removed, None));
            }
            found(of_service(Event::ServiceDeleted));
        }
        (None, None) => {}
    }
}

/// What changed in one instance, in order: a new registration, health, draining; or,
/// when none of them, an update.
fn instance_events(old: &Instance, new: &Instance) -> impl Iterator<Item = Event> {
    // The source's word on health is in the spec, but is a health change, not a new
    // registration (`PUT .../health`).
    let same_health = || InstanceSpec {
        healthy: old.spec.healthy,
        ..new.spec.clone()
    };
    let replaced = old.source != new.source || old.spec != new.spec && old.spec != same_health();
    let health = (old.is_healthy() != new.is_healthy()).then(|| match new.is_healthy() {
        true => Event::Healthy,
        false => Event::Unhealthy,
    });
    let drain = (old.is_draining() != new.is_draining()).then(|| match new.is_draining() {
        true => Event::Drained,
        false => Event::Undrained,
    });
    let events = [replaced.then_some(Event::Replaced), health, drain];
    let updated = events.iter().all(Option::is_none).then_some(Event::Updated);
    events.into_iter().chain([updated]).flatten()
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
