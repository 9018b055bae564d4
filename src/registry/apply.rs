//! Applying one `Change` to the writer's working snapshot.
//!
//! Pure: no I/O, no clock reads (the caller passes `now`), so every rule is unit tested,
//! and replaying the write-ahead log reproduces exactly what was applied live.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::change::{Change, ChangeError, InstanceKey, NamespaceDef, ServiceDef, Tagged};
use super::model::{
    Instance, InstanceSpec, NamespaceMeta, Origin, Service, ServiceMeta, SourceId, stable_id,
};
use super::policy::NamespaceSettings;
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
pub(super) struct Model {
    pub snapshot: Snapshot,
    owned: HashMap<SourceId, HashSet<InstanceKey>>,
}

/// Default TTL of positive answers in a namespace created through the API (its services
/// carry their own TTLs in their DnsConfig).
const API_NAMESPACE_TTL: u32 = 5;
/// Default negative TTL of a namespace created through the API without an SOA TTL.
const API_NAMESPACE_NEGATIVE_TTL: u32 = 1;

impl Model {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            owned: HashMap::new(),
        }
    }

    /// Applies `change`; returns whether anything changed. What it modified is added to
    /// `touched`. On error nothing is modified.
    pub fn apply(
        &mut self,
        change: Change,
        now: SystemTime,
        touched: &mut Touched,
    ) -> Result<bool, ChangeError> {
        match change {
            Change::Upsert { key, spec, source } => self.upsert(key, spec, source, now, touched),
            Change::Remove { key, source } => {
                let owner = self.instance(&key)?.source.clone();
                if owner != source {
                    return Err(ChangeError::OwnedByOther { key, owner });
                }
                self.remove(&key, touched);
                Ok(true)
            }
            Change::SetHealth { key, healthy } => self.update_instance(&key, touched, |i| {
                let changed = i.spec.healthy != healthy;
                i.spec.healthy = healthy;
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
                let changed = i.check_ok != healthy;
                i.check_ok = healthy;
                i.check_reason = Some(reason);
                changed
            }),
            Change::Sync { source, instances } => Ok(self.sync(source, instances, now, touched)),
            Change::CreateNamespace(def) => self.create_namespace(def, now, touched),
            Change::UpdateNamespace {
                name,
                description,
                negative_ttl,
            } => {
                let namespace = self.namespace_mut(&name)?;
                if let Some(description) = description {
                    Arc::make_mut(&mut namespace.meta).description = Some(description);
                }
                if let Some(ttl) = negative_ttl {
                    Arc::make_mut(&mut namespace.settings).negative_ttl = ttl;
                }
                touched.namespaces.insert(name);
                Ok(true)
            }
            Change::DeleteNamespace { name } => self.delete_namespace(name, touched),
            Change::CreateService {
                namespace,
                name,
                def,
            } => self.create_service(namespace, name, def, now, touched),
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
            } => self.update_service(&namespace, &service, touched, |_, service| {
                edit_map(
                    &mut Arc::make_mut(&mut service.meta).attributes,
                    set,
                    &remove,
                );
            }),
            Change::Tag {
                target,
                set,
                remove,
            } => match target {
                Tagged::Namespace(name) => {
                    let namespace = self.namespace_mut(&name)?;
                    edit_map(&mut Arc::make_mut(&mut namespace.meta).tags, set, &remove);
                    Ok(true)
                }
                Tagged::Service { namespace, service } => {
                    self.update_service(&namespace, &service, touched, |_, service| {
                        edit_map(&mut Arc::make_mut(&mut service.meta).tags, set, &remove);
                    })
                }
            },
        }
    }

    fn namespace_mut(&mut self, name: &str) -> Result<&mut Namespace, ChangeError> {
        let namespace = self
            .snapshot
            .namespaces
            .get_mut(name)
            .ok_or_else(|| ChangeError::NamespaceNotFound(name.to_owned()))?;
        Ok(Arc::make_mut(namespace))
    }

    fn instance(&self, key: &InstanceKey) -> Result<&Arc<Instance>, ChangeError> {
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

    /// Registers or replaces an instance, creating its service implicitly if needed; an
    /// instance another source owns is refused.
    fn upsert(
        &mut self,
        key: InstanceKey,
        spec: InstanceSpec,
        source: SourceId,
        now: SystemTime,
        touched: &mut Touched,
    ) -> Result<bool, ChangeError> {
        let namespace = self.namespace_mut(&key.namespace)?;
        let settings = namespace.settings.clone();
        let mut created_service = None;
        let service = namespace
            .services
            .entry(key.service.as_str().into())
            .or_insert_with(|| {
                let service = implicit_service(&settings, &key.service, now);
                created_service = Some(service.meta.id.clone());
                Arc::new(service)
            });
        let old = service.instances.get(key.id.as_str());
        if let Some(old) = old.filter(|old| old.source != source) {
            // Nothing was created: the service exists, since the instance does.
            return Err(ChangeError::OwnedByOther {
                owner: old.source.clone(),
                key,
            });
        }
        if old.is_some_and(|old| old.spec == spec && old.heartbeat_ok) {
            return Ok(false);
        }
        let mut instance = Instance {
            id: key.id.clone(),
            source: source.clone(),
            heartbeat_ok: true,
            check_ok: true,
            check_reason: None,
            created: old.map_or(now, |old| old.created),
            updated: now,
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
                instance.check_reason = Some("waiting for the first passing checks".to_owned());
            }
            _ => {}
        }
        let service = Arc::make_mut(service);
        service
            .instances
            .insert(key.id.as_str().into(), Arc::new(instance));
        service.instances_revision += 1;
        if let Some(id) = created_service {
            self.snapshot
                .service_ids
                .insert(id, (key.namespace.clone(), key.service.clone()));
        }
        touched
            .services
            .insert((key.namespace.clone(), key.service.clone()));
        self.owned.entry(source).or_default().insert(key);
        Ok(true)
    }

    /// Changes an existing instance in place (health, heartbeat) without counting it as a
    /// new registration; `edit` says whether it changed anything.
    fn update_instance(
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
        if let Some(service) = namespace.services.get_mut(key.service.as_str()) {
            Arc::make_mut(service)
                .instances
                .insert(key.id.as_str().into(), Arc::new(instance));
        }
        touched
            .services
            .insert((key.namespace.clone(), key.service.clone()));
        Ok(true)
    }

    /// Removes an instance that exists; an implicit service left empty goes with it.
    fn remove(&mut self, key: &InstanceKey, touched: &mut Touched) {
        let Ok(namespace) = self.namespace_mut(&key.namespace) else {
            return;
        };
        let Some(service) = namespace.services.get_mut(key.service.as_str()) else {
            return;
        };
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
        if let Some(keys) = self.owned.get_mut(&old.source) {
            keys.remove(key);
        }
        touched
            .services
            .insert((key.namespace.clone(), key.service.clone()));
    }

    fn sync(
        &mut self,
        source: SourceId,
        instances: Vec<(InstanceKey, InstanceSpec)>,
        now: SystemTime,
        touched: &mut Touched,
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
            match self.upsert(key, spec, source.clone(), now, touched) {
                Ok(upserted) => changed |= upserted,
                Err(error) => tracing::warn!(%source, %error, "sync skipped an instance"),
            }
        }
        changed
    }

    fn create_namespace(
        &mut self,
        def: NamespaceDef,
        now: SystemTime,
        touched: &mut Touched,
    ) -> Result<bool, ChangeError> {
        if self.snapshot.namespaces.contains_key(&def.name) {
            return Err(ChangeError::NamespaceExists(def.name));
        }
        let settings = NamespaceSettings {
            name: def.name.clone(),
            ttl: API_NAMESPACE_TTL,
            negative_ttl: def.negative_ttl.unwrap_or(API_NAMESPACE_NEGATIVE_TTL),
            nameserver: format!("ns.{}.", def.name),
            rules: Vec::new(),
        };
        let meta = NamespaceMeta {
            id: def.id,
            kind: def.kind,
            origin: Origin::Api,
            description: def.description,
            creator_request_id: def.creator_request_id,
            tags: def.tags,
            created: now,
        };
        self.snapshot.insert_namespace(Namespace {
            settings: Arc::new(settings),
            meta: Arc::new(meta),
            services: imbl::OrdMap::new(),
        });
        touched.namespaces.insert(def.name);
        Ok(true)
    }

    fn delete_namespace(
        &mut self,
        name: String,
        touched: &mut Touched,
    ) -> Result<bool, ChangeError> {
        let namespace = self
            .snapshot
            .namespace(&name)
            .ok_or_else(|| ChangeError::NamespaceNotFound(name.clone()))?;
        if namespace.meta.origin == Origin::Config {
            return Err(ChangeError::Invalid(format!(
                "namespace {name:?} is defined in the configuration file"
            )));
        }
        if !namespace.services.is_empty() {
            return Err(ChangeError::InUse(format!(
                "namespace {name:?} still has services"
            )));
        }
        let id = namespace.meta.id.clone();
        self.snapshot.namespaces.remove(&name);
        self.snapshot.namespace_ids.remove(&id);
        touched.namespaces.insert(name);
        Ok(true)
    }

    fn create_service(
        &mut self,
        namespace_name: String,
        name: String,
        def: ServiceDef,
        now: SystemTime,
        touched: &mut Touched,
    ) -> Result<bool, ChangeError> {
        let namespace = self.namespace_mut(&namespace_name)?;
        let existing = namespace.services.get(name.as_str()).cloned();
        if existing.as_ref().is_some_and(|s| s.meta.declared) {
            return Err(ChangeError::ServiceExists {
                namespace: namespace_name,
                service: name,
            });
        }
        let meta = ServiceMeta {
            id: def.id.clone(),
            declared: true,
            description: def.description,
            dns: def.dns,
            http_only: def.http_only,
            custom_health: def.custom_health,
            attributes: BTreeMap::new(),
            tags: def.tags,
            creator_request_id: def.creator_request_id,
            created: now,
        };
        let policy = namespace.settings.policy_for(&name, meta.dns.as_ref());
        let service = Service {
            name: name.clone(),
            meta: Arc::new(meta),
            policy,
            instances: existing
                .as_ref()
                .map(|s| s.instances.clone())
                .unwrap_or_default(),
            instances_revision: existing.as_ref().map_or(0, |s| s.instances_revision),
        };
        namespace
            .services
            .insert(name.as_str().into(), Arc::new(service));
        if let Some(old) = existing {
            self.snapshot.service_ids.remove(&old.meta.id);
        }
        self.snapshot
            .service_ids
            .insert(def.id, (namespace_name.clone(), name.clone()));
        touched.services.insert((namespace_name, name));
        Ok(true)
    }

    /// Edits a service's metadata or policy in place.
    fn update_service(
        &mut self,
        namespace_name: &str,
        name: &str,
        touched: &mut Touched,
        edit: impl FnOnce(&NamespaceSettings, &mut Service),
    ) -> Result<bool, ChangeError> {
        let namespace = self.namespace_mut(namespace_name)?;
        let settings = namespace.settings.clone();
        let service =
            namespace
                .services
                .get_mut(name)
                .ok_or_else(|| ChangeError::ServiceNotFound {
                    namespace: namespace_name.to_owned(),
                    service: name.to_owned(),
                })?;
        edit(&settings, Arc::make_mut(service));
        touched
            .services
            .insert((namespace_name.to_owned(), name.to_owned()));
        Ok(true)
    }

    fn delete_service(
        &mut self,
        namespace_name: String,
        name: String,
        touched: &mut Touched,
    ) -> Result<bool, ChangeError> {
        let namespace = self.namespace_mut(&namespace_name)?;
        let service =
            namespace
                .services
                .get(name.as_str())
                .ok_or_else(|| ChangeError::ServiceNotFound {
                    namespace: namespace_name.clone(),
                    service: name.clone(),
                })?;
        if !service.instances.is_empty() {
            return Err(ChangeError::InUse(format!(
                "service {name:?} still has instances"
            )));
        }
        let id = service.meta.id.clone();
        namespace.services.remove(name.as_str());
        self.snapshot.service_ids.remove(&id);
        touched.services.insert((namespace_name, name));
        Ok(true)
    }
}

/// Whether an active check would probe the same address and port.
fn same_target(a: &InstanceSpec, b: &InstanceSpec) -> bool {
    a.ipv4 == b.ipv4 && a.ipv6 == b.ipv6 && a.port == b.port
}

/// A service a source created by registering an instance in it.
fn implicit_service(settings: &NamespaceSettings, name: &str, now: SystemTime) -> Service {
    let meta = ServiceMeta {
        id: stable_id("srv-", &format!("{}/{name}", settings.name)),
        declared: false,
        description: None,
        dns: None,
        http_only: false,
        custom_health: false,
        attributes: BTreeMap::new(),
        tags: BTreeMap::new(),
        creator_request_id: None,
        created: now,
    };
    Service {
        name: name.to_owned(),
        meta: Arc::new(meta),
        policy: settings.policy_for(name, None),
        instances: imbl::OrdMap::new(),
        instances_revision: 0,
    }
}

fn edit_map(map: &mut BTreeMap<String, String>, set: BTreeMap<String, String>, remove: &[String]) {
    for key in remove {
        map.remove(key);
    }
    map.extend(set);
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
