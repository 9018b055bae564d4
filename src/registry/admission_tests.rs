//! The ceilings and name rules on API changes, as the writer applies them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::*;
use crate::registry::Limit;
use crate::registry::change::{NamespaceDef, Tagged};
use crate::registry::model::NamespaceKind;
use crate::registry::model::{InstanceSpec, SourceId};
use crate::registry::policy::NamespaceSettings;

fn admission() -> Admission {
    Admission {
        namespaces: 3,
        services_per_namespace: 2,
        instances_per_service: 2,
        instances: 3,
        attribute_bytes: 100,
        allowed_namespaces: ["internal", "test", "*.corp.example"]
            .map(|p| crate::registry::NamePattern::parse(p).unwrap())
            .to_vec(),
        config_namespaces: vec!["internal".into()],
    }
}

fn model() -> State {
    let settings = NamespaceSettings {
        name: "internal".into(),
        ttl: 5,
        negative_ttl: 1,
        nameserver: "ns.internal.".into(),
        rules: Vec::new(),
    };
    State::new(Snapshot::new([settings], []))
}

fn api(model: &mut State, change: Change) -> Result<bool, ChangeError> {
    model.apply(
        change,
        SystemTime::UNIX_EPOCH,
        &mut Touched::default(),
        Some(&admission()),
    )
}

fn register(service: &str, id: &str) -> Change {
    Change::Upsert {
        key: InstanceKey {
            namespace: "internal".into(),
            service: service.into(),
            id: id.into(),
        },
        spec: InstanceSpec {
            ipv4: Some(Ipv4Addr::LOCALHOST),
            healthy: true,
            ..InstanceSpec::default()
        },
        source: SourceId::api(),
    }
}

fn namespace(name: &str, kind: NamespaceKind) -> Change {
    Change::CreateNamespace(NamespaceDef {
        name: name.into(),
        id: format!("ns-{name}"),
        kind,
        description: None,
        negative_ttl: None,
        creator_request_id: None,
        tags: BTreeMap::new(),
    })
}

fn limit(result: Result<bool, ChangeError>) -> Option<Limit> {
    match result {
        Err(ChangeError::LimitExceeded { limit, .. }) => Some(limit),
        _ => None,
    }
}

fn tags(count: usize, prefix: &str) -> Change {
    Change::Tag {
        target: Tagged::Namespace("internal".into()),
        set: (0..count)
            .map(|i| (format!("{prefix}{i}"), "v".into()))
            .collect(),
        remove: Vec::new(),
    }
}

#[test]
fn tags_are_counted_against_the_resource_as_it_is_then() {
    let mut model = model();
    assert_eq!(api(&mut model, tags(45, "a")), Ok(true));
    // A second call of 45 new tags, which a check against an older snapshot let through.
    assert_eq!(limit(api(&mut model, tags(45, "b"))), Some(Limit::Tags));
    assert_eq!(
        model
            .snapshot
            .namespace("internal")
            .unwrap()
            .meta
            .tags
            .len(),
        45
    );
    // Replacing existing keys stays within the limit.
    assert_eq!(api(&mut model, tags(45, "a")), Ok(true));
}

#[test]
fn instances_and_services_stop_at_their_ceilings() {
    let mut model = model();
    api(&mut model, register("web", "1")).unwrap();
    api(&mut model, register("web", "2")).unwrap();
    let third = api(&mut model, register("web", "3"));
    assert_eq!(limit(third), Some(Limit::InstancesPerService));
    assert_eq!(
        api(&mut model, register("web", "2")),
        Ok(false),
        "an update passes"
    );
    api(&mut model, register("db", "1")).unwrap();
    assert_eq!(
        limit(api(&mut model, register("cache", "1"))),
        Some(Limit::ServicesPerNamespace)
    );
    assert_eq!(
        limit(api(&mut model, register("db", "2"))),
        Some(Limit::Instances),
        "three API instances in all"
    );
    // Sources are not limited.
    let mut touched = Touched::default();
    let mut from_file = register("db", "9");
    if let Change::Upsert { source, .. } = &mut from_file {
        *source = SourceId::new("file:x");
    }
    assert_eq!(
        model.apply(from_file, SystemTime::UNIX_EPOCH, &mut touched, None),
        Ok(true)
    );
}

#[test]
fn attributes_are_bounded_in_bytes() {
    let mut model = model();
    let mut change = register("web", "1");
    if let Change::Upsert { spec, .. } = &mut change {
        spec.attributes.insert("k".into(), "v".repeat(100));
    }
    assert_eq!(limit(api(&mut model, change)), Some(Limit::AttributeBytes));
    assert!(
        model.snapshot.service("internal", "web").is_none(),
        "nothing changed"
    );
}

#[test]
fn api_namespaces_take_only_allowed_names_outside_configured_ones() {
    let mut model = model();
    let refused = |model: &mut State, name| {
        matches!(
            api(model, namespace(name, NamespaceKind::DnsPrivate)),
            Err(ChangeError::Invalid(_))
        )
    };
    for name in ["google.com", "com", "corp.example", "web.internal"] {
        assert!(refused(&mut model, name), "{name}");
    }
    assert_eq!(
        api(&mut model, namespace("a.test", NamespaceKind::DnsPrivate)),
        Ok(true)
    );
    assert_eq!(
        api(
            &mut model,
            namespace("x.corp.example", NamespaceKind::DnsPublic)
        ),
        Ok(true)
    );
    // HTTP namespaces have no DNS: any name.
    assert_eq!(
        api(&mut model, namespace("google.com", NamespaceKind::Http)),
        Ok(true)
    );
    assert_eq!(
        limit(api(
            &mut model,
            namespace("b.test", NamespaceKind::DnsPrivate)
        )),
        Some(Limit::Namespaces)
    );
}

#[test]
fn a_configured_namespaces_ttls_stay_the_files() {
    let mut model = model();
    let update = Change::UpdateNamespace {
        name: "internal".into(),
        description: Some("d".into()),
        negative_ttl: Some(86_400),
    };
    assert!(matches!(
        api(&mut model, update.clone()),
        Err(ChangeError::Invalid(_))
    ));
    // A log written before this rule: the description applies, the TTL does not.
    let mut touched = Touched::default();
    assert_eq!(
        model.apply(update, SystemTime::UNIX_EPOCH, &mut touched, None),
        Ok(true)
    );
    let internal = model.snapshot.namespace("internal").unwrap();
    assert_eq!(internal.settings.negative_ttl, 1);
    assert_eq!(internal.meta.description.as_deref(), Some("d"));
}

#[test]
fn update_keys_count_against_the_instance_ceiling() {
    let mut model = model();
    let owned_by = |source: &str, service: &str, id: &str| match register(service, id) {
        Change::Upsert { key, spec, .. } => Change::Upsert {
            key,
            spec,
            source: SourceId::new(source),
        },
        _ => unreachable!(),
    };
    api(&mut model, register("a", "1")).unwrap();
    api(&mut model, owned_by("update:k", "a", "2")).unwrap();
    api(&mut model, owned_by("update:other", "b", "1")).unwrap();
    let error = api(&mut model, owned_by("update:k", "b", "2")).unwrap_err();
    assert!(
        matches!(
            error,
            ChangeError::LimitExceeded {
                limit: Limit::Instances,
                ..
            }
        ),
        "{error}"
    );
}
