//! Changes to instances: register, deregister, health, and a source's full sync.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::admission::{Admission, Limit, exceeded};
use super::catalog::{admit_service, implicit_service};
use super::change::{ChangeError, InstanceKey};
use super::model::{Instance, InstanceSpec, Service, SourceId};
use super::state::{State, Touched};

/// Refuses an API registration of a new instance into `service` (the one `key` names)
/// that would pass a ceiling, given the instances the APIs registered in all.
fn admit_instance(
    key: &InstanceKey,
    service: &Service,
    api_instances: usize,
    admission: &Admission,
) -> Result<(), ChangeError> {
    if service.instances.len() >= admission.instances_per_service {
        return Err(exceeded(
            Limit::InstancesPerService,
            format!(
                "service {}/{} has {} instances; the limit is {}",
                key.namespace,
                key.service,
                service.instances.len(),
                admission.instances_per_service
            ),
        ));
    }
    if api_instances >= admission.instances {
        return Err(exceeded(
            Limit::Instances,
            format!(
                "{api_instances} instances are registered through the APIs; the limit is {}",
                admission.instances
            ),
        ));
    }
    Ok(())
}

/// The checks an upserted spec passes, whatever sent it (a [`Change::Upsert`](super::Change::Upsert),
/// a batch's part, a log an older release wrote): nothing out of bounds reaches the
/// health task, nor more named ports, or longer names, than DNS answers.
pub(super) fn check_spec(spec: &InstanceSpec) -> Result<(), ChangeError> {
    super::check::health_bounds(spec).map_err(|e| ChangeError::Invalid(e.to_string()))?;
    super::validate::ports(spec.ports()).map_err(|e| ChangeError::Invalid(e.to_string()))
}

impl State {
    /// Registers or replaces an instance, creating its service implicitly if needed; an
    /// instance another source owns is refused, and an API registration (`admission`)
    /// that would pass a ceiling. The service is found once, for all of that.
    pub(super) fn upsert(
        &mut self,
        key: &InstanceKey,
        spec: InstanceSpec,
        source: SourceId,
        now: SystemTime,
        touched: &mut Touched,
        admission: Option<&Admission>,
    ) -> Result<bool, ChangeError> {
        if let Some(admission) = admission {
            admission.attributes(&spec.attributes)?;
        }
        let api_instances = admission.map(|_| self.api_instances()).unwrap_or_default();
        // Not `namespace_mut`: the service stays borrowed while `service_ids` and `owned`
        // change below, which a borrow of the whole `State` would not allow.
        let namespace = self
            .snapshot
            .namespaces
            .get_mut(&key.namespace)
            .ok_or_else(|| ChangeError::NamespaceNotFound(key.namespace.clone()))?;
        let namespace = Arc::make_mut(namespace);
        let (name, service, created) =
            match namespace.services.get_key_value_mut(key.service.as_str()) {
                Some((name, service)) => (name.clone(), service, false),
                None => {
                    if let Some(admission) = admission {
                        admit_service(&key.namespace, namespace.services.len(), admission)?;
                    }
                    let service = implicit_service(&namespace.settings, &key.service, now);
                    let name: Arc<str> = key.service.as_str().into();
                    namespace.services.insert(name.clone(), Arc::new(service));
                    let service = namespace.services.get_mut(&*name).expect("inserted");
                    (name, service, true)
                }
            };
        let old = service.instances.get(key.id.as_str());
        if let (None, Some(admission)) = (old, admission)
            && !created
        {
            admit_instance(key, service, api_instances, admission)?;
        }
        if let Some(old) = old.filter(|old| old.source != source) {
            // Nothing was created: the service exists, since the instance does.
            return Err(ChangeError::OwnedByOther {
                owner: old.source.clone(),
                key: key.clone(),
            });
        }
        if old.is_some_and(|old| old.spec == spec && old.heartbeat_ok) {
            return Ok(false);
        }
        let existed = old.is_some();
        let mut instance = Instance {
            id: key.id.clone(),
            source: source.clone(),
            heartbeat_ok: true,
            check_ok: true,
            check_reason: None,
            // An operator's hold outlasts a new registration of the same instance.
            draining: old.is_some_and(|old| old.draining),
            created: old.map_or(now.into(), |old| old.created),
            updated: now.into(),
            spec,
        };
        // The check starts over when what it probes changes; otherwise its verdict stays.
        let check = instance.check(&service.policy).cloned();
        match old {
            Some(old)
                if old.check(&service.policy) == check.as_ref()
                    && same_target(&old.spec, &instance.spec) =>
            {
                instance.check_ok = old.check_ok;
                instance.check_reason = old.check_reason.clone();
            }
            _ if check.as_ref().is_some_and(|c| c.start_unhealthy) => {
                instance.check_ok = false;
                instance.check_reason = Some("waiting for the first passing checks".into());
            }
            _ => {}
        }
        touched.service(&key.namespace, &name, (!created).then_some(&*service));
        let service = Arc::make_mut(service);
        service.instances.insert(Arc::new(instance));
        service.instances_revision += 1;
        if created {
            self.snapshot.service_ids.insert(
                service.meta.id.clone(),
                (key.namespace.clone(), key.service.clone()),
            );
        }
        if !existed {
            self.owned.add(&source, &key.namespace, &key.service);
        }
        Ok(true)
    }

    /// Changes an existing instance in place (health, heartbeat) without counting it as a
    /// new registration; `edit` says whether it changed anything.
    pub(super) fn update_instance(
        &mut self,
        key: &InstanceKey,
        touched: &mut Touched,
        edit: impl FnOnce(&mut Instance) -> bool,
    ) -> Result<bool, ChangeError> {
        let mut instance = (**self.instance(key)?).clone();
        if !edit(&mut instance) {
            return Ok(false);
        }
        let namespace = self.namespace_mut(&key.namespace)?;
        if let Some((name, service)) = namespace.services.get_key_value_mut(key.service.as_str()) {
            touched.service(&key.namespace, name, Some(&*service));
            Arc::make_mut(service).instances.insert(Arc::new(instance));
        }
        Ok(true)
    }

    /// Removes an instance that exists; an implicit service left empty goes with it.
    pub(super) fn remove(&mut self, key: &InstanceKey, touched: &mut Touched) {
        let Ok(namespace) = self.namespace_mut(&key.namespace) else {
            return;
        };
        let Some((name, service)) = namespace.services.get_key_value_mut(key.service.as_str())
        else {
            return;
        };
        if !service.instances.contains(&key.id) {
            return;
        }
        touched.service(&key.namespace, name, Some(&*service));
        let service = Arc::make_mut(service);
        let Some(old) = service.instances.remove(key.id.as_str()) else {
            return;
        };
        service.instances_revision += 1;
        if service.instances.is_empty() && !service.meta.declared {
            let id = service.meta.id.clone();
            namespace.services.remove(key.service.as_str());
            self.snapshot.service_ids.remove(&id);
        }
        self.owned.remove(&old.source, &key.namespace, &key.service);
    }

    pub(super) fn sync(
        &mut self,
        source: SourceId,
        instances: Vec<(InstanceKey, InstanceSpec)>,
        now: SystemTime,
        touched: &mut Touched,
    ) -> bool {
        let mut changed = self.snapshot.unsynced.remove(&source).is_some();
        let wanted: BTreeMap<InstanceKey, InstanceSpec> = instances.into_iter().collect();
        let mut stale = self.owned.keys(&self.snapshot, &source);
        stale.retain(|k| !wanted.contains_key(k));
        for key in stale {
            self.remove(&key, touched);
            changed = true;
        }
        for (key, spec) in wanted {
            match self.upsert(&key, spec, source.clone(), now, touched, None) {
                Ok(upserted) => changed |= upserted,
                Err(error) => tracing::warn!(%source, %error, "sync skipped an instance"),
            }
        }
        changed
    }

    /// Deregisters an instance; only its owner may.
    pub(super) fn remove_owned(
        &mut self,
        key: &InstanceKey,
        source: SourceId,
        touched: &mut Touched,
    ) -> Result<bool, ChangeError> {
        let owner = self.instance(key)?.source.clone();
        if owner != source {
            let key = key.clone();
            return Err(ChangeError::OwnedByOther { key, owner });
        }
        self.remove(key, touched);
        Ok(true)
    }
}

impl State {
    /// Applies a [`Change::Batch`](super::Change::Batch): every part or none. On a
    /// refusal the snapshot (an O(1) copy) is put back, and the ownership index is
    /// repaired for the keys the batch reached, the only ones it can have changed (each
    /// kept by move once applied: a part borrows its key).
    pub(super) fn batch(
        &mut self,
        source: SourceId,
        changes: Vec<(InstanceKey, Option<InstanceSpec>)>,
        now: SystemTime,
        touched: &mut Touched,
        admission: Option<&Admission>,
    ) -> Result<bool, ChangeError> {
        let (before, mark) = (self.snapshot.clone(), touched.mark());
        let mut reached = Vec::with_capacity(changes.len());
        let mut changed = false;
        for (key, spec) in changes {
            let owner = source.clone();
            let result = match spec {
                Some(spec) => check_spec(&spec)
                    .and_then(|()| self.upsert(&key, spec, owner, now, touched, admission)),
                None => self.remove_owned(&key, owner, touched),
            };
            reached.push(key);
            match result {
                Ok(part) => changed |= part,
                Err(error) => {
                    touched.rollback(mark);
                    self.restore(before, &reached);
                    return Err(error);
                }
            }
        }
        Ok(changed)
    }
}

/// Whether an active check would probe the same address and port.
fn same_target(a: &InstanceSpec, b: &InstanceSpec) -> bool {
    a.ipv4 == b.ipv4 && a.ipv6 == b.ipv6 && a.port == b.port
}
