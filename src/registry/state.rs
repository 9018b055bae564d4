//! The writer's working state, and applying one `Change` to it.
//!
//! Pure: no I/O, no clock reads (the caller passes `now`), so every rule is unit tested,
//! and replaying the write-ahead log reproduces exactly what was applied live. The
//! changes to instances are in [`instances`](super::instances), those to namespaces and
//! services (the catalog) in [`catalog`](super::catalog).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use super::admission::Admission;
use super::change::{Change, ChangeError, InstanceKey};
use super::model::{Instance, Service, SourceId};
use super::owned::Ownership;
use super::snapshot::{Namespace, Snapshot};

/// What a batch of changes modified, so derived views rebuild only that.
#[derive(Clone, Debug, Default)]
pub struct Touched {
    /// `(namespace, service)` pairs whose instances or policy changed.
    pub services: BTreeSet<(String, String)>,
    /// Namespaces created, deleted or whose settings changed: rebuild them whole.
    pub namespaces: BTreeSet<String>,
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
                // Whatever sent it (a log an older release wrote, too): nothing out of
                // bounds reaches the health task.
                super::check::health_bounds(&spec)
                    .map_err(|e| ChangeError::Invalid(e.to_string()))?;
                // Nor more named ports, or longer names, than DNS answers.
                super::validate::ports(spec.ports())
                    .map_err(|e| ChangeError::Invalid(e.to_string()))?;
                if let Some(admission) = admission {
                    self.admit_instance(&key, &spec, admission)?;
                }
                self.upsert(key, spec, source, now, touched)
            }
            Change::Remove { key, source } => self.remove_owned(key, source, touched),
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
    /// what `[limits] instances` bounds (a few sources, so summing is cheap).
    pub(super) fn api_instances(&self) -> usize {
        self.owned.count_where(|source| {
            *source == SourceId::api() || source.as_str().starts_with("update:")
        })
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "admission_tests.rs"]
mod admission_tests;
