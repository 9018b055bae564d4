//! Immutable, versioned views of the registry that readers use without locks.

use std::sync::Arc;
use std::time::SystemTime;

use super::change::InstanceKey;
use super::model::{Instance, NamespaceKind, NamespaceMeta, Origin, Service, SourceId, stable_id};
use super::policy::NamespaceSettings;

/// Everything the registry knows at one revision.
///
/// Cloning is O(1) (persistent maps), so the writer derives each new snapshot from the
/// last one and touches only the services a change names.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Bumped once per applied change that changed something; the SOA serial.
    pub revision: u64,
    pub namespaces: imbl::OrdMap<String, Arc<Namespace>>,
    /// Namespace id → name, for the Cloud Map API.
    pub namespace_ids: imbl::HashMap<String, String>,
    /// Service id → (namespace, service), for the Cloud Map API.
    pub service_ids: imbl::HashMap<String, (String, String)>,
    /// Sources that have not yet completed their first sync.
    pub unsynced: imbl::OrdSet<SourceId>,
}

/// One namespace and its services.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub settings: Arc<NamespaceSettings>,
    pub meta: Arc<NamespaceMeta>,
    pub services: imbl::OrdMap<Arc<str>, Arc<Service>>,
}

impl Snapshot {
    /// An empty registry serving the config file's `namespaces`, waiting for `sources`
    /// to sync. Config namespaces are created now, as the Cloud Map API shows them: the
    /// file is read at each start, so their `CreateDate` is this process's start (the
    /// same on every replica only up to their start times; docs/cloudmap.md).
    pub fn new(
        namespaces: impl IntoIterator<Item = NamespaceSettings>,
        sources: impl IntoIterator<Item = SourceId>,
    ) -> Self {
        let mut snapshot = Self {
            revision: 1,
            namespaces: imbl::OrdMap::new(),
            namespace_ids: imbl::HashMap::new(),
            service_ids: imbl::HashMap::new(),
            unsynced: sources.into_iter().collect(),
        };
        let started = SystemTime::now();
        for settings in namespaces {
            let meta = NamespaceMeta {
                id: stable_id("ns-", &settings.name),
                kind: NamespaceKind::DnsPrivate,
                origin: Origin::Config,
                description: None,
                creator_request_id: None,
                tags: Default::default(),
                created: started,
            };
            snapshot.insert_namespace(Namespace {
                settings: Arc::new(settings),
                meta: Arc::new(meta),
                services: imbl::OrdMap::new(),
            });
        }
        snapshot
    }

    pub(super) fn insert_namespace(&mut self, namespace: Namespace) {
        let name = namespace.settings.name.clone();
        self.namespace_ids
            .insert(namespace.meta.id.clone(), name.clone());
        self.namespaces.insert(name, Arc::new(namespace));
    }

    /// True once every configured source has synced at least once; until then a
    /// namespace's answers could be missing instances, so DNS answers SERVFAIL.
    pub fn is_synced(&self) -> bool {
        self.unsynced.is_empty()
    }

    pub fn namespace(&self, name: &str) -> Option<&Arc<Namespace>> {
        self.namespaces.get(name)
    }

    pub fn service(&self, namespace: &str, service: &str) -> Option<&Arc<Service>> {
        self.namespace(namespace)?.services.get(service)
    }

    pub fn instance(&self, key: &InstanceKey) -> Option<&Arc<Instance>> {
        self.service(&key.namespace, &key.service)?
            .instances
            .get(key.id.as_str())
    }

    pub fn namespace_by_id(&self, id: &str) -> Option<&Arc<Namespace>> {
        self.namespace(self.namespace_ids.get(id)?)
    }

    /// The service with Cloud Map id `id`, and its namespace.
    pub fn service_by_id(&self, id: &str) -> Option<(&Arc<Namespace>, &Arc<Service>)> {
        let (namespace, service) = self.service_ids.get(id)?;
        let namespace = self.namespace(namespace)?;
        Some((namespace, namespace.services.get(service.as_str())?))
    }
}

impl Namespace {
    pub fn instance_count(&self) -> usize {
        self.services.values().map(|s| s.instances.len()).sum()
    }

    /// Whether the namespace has a DNS zone.
    pub fn in_dns(&self) -> bool {
        self.meta.kind != NamespaceKind::Http
    }
}
