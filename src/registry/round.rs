//! Turning API changes into one etcd transaction: validate each against the applied
//! state, derive the records it writes, and the compares that make the same rules hold
//! against etcd's state when it commits.
//!
//! Each change is applied to the writer's model as a trial (so a later change of the
//! same round sees it, and limits count it), its records before and after are compared,
//! and the model is put back when the round is planned: what the model holds is only
//! ever what the watch delivered. A written key must be unchanged since it was applied
//! (`mod_revision`, 0 for "absent"), the namespace a change writes into must be the same
//! incarnation (`create_revision`), and a namespace or service being deleted must have
//! no key below it. A change that depends on a key this round already writes waits for
//! the next round, where it is validated against the committed state.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::admission::Admission;
use super::change::{Change, ChangeError, Tagged};
use super::model::{Origin, SourceId};
use super::records::{Record, RecordKey};
use super::snapshot::Snapshot;
use super::state::{State, Touched};
use crate::registry::InstanceKey;
use crate::store::etcd::{Expect, MAX_TXN_BYTES, MAX_TXN_OPS, MAX_TXN_WRITES, Op};

/// Instances an API batch may name with `[etcd]`, so that it always fits one
/// transaction: each instance is a write and a compare, and so may be its service's
/// record (a service with attributes or tags that changes with its instances); the
/// namespace is one compare more.
pub const MAX_BATCH_INSTANCES: usize = (MAX_TXN_WRITES - 1) / 2;

/// The revisions of every key this replica has applied: `(create, mod)`.
pub(super) type Index = HashMap<RecordKey, (i64, i64)>;

/// One round's transaction, and how to put the model back when it is planned.
pub(super) struct Txn {
    pub expects: Vec<Expect>,
    pub ops: Vec<Op>,
    bytes: usize,
    written: HashSet<RecordKey>,
    start: Snapshot,
    touched_keys: Vec<InstanceKey>,
}

/// What planning decided for one change.
#[derive(Debug)]
pub(super) enum Planned {
    /// Refused, or it changes nothing etcd holds: answer it now (with `Ok(true)` the
    /// caller applies it to this replica alone: health of a per-replica instance).
    Now(Result<bool, ChangeError>),
    /// In this round's transaction; `complete` is false when only a part fitted (a
    /// large sync): the rest is planned again once this part is applied.
    InTxn { complete: bool },
    /// Depends on this round's writes, or does not fit: the next round.
    Deferred,
}

/// Which keys a change writes and which it reads.
struct Footprint {
    writes: Vec<RecordKey>,
    /// Namespaces that must still be the incarnation the change was validated against.
    namespaces: Vec<String>,
    /// Namespaces or services that must have nothing below them.
    empty: Option<RecordKey>,
    /// The source whose instances the change writes (instances of other sources that
    /// etcd does not hold stay on this replica).
    source: Option<SourceId>,
}

impl Txn {
    pub fn new(model: &State) -> Self {
        Self {
            expects: Vec::new(),
            ops: Vec::new(),
            bytes: 0,
            written: HashSet::new(),
            start: model.snapshot.clone(),
            touched_keys: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Puts the model back to what it was before the round.
    pub fn restore(self, model: &mut State) -> (Vec<Expect>, Vec<Op>) {
        model.restore(self.start, &self.touched_keys);
        (self.expects, self.ops)
    }

    /// Validates `change` and adds what it writes to the transaction, with `fence` (the
    /// election its sender must still lead) among its compares.
    pub fn plan(
        &mut self,
        model: &mut State,
        index: &Index,
        admission: Option<&Admission>,
        change: &Change,
        fence: Option<Expect>,
        now: SystemTime,
    ) -> Planned {
        let footprint = footprint(model, change);
        // Checked before the trial: a change found to do nothing against a state this
        // round has not committed yet must not be answered before it is.
        if self.depends_on_round(&footprint) {
            return Planned::Deferred;
        }
        let before: Vec<Option<Record>> =
            footprint.writes.iter().map(|k| model.record(k)).collect();
        let saved = model.snapshot.clone();
        let keys = model.instance_keys(change);
        let result = model.apply(change.clone(), now, &mut Touched::default(), admission);
        if let Err(error) = result {
            model.restore(saved, &keys);
            return Planned::Now(Err(error));
        }
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for (key, before) in footprint.writes.iter().zip(before) {
            let after = model.record(key);
            if after == before || !stored(index, key, &before, &after, &footprint) {
                continue;
            }
            match after {
                Some(record) => puts.push(Op::put(key.clone(), &record)),
                None => deletes.push(Op::Delete(key.clone())),
            }
        }
        // Upserts before deletes: a part of a sync committed alone leaves extra old
        // instances, never missing ones.
        puts.append(&mut deletes);
        let ops = puts;
        if ops.is_empty() {
            model.restore(saved, &keys);
            return Planned::Now(result);
        }
        if ops.iter().any(|op| self.written.contains(op.key())) {
            model.restore(saved, &keys);
            return Planned::Deferred;
        }
        let mut reads = self.reads(model, index, &footprint);
        // The sender still leads (one compare per round, however many of its changes).
        reads.extend(fence.filter(|fence| !self.expects.contains(fence)));
        let fits = |count: usize, bytes: usize| {
            self.ops.len() + count <= MAX_TXN_WRITES
                && self.expects.len() + count + reads.len() <= MAX_TXN_OPS
                && self.bytes + bytes <= MAX_TXN_BYTES
        };
        let mut taken = 0;
        let mut bytes = 0;
        while taken < ops.len() && fits(taken + 1, bytes + ops[taken].value_len()) {
            bytes += ops[taken].value_len();
            taken += 1;
        }
        let complete = taken == ops.len();
        if !complete && matches!(change, Change::Batch { .. }) {
            // An API batch is all or nothing: in one transaction, or not at all.
            model.restore(saved, &keys);
            if !self.is_empty() {
                return Planned::Deferred;
            }
            let bytes: usize = ops.iter().map(Op::value_len).sum();
            return Planned::Now(Err(ChangeError::TooLarge(format!(
                "the batch writes {} records ({bytes} bytes): one etcd transaction holds {} \
                 writes and {} KiB",
                ops.len(),
                MAX_TXN_WRITES,
                MAX_TXN_BYTES / 1024,
            ))));
        }
        if (!complete && !self.is_empty()) || taken == 0 {
            model.restore(saved, &keys);
            return Planned::Deferred;
        }
        for op in ops.into_iter().take(taken) {
            let applied = index.get(op.key()).map_or(0, |(_, modified)| *modified);
            self.expects
                .push(Expect::ModRevision(op.key().clone(), applied));
            self.written.insert(op.key().clone());
            self.ops.push(op);
        }
        self.expects.extend(reads);
        self.bytes += bytes;
        if !complete {
            // The model keeps no part of a change that did not fit.
            model.restore(saved, &keys);
        }
        self.touched_keys.extend(keys);
        Planned::InTxn { complete }
    }

    /// Whether the change reads or writes a key this round writes: its compare could not
    /// say what it was validated against.
    fn depends_on_round(&self, footprint: &Footprint) -> bool {
        let writes = footprint.writes.iter().any(|k| self.written.contains(k));
        let namespaces = footprint
            .namespaces
            .iter()
            .any(|n| self.written.contains(&RecordKey::Namespace(n.clone())));
        let below = footprint
            .empty
            .as_ref()
            .is_some_and(|parent| self.written.iter().any(|key| is_below(key, parent)));
        writes || namespaces || below
    }

    fn reads(&self, model: &State, index: &Index, footprint: &Footprint) -> Vec<Expect> {
        let mut reads = Vec::new();
        for name in &footprint.namespaces {
            let api = model
                .snapshot
                .namespace(name)
                .is_some_and(|n| n.meta.origin == Origin::Api);
            let key = RecordKey::Namespace(name.clone());
            if let (true, Some((created, _))) = (api, index.get(&key)) {
                let expect = Expect::Created(key, *created);
                if !reads.contains(&expect) {
                    reads.push(expect);
                }
            }
        }
        reads.extend(footprint.empty.clone().map(Expect::NoChildren));
        reads
    }
}

/// Whether a written key belongs in etcd: not an instance of a per-replica source.
fn stored(
    index: &Index,
    key: &RecordKey,
    before: &Option<Record>,
    after: &Option<Record>,
    footprint: &Footprint,
) -> bool {
    if !matches!(key, RecordKey::Instance(_)) || index.contains_key(key) {
        return true;
    }
    let owner = |record: &Option<Record>| match record {
        Some(Record::Instance(instance)) => Some(instance.owner.clone()),
        _ => None,
    };
    let owner = owner(after).or_else(|| owner(before));
    owner.is_some() && owner == footprint.source
}

fn is_below(key: &RecordKey, parent: &RecordKey) -> bool {
    match (parent, key) {
        (RecordKey::Namespace(_), RecordKey::Namespace(_)) => false,
        (RecordKey::Namespace(name), other) => other.namespace() == name,
        (RecordKey::Service { namespace, service }, RecordKey::Instance(key)) => {
            key.namespace == *namespace && key.service == *service
        }
        _ => false,
    }
}

fn footprint(model: &State, change: &Change) -> Footprint {
    let mut footprint = Footprint {
        writes: Vec::new(),
        namespaces: Vec::new(),
        empty: None,
        source: None,
    };
    let service = |namespace: &str, service: &str| RecordKey::Service {
        namespace: namespace.to_owned(),
        service: service.to_owned(),
    };
    match change {
        Change::Upsert { key, source, .. } | Change::Remove { key, source } => {
            footprint.writes = vec![RecordKey::Instance(key.clone()), RecordKey::service_of(key)];
            footprint.namespaces.push(key.namespace.clone());
            footprint.source = Some(source.clone());
        }
        // The check's verdict and the heartbeat's state are in the instance's record:
        // the replica that runs the check or watches the deadline writes them (an
        // instance of a per-replica source stays this replica's).
        Change::SetHealth { key, .. }
        | Change::Drain { key, .. }
        | Change::CheckResult { key, .. }
        | Change::Heartbeat { key }
        | Change::HeartbeatExpired { key } => {
            footprint.writes.push(RecordKey::Instance(key.clone()));
        }
        Change::Sync { source, .. } | Change::Batch { source, .. } => {
            // A sync names the source's instances and the listed ones: the same key twice
            // is one write (etcd refuses a transaction with a key twice).
            let mut keys = model.instance_keys(change);
            keys.sort();
            keys.dedup();
            let mut services: Vec<RecordKey> = keys.iter().map(RecordKey::service_of).collect();
            services.sort();
            services.dedup();
            let mut namespaces: Vec<String> = keys.iter().map(|k| k.namespace.clone()).collect();
            namespaces.sort();
            namespaces.dedup();
            footprint.writes = keys.into_iter().map(RecordKey::Instance).collect();
            footprint.writes.extend(services);
            footprint.namespaces = namespaces;
            footprint.source = Some(source.clone());
        }
        Change::CreateNamespace(def) => footprint
            .writes
            .push(RecordKey::Namespace(def.name.clone())),
        Change::UpdateNamespace { name, .. } => {
            footprint.writes.push(RecordKey::Namespace(name.clone()));
        }
        Change::DeleteNamespace { name } => {
            footprint.writes.push(RecordKey::Namespace(name.clone()));
            footprint.empty = Some(RecordKey::Namespace(name.clone()));
        }
        Change::CreateService {
            namespace, name, ..
        }
        | Change::UpdateService {
            namespace, name, ..
        } => {
            footprint.writes.push(service(namespace, name));
            footprint.namespaces.push(namespace.clone());
        }
        Change::DeleteService { namespace, name } => {
            footprint.writes.push(service(namespace, name));
            footprint.empty = Some(service(namespace, name));
        }
        Change::SetServiceAttributes {
            namespace,
            service: name,
            ..
        }
        | Change::Tag {
            target:
                Tagged::Service {
                    namespace,
                    service: name,
                },
            ..
        } => {
            footprint.writes.push(service(namespace, name));
            footprint.namespaces.push(namespace.clone());
        }
        Change::Tag {
            target: Tagged::Namespace(name),
            ..
        } => footprint.writes.push(RecordKey::Namespace(name.clone())),
    }
    footprint
}

#[cfg(test)]
#[path = "round_tests.rs"]
mod tests;
