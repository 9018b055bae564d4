use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::*;
use crate::registry::change::{Change, NamespaceDef, ServiceDef};
use crate::registry::policy::NamespaceSettings;

/// An instance's record as an owner writes it: created at 1, no verdicts, no hold.
fn instance_record(owner: SourceId, spec: InstanceSpec, updated: u64) -> InstanceRecord {
    InstanceRecord {
        owner,
        spec,
        created: 1,
        updated,
        check: None,
        heartbeat_expired: false,
        draining: false,
    }
}

/// The configured namespace, created once: replicas compared in a test must share its
/// creation time (each process dates its config namespaces at its start).
fn configured() -> Snapshot {
    static CONFIGURED: std::sync::LazyLock<Snapshot> = std::sync::LazyLock::new(|| {
        let settings = NamespaceSettings {
            name: "internal".to_owned(),
            ttl: 5,
            negative_ttl: 1,
            nameserver: "ns.internal.".to_owned(),
            rules: Vec::new(),
        };
        Snapshot::new([settings], [])
    });
    CONFIGURED.clone()
}

fn key(namespace: &str, service: &str, id: &str) -> InstanceKey {
    InstanceKey {
        namespace: namespace.into(),
        service: service.into(),
        id: id.into(),
    }
}

fn spec(last_octet: u8) -> InstanceSpec {
    InstanceSpec {
        ipv4: Some(Ipv4Addr::new(10, 0, 0, last_octet)),
        port: Some(80),
        healthy: true,
        ..InstanceSpec::default()
    }
}

/// A model with an API namespace, a declared service with attributes, instances of the
/// API and of a file source, and tags on the configured namespace.
fn populated() -> State {
    let mut model = State::new(configured());
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
    let changes = [
        Change::CreateNamespace(NamespaceDef {
            name: "api.example".into(),
            id: "ns-api".into(),
            kind: NamespaceKind::DnsPrivate,
            description: Some("made by the API".into()),
            negative_ttl: Some(7),
            creator_request_id: None,
            tags: [("team".to_owned(), "a".to_owned())].into(),
        }),
        Change::CreateService {
            namespace: "api.example".into(),
            name: "db".into(),
            def: ServiceDef {
                id: "srv-db".into(),
                description: None,
                dns: None,
                http_only: false,
                custom_health: false,
                creator_request_id: None,
                tags: BTreeMap::new(),
            },
        },
        Change::SetServiceAttributes {
            namespace: "api.example".into(),
            service: "db".into(),
            set: [("tier".to_owned(), "gold".to_owned())].into(),
            remove: Vec::new(),
        },
        Change::Upsert {
            key: key("api.example", "db", "a/1"),
            spec: spec(1),
            source: SourceId::api(),
        },
        Change::Upsert {
            key: key("internal", "web", "w1"),
            spec: spec(2),
            source: SourceId::api(),
        },
        Change::Upsert {
            key: key("internal", "web", "f1"),
            spec: spec(3),
            source: SourceId::new("file:x"),
        },
        Change::Tag {
            target: crate::registry::change::Tagged::Namespace("internal".into()),
            set: [("env".to_owned(), "prod".to_owned())].into(),
            remove: Vec::new(),
        },
    ];
    for change in changes {
        model
            .apply(change, now, &mut Touched::default(), None)
            .unwrap();
    }
    model
}

#[test]
fn records_rebuild_the_api_owned_state_on_another_replica() {
    let model = populated();
    let api = |owner: &SourceId| *owner == SourceId::api();
    let written = records(&model.snapshot, api);
    let kinds: Vec<&RecordKey> = written.iter().map(|(k, _)| k).collect();
    // The file source's instance and the implicit service without attributes stay out.
    assert_eq!(written.len(), 5, "{kinds:?}");
    let (other, skipped) = from_records(configured(), written.clone());
    assert_eq!(skipped, 0);
    assert_eq!(records(&other, api), written);
    let namespace = other.namespace("api.example").unwrap();
    assert_eq!(namespace.settings.negative_ttl, 7);
    assert_eq!(namespace.meta.id, "ns-api");
    assert_eq!(
        other.namespace_by_id("ns-api").unwrap().meta.origin,
        Origin::Api
    );
    assert_eq!(other.service_by_id("srv-db").unwrap().1.name, "db");
    let tags = &other.namespace("internal").unwrap().meta.tags;
    assert_eq!(tags.get("env").map(String::as_str), Some("prod"));
}

#[test]
fn putting_the_same_record_twice_changes_nothing() {
    let mut model = State::new(configured());
    let key = RecordKey::Instance(key("internal", "web", "w1"));
    let record = Record::Instance(instance_record(SourceId::api(), spec(1), 2));
    let mut touched = Touched::default();
    assert_eq!(
        model.put_record(&key, record.clone(), &mut touched),
        Ok(true)
    );
    assert_eq!(
        model.put_record(&key, record.clone(), &mut touched),
        Ok(false)
    );
    assert_eq!(model.record(&key), Some(record));
}

#[test]
fn the_heartbeat_verdict_travels_in_the_instance_record() {
    let mut model = State::new(configured());
    let instance = key("internal", "web", "w1");
    let record_key = RecordKey::Instance(instance.clone());
    let mut record = instance_record(SourceId::api(), spec(1), 1);
    let mut touched = Touched::default();
    model
        .put_record(&record_key, Record::Instance(record.clone()), &mut touched)
        .unwrap();
    assert!(model.instance(&instance).unwrap().heartbeat_ok);
    // The replica that keeps the deadline writes the expiry into the record.
    let expired = Change::HeartbeatExpired {
        key: instance.clone(),
    };
    model
        .apply(expired, SystemTime::now(), &mut touched, None)
        .unwrap();
    let Some(Record::Instance(written)) = model.record(&record_key) else {
        panic!("the instance has a record");
    };
    assert!(written.heartbeat_expired);
    // A reported health change written after it keeps the verdict.
    record.heartbeat_expired = true;
    record.spec.healthy = false;
    record.updated = 2;
    model
        .put_record(&record_key, Record::Instance(record.clone()), &mut touched)
        .unwrap();
    let stored = model.instance(&instance).unwrap();
    assert!(!stored.heartbeat_ok && !stored.spec.healthy);
    // A heartbeat to another replica: the record says they are current again.
    record.heartbeat_expired = false;
    model
        .put_record(&record_key, Record::Instance(record), &mut touched)
        .unwrap();
    assert!(model.instance(&instance).unwrap().heartbeat_ok);
}

#[test]
fn a_drain_travels_in_the_instance_record() {
    let mut model = State::new(configured());
    let instance = key("internal", "web", "w1");
    let record_key = RecordKey::Instance(instance.clone());
    let record = instance_record(SourceId::api(), spec(1), 1);
    let mut touched = Touched::default();
    model
        .put_record(&record_key, Record::Instance(record.clone()), &mut touched)
        .unwrap();
    let drain = Change::Drain {
        key: instance.clone(),
        draining: true,
    };
    model
        .apply(drain, SystemTime::now(), &mut touched, None)
        .unwrap();
    let Some(Record::Instance(written)) = model.record(&record_key) else {
        panic!("the instance has a record");
    };
    assert!(written.draining);
    // Another replica lifted it: the record says so.
    model
        .put_record(&record_key, Record::Instance(record), &mut touched)
        .unwrap();
    assert!(!model.instance(&instance).unwrap().draining);
}

#[test]
#[cfg(feature = "etcd")]
fn the_store_wins_over_a_local_source_and_deletes_keep_local_instances() {
    let mut model = populated();
    let mut touched = Touched::default();
    // etcd says f1 is the API's: it replaces the file source's instance.
    let f1 = key("internal", "web", "f1");
    let record = Record::Instance(instance_record(SourceId::api(), spec(4), 1));
    model
        .put_record(&RecordKey::Instance(f1.clone()), record, &mut touched)
        .unwrap();
    assert_eq!(model.instance(&f1).unwrap().source, SourceId::api());
    assert_eq!(model.owned.count(&SourceId::api()), 3);
    let file = SourceId::new("file:x");
    assert!(!model.owned.keys(&model.snapshot, &file).contains(&f1));
    // A declared service deleted in etcd while a file instance is in it here: implicit.
    model
        .put_record(
            &RecordKey::Instance(key("api.example", "db", "f2")),
            Record::Instance(instance_record(SourceId::new("file:x"), spec(5), 1)),
            &mut touched,
        )
        .unwrap();
    model.delete_record(
        &RecordKey::Instance(key("api.example", "db", "a/1")),
        &mut touched,
    );
    let db = RecordKey::Service {
        namespace: "api.example".into(),
        service: "db".into(),
    };
    assert!(model.delete_record(&db, &mut touched));
    let service = model.snapshot.service("api.example", "db").unwrap();
    assert!(!service.meta.declared && service.meta.attributes.is_empty());
    assert!(model.snapshot.service_by_id("srv-db").is_none());
    assert!(model.snapshot.service_by_id(&service.meta.id).is_some());
    // The namespace goes with everything in it; the configured one only loses its tags.
    assert!(model.delete_record(&RecordKey::Namespace("api.example".into()), &mut touched));
    assert!(model.snapshot.namespace("api.example").is_none());
    assert!(model.snapshot.namespace_by_id("ns-api").is_none());
    assert!(model.delete_record(&RecordKey::Namespace("internal".into()), &mut touched));
    assert!(
        model
            .snapshot
            .namespace("internal")
            .unwrap()
            .meta
            .tags
            .is_empty()
    );
}

#[test]
fn records_for_what_this_replica_lacks_are_skipped() {
    let mut model = State::new(configured());
    let mut touched = Touched::default();
    let orphan = RecordKey::Instance(key("gone.example", "web", "w1"));
    let record = Record::Instance(instance_record(SourceId::api(), spec(1), 1));
    assert_eq!(
        model.put_record(&orphan, record, &mut touched),
        Err(Skipped::NoNamespace("gone.example".into()))
    );
    let clash = Record::Namespace(NamespaceRecord {
        id: "ns-x".into(),
        kind: NamespaceKind::DnsPrivate,
        origin: Origin::Api,
        description: None,
        negative_ttl: 1,
        creator_request_id: None,
        tags: BTreeMap::new(),
        created: 0,
    });
    assert_eq!(
        model.put_record(
            &RecordKey::Namespace("internal".into()),
            clash,
            &mut touched
        ),
        Err(Skipped::Configured("internal".into()))
    );
}

#[test]
fn an_instance_record_with_health_settings_out_of_bounds_is_skipped() {
    let mut model = State::new(configured());
    let mut touched = Touched::default();
    let key = RecordKey::Instance(key("internal", "web", "w1"));
    let mut spec = spec(1);
    spec.extras
        .edit(|extras| extras.heartbeat_ttl = Some(std::time::Duration::ZERO));
    let record = Record::Instance(instance_record(SourceId::api(), spec, 1));
    let skipped = model.put_record(&key, record, &mut touched);
    assert!(
        matches!(&skipped, Err(Skipped::OutOfBounds(why)) if why.contains("heartbeat_ttl")),
        "{skipped:?}"
    );
    assert_eq!(model.record(&key), None);
}
