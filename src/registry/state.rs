//! The writer's working state, and applying one `Change` to it.
//!
//! Pure: no I/O, no clock reads (the caller passes `now`), so every rule is unit tested,
//! and replaying the write-ahead log reproduces exactly what was applied live. The
//! changes to instances are in [`instances`](super::instances), those to namespaces and
//! services (the catalog) in [`catalog`](super::catalog).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use super::admission::Admission;
use super::change::{Change, ChangeError, InstanceKey};
use super::model::{Instance, Service};
use super::owned::Ownership;
use super::snapshot::{Namespace, Snapshot};

/// What a batch of changes modified, so derived views rebuild only that.
///
/// Each changed service is found by name once per change, by the change itself: it hands
/// its names as the snapshot holds them and its version before, so the publish hooks and
/// the recorder read the versions instead of looking the service up again (a cold string
/// compare per B-tree step in a large namespace, which every stage repeated).
#[derive(Clone, Debug, Default)]
pub struct Touched {
    /// Services whose instances or policy changed, each once: in the order first touched
    /// while changes apply, by namespace and name once [`Touched::resolve`]d.
    services: Vec<TouchedService>,
    /// Where each of `services` is, by namespace (with its name, to share) and name;
    /// emptied when resolved.
    index: HashMap<Arc<str>, Positions>,
    /// Namespaces created, deleted or whose settings changed: rebuild them whole.
    pub namespaces: BTreeSet<String>,
}

/// One namespace's part of [`Touched`]'s index: its name (which its services share) and
/// where each of its services is.
type Positions = (Arc<str>, HashMap<Arc<str>, usize>);

/// A service a batch changed, with its version before the batch and after it.
#[derive(Clone, Debug)]
pub struct TouchedService {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// As it was before its first change in the batch (None: created by it).
    pub before: Option<Arc<Service>>,
    /// As published (None: deleted); set by [`Touched::resolve`].
    pub after: Option<Arc<Service>>,
}

/// How far a [`Touched`] got, to undo what a refused batch added ([`Touched::rollback`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Mark(usize);

impl Touched {
    /// The services changed, by namespace and name, each with its versions (once
    /// resolved: what the publish hooks and the recorder are handed).
    pub fn services(&self) -> &[TouchedService] {
        &self.services
    }

    /// Notes a change to the service `name` (the snapshot's own key) of `namespace`,
    /// which was `before` (None: created now). Only the first change in a batch keeps
    /// its `before`.
    pub(super) fn service(
        &mut self,
        namespace: &str,
        name: &Arc<str>,
        before: Option<&Arc<Service>>,
    ) {
        let touched = match self.index.get_mut(namespace) {
            Some(touched) => touched,
            None => {
                let namespace: Arc<str> = namespace.into();
                let names = (namespace.clone(), HashMap::new());
                self.index.entry(namespace).or_insert(names)
            }
        };
        if touched.1.contains_key(&**name) {
            return;
        }
        touched.1.insert(name.clone(), self.services.len());
        self.services.push(TouchedService {
            namespace: touched.0.clone(),
            name: name.clone(),
            before: before.cloned(),
            after: None,
        });
    }

    /// Where this is now, to [`Touched::rollback`] to.
    pub(super) fn mark(&self) -> Mark {
        Mark(self.services.len())
    }

    /// Forgets the services first touched after `mark` (the namespaces are kept: what
    /// rolls back, a batch of instance changes, touches none).
    pub(super) fn rollback(&mut self, mark: Mark) {
        for gone in self.services.drain(mark.0..) {
            if let Some((_, services)) = self.index.get_mut(&*gone.namespace) {
                services.remove(&*gone.name);
            }
        }
    }

    /// Reads each changed service's version in `snapshot` (the one to publish) and sorts
    /// them by namespace and name: one lookup per service per publish. The writer does
    /// it before the hooks run; `before` is right only for a batch applied on top of the
    /// last published snapshot (every publish starts a new `Touched`).
    pub(super) fn resolve(&mut self, snapshot: &Snapshot) {
        self.index = HashMap::new();
        self.services
            .sort_unstable_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut namespace: Option<(Arc<str>, Option<&Arc<Namespace>>)> = None;
        for service in &mut self.services {
            if namespace
                .as_ref()
                .is_none_or(|(name, _)| *name != service.namespace)
            {
                let found = snapshot.namespace(&service.namespace);
                namespace = Some((service.namespace.clone(), found));
            }
            let services = namespace.as_ref().and_then(|(_, found)| *found);
            service.after = services
                .and_then(|ns| ns.services.get(&*service.name))
                .cloned();
        }
    }
}

/// The writer's mutable state: the working snapshot plus an index of who owns what.
pub(super) struct State {
    pub snapshot: Snapshot,
    pub(super) owned: Ownership,
}

impl State {
    /// The model of `snapshot`, with its ownership index rebuilt from it.
    pub fn new(snapshot: Snapshot) -> Self {
        let owned = Ownership::of(&snapshot);
        Self { snapshot, owned }
    }

    /// Applies `change`; returns whether anything changed. What it modified is added to
    /// `touched`. On error nothing is modified. An API change comes with the
    /// [`Admission`] ceilings it must stay within; sources (the operator's
    /// configuration) and the log replayed at start (accepted before, whatever the
    /// ceilings are now) come without.
    pub fn apply(
        &mut self,
        change: Change,
        now: SystemTime,
        touched: &mut Touched,
        admission: Option<&Admission>,
    ) -> Result<bool, ChangeError> {
        match change {
            Change::Upsert { key, spec, source } => {
                super::instances::check_spec(&spec)?;
                self.upsert(&key, spec, source, now, touched, admission)
            }
            Change::Remove { key, source } => self.remove_owned(&key, source, touched),
            Change::Batch { source, changes } => {
                self.batch(source, changes, now, touched, admission)
            }
            Change::SetHealth { key, healthy } => self.update_instance(&key, touched, |i| {
                let changed = i.spec.healthy != healthy;
                i.spec.healthy = healthy;
                changed
            }),
            Change::Drain { key, draining } => self.update_instance(&key, touched, |i| {
                let changed = i.draining != draining;
                i.draining = draining;
                changed
            }),
            Change::Heartbeat { key } => self.update_instance(&key, touched, |i| {
                !std::mem::replace(&mut i.heartbeat_ok, true)
            }),
            Change::HeartbeatExpired { key } => self.update_instance(&key, touched, |i| {
                std::mem::replace(&mut i.heartbeat_ok, false)
            }),
            Change::CheckResult {
                key,
                healthy,
                reason,
            } => self.update_instance(&key, touched, |i| {
                // A new reason alone is a change: "not checked" notes keep health as is.
                let changed = i.check_ok != healthy || i.check_reason.as_deref() != Some(&*reason);
                i.check_ok = healthy;
                i.check_reason = Some(reason.into());
                changed
            }),
            Change::Sync { source, instances } => Ok(self.sync(source, instances, now, touched)),
            Change::CreateNamespace(def) => self.create_namespace(def, now, touched, admission),
            Change::UpdateNamespace {
                name,
                description,
                negative_ttl,
            } => self.update_namespace(name, description, negative_ttl, touched, admission),
            Change::DeleteNamespace { name } => self.delete_namespace(name, touched),
            Change::CreateService {
                namespace,
                name,
                def,
            } => self.create_service(namespace, name, def, now, touched, admission),
            Change::UpdateService {
                namespace,
                name,
                description,
                records,
            } => self.update_service(&namespace, &name, touched, |settings, service| {
                let meta = Arc::make_mut(&mut service.meta);
                if let Some(description) = description {
                    meta.description = Some(description);
                }
                if let (Some(records), Some(dns)) = (records, meta.dns.as_mut()) {
                    dns.records = records;
                }
                service.policy = settings.policy_for(&service.name, service.meta.dns.as_ref());
            }),
            Change::DeleteService { namespace, name } => {
                self.delete_service(namespace, name, touched)
            }
            Change::SetServiceAttributes {
                namespace,
                service,
                set,
                remove,
            } => {
                self.set_service_attributes(&namespace, &service, set, &remove, touched, admission)
            }
            Change::Tag {
                target,
                set,
                remove,
            } => self.tag(target, set, &remove, touched, admission),
        }
    }

    pub(super) fn namespace_ref(&self, name: &str) -> Result<&Arc<Namespace>, ChangeError> {
        self.snapshot
            .namespace(name)
            .ok_or_else(|| ChangeError::NamespaceNotFound(name.to_owned()))
    }

    pub(super) fn service_ref(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<&Arc<Service>, ChangeError> {
        self.namespace_ref(namespace)?
            .services
            .get(name)
            .ok_or_else(|| ChangeError::ServiceNotFound {
                namespace: namespace.to_owned(),
                service: name.to_owned(),
            })
    }

    pub(super) fn namespace_mut(&mut self, name: &str) -> Result<&mut Namespace, ChangeError> {
        let namespace = self
            .snapshot
            .namespaces
            .get_mut(name)
            .ok_or_else(|| ChangeError::NamespaceNotFound(name.to_owned()))?;
        Ok(Arc::make_mut(namespace))
    }

    pub(super) fn instance(&self, key: &InstanceKey) -> Result<&Arc<Instance>, ChangeError> {
        let namespace = self
            .snapshot
            .namespace(&key.namespace)
            .ok_or_else(|| ChangeError::NamespaceNotFound(key.namespace.clone()))?;
        namespace
            .services
            .get(key.service.as_str())
            .and_then(|s| s.instances.get(key.id.as_str()))
            .ok_or_else(|| ChangeError::InstanceNotFound(key.clone()))
    }

    /// The instances `change` may add to or take from a source (for [`State::restore`]).
    #[cfg(feature = "etcd")]
    pub(super) fn instance_keys(&self, change: &Change) -> Vec<InstanceKey> {
        match change {
            Change::Upsert { key, .. } | Change::Remove { key, .. } => vec![key.clone()],
            Change::Sync { source, instances } => {
                let mut keys = self.owned.keys(&self.snapshot, source);
                keys.extend(instances.iter().map(|(k, _)| k.clone()));
                keys
            }
            Change::Batch { changes, .. } => changes.iter().map(|(k, _)| k.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// Puts the model back to `snapshot`, taken before changes that added or removed at
    /// most the instances `keys`: the ownership index is counted again for their services only,
    /// not rebuilt (which is O(instances)).
    pub(super) fn restore<'a>(
        &mut self,
        snapshot: Snapshot,
        keys: impl IntoIterator<Item = &'a InstanceKey>,
    ) {
        self.snapshot = snapshot;
        let services: BTreeSet<(&str, &str)> = keys
            .into_iter()
            .map(|key| (key.namespace.as_str(), key.service.as_str()))
            .collect();
        for (namespace, service) in services {
            self.owned.recount(&self.snapshot, namespace, service);
        }
    }

    /// Instances the APIs and DNS UPDATE keys (`update:<key>`) registered, in all:
    /// what `[limits] instances` bounds (kept by the ownership index as it changes).
    pub(super) fn api_instances(&self) -> usize {
        self.owned.api()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "admission_tests.rs"]
mod admission_tests;
