//! Changes to the catalog: namespaces and services, their attributes and tags.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::admission::{Admission, Limit, MAX_SERVICE_ATTRIBUTES, MAX_TAGS, exceeded};
use super::change::{ChangeError, NamespaceDef, ServiceDef, Tagged};
use super::instance_map::InstanceMap;
use super::model::{NamespaceMeta, Origin, Service, ServiceMeta, stable_id};
use super::policy::NamespaceSettings;
use super::snapshot::Namespace;
use super::state::{State, Touched};

/// Default TTL of positive answers in a namespace created through the API (its services
/// carry their own TTLs in their DnsConfig).
const API_NAMESPACE_TTL: u32 = 5;
/// Default negative TTL of a namespace created through the API without an SOA TTL.
const API_NAMESPACE_NEGATIVE_TTL: u32 = 1;

impl State {
    /// Creates a namespace through the API.
    pub(super) fn create_namespace(
        &mut self,
        def: NamespaceDef,
        now: SystemTime,
        touched: &mut Touched,
        admission: Option<&Admission>,
    ) -> Result<bool, ChangeError> {
        if self.snapshot.namespaces.contains_key(&def.name) {
            return Err(ChangeError::NamespaceExists(def.name));
        }
        if let Some(admission) = admission {
            let api_namespaces = self
                .snapshot
                .namespaces
                .values()
                .filter(|n| n.meta.origin == Origin::Api)
                .count();
            admission.namespace(&def.name, def.kind, api_namespaces)?;
        }
        let negative_ttl = def.negative_ttl.unwrap_or(API_NAMESPACE_NEGATIVE_TTL);
        let settings = api_settings(&def.name, negative_ttl);
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

    /// Changes a namespace's description and negative TTL. A configured namespace's
    /// TTLs are the file's: refused from the API, and left out of a replayed change
    /// (logs written before this rule carried them).
    pub(super) fn update_namespace(
        &mut self,
        name: String,
        description: Option<String>,
        negative_ttl: Option<u32>,
        touched: &mut Touched,
        admission: Option<&Admission>,
    ) -> Result<bool, ChangeError> {
        let namespace = self.namespace_mut(&name)?;
        let configured = namespace.meta.origin == Origin::Config;
        if configured && negative_ttl.is_some() && admission.is_some() {
            return Err(ChangeError::Invalid(format!(
                "namespace {name:?} is defined in the configuration file; its TTLs are set there"
            )));
        }
        if let Some(description) = description {
            Arc::make_mut(&mut namespace.meta).description = Some(description);
        }
        if let Some(ttl) = negative_ttl.filter(|_| !configured) {
            Arc::make_mut(&mut namespace.settings).negative_ttl = ttl;
        }
        touched.namespaces.insert(name);
        Ok(true)
    }

    /// Deletes an API namespace that has no services.
    pub(super) fn delete_namespace(
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

    /// Declares a service (adopting it if a source created it implicitly).
    pub(super) fn create_service(
        &mut self,
        namespace_name: String,
        name: String,
        def: ServiceDef,
        now: SystemTime,
        touched: &mut Touched,
        admission: Option<&Admission>,
    ) -> Result<bool, ChangeError> {
        let namespace = self.namespace_mut(&namespace_name)?;
        let existing = namespace.services.get(name.as_str()).cloned();
        if let (None, Some(admission)) = (&existing, admission) {
            admit_service(&namespace_name, namespace.services.len(), admission)?;
        }
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
        let key: Arc<str> = name.as_str().into();
        namespace.services.insert(key.clone(), Arc::new(service));
        touched.service(&namespace_name, &key, existing.as_ref());
        if let Some(old) = existing {
            self.snapshot.service_ids.remove(&old.meta.id);
        }
        self.snapshot
            .service_ids
            .insert(def.id, (namespace_name.clone(), name.clone()));
        Ok(true)
    }

    /// Edits a service's metadata or policy in place.
    pub(super) fn update_service(
        &mut self,
        namespace_name: &str,
        name: &str,
        touched: &mut Touched,
        edit: impl FnOnce(&NamespaceSettings, &mut Service),
    ) -> Result<bool, ChangeError> {
        let namespace = self.namespace_mut(namespace_name)?;
        let settings = namespace.settings.clone();
        let (key, service) = namespace.services.get_key_value_mut(name).ok_or_else(|| {
            ChangeError::ServiceNotFound {
                namespace: namespace_name.to_owned(),
                service: name.to_owned(),
            }
        })?;
        touched.service(namespace_name, key, Some(&*service));
        edit(&settings, Arc::make_mut(service));
        Ok(true)
    }

    /// Deletes a service that has no instances.
    pub(super) fn delete_service(
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
        if let Some((key, service)) = namespace.services.remove_with_key(name.as_str()) {
            touched.service(&namespace_name, &key, Some(&service));
        }
        self.snapshot.service_ids.remove(&id);
        Ok(true)
    }

    /// Sets and removes service-level attributes, within their limits.
    pub(super) fn set_service_attributes(
        &mut self,
        namespace: &str,
        service: &str,
        set: BTreeMap<String, String>,
        remove: &[String],
        touched: &mut Touched,
        admission: Option<&Admission>,
    ) -> Result<bool, ChangeError> {
        let current = &self.service_ref(namespace, service)?.meta.attributes;
        let attributes = edited(current, set, remove);
        if let Some(admission) = admission {
            if attributes.len() > MAX_SERVICE_ATTRIBUTES {
                return Err(exceeded(
                    Limit::ServiceAttributes,
                    format!("a service has at most {MAX_SERVICE_ATTRIBUTES} attributes"),
                ));
            }
            admission.attributes(&attributes)?;
        }
        self.update_service(namespace, service, touched, |_, service| {
            Arc::make_mut(&mut service.meta).attributes = attributes;
        })
    }

    /// Sets and removes the tags of a namespace or service, at most [`MAX_TAGS`] in all.
    pub(super) fn tag(
        &mut self,
        target: Tagged,
        set: BTreeMap<String, String>,
        remove: &[String],
        touched: &mut Touched,
        admission: Option<&Admission>,
    ) -> Result<bool, ChangeError> {
        let current = match &target {
            Tagged::Namespace(name) => &self.namespace_ref(name)?.meta.tags,
            Tagged::Service { namespace, service } => {
                &self.service_ref(namespace, service)?.meta.tags
            }
        };
        let tags = edited(current, set, remove);
        if admission.is_some() && tags.len() > MAX_TAGS {
            return Err(exceeded(
                Limit::Tags,
                format!(
                    "a resource has at most {MAX_TAGS} tags; this would make {}",
                    tags.len()
                ),
            ));
        }
        match target {
            Tagged::Namespace(name) => {
                let namespace = self.namespace_mut(&name)?;
                Arc::make_mut(&mut namespace.meta).tags = tags;
                Ok(true)
            }
            Tagged::Service { namespace, service } => {
                self.update_service(&namespace, &service, touched, |_, service| {
                    Arc::make_mut(&mut service.meta).tags = tags;
                })
            }
        }
    }
}

/// The settings of a namespace created through the API.
pub(super) fn api_settings(name: &str, negative_ttl: u32) -> NamespaceSettings {
    NamespaceSettings {
        name: name.to_owned(),
        ttl: API_NAMESPACE_TTL,
        negative_ttl,
        nameserver: format!("ns.{name}."),
        rules: Vec::new(),
    }
}

/// A service a source created by registering an instance in it.
pub(super) fn implicit_service(
    settings: &NamespaceSettings,
    name: &str,
    now: SystemTime,
) -> Service {
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
        instances: InstanceMap::default(),
        instances_revision: 0,
    }
}

/// Refuses a new service in a namespace that has `services` already.
pub(super) fn admit_service(
    namespace: &str,
    services: usize,
    admission: &Admission,
) -> Result<(), ChangeError> {
    if services >= admission.services_per_namespace {
        return Err(exceeded(
            Limit::ServicesPerNamespace,
            format!(
                "namespace {namespace:?} has {services} services; the limit is {}",
                admission.services_per_namespace
            ),
        ));
    }
    Ok(())
}

/// `map` with `remove` removed and `set` set.
fn edited(
    map: &BTreeMap<String, String>,
    set: BTreeMap<String, String>,
    remove: &[String],
) -> BTreeMap<String, String> {
    let mut map = map.clone();
    for key in remove {
        map.remove(key);
    }
    map.extend(set);
    map
}
