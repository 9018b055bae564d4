//! The API-owned state as keyed records: what a shared store (etcd) holds, one record per
//! namespace, service and instance, read from the model and set into it.
//!
//! A record is the whole state of one thing, not a change to it, so applying the same
//! record twice changes nothing and a replica that reloads everything ends where one
//! that followed every change is. What is per replica stays out of records: the
//! configuration's namespaces and their TTLs, instances of sources that run on every
//! replica (files), heartbeat deadlines and active checks' verdicts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::catalog::api_settings;
use super::change::InstanceKey;
use super::model::{
    Instance, InstanceSpec, NamespaceKind, NamespaceMeta, Origin, Service, ServiceMeta, SourceId,
};
use super::policy::DnsConfig;
use super::snapshot::{Namespace, Snapshot};
use super::state::{State, Touched};

/// Which thing a record describes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    Namespace(String),
    Service { namespace: String, service: String },
    Instance(InstanceKey),
}

impl RecordKey {
    /// The namespace the thing is in (or is).
    pub fn namespace(&self) -> &str {
        match self {
            Self::Namespace(name) => name,
            Self::Service { namespace, .. } => namespace,
            Self::Instance(key) => &key.namespace,
        }
    }

    /// The record of the service an instance is in.
    pub fn service_of(key: &InstanceKey) -> Self {
        Self::Service {
            namespace: key.namespace.clone(),
            service: key.service.clone(),
        }
    }
}

/// A namespace created through the API, or what the API set on a configured one (its
/// description and tags; `origin` is then `Config` and the rest is the file's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub id: String,
    pub kind: NamespaceKind,
    pub origin: Origin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The SOA (negative) TTL of an API namespace.
    pub negative_ttl: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Unix milliseconds.
    pub created: u64,
}

/// A declared service, or the attributes and tags set on an implicit one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub id: String,
    pub declared: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsConfig>,
    #[serde(default)]
    pub http_only: bool,
    #[serde(default)]
    pub custom_health: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
    pub created: u64,
}

/// An instance, its owner, its reported health (in `spec.healthy`) and its active
/// check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub owner: SourceId,
    pub spec: InstanceSpec,
    pub created: u64,
    pub updated: u64,
    /// What the replica that runs its check (one, with `[etcd]`) last found; absent
    /// while nothing was found (healthy, no reason): every replica serves the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckVerdict>,
    /// Its heartbeats stopped: with `[etcd]`, written by the replica that watches its
    /// deadline, so every replica serves it unhealthy; absent while they are current.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub heartbeat_expired: bool,
    /// Taken out of answers by an operator; absent while it is not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// An active check's verdict: whether the check passes, and why it says so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckVerdict {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One record; its kind always matches its key's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Namespace(NamespaceRecord),
    Service(ServiceRecord),
    Instance(InstanceRecord),
}

/// Why a record was not applied on this replica (counted and logged by the caller).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    #[error("its namespace {0:?} does not exist on this replica")]
    NoNamespace(String),
    #[error("namespace {0:?} is configured on this replica, not created through the API")]
    Configured(String),
    #[error("the record's kind does not match its key")]
    Mismatch,
    /// As for a replayed log: whoever wrote the key (an older release, etcdctl), nothing
    /// out of bounds reaches the health task.
    #[error("its health settings are out of bounds: {0}")]
    OutOfBounds(String),
}

pub(super) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

fn time(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// Sets an instance's check verdict to the record's.
fn set_check(instance: &mut Instance, check: Option<CheckVerdict>) {
    let check = check.unwrap_or(CheckVerdict {
        ok: true,
        reason: None,
    });
    instance.check_ok = check.ok;
    instance.check_reason = check.reason.map(String::into_boxed_str);
}

/// The record `key` has in `snapshot`, if the thing exists and has one.
pub fn record(snapshot: &Snapshot, key: &RecordKey) -> Option<Record> {
    match key {
        RecordKey::Namespace(name) => {
            let namespace = snapshot.namespace(name)?;
            let meta = &namespace.meta;
            let overlay_empty = meta.description.is_none() && meta.tags.is_empty();
            if meta.origin == Origin::Config && overlay_empty {
                return None;
            }
            Some(Record::Namespace(NamespaceRecord {
                id: meta.id.clone(),
                kind: meta.kind,
                origin: meta.origin,
                description: meta.description.clone(),
                negative_ttl: match meta.origin {
                    Origin::Api => namespace.settings.negative_ttl,
                    Origin::Config => 0,
                },
                creator_request_id: meta.creator_request_id.clone(),
                tags: meta.tags.clone(),
                created: millis(meta.created),
            }))
        }
        RecordKey::Service { namespace, service } => {
            let meta = &snapshot.service(namespace, service)?.meta;
            if !meta.declared && meta.attributes.is_empty() && meta.tags.is_empty() {
                return None;
            }
            Some(Record::Service(ServiceRecord {
                id: meta.id.clone(),
                declared: meta.declared,
                description: meta.description.clone(),
                dns: meta.dns,
                http_only: meta.http_only,
                custom_health: meta.custom_health,
                attributes: meta.attributes.clone(),
                tags: meta.tags.clone(),
                creator_request_id: meta.creator_request_id.clone(),
                created: millis(meta.created),
            }))
        }
        RecordKey::Instance(key) => {
            let instance = snapshot
                .service(&key.namespace, &key.service)?
                .instances
                .get(key.id.as_str())?;
            Some(Record::Instance(InstanceRecord {
                owner: instance.source.clone(),
                spec: instance.spec.clone(),
                created: millis(instance.created.into()),
                updated: millis(instance.updated.into()),
                check: (!instance.check_ok || instance.check_reason.is_some()).then(|| {
                    CheckVerdict {
                        ok: instance.check_ok,
                        reason: instance.check_reason.as_deref().map(str::to_owned),
                    }
                }),
                heartbeat_expired: !instance.heartbeat_ok,
                draining: instance.draining,
            }))
        }
    }
}

/// Every record of `snapshot` a shared store holds: namespaces' and services' records,
/// and the instances whose owner `stored` accepts. In key order.
pub fn records(
    snapshot: &Snapshot,
    stored: impl Fn(&SourceId) -> bool,
) -> Vec<(RecordKey, Record)> {
    let mut records = Vec::new();
    for (name, namespace) in &snapshot.namespaces {
        let key = RecordKey::Namespace(name.clone());
        records.extend(record(snapshot, &key).map(|r| (key, r)));
        for (service_name, service) in &namespace.services {
            let key = RecordKey::Service {
                namespace: name.clone(),
                service: service_name.to_string(),
            };
            records.extend(record(snapshot, &key).map(|r| (key, r)));
            for instance in service.instances.values().filter(|i| stored(&i.source)) {
                let key = RecordKey::Instance(InstanceKey {
                    namespace: name.clone(),
                    service: service_name.to_string(),
                    id: instance.id.clone(),
                });
                records.extend(record(snapshot, &key).map(|r| (key, r)));
            }
        }
    }
    records
}

/// `initial` (the configuration's namespaces) with `records` applied in order; returns
/// it and how many records were skipped (naming what the configuration lacks).
pub fn from_records(
    initial: Snapshot,
    records: impl IntoIterator<Item = (RecordKey, Record)>,
) -> (Snapshot, usize) {
    let mut model = State::new(initial);
    let mut touched = Touched::default();
    let mut skipped = 0;
    for (key, record) in records {
        if model.put_record(&key, record, &mut touched).is_err() {
            skipped += 1;
        }
    }
    (model.snapshot, skipped)
}

impl State {
    /// The record `key` has in the model.
    pub(super) fn record(&self, key: &RecordKey) -> Option<Record> {
        record(&self.snapshot, key)
    }

    /// Sets what `record` describes to exactly that; returns whether anything changed.
    /// The store is the truth for what it holds: an instance a local source registered
    /// under the same key is replaced.
    pub(super) fn put_record(
        &mut self,
        key: &RecordKey,
        record: Record,
        touched: &mut Touched,
    ) -> Result<bool, Skipped> {
        if self.record(key).as_ref() == Some(&record) {
            return Ok(false);
        }
        match (key, record) {
            (RecordKey::Namespace(name), Record::Namespace(record)) => {
                self.put_namespace(name, record, touched)
            }
            (RecordKey::Service { namespace, service }, Record::Service(record)) => {
                self.put_service(namespace, service, record, touched)
            }
            (RecordKey::Instance(key), Record::Instance(record)) => {
                self.put_instance(key, record, touched)
            }
            _ => Err(Skipped::Mismatch),
        }
    }

    fn put_namespace(
        &mut self,
        name: &str,
        record: NamespaceRecord,
        touched: &mut Touched,
    ) -> Result<bool, Skipped> {
        let existing = self.snapshot.namespace(name).map(|n| n.meta.origin);
        match (existing, record.origin) {
            (Some(Origin::Config), Origin::Api) => return Err(Skipped::Configured(name.into())),
            (None | Some(Origin::Api), Origin::Config) => {
                return Err(Skipped::NoNamespace(name.into()));
            }
            (Some(Origin::Config), Origin::Config) => {
                let namespace = self.namespace_mut(name).expect("it exists");
                let meta = Arc::make_mut(&mut namespace.meta);
                meta.description = record.description;
                meta.tags = record.tags;
                touched.namespaces.insert(name.to_owned());
                return Ok(true);
            }
            (_, Origin::Api) => {}
        }
        let meta = NamespaceMeta {
            id: record.id,
            kind: record.kind,
            origin: Origin::Api,
            description: record.description,
            creator_request_id: record.creator_request_id,
            tags: record.tags,
            created: time(record.created),
        };
        let services = match self.snapshot.namespaces.get(name) {
            Some(old) => {
                let old_id = old.meta.id.clone();
                let services = old.services.clone();
                self.snapshot.namespace_ids.remove(&old_id);
                services
            }
            None => imbl::OrdMap::new(),
        };
        let settings = api_settings(name, record.negative_ttl);
        let namespace = Namespace {
            settings: Arc::new(settings),
            meta: Arc::new(meta),
            services,
        };
        self.snapshot.insert_namespace(namespace);
        touched.namespaces.insert(name.to_owned());
        Ok(true)
    }

    fn put_service(
        &mut self,
        namespace_name: &str,
        name: &str,
        record: ServiceRecord,
        touched: &mut Touched,
    ) -> Result<bool, Skipped> {
        let Ok(namespace) = self.namespace_mut(namespace_name) else {
            return Err(Skipped::NoNamespace(namespace_name.into()));
        };
        let meta = ServiceMeta {
            id: record.id.clone(),
            declared: record.declared,
            description: record.description,
            dns: record.dns,
            http_only: record.http_only,
            custom_health: record.custom_health,
            attributes: record.attributes,
            tags: record.tags,
            creator_request_id: record.creator_request_id,
            created: time(record.created),
        };
        let policy = namespace.settings.policy_for(name, meta.dns.as_ref());
        let old = namespace.services.get(name).cloned();
        let service = Service {
            name: name.to_owned(),
            meta: Arc::new(meta),
            policy,
            instances: old
                .as_ref()
                .map(|s| s.instances.clone())
                .unwrap_or_default(),
            instances_revision: old.as_ref().map_or(0, |s| s.instances_revision),
        };
        let key: Arc<str> = name.into();
        namespace.services.insert(key.clone(), Arc::new(service));
        touched.service(namespace_name, &key, old.as_ref());
        if let Some(old) = old {
            self.snapshot.service_ids.remove(&old.meta.id);
        }
        self.snapshot
            .service_ids
            .insert(record.id, (namespace_name.to_owned(), name.to_owned()));
        Ok(true)
    }

    fn put_instance(
        &mut self,
        key: &InstanceKey,
        record: InstanceRecord,
        touched: &mut Touched,
    ) -> Result<bool, Skipped> {
        if self.snapshot.namespace(&key.namespace).is_none() {
            return Err(Skipped::NoNamespace(key.namespace.clone()));
        }
        super::check::health_bounds(&record.spec)
            .map_err(|e| Skipped::OutOfBounds(e.to_string()))?;
        if let Ok(old) = self.instance(key) {
            let mut reported = old.spec.clone();
            reported.healthy = record.spec.healthy;
            if old.source == record.owner && reported == record.spec {
                // Only the reported health, the check's verdict or the heartbeat's state
                // moved: the heartbeat deadline stays.
                let healthy = record.spec.healthy;
                let updated = time(record.updated);
                return Ok(self
                    .update_instance(key, touched, |i| {
                        i.spec.healthy = healthy;
                        i.updated = updated.into();
                        i.heartbeat_ok = !record.heartbeat_expired;
                        i.draining = record.draining;
                        set_check(i, record.check);
                        true
                    })
                    .unwrap_or(false));
            }
            if old.source != record.owner {
                self.remove(key, touched);
            }
        }
        let updated = time(record.updated);
        let created = time(record.created);
        let upserted = self.upsert(key, record.spec, record.owner, updated, touched, None);
        if upserted.is_ok() {
            let _ = self.update_instance(key, touched, |i| {
                i.created = created.into();
                i.heartbeat_ok = !record.heartbeat_expired;
                i.draining = record.draining;
                set_check(i, record.check);
                true
            });
        }
        Ok(upserted.unwrap_or(false))
    }

    #[cfg(feature = "etcd")]
    /// Removes what the record at `key` described; returns whether anything changed. A
    /// deleted service that still has instances here (of a per-replica source) becomes
    /// implicit; a deleted configured namespace's record only clears what the API set.
    pub(super) fn delete_record(&mut self, key: &RecordKey, touched: &mut Touched) -> bool {
        match key {
            RecordKey::Namespace(name) => self.delete_namespace_record(name, touched),
            RecordKey::Service { namespace, service } => {
                self.delete_service_record(namespace, service, touched)
            }
            RecordKey::Instance(key) => {
                if self.instance(key).is_err() {
                    return false;
                }
                self.remove(key, touched);
                true
            }
        }
    }

    #[cfg(feature = "etcd")]
    fn delete_namespace_record(&mut self, name: &str, touched: &mut Touched) -> bool {
        let Some(namespace) = self.snapshot.namespace(name).cloned() else {
            return false;
        };
        if namespace.meta.origin == Origin::Config {
            let meta = Arc::make_mut(&mut self.namespace_mut(name).expect("exists").meta);
            let changed = meta.description.take().is_some() | !meta.tags.is_empty();
            meta.tags.clear();
            return changed;
        }
        for (service_name, service) in &namespace.services {
            for instance in service.instances.values() {
                let key = InstanceKey {
                    namespace: name.to_owned(),
                    service: service_name.to_string(),
                    id: instance.id.clone(),
                };
                self.remove(&key, touched);
            }
            self.snapshot.service_ids.remove(&service.meta.id);
        }
        self.snapshot.namespaces.remove(name);
        self.snapshot.namespace_ids.remove(&namespace.meta.id);
        touched.namespaces.insert(name.to_owned());
        true
    }

    #[cfg(feature = "etcd")]
    fn delete_service_record(
        &mut self,
        namespace_name: &str,
        name: &str,
        touched: &mut Touched,
    ) -> bool {
        let Ok(namespace) = self.namespace_mut(namespace_name) else {
            return false;
        };
        let Some(old) = namespace.services.get(name).cloned() else {
            return false;
        };
        self.snapshot.service_ids.remove(&old.meta.id);
        let namespace = self.namespace_mut(namespace_name).expect("it exists");
        let key: Arc<str> = name.into();
        touched.service(namespace_name, &key, Some(&old));
        if old.instances.is_empty() {
            namespace.services.remove(name);
        } else {
            let mut service =
                super::catalog::implicit_service(&namespace.settings, name, old.meta.created);
            service.instances = old.instances.clone();
            service.instances_revision = old.instances_revision;
            let id = service.meta.id.clone();
            namespace.services.insert(key, Arc::new(service));
            self.snapshot
                .service_ids
                .insert(id, (namespace_name.to_owned(), name.to_owned()));
        }
        true
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
