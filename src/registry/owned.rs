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
pub(super) struct Ownership(HashMap<SourceId, Owned>);

/// One source's instances: how many in each service, and in all.
#[derive(Debug, Default)]
struct Owned {
    total: usize,
    services: HashMap<String, HashMap<String, usize>>,
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
        let owned = self.0.entry(source.clone()).or_default();
        owned.total += 1;
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
        let Some(owned) = self.0.get_mut(source) else {
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
        if *count == 0 {
            services.remove(service);
            if services.is_empty() {
                owned.services.remove(namespace);
            }
        }
        if owned.total == 0 {
            self.0.remove(source);
        }
    }

    /// How many instances `source` owns.
    #[cfg(test)]
    pub fn count(&self, source: &SourceId) -> usize {
        self.0.get(source).map_or(0, |owned| owned.total)
    }

    /// Instances owned by the sources `which` accepts, in all.
    pub fn count_where(&self, which: impl Fn(&SourceId) -> bool) -> usize {
        self.0
            .iter()
            .filter(|(source, _)| which(source))
            .map(|(_, owned)| owned.total)
            .sum()
    }

    /// Whether no source owns any instance.
    #[cfg(all(test, feature = "etcd"))]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys of the instances `source` owns in `snapshot` (which this index follows).
    pub fn keys(&self, snapshot: &Snapshot, source: &SourceId) -> Vec<InstanceKey> {
        let Some(owned) = self.0.get(source) else {
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
        self.0.retain(|_, owned| {
            if let Some(services) = owned.services.get_mut(namespace) {
                if let Some(count) = services.remove(service) {
                    owned.total -= count;
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
