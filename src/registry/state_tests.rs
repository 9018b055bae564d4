use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use super::*;
use crate::registry::model::{InstanceSpec, SourceId};
use crate::registry::policy::NamespaceSettings;

fn settings(name: &str) -> NamespaceSettings {
    NamespaceSettings {
        name: name.to_owned(),
        ttl: 5,
        negative_ttl: 1,
        nameserver: format!("ns.{name}."),
        rules: Vec::new(),
    }
}

fn model() -> State {
    State::new(Snapshot::new(
        [settings("internal")],
        [SourceId::api(), SourceId::new("file:x")],
    ))
}

fn key(service: &str, id: &str) -> InstanceKey {
    InstanceKey {
        namespace: "internal".into(),
        service: service.into(),
        id: id.into(),
    }
}

fn spec(last_octet: u8) -> InstanceSpec {
    InstanceSpec {
        ipv4: Some(Ipv4Addr::new(10, 0, 0, last_octet)),
        ipv6: None,
        port: Some(8080),
        healthy: true,
        ..InstanceSpec::default()
    }
}

fn upsert(service: &str, id: &str, last_octet: u8, source: &SourceId) -> Change {
    Change::Upsert {
        key: key(service, id),
        spec: spec(last_octet),
        source: source.clone(),
    }
}

/// Instance `id` of service `web`, which the test registered.
fn web_instance<'a>(model: &'a State, id: &str) -> &'a Instance {
    model
        .snapshot
        .service("internal", "web")
        .unwrap()
        .instances
        .get(id)
        .unwrap()
}

fn apply(model: &mut State, change: Change) -> Result<bool, ChangeError> {
    model.apply(
        change,
        SystemTime::UNIX_EPOCH,
        &mut Touched::default(),
        None,
    )
}

#[test]
fn upsert_creates_the_service_and_reports_what_it_touched() {
    let mut model = model();
    let mut touched = Touched::default();
    let changed = model.apply(
        upsert("web", "i-1", 5, &SourceId::api()),
        SystemTime::UNIX_EPOCH,
        &mut touched,
        None,
    );
    assert_eq!(changed, Ok(true));
    assert_eq!(touched_names(&touched), [("internal", "web")]);
    let service = model.snapshot.service("internal", "web").unwrap();
    assert_eq!(
        service.instances.get("i-1").unwrap().source,
        SourceId::api()
    );
}

fn touched_names(touched: &Touched) -> Vec<(&str, &str)> {
    let services = touched.services().iter();
    services.map(|s| (&*s.namespace, &*s.name)).collect()
}

#[test]
fn touched_holds_each_service_once_with_its_version_before_the_batch() {
    let mut model = model();
    let api = SourceId::api();
    apply(&mut model, upsert("web", "i-1", 1, &api)).unwrap();
    let published = model.snapshot.clone();
    let mut touched = Touched::default();
    let now = SystemTime::UNIX_EPOCH;
    for change in [
        upsert("web", "i-2", 2, &api),
        upsert("api", "i-1", 3, &api),
        upsert("web", "i-3", 4, &api),
    ] {
        model.apply(change, now, &mut touched, None).unwrap();
    }
    // A refused batch takes back what it touched first, and nothing else.
    let refused = Change::Batch {
        source: api.clone(),
        changes: vec![
            (key("db", "i-1"), Some(spec(5))),
            (key("web", "i-4"), Some(spec(6))),
            (key("web", "i-1"), Some(spec(7))),
            (key("nowhere", "i-1"), None),
        ],
    };
    assert!(model.apply(refused, now, &mut touched, None).is_err());
    assert_eq!(
        touched_names(&touched),
        [("internal", "web"), ("internal", "api")]
    );
    touched.resolve(&model.snapshot);
    assert_eq!(
        touched_names(&touched),
        [("internal", "api"), ("internal", "web")]
    );
    let [api_service, web] = touched.services() else {
        panic!("two services");
    };
    assert!(api_service.before.is_none(), "created by the batch");
    let (before, after) = (web.before.as_ref().unwrap(), web.after.as_ref().unwrap());
    assert!(Arc::ptr_eq(
        before,
        published.service("internal", "web").unwrap()
    ));
    assert!(Arc::ptr_eq(
        after,
        model.snapshot.service("internal", "web").unwrap()
    ));
    assert_eq!(after.instances.len(), 3);
    // A service removed by the batch is published as gone.
    let mut touched = Touched::default();
    let remove = |service: &str| Change::Remove {
        key: key(service, "i-1"),
        source: api.clone(),
    };
    model.apply(remove("api"), now, &mut touched, None).unwrap();
    touched.resolve(&model.snapshot);
    let [api_service] = touched.services() else {
        panic!("one service");
    };
    assert!(api_service.before.is_some() && api_service.after.is_none());
}

#[test]
fn an_identical_upsert_changes_nothing_and_keeps_created() {
    let mut model = model();
    let api = SourceId::api();
    apply(&mut model, upsert("web", "i-1", 5, &api)).unwrap();
    assert_eq!(apply(&mut model, upsert("web", "i-1", 5, &api)), Ok(false));
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
    let changed = model.apply(
        upsert("web", "i-1", 6, &api),
        later,
        &mut Touched::default(),
        None,
    );
    assert_eq!(changed, Ok(true));
    let instance = web_instance(&model, "i-1");
    assert_eq!(SystemTime::from(instance.created), SystemTime::UNIX_EPOCH);
    assert_eq!(SystemTime::from(instance.updated), later);
}

#[test]
fn unknown_namespace_is_rejected() {
    let mut model = model();
    let mut change = upsert("web", "i-1", 5, &SourceId::api());
    if let Change::Upsert { key, .. } = &mut change {
        key.namespace = "nope".into();
    }
    assert_eq!(
        apply(&mut model, change),
        Err(ChangeError::NamespaceNotFound("nope".into()))
    );
}

#[test]
fn another_sources_instance_cannot_be_replaced_or_removed() {
    let mut model = model();
    let file = SourceId::new("file:x");
    apply(&mut model, upsert("web", "i-1", 5, &file)).unwrap();
    let error = apply(&mut model, upsert("web", "i-1", 6, &SourceId::api())).unwrap_err();
    assert!(matches!(error, ChangeError::OwnedByOther { owner, .. } if owner == file));
    let kept = web_instance(&model, "i-1");
    assert_eq!((&kept.spec, &kept.source), (&spec(5), &file));
    let remove = Change::Remove {
        key: key("web", "i-1"),
        source: SourceId::api(),
    };
    assert!(matches!(
        apply(&mut model, remove),
        Err(ChangeError::OwnedByOther { .. })
    ));
    // Health is not ownership: anyone may set it.
    let health = Change::SetHealth {
        key: key("web", "i-1"),
        healthy: false,
    };
    assert_eq!(apply(&mut model, health), Ok(true));
}

#[test]
fn removing_the_last_instance_removes_the_service() {
    let mut model = model();
    let api = SourceId::api();
    apply(&mut model, upsert("web", "i-1", 5, &api)).unwrap();
    let remove = Change::Remove {
        key: key("web", "i-1"),
        source: api.clone(),
    };
    assert_eq!(apply(&mut model, remove.clone()), Ok(true));
    assert!(model.snapshot.service("internal", "web").is_none());
    assert!(matches!(
        apply(&mut model, remove),
        Err(ChangeError::InstanceNotFound(_))
    ));
}

#[test]
fn set_health_on_a_missing_instance_fails() {
    let mut model = model();
    let health = Change::SetHealth {
        key: key("web", "nope"),
        healthy: false,
    };
    assert!(matches!(
        apply(&mut model, health),
        Err(ChangeError::InstanceNotFound(_))
    ));
}

#[test]
fn sync_replaces_exactly_what_the_source_owns() {
    let mut model = model();
    let file = SourceId::new("file:x");
    let api = SourceId::api();
    apply(&mut model, upsert("web", "api-1", 1, &api)).unwrap();
    apply(&mut model, upsert("web", "old", 2, &file)).unwrap();
    apply(&mut model, upsert("db", "gone", 3, &file)).unwrap();
    assert!(!model.snapshot.is_synced());
    let sync = Change::Sync {
        source: file.clone(),
        instances: vec![
            (key("web", "new"), spec(4)),
            // Collides with the API's instance: skipped, the API's stays.
            (key("web", "api-1"), spec(9)),
        ],
    };
    assert_eq!(apply(&mut model, sync.clone()), Ok(true));
    let web = model.snapshot.service("internal", "web").unwrap();
    let ids: Vec<&str> = web.instances.values().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["api-1", "new"]);
    assert_eq!(
        web.instances.get("api-1").unwrap().spec.ipv4,
        Some(Ipv4Addr::new(10, 0, 0, 1))
    );
    assert!(
        model.snapshot.service("internal", "db").is_none(),
        "emptied service removed"
    );
    assert!(model.snapshot.unsynced.iter().all(|s| *s != file));
    assert_eq!(
        apply(&mut model, sync),
        Ok(false),
        "the same sync again is a no-op"
    );
}

#[test]
fn serving_fails_open_unless_the_policy_says_empty() {
    let mut model = model();
    let api = SourceId::api();
    for (id, octet) in [("a", 1), ("b", 2)] {
        apply(&mut model, upsert("web", id, octet, &api)).unwrap();
    }
    let unhealthy = |id: &str| Change::SetHealth {
        key: key("web", id),
        healthy: false,
    };
    apply(&mut model, unhealthy("a")).unwrap();
    let serving = |model: &State| -> Vec<String> {
        let service = model.snapshot.service("internal", "web").unwrap();
        service.serving().map(|i| i.id.clone()).collect()
    };
    assert_eq!(serving(&model), ["b"]);
    apply(&mut model, unhealthy("b")).unwrap();
    assert_eq!(serving(&model), ["a", "b"], "all unhealthy: serve all");

    let mut service = (**model.snapshot.service("internal", "web").unwrap()).clone();
    let mut policy = (*service.policy).clone();
    policy.when_all_unhealthy = crate::registry::WhenAllUnhealthy::Empty;
    service.policy = std::sync::Arc::new(policy);
    assert_eq!(service.serving().count(), 0);
}

/// Named ports past their bounds are refused whoever sends them (a source, a log written
/// by another release), not only by the REST API: DNS answers at most what validate
/// allows.
#[test]
fn out_of_bounds_named_ports_are_refused_from_any_sender() {
    use crate::registry::{NamedPort, Protocol};
    let mut model = model();
    let named = |names: &[String]| -> Change {
        let mut spec = spec(1);
        let port = NamedPort {
            port: 9090,
            protocol: Protocol::Tcp,
        };
        let ports = names.iter().map(|n| (n.clone(), port)).collect();
        spec.extras.edit(|extras| extras.ports = ports);
        Change::Upsert {
            key: key("web", "a"),
            spec,
            source: SourceId::new("file:x"),
        }
    };
    let sixteen: Vec<String> = (0..16).map(|i| format!("p{i}")).collect();
    assert_eq!(apply(&mut model, named(&sixteen)), Ok(true));
    let seventeen: Vec<String> = (0..17).map(|i| format!("p{i}")).collect();
    for bad in [seventeen, vec!["p".repeat(63)], vec!["Upper".to_owned()]] {
        let result = apply(&mut model, named(&bad));
        assert!(
            matches!(result, Err(ChangeError::Invalid(_))),
            "{bad:?}: {result:?}"
        );
    }
    let web = model.snapshot.service("internal", "web").unwrap();
    let kept = web.instances.values().next().unwrap().spec.ports();
    assert_eq!(kept.len(), 16, "the refused specs changed nothing");
}

#[test]
fn a_batch_applies_whole_or_not_at_all() {
    let mut model = model();
    let (api, update) = (SourceId::api(), SourceId::new("update:k"));
    apply(&mut model, upsert("web", "theirs", 9, &api)).unwrap();
    apply(&mut model, upsert("web", "mine", 1, &update)).unwrap();
    let revision = model.snapshot.revision;
    let refused = Change::Batch {
        source: update.clone(),
        changes: vec![
            (key("web", "new"), Some(spec(2))),
            (key("web", "mine"), None),
            (key("web", "theirs"), Some(spec(3))),
        ],
    };
    let error = apply(&mut model, refused).unwrap_err();
    assert!(matches!(error, ChangeError::OwnedByOther { .. }), "{error}");
    let web = model.snapshot.service("internal", "web").unwrap();
    let ids: Vec<&str> = web.instances.values().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["mine", "theirs"], "nothing of the batch stayed");
    assert_eq!(model.snapshot.revision, revision);
    let owned = model.owned.keys(&model.snapshot, &update);
    assert!(owned.contains(&key("web", "mine")) && !owned.contains(&key("web", "new")));
    assert_eq!(model.owned.count(&update), 1);
    assert_eq!(
        model.api_instances(),
        2,
        "counted again for what the batch reached"
    );

    let accepted = Change::Batch {
        source: update.clone(),
        changes: vec![
            (key("web", "new"), Some(spec(2))),
            (key("web", "mine"), None),
        ],
    };
    assert_eq!(apply(&mut model, accepted), Ok(true));
    let web = model.snapshot.service("internal", "web").unwrap();
    let ids: Vec<&str> = web.instances.values().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["new", "theirs"]);
    assert_eq!(model.owned.count(&update), 1);
    assert_eq!(model.api_instances(), 2);
}

#[test]
fn a_drained_instance_is_never_served_and_keeps_its_hold_when_registered_again() {
    let mut model = model();
    let api = SourceId::api();
    for (id, octet) in [("a", 1), ("b", 2)] {
        apply(&mut model, upsert("web", id, octet, &api)).unwrap();
    }
    let drain = |id: &str, draining| Change::Drain {
        key: key("web", id),
        draining,
    };
    let served = |model: &State| -> Vec<String> {
        let service = model.snapshot.service("internal", "web").unwrap();
        service.serving().map(|i| i.id.clone()).collect()
    };
    assert!(apply(&mut model, drain("a", true)).unwrap());
    assert!(!apply(&mut model, drain("a", true)).unwrap(), "no change");
    assert_eq!(served(&model), ["b"]);
    // b unhealthy: fail-open serves b, never the drained a.
    let unhealthy = Change::SetHealth {
        key: key("web", "b"),
        healthy: false,
    };
    apply(&mut model, unhealthy).unwrap();
    assert_eq!(served(&model), ["b"]);
    // A new registration of a keeps the hold; lifting it serves a again.
    apply(&mut model, upsert("web", "a", 9, &api)).unwrap();
    assert_eq!(served(&model), ["b"]);
    assert!(apply(&mut model, drain("a", false)).unwrap());
    assert_eq!(served(&model), ["a"]);
    assert!(apply(&mut model, drain("missing", true)).is_err());
}

#[test]
fn weight_zero_instances_are_served_only_when_every_one_is_zero() {
    let mut model = model();
    let api = SourceId::api();
    let weighted = |id: &str, octet: u8, weight: &str| Change::Upsert {
        key: key("web", id),
        spec: InstanceSpec {
            attributes: [("weight".to_owned(), weight.to_owned())].into(),
            ..spec(octet)
        },
        source: api.clone(),
    };
    let served = |model: &State| -> Vec<String> {
        let service = model.snapshot.service("internal", "web").unwrap();
        service.serving().map(|i| i.id.clone()).collect()
    };
    apply(&mut model, weighted("a", 1, "0")).unwrap();
    assert_eq!(served(&model), ["a"], "all zero: all served");
    apply(&mut model, weighted("b", 2, "5")).unwrap();
    assert_eq!(served(&model), ["b"]);
    let spec = &web_instance(&model, "b").spec;
    assert_eq!(spec.srv_priority_weight(), (1, 5));
}
