//! What the APIs wrote, as the changes that recreate it: the content of a store snapshot.

use std::time::SystemTime;

use super::change::{Change, InstanceKey, NamespaceDef, ServiceDef, Tagged};
use super::model::{Origin, SourceId};
use super::snapshot::Snapshot;
use super::state::{State, Touched};
use crate::store::Recovered;

/// `initial` with the logged changes of `recovered` applied, at a revision above every
/// one published before. Changes that no longer apply (a namespace removed from the
/// config file) are skipped, as they would have been rejected live.
pub fn replay(initial: Snapshot, recovered: Recovered<Change>) -> Snapshot {
    let mut model = State::new(initial);
    let mut touched = Touched::default();
    let mut skipped = 0usize;
    for (time, change) in recovered.changes {
        match model.apply(change, time, &mut touched, None) {
            Ok(true) => model.snapshot.revision += 1,
            Ok(false) => {}
            Err(error) => {
                skipped += 1;
                tracing::debug!(%error, "a logged change no longer applies");
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(skipped, "logged changes that no longer apply were skipped");
    }
    let revision = &mut model.snapshot.revision;
    *revision = (*revision).max(recovered.next_revision);
    model.snapshot
}

/// The API-owned state of `snapshot`: namespaces and services created through the API,
/// service attributes and tags, instances the API registered (with their health).
/// Instances other sources own are theirs to restore; heartbeats restart with a grace TTL.
pub fn durable_state(snapshot: &Snapshot) -> Vec<(SystemTime, Change)> {
    let mut changes = Vec::new();
    let api = SourceId::api();
    for (name, namespace) in &snapshot.namespaces {
        let meta = &namespace.meta;
        if meta.origin == Origin::Api {
            let def = NamespaceDef {
                name: name.clone(),
                id: meta.id.clone(),
                kind: meta.kind,
                description: meta.description.clone(),
                negative_ttl: Some(namespace.settings.negative_ttl),
                creator_request_id: meta.creator_request_id.clone(),
                tags: meta.tags.clone(),
            };
            changes.push((meta.created, Change::CreateNamespace(def)));
        } else {
            // A configured namespace's TTLs come from the file at every start.
            let update = Change::UpdateNamespace {
                name: name.clone(),
                description: meta.description.clone(),
                negative_ttl: None,
            };
            changes.push((meta.created, update));
            let tags = Change::Tag {
                target: Tagged::Namespace(name.clone()),
                set: meta.tags.clone(),
                remove: Vec::new(),
            };
            changes.push((meta.created, tags));
        }
        for (service_name, service) in &namespace.services {
            let meta = &service.meta;
            if meta.declared {
                let def = ServiceDef {
                    id: meta.id.clone(),
                    description: meta.description.clone(),
                    dns: meta.dns,
                    http_only: meta.http_only,
                    custom_health: meta.custom_health,
                    creator_request_id: meta.creator_request_id.clone(),
                    tags: meta.tags.clone(),
                };
                let create = Change::CreateService {
                    namespace: name.clone(),
                    name: service_name.to_string(),
                    def,
                };
                changes.push((meta.created, create));
            }
            for instance in service.instances.values().filter(|i| i.source == api) {
                let key = InstanceKey {
                    namespace: name.clone(),
                    service: service_name.to_string(),
                    id: instance.id.clone(),
                };
                let upsert = Change::Upsert {
                    key,
                    spec: instance.spec.clone(),
                    source: api.clone(),
                };
                changes.push((instance.updated.into(), upsert));
            }
            if !meta.attributes.is_empty() {
                let attributes = Change::SetServiceAttributes {
                    namespace: name.clone(),
                    service: service_name.to_string(),
                    set: meta.attributes.clone(),
                    remove: Vec::new(),
                };
                changes.push((meta.created, attributes));
            }
            if !meta.declared && !meta.tags.is_empty() {
                let tags = Change::Tag {
                    target: Tagged::Service {
                        namespace: name.clone(),
                        service: service_name.to_string(),
                    },
                    set: meta.tags.clone(),
                    remove: Vec::new(),
                };
                changes.push((meta.created, tags));
            }
        }
    }
    changes
}
