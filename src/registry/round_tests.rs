use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::*;
use crate::registry::change::NamespaceDef;
use crate::registry::model::{InstanceSpec, NamespaceKind};
use crate::registry::policy::NamespaceSettings;

fn model() -> State {
    let settings = NamespaceSettings {
        name: "internal".to_owned(),
        ttl: 5,
        negative_ttl: 1,
        nameserver: "ns.internal.".to_owned(),
        rules: Vec::new(),
    };
    State::new(Snapshot::new([settings], []))
}

fn key(namespace: &str, id: &str) -> InstanceKey {
    InstanceKey {
        namespace: namespace.into(),
        service: "web".into(),
        id: id.into(),
    }
}

fn upsert(namespace: &str, id: &str, source: SourceId) -> Change {
    Change::Upsert {
        key: key(namespace, id),
        spec: InstanceSpec {
            ipv4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            port: Some(80),
            healthy: true,
            ..InstanceSpec::default()
        },
        source,
    }
}

fn create_namespace(name: &str) -> Change {
    Change::CreateNamespace(NamespaceDef {
        name: name.into(),
        id: format!("ns-{name}"),
        kind: NamespaceKind::Http,
        description: None,
        negative_ttl: None,
        creator_request_id: None,
        tags: Default::default(),
    })
}

fn plan(txn: &mut Txn, model: &mut State, index: &Index, change: Change) -> Planned {
    txn.plan(model, index, None, &change, None, SystemTime::UNIX_EPOCH)
}

#[test]
fn a_change_that_reads_what_the_round_writes_waits_for_the_next_round() {
    let mut model = model();
    let index = Index::new();
    let mut txn = Txn::new(&model);
    let created = plan(&mut txn, &mut model, &index, create_namespace("shop"));
    assert!(matches!(created, Planned::InTxn { complete: true }));
    let registered = plan(
        &mut txn,
        &mut model,
        &index,
        upsert("shop", "a", SourceId::api()),
    );
    assert!(matches!(registered, Planned::Deferred), "{registered:?}");
    // Two writes of one instance in a round: the second waits too.
    let first = plan(
        &mut txn,
        &mut model,
        &index,
        upsert("internal", "a", SourceId::api()),
    );
    assert!(matches!(first, Planned::InTxn { complete: true }));
    let again = plan(
        &mut txn,
        &mut model,
        &index,
        upsert("internal", "a", SourceId::api()),
    );
    assert!(matches!(again, Planned::Deferred), "{again:?}");
    let (expects, ops) = txn.restore(&mut model);
    assert_eq!(ops.len(), 2);
    let instance = RecordKey::Instance(key("internal", "a"));
    assert!(expects.contains(&Expect::ModRevision(instance, 0)));
    // Put back: the model holds only what the watch delivers.
    assert!(model.snapshot.namespace("shop").is_none());
    assert!(model.instance(&key("internal", "a")).is_err());
    assert!(model.owned.is_empty());
}

#[test]
fn compares_name_the_revisions_the_change_was_validated_against() {
    let mut model = model();
    let mut touched = Touched::default();
    let shop = RecordKey::Namespace("shop".into());
    let now = SystemTime::UNIX_EPOCH;
    model
        .apply(create_namespace("shop"), now, &mut touched, None)
        .unwrap();
    model
        .apply(
            upsert("shop", "a", SourceId::api()),
            now,
            &mut touched,
            None,
        )
        .unwrap();
    let mut index = Index::new();
    index.insert(shop.clone(), (7, 9));
    index.insert(RecordKey::Instance(key("shop", "a")), (8, 8));
    let mut txn = Txn::new(&model);
    let mut replace = upsert("shop", "a", SourceId::api());
    if let Change::Upsert { spec, .. } = &mut replace {
        spec.port = Some(81);
    }
    assert!(matches!(
        plan(&mut txn, &mut model, &index, replace),
        Planned::InTxn { .. }
    ));
    // Deleting the namespace while this round writes below it waits for the next round.
    let delete = Change::DeleteNamespace {
        name: "shop".into(),
    };
    let waits = plan(&mut txn, &mut model, &index, delete.clone());
    assert!(matches!(waits, Planned::Deferred), "{waits:?}");
    let (expects, _) = txn.restore(&mut model);
    // Next round: a namespace with instances cannot be deleted, whatever etcd says, and
    // another source may not take the instance over.
    let mut next = Txn::new(&model);
    let refused = plan(&mut next, &mut model, &index, delete);
    assert!(
        matches!(refused, Planned::Now(Err(ChangeError::InUse(_)))),
        "{refused:?}"
    );
    let taken = plan(
        &mut next,
        &mut model,
        &index,
        upsert("shop", "a", SourceId::new("ecs:x")),
    );
    assert!(
        matches!(taken, Planned::Now(Err(ChangeError::OwnedByOther { .. }))),
        "{taken:?}"
    );
    assert!(expects.contains(&Expect::ModRevision(
        RecordKey::Instance(key("shop", "a")),
        8
    )));
    assert!(expects.contains(&Expect::Created(shop, 7)));
}

#[test]
fn deleting_a_namespace_expects_nothing_below_it() {
    let mut model = model();
    let now = SystemTime::UNIX_EPOCH;
    model
        .apply(create_namespace("shop"), now, &mut Touched::default(), None)
        .unwrap();
    let shop = RecordKey::Namespace("shop".into());
    let index = Index::from([(shop.clone(), (3, 3))]);
    let mut txn = Txn::new(&model);
    let delete = Change::DeleteNamespace {
        name: "shop".into(),
    };
    assert!(matches!(
        plan(&mut txn, &mut model, &index, delete),
        Planned::InTxn { .. }
    ));
    let (expects, ops) = txn.restore(&mut model);
    assert!(matches!(&ops[..], [Op::Delete(key)] if *key == shop));
    assert!(expects.contains(&Expect::ModRevision(shop.clone(), 3)));
    assert!(expects.contains(&Expect::NoChildren(shop)));
}

#[test]
fn a_large_sync_is_split_with_upserts_before_deletes() {
    let mut model = model();
    let ecs = SourceId::new("ecs:prod");
    let now = SystemTime::UNIX_EPOCH;
    let mut index = Index::new();
    for i in 0..100 {
        let change = upsert("internal", &format!("old{i}"), ecs.clone());
        model
            .apply(change, now, &mut Touched::default(), None)
            .unwrap();
        index.insert(
            RecordKey::Instance(key("internal", &format!("old{i}"))),
            (5, 5),
        );
    }
    let wanted: Vec<_> = (0..200)
        .map(
            |i| match upsert("internal", &format!("new{i}"), ecs.clone()) {
                Change::Upsert { key, spec, .. } => (key, spec),
                _ => unreachable!(),
            },
        )
        .collect();
    let sync = Change::Sync {
        source: ecs.clone(),
        instances: wanted,
    };
    let mut txn = Txn::new(&model);
    let planned = plan(&mut txn, &mut model, &index, sync.clone());
    assert!(
        matches!(planned, Planned::InTxn { complete: false }),
        "{planned:?}"
    );
    let (expects, ops) = txn.restore(&mut model);
    assert_eq!(
        ops.len(),
        MAX_TXN_WRITES,
        "the commit adds the serial marker"
    );
    assert!(expects.len() <= MAX_TXN_OPS);
    assert!(
        ops.iter().all(|op| matches!(op, Op::Put(..))),
        "puts come first"
    );
    assert_eq!(model.owned.count(&ecs), 100, "the model is put back");
    // Once 200 puts are applied, what is left is the 100 deletes.
    for (key, spec) in match &sync {
        Change::Sync { instances, .. } => instances.clone(),
        _ => unreachable!(),
    } {
        let change = Change::Upsert {
            key: key.clone(),
            spec,
            source: ecs.clone(),
        };
        model
            .apply(change, now, &mut Touched::default(), None)
            .unwrap();
        index.insert(RecordKey::Instance(key), (6, 6));
    }
    let mut txn = Txn::new(&model);
    let planned = plan(&mut txn, &mut model, &index, sync);
    assert!(
        matches!(planned, Planned::InTxn { complete: true }),
        "{planned:?}"
    );
    let (_, ops) = txn.restore(&mut model);
    assert_eq!(ops.len(), 100);
    assert!(ops.iter().all(|op| matches!(op, Op::Delete(_))));
}

/// A batch of `count` registrations, each in a service of its own.
fn batch(count: usize) -> Change {
    let changes = (0..count)
        .map(|i| {
            let Change::Upsert { mut key, spec, .. } =
                upsert("internal", &format!("i{i}"), SourceId::api())
            else {
                unreachable!()
            };
            key.service = format!("s{i}");
            (key, Some(spec))
        })
        .collect();
    Change::Batch {
        source: SourceId::api(),
        changes,
    }
}

/// Plans a batch of `count` as a round's only change: what planning said, and the
/// round's compares and writes (the model put back).
fn plan_batch_alone(model: &mut State, count: usize) -> (Planned, Vec<Expect>, Vec<Op>) {
    let mut txn = Txn::new(model);
    let planned = plan(&mut txn, model, &Index::new(), batch(count));
    let (expects, ops) = txn.restore(model);
    (planned, expects, ops)
}

#[test]
fn the_largest_batch_the_api_takes_fits_one_transaction_whole() {
    let (planned, expects, ops) = plan_batch_alone(&mut model(), MAX_BATCH_INSTANCES);
    assert!(
        matches!(planned, Planned::InTxn { complete: true }),
        "{planned:?}"
    );
    assert_eq!(ops.len(), MAX_BATCH_INSTANCES);
    // Room for each instance's service record too.
    assert!(2 * ops.len() <= MAX_TXN_WRITES && 2 * expects.len() < MAX_TXN_OPS);
}

#[test]
fn a_batch_larger_than_a_transaction_is_refused_never_split() {
    let mut model = model();
    let (planned, _, ops) = plan_batch_alone(&mut model, MAX_TXN_WRITES + 1);
    assert!(
        matches!(planned, Planned::Now(Err(ChangeError::TooLarge(_)))),
        "{planned:?}"
    );
    assert!(ops.is_empty());
    let internal = model.snapshot.namespace("internal").unwrap();
    assert!(internal.services.is_empty(), "the model is put back");
}

#[test]
fn a_batch_that_fits_only_alone_waits_for_a_round_of_its_own() {
    let mut model = model();
    let mut txn = Txn::new(&model);
    let first = upsert("internal", "first", SourceId::api());
    assert!(matches!(
        plan(&mut txn, &mut model, &Index::new(), first),
        Planned::InTxn { complete: true }
    ));
    let planned = plan(&mut txn, &mut model, &Index::new(), batch(MAX_TXN_WRITES));
    assert!(matches!(planned, Planned::Deferred), "{planned:?}");
    let (_, ops) = txn.restore(&mut model);
    assert_eq!(ops.len(), 1, "the first change alone");
    // Alone, it fits whole.
    let (planned, _, ops) = plan_batch_alone(&mut model, MAX_TXN_WRITES);
    assert!(
        matches!(planned, Planned::InTxn { complete: true }),
        "{planned:?}"
    );
    assert_eq!(ops.len(), MAX_TXN_WRITES);
}
