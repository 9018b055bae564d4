//! Which sources own instances in which services: the writer's index for a source's
//! full sync (what it no longer declares goes) and for the API's instance ceiling.
//!
//! Counts per service rather than a key per instance: a set of `InstanceKey`s (three
//! strings each) took ~170 bytes per instance, 160 MiB at a million, and most of the
//! hashing of a large load. A source's instances are found by walking the services it
//! owns some in, filtering on the owner.

use std::collections::HashMap;

use super::change::InstanceKey;
use super::model::SourceId;
use super::snapshot::Snapshot;

/// Instances per source, per namespace and service.
#[derive(Debug, Default)]
pub(super) struct Ownership {
    sources: HashMap<SourceId, Owned>,
    /// Instances the APIs and DNS UPDATE keys registered, in all: what every API
    /// registration is checked against, so kept rather than summed.
    api: usize,
}

/// One source's instances: how many in each service, and in all.
#[derive(Debug)]
struct Owned {
    total: usize,
    /// Whether the source is an API's ([`Ownership::api`] counts its instances).
    api: bool,
    services: HashMap<String, HashMap<String, usize>>,
}

/// Whether `source` registers through the APIs (`api`) or DNS UPDATE (`update:<key>`):
/// the instances `[limits] instances` bounds.
fn is_api(source: &SourceId) -> bool {
    *source == SourceId::api() || source.as_str().starts_with("update:")
}

impl Ownership {
    /// The index of every instance in `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Self {
        let mut ownership = Self::default();
        for (namespace, ns) in &snapshot.namespaces {
            for (service, svc) in &ns.services {
                for instance in svc.instances.values() {
                    ownership.add(&instance.source, namespace, service);
                }
            }
        }
        ownership
    }

    /// One more instance of `source` in `namespace/service`.
    pub fn add(&mut self, source: &SourceId, namespace: &str, service: &str) {
        let owned = match self.sources.get_mut(source) {
            Some(owned) => owned,
            None => self.sources.entry(source.clone()).or_insert(Owned {
                total: 0,
                api: is_api(source),
                services: HashMap::new(),
            }),
        };
        owned.total += 1;
        self.api += usize::from(owned.api);
        let services = match owned.services.get_mut(namespace) {
            Some(services) => services,
            None => owned.services.entry(namespace.to_owned()).or_default(),
        };
        match services.get_mut(service) {
            Some(count) => *count += 1,
            None => {
                services.insert(service.to_owned(), 1);
            }
        }
    }

    /// One instance fewer of `source` in `namespace/service`.
    pub fn remove(&mut self, source: &SourceId, namespace: &str, service: &str) {
        let Some(owned) = self.sources.get_mut(source) else {
            return;
        };
        let Some(services) = owned.services.get_mut(namespace) else {
            return;
        };
        let Some(count) = services.get_mut(service) else {
            return;
        };
        *count -= 1;
        owned.total -= 1;
        self.api -= usize::from(owned.api);
        if *count == 0 {
            services.remove(service);
            if services.is_empty() {
                owned.services.remove(namespace);
            }
        }
        if owned.total == 0 {
            self.sources.remove(source);
        }
    }

    /// How many instances `source` owns.
    #[cfg(test)]
    pub fn count(&self, source: &SourceId) -> usize {
        self.sources.get(source).map_or(0, |owned| owned.total)
    }

    /// Instances the APIs and DNS UPDATE keys registered, in all.
    pub fn api(&self) -> usize {
        self.api
    }

    /// Whether no source owns any instance.
    #[cfg(all(test, feature = "etcd"))]
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The keys of the instances `source` owns in `snapshot` (which this index follows).
    pub fn keys(&self, snapshot: &Snapshot, source: &SourceId) -> Vec<InstanceKey> {
        let Some(owned) = self.sources.get(source) else {
            return Vec::new();
        };
        let mut keys = Vec::with_capacity(owned.total);
        for (namespace, services) in &owned.services {
            for service in services.keys() {
                let Some(svc) = snapshot.service(namespace, service) else {
                    continue;
                };
                let mine = svc.instances.values().filter(|i| i.source == *source);
                keys.extend(mine.map(|instance| InstanceKey {
                    namespace: namespace.clone(),
                    service: service.clone(),
                    id: instance.id.clone(),
                }));
            }
        }
        keys
    }

    /// Counts `namespace/service` again from `snapshot`, for every source (after the
    /// model was put back to an earlier snapshot).
    pub fn recount(&mut self, snapshot: &Snapshot, namespace: &str, service: &str) {
        let api = &mut self.api;
        self.sources.retain(|_, owned| {
            if let Some(services) = owned.services.get_mut(namespace) {
                if let Some(count) = services.remove(service) {
                    owned.total -= count;
                    *api -= if owned.api { count } else { 0 };
                }
                if services.is_empty() {
                    owned.services.remove(namespace);
                }
            }
            owned.total > 0
        });
        if let Some(svc) = snapshot.service(namespace, service) {
            for instance in svc.instances.values() {
                self.add(&instance.source, namespace, service);
            }
        }
    }
}
