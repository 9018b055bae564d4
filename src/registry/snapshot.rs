//! Immutable, versioned views of the registry that readers use without locks.

use std::sync::Arc;

use super::model::{Service, SourceId};
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
    /// Sources that have not yet completed their first sync.
    pub unsynced: imbl::OrdSet<SourceId>,
}

/// One namespace and its services.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub settings: Arc<NamespaceSettings>,
    pub services: imbl::OrdMap<String, Arc<Service>>,
}

impl Snapshot {
    /// An empty registry serving `namespaces`, waiting for `sources` to sync.
    pub fn new(
        namespaces: impl IntoIterator<Item = NamespaceSettings>,
        sources: impl IntoIterator<Item = SourceId>,
    ) -> Self {
        let namespaces = namespaces
            .into_iter()
            .map(|settings| {
                let namespace = Namespace {
                    settings: Arc::new(settings),
                    services: imbl::OrdMap::new(),
                };
                (namespace.settings.name.clone(), Arc::new(namespace))
            })
            .collect();
        Self {
            revision: 1,
            namespaces,
            unsynced: sources.into_iter().collect(),
        }
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
}

impl Namespace {
    pub fn instance_count(&self) -> usize {
        self.services.values().map(|s| s.instances.len()).sum()
    }
}
