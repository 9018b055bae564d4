//! The contract every watcher source keeps (see this module's parent), checked on a real
//! registry with the changes each source really emits. Each source's tests call
//! [`check`] with a way to make what it watches hold a set of instances:
//!
//! - the registry is not ready (the source unsynced) until its first sync;
//! - a sync replaces exactly what the source owns: an instance it no longer sees leaves;
//! - it never takes over or removes an instance another owner holds, and the API
//!   cannot replace or remove one the source owns.

use std::net::Ipv4Addr;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::registry::{
    Change, InstanceKey, InstanceSpec, Registry, RegistryHandle, Snapshot, SourceId,
};

/// The instance id the API holds before the source names it too.
const TAKEN: &str = "taken";

/// A registry serving `internal` with `source` configured (so unsynced), its writer
/// running until the returned token is cancelled.
pub(crate) fn registry(source: &SourceId) -> (RegistryHandle, CancellationToken) {
    let namespaces = Config::default().settings().unwrap().namespaces;
    let registry = Registry::new(Snapshot::new(namespaces, [source.clone()]));
    let handle = registry.handle();
    let stop = CancellationToken::new();
    tokio::spawn(registry.run(stop.clone()));
    (handle, stop)
}

/// Checks the contract on `source`, whose instances live in `internal/<service>`.
/// `show(ids)` makes what the source watches hold exactly instances `ids` of that
/// service, and returns once the source has applied it.
pub(crate) async fn check(
    registry: &RegistryHandle,
    source: &SourceId,
    service: &str,
    mut show: impl AsyncFnMut(&[&str]),
) {
    assert!(
        !registry.snapshot().is_synced(),
        "ready before its first sync"
    );
    show(&["a", "b"]).await;
    assert!(
        registry.snapshot().is_synced(),
        "not ready after its first sync"
    );
    assert_eq!(owned(registry, service, source), ["a", "b"]);

    let key = |id: &str| InstanceKey {
        namespace: "internal".into(),
        service: service.into(),
        id: id.into(),
    };
    let spec = InstanceSpec {
        ipv4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        ..InstanceSpec::default()
    };
    let upsert = |id: &str| Change::Upsert {
        key: key(id),
        spec: spec.clone(),
        source: SourceId::api(),
    };
    registry.apply(upsert(TAKEN)).await.unwrap();
    show(&["b", "c", TAKEN]).await;
    assert_eq!(
        owned(registry, service, source),
        ["b", "c"],
        "a sync replaces"
    );
    assert_eq!(
        owned(registry, service, &SourceId::api()),
        [TAKEN],
        "a sync took over another owner's instance"
    );
    let remove = Change::Remove {
        key: key("b"),
        source: SourceId::api(),
    };
    assert!(registry.apply(remove).await.is_err(), "the API removed it");
    assert!(
        registry.apply(upsert("b")).await.is_err(),
        "the API replaced it"
    );
    assert_eq!(owned(registry, service, source), ["b", "c"]);

    show(&[]).await;
    assert!(owned(registry, service, source).is_empty());
    assert_eq!(owned(registry, service, &SourceId::api()), [TAKEN]);
}

/// The ids of the instances of `internal/<service>` that `source` owns, sorted.
pub(crate) fn owned(registry: &RegistryHandle, service: &str, source: &SourceId) -> Vec<String> {
    let snapshot = registry.snapshot();
    let Some(service) = snapshot.service("internal", service) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = service
        .instances
        .values()
        .filter(|i| &i.source == source)
        .map(|i| i.id.clone())
        .collect();
    ids.sort();
    ids
}
