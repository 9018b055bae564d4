//! Applying one `Change` to the writer's working snapshot.
//!
//! Pure: no I/O, no clock reads (the caller passes `now`), so every rule is unit tested.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::change::{Change, ChangeError, InstanceKey};
use super::model::{Instance, InstanceSpec, Service, SourceId};
use super::snapshot::Snapshot;

/// The writer's mutable state: the working snapshot plus an index of who owns what.
pub(super) struct Model {
    pub snapshot: Snapshot,
    owned: HashMap<SourceId, HashSet<InstanceKey>>,
}

/// The services a batch of changes modified, so views rebuild only those.
pub type TouchedServices = BTreeSet<(String, String)>;

impl Model {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            owned: HashMap::new(),
        }
    }

    /// Applies `change`; returns whether anything changed. Services it modified are added
    /// to `touched`. On error nothing is modified.
    pub fn apply(
        &mut self,
        change: Change,
        now: SystemTime,
        touched: &mut TouchedServices,
    ) -> Result<bool, ChangeError> {
        match change {
            Change::Upsert { key, spec, source } => {
                self.check_owner(&key, &source)?;
                Ok(self.upsert(key, spec, source, now, touched)?)
            }
            Change::Remove { key, source } => {
                let owner = self.owner(&key)?;
                if owner != source {
                    return Err(ChangeError::OwnedByOther { key, owner });
                }
                self.remove(&key, touched);
                Ok(true)
            }
            Change::SetHealth { key, healthy } => {
                let current = self.instance(&key)?;
                if current.spec.healthy == healthy {
                    return Ok(false);
                }
                let mut spec = current.spec.clone();
                spec.healthy = healthy;
                let source = current.source.clone();
                self.upsert(key, spec, source, now, touched)
            }
            Change::Sync { source, instances } => Ok(self.sync(source, instances, now, touched)),
        }
    }

    fn instance(&self, key: &InstanceKey) -> Result<&Arc<Instance>, ChangeError> {
        let namespace = self
            .snapshot
            .namespace(&key.namespace)
            .ok_or_else(|| ChangeError::NamespaceNotFound(key.namespace.clone()))?;
        namespace
            .services
            .get(&key.service)
            .and_then(|s| s.instances.get(&key.id))
            .ok_or_else(|| ChangeError::InstanceNotFound(key.clone()))
    }

    fn owner(&self, key: &InstanceKey) -> Result<SourceId, ChangeError> {
        Ok(self.instance(key)?.source.clone())
    }

    fn check_owner(&self, key: &InstanceKey, source: &SourceId) -> Result<(), ChangeError> {
        match self.instance(key) {
            Ok(existing) if existing.source != *source => Err(ChangeError::OwnedByOther {
                key: key.clone(),
                owner: existing.source.clone(),
            }),
            Err(ChangeError::NamespaceNotFound(ns)) => Err(ChangeError::NamespaceNotFound(ns)),
            _ => Ok(()),
        }
    }

    fn upsert(
        &mut self,
        key: InstanceKey,
        spec: InstanceSpec,
        source: SourceId,
        now: SystemTime,
        touched: &mut TouchedServices,
    ) -> Result<bool, ChangeError> {
        let Some(namespace) = self.snapshot.namespaces.get_mut(&key.namespace) else {
            return Err(ChangeError::NamespaceNotFound(key.namespace));
        };
        let namespace = Arc::make_mut(namespace);
        let settings = &namespace.settings;
        let service = namespace
            .services
            .entry(key.service.clone())
            .or_insert_with(|| {
                Arc::new(Service {
                    name: key.service.clone(),
                    policy: settings.policy_for(&key.service),
                    instances: imbl::OrdMap::new(),
                })
            });
        let created = match service.instances.get(&key.id) {
            Some(old) if old.spec == spec && old.source == source => return Ok(false),
            Some(old) => old.created,
            None => now,
        };
        let instance = Instance {
            id: key.id.clone(),
            spec,
            source: source.clone(),
            created,
            updated: now,
        };
        Arc::make_mut(service)
            .instances
            .insert(key.id.clone(), Arc::new(instance));
        touched.insert((key.namespace.clone(), key.service.clone()));
        self.owned.entry(source).or_default().insert(key);
        Ok(true)
    }

    /// Removes an instance that exists; a service left empty is removed with it.
    fn remove(&mut self, key: &InstanceKey, touched: &mut TouchedServices) {
        let Some(namespace) = self.snapshot.namespaces.get_mut(&key.namespace) else {
            return;
        };
        let namespace = Arc::make_mut(namespace);
        let Some(service) = namespace.services.get_mut(&key.service) else {
            return;
        };
        let Some(old) = Arc::make_mut(service).instances.remove(&key.id) else {
            return;
        };
        if service.instances.is_empty() {
            namespace.services.remove(&key.service);
        }
        if let Some(keys) = self.owned.get_mut(&old.source) {
            keys.remove(key);
        }
        touched.insert((key.namespace.clone(), key.service.clone()));
    }

    fn sync(
        &mut self,
        source: SourceId,
        instances: Vec<(InstanceKey, InstanceSpec)>,
        now: SystemTime,
        touched: &mut TouchedServices,
    ) -> bool {
        let mut changed = self.snapshot.unsynced.remove(&source).is_some();
        let wanted: BTreeMap<InstanceKey, InstanceSpec> = instances.into_iter().collect();
        let stale: Vec<InstanceKey> = self
            .owned
            .get(&source)
            .map(|keys| {
                keys.iter()
                    .filter(|k| !wanted.contains_key(*k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for key in stale {
            self.remove(&key, touched);
            changed = true;
        }
        for (key, spec) in wanted {
            if let Err(error) = self.check_owner(&key, &source) {
                tracing::warn!(%source, %error, "sync skipped an instance");
                continue;
            }
            match self.upsert(key, spec, source.clone(), now, touched) {
                Ok(upserted) => changed |= upserted,
                Err(error) => tracing::warn!(%source, %error, "sync skipped an instance"),
            }
        }
        changed
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
