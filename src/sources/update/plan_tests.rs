use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, SRV};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Config;
use crate::registry::{Registry, Snapshot};

/// A snapshot of namespace `internal` holding `instances` (service, id, last octet,
/// port, owner).
async fn snapshot(instances: &[(&str, &str, u8, Option<u16>, &str)]) -> Arc<Snapshot> {
    let namespaces = Config::default().settings().unwrap().namespaces;
    let registry = Registry::new(Snapshot::new(namespaces, []));
    let handle = registry.handle();
    let stop = CancellationToken::new();
    tokio::spawn(registry.run(stop.clone()));
    for &(service, id, octet, port, owner) in instances {
        let spec = InstanceSpec {
            ipv4: Some(Ipv4Addr::new(10, 0, 0, octet)),
            port,
            healthy: true,
            ..InstanceSpec::default()
        };
        let key = InstanceKey {
            namespace: "internal".into(),
            service: service.into(),
            id: id.into(),
        };
        let source = SourceId::new(owner);
        handle
            .apply(Change::Upsert { key, spec, source })
            .await
            .unwrap();
    }
    let snapshot = handle.snapshot();
    stop.cancel();
    snapshot
}

fn origin() -> Name {
    Name::from_ascii("internal.").unwrap()
}

fn rel(labels: &[&str]) -> Relative {
    labels.iter().map(|l| l.to_string()).collect()
}

fn a(last: u8) -> RData {
    RData::A(A::new(10, 0, 0, last))
}

fn srv(port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(0, 0, port, Name::from_ascii(target).unwrap()))
}

const KEY: &str = "update:k";

fn plan(snapshot: &Snapshot, updates: &[Update]) -> Result<Option<Change>, ResponseCode> {
    let namespace = snapshot.namespace("internal").unwrap();
    let source = SourceId::new(KEY);
    let may_touch = |service: &str| service != "secret";
    let by = Grant {
        source: &source,
        may_touch: &may_touch,
    };
    changes(namespace, "internal", &origin(), updates, &by)
}

fn batch(change: Option<Change>) -> Vec<(String, Option<InstanceSpec>)> {
    let Some(Change::Batch { source, changes }) = change else {
        panic!("a batch, not {change:?}");
    };
    assert_eq!(source.as_str(), KEY);
    changes
        .into_iter()
        .map(|(key, spec)| (key.to_string(), spec))
        .collect()
}

#[tokio::test]
async fn prerequisites_are_checked_against_the_snapshot() {
    let snapshot = snapshot(&[("web", "a", 1, Some(80), KEY), ("web", "b", 2, None, "api")]).await;
    let namespace = snapshot.namespace("internal").unwrap();
    let check = |p: Prerequisite| check(namespace, &origin(), &[p]);
    let ok = Ok(());
    assert_eq!(check(Prerequisite::NameInUse(rel(&[]))), ok);
    assert_eq!(check(Prerequisite::NameInUse(rel(&["web"]))), ok);
    assert_eq!(check(Prerequisite::NameInUse(rel(&["b", "web"]))), ok);
    assert_eq!(
        check(Prerequisite::NameInUse(rel(&["c", "web"]))),
        Err(ResponseCode::NXDomain)
    );
    assert_eq!(
        check(Prerequisite::NameNotInUse(rel(&["a", "web"]))),
        Err(ResponseCode::YXDomain)
    );
    assert_eq!(check(Prerequisite::NameNotInUse(rel(&["db"]))), ok);
    assert_eq!(
        check(Prerequisite::RrsetExists(rel(&["web"]), RecordType::SRV)),
        ok
    );
    assert_eq!(
        check(Prerequisite::RrsetExists(
            rel(&["a", "web"]),
            RecordType::AAAA
        )),
        Err(ResponseCode::NXRRSet)
    );
    assert_eq!(
        check(Prerequisite::RrsetAbsent(
            rel(&["a", "web"]),
            RecordType::AAAA
        )),
        ok
    );
    assert_eq!(
        check(Prerequisite::RrsetAbsent(rel(&[]), RecordType::SOA)),
        Err(ResponseCode::YXRRSet)
    );
    let equals = |name: &[&str], rtype, data: Vec<RData>| {
        check(Prerequisite::RrsetEquals(rel(name), rtype, data))
    };
    assert_eq!(equals(&["web"], RecordType::A, vec![a(2), a(1)]), ok);
    assert_eq!(
        equals(&["web"], RecordType::A, vec![a(1)]),
        Err(ResponseCode::NXRRSet)
    );
    assert_eq!(
        equals(&["web"], RecordType::SRV, vec![srv(80, "A.web.internal.")]),
        ok
    );
    assert_eq!(
        equals(&["web"], RecordType::SRV, vec![srv(81, "a.web.internal.")]),
        Err(ResponseCode::NXRRSet)
    );
    // Names UPDATE does not model are refused, not guessed.
    assert_eq!(
        check(Prerequisite::NameNotInUse(rel(&["_web", "_tcp"]))),
        Err(ResponseCode::Refused)
    );
    assert_eq!(
        check(Prerequisite::NameInUse(rel(&["x", "a", "web"]))),
        Err(ResponseCode::Refused)
    );
}

#[tokio::test]
async fn updates_fold_into_one_change_per_instance() {
    let snapshot = snapshot(&[("web", "a", 1, Some(80), KEY)]).await;
    let updates = [
        Update::Add(rel(&["b", "web"]), a(2)),
        Update::Add(rel(&["web"]), srv(8080, "b.web.internal.")),
        Update::DeleteRrset(rel(&["a", "web"]), RecordType::A),
        Update::Add(rel(&["a", "web"]), a(3)),
    ];
    let changes = batch(plan(&snapshot, &updates).unwrap());
    let spec = |octet, port| {
        Some(InstanceSpec {
            ipv4: Some(Ipv4Addr::new(10, 0, 0, octet)),
            port,
            healthy: true,
            ..InstanceSpec::default()
        })
    };
    assert_eq!(
        changes,
        [
            ("internal/web/a".to_owned(), spec(3, Some(80))),
            ("internal/web/b".to_owned(), spec(2, Some(8080))),
        ]
    );
    // The last address gone: deregistered. Deleting what is not there: nothing to do.
    let gone = [Update::DeleteRecord(rel(&["a", "web"]), a(1))];
    assert_eq!(
        batch(plan(&snapshot, &gone).unwrap()),
        [("internal/web/a".to_owned(), None)]
    );
    let nothing = [
        Update::DeleteName(rel(&["z", "web"])),
        Update::DeleteRecord(rel(&["a", "web"]), a(9)),
    ];
    assert!(matches!(plan(&snapshot, &nothing), Ok(None)));
    let srv_off = [Update::DeleteRrset(rel(&["web"]), RecordType::SRV)];
    assert_eq!(
        batch(plan(&snapshot, &srv_off).unwrap()),
        [("internal/web/a".to_owned(), spec(1, None))]
    );
}

#[tokio::test]
async fn what_the_key_may_not_do_is_refused() {
    let snapshot = snapshot(&[("web", "theirs", 1, None, "api")]).await;
    let refused = [
        vec![Update::Add(rel(&["a", "secret"]), a(1))],
        vec![Update::DeleteRrset(rel(&["theirs", "web"]), RecordType::A)],
        vec![Update::Add(rel(&["web"]), a(1))],
        vec![Update::Add(
            rel(&["a", "web"]),
            RData::SRV(SRV::new(0, 0, 1, origin())),
        )],
        vec![Update::DeleteName(rel(&[]))],
        vec![Update::Add(rel(&["a", "_tcp"]), a(1))],
        vec![Update::Add(rel(&["A B", "web"]), a(1))],
        vec![Update::Add(rel(&["web"]), srv(80, "x.db.internal."))],
        vec![Update::Add(rel(&["web"]), srv(0, "a.web.internal."))],
        // An SRV record whose target would have no address.
        vec![Update::Add(rel(&["web"]), srv(80, "new.web.internal."))],
    ];
    for updates in refused {
        assert_eq!(
            plan(&snapshot, &updates).err(),
            Some(ResponseCode::Refused),
            "{updates:?}"
        );
    }
}
