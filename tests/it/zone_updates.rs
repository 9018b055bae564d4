//! The DNS zone follows the registry per instance: a change to one instance of a large
//! service rebuilds that instance's records and reuses every other instance's.

use std::sync::Arc;

use muster::config::Config;
use muster::dns::{PublishedZone, ZoneSnapshot};
use muster::registry::{
    Change, InstanceKey, InstanceSpec, Registry, RegistryHandle, Snapshot, SourceId,
};

const INSTANCES: u8 = 100;

fn key(n: u8) -> InstanceKey {
    InstanceKey {
        namespace: "internal".to_owned(),
        service: "big".to_owned(),
        id: format!("i-{n:03}"),
    }
}

fn upsert(n: u8, last_octet: u8) -> Change {
    Change::Upsert {
        key: key(n),
        spec: InstanceSpec {
            ipv4: Some([10, 0, n, last_octet].into()),
            port: Some(8080),
            healthy: true,
            ..InstanceSpec::default()
        },
        source: SourceId::api(),
    }
}

async fn start() -> (RegistryHandle, PublishedZone) {
    let config = Config::parse("[[namespaces]]\nname = \"internal\"\n").unwrap();
    let mut registry = Registry::new(Snapshot::new(
        config.settings().unwrap().namespaces,
        Vec::<SourceId>::new(),
    ));
    let view = PublishedZone::default();
    registry.on_publish(view.publish_hook());
    let handle = registry.handle();
    tokio::spawn(registry.run(tokio_util::sync::CancellationToken::new()));
    for n in 0..INSTANCES {
        handle.apply(upsert(n, 1)).await.unwrap();
    }
    (handle, view)
}

/// The served instances of `big`, by id, and whether each has a label entry.
fn served(zone: &ZoneSnapshot) -> Vec<(String, usize)> {
    let records = zone
        .namespace("internal")
        .unwrap()
        .services
        .get("big")
        .unwrap();
    assert_eq!(records.labelled().count(), records.instances.len());
    records
        .instances
        .iter()
        .map(|i| {
            let label = std::str::from_utf8(i.label()).unwrap();
            let found = records.by_label(label).unwrap();
            assert!(std::ptr::eq(found, &**i), "{label}");
            (i.source.id.clone(), Arc::as_ptr(i) as usize)
        })
        .collect()
}

#[tokio::test]
async fn one_instance_changes_one_instances_records() {
    let (handle, view) = start().await;
    let before = served(&view.load());
    assert_eq!(before.len(), usize::from(INSTANCES));

    handle.apply(upsert(50, 2)).await.unwrap();
    let after = served(&view.load());
    let changed: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert_eq!(changed.len(), 1, "only i-050 is rebuilt");
    assert_eq!(changed[0].1.0, "i-050");
    let zone = view.load();
    let records = zone
        .namespace("internal")
        .unwrap()
        .services
        .get("big")
        .unwrap();
    assert_eq!(
        records
            .by_label("i-050")
            .unwrap()
            .records()
            .next()
            .unwrap()
            .record()
            .data
            .to_string(),
        "10.0.50.2"
    );

    // Health decides whether an instance is served; the others keep their records, and
    // so does the sick one when it comes back.
    handle
        .apply(Change::SetHealth {
            key: key(7),
            healthy: false,
        })
        .await
        .unwrap();
    let sick = served(&view.load());
    assert_eq!(sick.len(), usize::from(INSTANCES) - 1);
    assert!(sick.iter().all(|s| after.contains(s)));
    handle
        .apply(Change::SetHealth {
            key: key(7),
            healthy: true,
        })
        .await
        .unwrap();
    assert_eq!(served(&view.load()).len(), usize::from(INSTANCES));

    handle
        .apply(Change::Remove {
            key: key(3),
            source: SourceId::api(),
        })
        .await
        .unwrap();
    let removed = served(&view.load());
    assert_eq!(removed.len(), usize::from(INSTANCES) - 1);
    assert!(!removed.iter().any(|(id, _)| id == "i-003"));
    let zone = view.load();
    assert!(
        zone.namespace("internal")
            .unwrap()
            .services
            .get("big")
            .unwrap()
            .by_label("i-003")
            .is_none()
    );
}
