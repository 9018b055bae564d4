//! One service's records in the zone, updated per instance.
//!
//! Owns: building a service's answerable records from the registry's `Service`, reusing
//! the records of every instance whose addresses did not change since the previous
//! build, so a change to one instance of a 20,000-instance service costs one instance's
//! encoding plus a walk over pointers, not 20,000 encodings. Must not: decide answers
//! (that is `answer::plan`).

use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::rr::{Name, RecordType};

use super::named_ports::{self, NamedName, NamedSrv};
use super::service_index::prefetch;
use super::wire::{QUESTION_POINTER, RrRef, child_name, put_record, wire_name};
use crate::registry::{
    AnswerPolicy, Instance, Locality, RecordTtls, Service, ZONE_ATTRIBUTE, instance_label, serving,
    subset_label,
};

/// A service's answerable records: only the instances DNS currently serves (healthy, or
/// all under fail-open), so a secondary sees exactly what clients are answered.
#[derive(Debug)]
pub struct ServiceRecords {
    pub policy: Arc<AnswerPolicy>,
    /// Served instances in id order (the registry's order, which the next update walks).
    pub instances: Vec<Arc<ServedInstance>>,
    /// The indices in `instances` of those with SRV-target addresses, in label order,
    /// for `iid.svc.ns`: 4 bytes an instance, where a persistent map took a 1 KiB node
    /// per service and 32 bytes an instance. Carried over from the previous version and
    /// merged with the instances built anew, so a change costs a walk, not a sort.
    labels: Box<[u32]>,
    /// The named ports the served instances have, each answered at
    /// `_<name>._<protocol>.svc.ns` (a [`PickKind::Named`] indexes it).
    pub named: Vec<NamedName>,
    /// Every kind of pick's candidates, and their records packed for the fast path.
    packed: Packed,
    /// Under `Locality::PreferZone`, the same records restricted to each zone's served
    /// instances (by `AVAILABILITY_ZONE`), in zone name order; none otherwise.
    zones: Box<[ZoneView]>,
    /// With `subsets` in the policy, the records of each subset `value._key.svc.ns`, by
    /// key then value.
    subsets: Box<[SubsetView]>,
    /// Per candidate in `packed`, the sum of the weights of its kind's candidates up to
    /// it; empty when every served instance weighs the same, so picks stay uniform.
    cumulative_weights: Box<[u64]>,
    owners: Arc<Owners>,
}

/// Cache lines of each of a previous build's packed buffers a prefetch asks for: the
/// whole of a typical service's, while a big one's would evict what the build reads
/// before its copy gets there.
const PREFETCH_PACKED_LINES: usize = 64;

/// A service's served instances as one build sees them.
struct Served<'a> {
    instances: Vec<Arc<ServedInstance>>,
    /// The registry's version of each, for what its records do not hold (zone, health);
    /// empty unless the walk was asked for them (zone views alone read them).
    current: Vec<&'a Arc<Instance>>,
    /// For each, its index in the previous instances if its records are the same.
    kept: Vec<Option<u32>>,
}

/// Walks `serving` (in id order) along `previous` (the same set's instances last time):
/// an instance whose records are the same keeps its `ServedInstance`, others get one
/// from `build`. `with_current` keeps each one's registry version too.
fn walk<'a>(
    serving: impl Iterator<Item = &'a Arc<Instance>>,
    previous: &[Arc<ServedInstance>],
    with_current: bool,
    build: impl Fn(&Arc<Instance>) -> ServedInstance,
) -> Served<'a> {
    // `serving` knows how many it may give (its candidates, collected): allocated once
    // at that size, where the previous count grew (a copy) whenever one was added.
    let most = serving.size_hint().1.unwrap_or(previous.len());
    let mut old = previous.iter().enumerate().peekable();
    let mut served = Served {
        instances: Vec::with_capacity(most),
        current: Vec::with_capacity(if with_current { most } else { 0 }),
        kept: Vec::with_capacity(most),
    };
    for instance in serving {
        if with_current {
            served.current.push(instance);
        }
        // An instance the batch did not touch is the very Arc it was built from: no
        // need to read (and miss the cache on) either id or its addresses.
        if let Some((j, same)) = old.next_if(|(_, o)| Arc::ptr_eq(&o.source, instance)) {
            served.instances.push(same.clone());
            served.kept.push(Some(j as u32));
            continue;
        }
        while old.next_if(|(_, o)| o.source.id < instance.id).is_some() {}
        let (new, was) = match old.next_if(|(_, o)| o.source.id == instance.id) {
            Some((j, same)) if same_records(&same.source, instance) => {
                (same.clone(), Some(j as u32))
            }
            _ => (Arc::new(build(instance)), None),
        };
        served.instances.push(new);
        served.kept.push(was);
    }
    served
}

/// The indices of `instances` that have SRV-target addresses, in label order: those
/// kept from `previous` (`kept[i]` is instance i's index there) in the order `previous`
/// had them, merged with the new ones, sorted.
fn label_order(
    instances: &[Arc<ServedInstance>],
    kept: &[Option<u32>],
    previous: Option<&ServiceRecords>,
) -> Box<[u32]> {
    let label = |i: u32| instances[i as usize].label();
    let mut now_at = vec![u32::MAX; previous.map_or(0, |p| p.instances.len())];
    for (i, was) in kept.iter().enumerate() {
        if let Some(j) = was {
            now_at[*j as usize] = i as u32;
        }
    }
    let mut carried = previous
        .map_or(&[][..], |p| &p.labels[..])
        .iter()
        .map(|&j| now_at[j as usize])
        .filter(|&i| i != u32::MAX)
        .peekable();
    let mut fresh: Vec<u32> = (0..instances.len() as u32)
        .filter(|&i| kept[i as usize].is_none() && instances[i as usize].has_target())
        .collect();
    fresh.sort_unstable_by(|&a, &b| label(a).cmp(label(b)));
    let mut fresh = fresh.into_iter().peekable();
    let mut order = Vec::with_capacity(instances.len());
    loop {
        let next = match (carried.peek(), fresh.peek()) {
            (Some(&c), Some(&f)) if label(f) < label(c) => fresh.next(),
            (Some(_), _) => carried.next(),
            (None, _) => fresh.next(),
        };
        match next {
            Some(i) => order.push(i),
            None => break,
        }
    }
    order.into_boxed_slice()
}

/// The most values one subset key answers: each is a copy of its instances' records
/// (values past it, in order, get no name).
pub const MAX_SUBSET_VALUES: usize = 64;

/// One DNS subset of a service, `value._key.svc.ns`: the instances whose `key`
/// attribute is `value` (as a label), served among themselves (health, fail-open and
/// weights judged among them).
#[derive(Debug)]
struct SubsetView {
    key: Box<str>,
    value: Box<str>,
    records: ServiceRecords,
}

/// The subsets of `service` by its policy's keys, each reusing the records of the same
/// subset in `previous`. `records` is the whole service's, whose owners the subsets'
/// derive from.
fn subset_views(
    records: &ServiceRecords,
    service: &Service,
    previous: Option<&ServiceRecords>,
) -> Box<[SubsetView]> {
    let policy = &records.policy;
    let mut views = Vec::new();
    for key in &policy.subsets {
        // One pass: each value's members, in id order.
        let mut members: std::collections::BTreeMap<String, Vec<&Arc<Instance>>> =
            Default::default();
        for instance in service.instances.values() {
            let value = instance
                .spec
                .attributes
                .get(key)
                .and_then(|v| subset_label(v));
            if let Some(value) = value {
                members.entry(value).or_default().push(instance);
            }
        }
        for (value, members) in members.into_iter().take(MAX_SUBSET_VALUES) {
            let old = previous.and_then(|p| p.subset(key.as_bytes(), value.as_bytes()));
            let owners = match old {
                Some(old) => old.owners.clone(),
                None => Arc::new(Owners {
                    service: child(&child(&records.owners.service, &format!("_{key}")), &value),
                    alias: records.owners.alias.clone(),
                    targets: records.owners.targets.clone(),
                }),
            };
            let served = walk(
                serving(members.iter().copied(), policy),
                old.map_or(&[], |o| &o.instances),
                false,
                |instance| ServedInstance::build(&owners, instance, policy.records, true),
            );
            if served.instances.is_empty() {
                continue;
            }
            let subset = ServiceRecords::assemble(
                policy,
                owners,
                served.instances,
                &served.kept,
                false,
                old,
            );
            views.push(SubsetView {
                key: key.as_str().into(),
                value: value.into(),
                records: subset,
            });
        }
    }
    views.sort_by(|a, b| (&a.key, &a.value).cmp(&(&b.key, &b.value)));
    views.into_boxed_slice()
}

/// One zone's share of a service: its served instances' records, packed as the whole
/// service's are (the same `ServedInstance`s, so the answers are byte for byte the same).
#[derive(Debug)]
struct ZoneView {
    zone: Arc<str>,
    records: ServiceRecords,
    /// How many of its served instances are healthy (under fail-open, served ones may
    /// not be).
    healthy: usize,
}

/// The zone views of `records`, whose instances are the registry's `current` ones, each
/// reusing the packed records of the same zone's view in `previous`.
fn zone_views(
    records: &ServiceRecords,
    current: &[&Arc<Instance>],
    previous: Option<&ServiceRecords>,
) -> Box<[ZoneView]> {
    let mut members: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, instance) in current.iter().enumerate() {
        if let Some(zone) = instance.spec.attributes.get(ZONE_ATTRIBUTE) {
            members.entry(zone).or_default().push(i);
        }
    }
    let empty: &[ZoneView] = &[];
    let old_views = previous.map_or(empty, |p| &p.zones);
    members
        .into_iter()
        .map(|(zone, members)| {
            let old = old_views.iter().find(|view| &*view.zone == zone);
            let instances: Vec<_> = members
                .iter()
                .map(|&i| records.instances[i].clone())
                .collect();
            // Both in id order: an instance kept is the very `ServedInstance` it was.
            let mut was = old
                .map_or(&[][..], |view| &view.records.instances[..])
                .iter()
                .enumerate()
                .peekable();
            let kept: Vec<Option<u32>> = instances
                .iter()
                .map(|instance| {
                    while was
                        .next_if(|(_, o)| o.source.id < instance.source.id)
                        .is_some()
                    {}
                    was.next_if(|(_, o)| Arc::ptr_eq(o, instance))
                        .map(|(j, _)| j as u32)
                })
                .collect();
            ZoneView {
                zone: zone.into(),
                healthy: members.iter().filter(|&&i| current[i].is_healthy()).count(),
                records: ServiceRecords::assemble(
                    &records.policy,
                    records.owners.clone(),
                    instances,
                    &kept,
                    false,
                    old.map(|view| &view.records),
                ),
            }
        })
        .collect()
}

/// The candidates of each kind of pick (A, AAAA, SRV, SRV alias, CNAME, then each named
/// port, in that order) and their records packed for the fast path: for each candidate, its answer record with
/// the owner `C0 0C` and, for SRV, its glue records, whose first two bytes (the owner)
/// the fast path overwrites with a pointer to the SRV target. Contiguous, so a query
/// touches a few cache lines rather than one allocation per record.
#[derive(Debug, Default, PartialEq)]
struct Packed {
    bytes: Vec<u8>,
    candidates: Vec<Candidate>,
    /// Where each kind's candidates start in `candidates`, and where the last ends.
    starts: Vec<usize>,
}

/// One instance that has the record a kind of pick answers with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Index into [`ServiceRecords::instances`].
    instance: u32,
    /// Where its records are in the packed bytes.
    at: u32,
    answer_len: u16,
    glue_lens: [u16; 2],
    /// The full path's size bound of the answer and its glue (uncompressed).
    bound: u16,
}

impl Candidate {
    /// The full path's size bound of this candidate's answer and glue.
    pub fn bound(&self) -> usize {
        usize::from(self.bound)
    }
}

/// Which record of each picked instance is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickKind {
    A,
    Aaaa,
    /// SRV at `svc.ns`, with the targets' addresses as glue.
    Srv,
    /// SRV at `_svc._proto.ns`, with the same glue.
    SrvAlias,
    /// SRV at `_<name>._<proto>.svc.ns` for the service's `named[n]` port, with the
    /// same glue.
    Named(usize),
    /// The CNAME at `svc.ns` of a Cloud Map CNAME service, whatever type was asked
    /// (RFC 1034 3.6.2, as Route 53 answers), one per answer.
    Cname,
}

/// Where `kind`'s candidates come in `Packed`: [`KINDS`] order, then the named ports.
fn kind_index(kind: PickKind) -> usize {
    match kind {
        PickKind::Named(n) => KINDS.len() + n,
        kind => KINDS.iter().position(|(k, _)| *k == kind).unwrap_or(0),
    }
}

/// The record of an instance a kind of pick answers with.
type AnswerOf = fn(&ServedInstance) -> Option<RrRef<'_>>;

/// The pick kinds every service has, first in `Packed` order, with the record each
/// answers with; named ports follow.
const KINDS: [(PickKind, AnswerOf); 5] = [
    (PickKind::A, |i| i.record(Slot::A)),
    (PickKind::Aaaa, |i| i.record(Slot::Aaaa)),
    (PickKind::Srv, |i| i.record(Slot::Srv)),
    (PickKind::SrvAlias, |i| i.record(Slot::SrvAlias)),
    (PickKind::Cname, |i| i.record(Slot::Cname)),
];

/// One kind of pick as `Packed::build` sees it: the record each instance answers with,
/// whether it carries glue, and the same kind's index in the previous `Packed`.
struct KindSpec<'a> {
    answer: Answer<'a>,
    with_glue: bool,
    old: Option<usize>,
}

/// Where an instance's record for a kind of pick is: a field every instance has, or
/// its record of one named port.
enum Answer<'a> {
    Fixed(AnswerOf),
    Named(&'a NamedName),
}

impl Answer<'_> {
    fn of<'i>(&self, instance: &'i ServedInstance) -> Option<RrRef<'i>> {
        match self {
            Self::Fixed(answer) => answer(instance),
            Self::Named(name) => named_ports::find(&instance.named, name),
        }
    }
}

/// Where a candidate's packed records come from.
enum Source<'a> {
    /// The same instance's candidate in the previous `Packed`: its bytes are copied.
    Kept(&'a Candidate),
    /// Its answer record, packed anew (with its glue, for a kind that has it).
    Fresh(RrRef<'a>),
}

impl KindSpec<'_> {
    /// This kind's candidates among `instances` (as [`Packed::build`] takes them), in
    /// order: each one's index, instance and where its records come from.
    fn sources<'s>(
        &'s self,
        instances: &'s [Arc<ServedInstance>],
        kept: &'s [Option<u32>],
        old: &'s Packed,
    ) -> impl Iterator<Item = (u32, &'s ServedInstance, Source<'s>)> {
        let mut old_kind = self
            .old
            .map_or(&[][..], |k| old.of_kind(k))
            .iter()
            .peekable();
        let enumerated = instances.iter().zip(kept).enumerate();
        enumerated.filter_map(move |(index, (instance, kept))| {
            // A kind new in this version (a name that was not answered) has nothing to
            // copy from.
            let source = match kept.filter(|_| self.old.is_some()) {
                Some(j) => {
                    while old_kind.next_if(|c| c.instance < j).is_some() {}
                    // A kept instance without a candidate here has no such record.
                    Source::Kept(old_kind.next_if(|c| c.instance == j)?)
                }
                None => Source::Fresh(self.answer.of(instance)?),
            };
            Some((index as u32, &**instance, source))
        })
    }
}

/// The records a fresh candidate packs: its answer `rr` (`None`), then, `with_glue`,
/// the addresses of `instance`'s SRV target (`Some` of their index in the glue).
fn packed_records<'i>(
    rr: RrRef<'i>,
    instance: &'i ServedInstance,
    with_glue: bool,
) -> impl Iterator<Item = (Option<usize>, RrRef<'i>)> {
    let glue = [Slot::TargetA, Slot::TargetAaaa]
        .into_iter()
        .enumerate()
        .filter(move |_| with_glue)
        .filter_map(|(n, slot)| Some((Some(n), instance.record(slot)?)));
    std::iter::once((None, rr)).chain(glue)
}

impl Packed {
    /// Packs the records of `instances` for each of `kinds`. `kept[i]` is `Some(j)` when
    /// `instances[i]` is the `j`th instance `old` was packed from, with the same records:
    /// its packed bytes are copied from `old` (contiguous, so a change to one instance of
    /// a big service reads one buffer rather than every instance's records, which are
    /// cold in a large registry). With nothing kept, `old` is not read.
    ///
    /// Sized first, then written into buffers of the exact size: a worst-case reservation
    /// shrunk afterwards took two allocations per buffer, and the kernel clearing the
    /// fresh pages they landed on was ~11% of the zone hook's CPU in a REST batch at
    /// 100,000 instances.
    fn build(
        instances: &[Arc<ServedInstance>],
        kept: &[Option<u32>],
        old: &Packed,
        kinds: &[KindSpec<'_>],
    ) -> Self {
        let (mut len, mut count) = (0, 0);
        for kind in kinds {
            for (_, instance, source) in kind.sources(instances, kept, old) {
                count += 1;
                len += match source {
                    Source::Kept(was) => old.records_of(was).len(),
                    Source::Fresh(rr) => packed_records(rr, instance, kind.with_glue)
                        .map(|(_, rr)| rr.len_with_owner_at())
                        .sum(),
                };
            }
        }
        let mut packed = Self {
            bytes: Vec::with_capacity(len),
            candidates: Vec::with_capacity(count),
            starts: Vec::with_capacity(kinds.len() + 1),
        };
        for kind in kinds {
            packed.starts.push(packed.candidates.len());
            for (index, instance, source) in kind.sources(instances, kept, old) {
                let candidate = match source {
                    Source::Kept(was) => {
                        let at = packed.bytes.len();
                        packed.bytes.extend_from_slice(old.records_of(was));
                        Candidate {
                            at: at as u32,
                            ..*was
                        }
                    }
                    Source::Fresh(rr) => packed.push(rr, instance, kind.with_glue),
                };
                packed.candidates.push(Candidate {
                    instance: index,
                    ..candidate
                });
            }
        }
        packed.starts.push(packed.candidates.len());
        packed
    }

    /// Appends the answer `rr` of `instance` and, `with_glue`, its SRV target's
    /// addresses; returns its candidate (instance index to be set).
    fn push(&mut self, rr: RrRef<'_>, instance: &ServedInstance, with_glue: bool) -> Candidate {
        let at = self.bytes.len();
        let mut answer_len = 0;
        let mut bound = 0;
        let mut glue_lens = [0; 2];
        for (glue, rr) in packed_records(rr, instance, with_glue) {
            let start = self.bytes.len();
            rr.put_with_owner_at(&mut self.bytes, glue.map_or(QUESTION_POINTER, |_| 0));
            let len = self.bytes.len() - start;
            match glue {
                None => answer_len = len,
                Some(n) => glue_lens[n] = len as u16,
            }
            bound += rr.len();
        }
        Candidate {
            instance: 0,
            at: at as u32,
            answer_len: answer_len as u16,
            glue_lens,
            bound: bound.min(usize::from(u16::MAX)) as u16,
        }
    }

    /// The candidates of the `k`th kind (in [`KINDS`], then the named ports); none for a
    /// kind it does not have.
    fn of_kind(&self, k: usize) -> &[Candidate] {
        &self.candidates[self.range(k)]
    }

    /// Where the `k`th kind's candidates are in `candidates`; empty for a kind it does
    /// not have.
    fn range(&self, k: usize) -> std::ops::Range<usize> {
        match (self.starts.get(k), self.starts.get(k + 1)) {
            (Some(&start), Some(&end)) => start..end,
            _ => 0..0,
        }
    }

    /// Per candidate, the sum of the weights of its kind's candidates up to it; empty
    /// when every one of `instances` (which the candidates index) weighs the same.
    fn cumulative_weights(&self, instances: &[Arc<ServedInstance>]) -> Box<[u64]> {
        if instances
            .windows(2)
            .all(|pair| pair[0].weight == pair[1].weight)
        {
            return Box::default();
        }
        let mut sums = Vec::with_capacity(self.candidates.len());
        for kind in self.starts.windows(2) {
            let mut sum = 0;
            for candidate in &self.candidates[kind[0]..kind[1]] {
                sum += u64::from(instances[candidate.instance as usize].weight);
                sums.push(sum);
            }
        }
        sums.into_boxed_slice()
    }

    /// `candidate`'s answer and glue, as packed.
    fn records_of(&self, candidate: &Candidate) -> &[u8] {
        let at = candidate.at as usize;
        let len = usize::from(candidate.answer_len)
            + candidate
                .glue_lens
                .iter()
                .map(|&l| usize::from(l))
                .sum::<usize>();
        &self.bytes[at..at + len]
    }
}

/// One served instance's records. SRV targets are `<label>.<svc>.<ns>`, whose A/AAAA
/// are the [`Slot::TargetA`]/[`Slot::TargetAaaa`] records (the glue).
#[derive(Debug)]
pub struct ServedInstance {
    /// The registry's instance the records were built from.
    pub source: Arc<Instance>,
    /// Its records of each [`Slot`], in one allocation (its label is their targets'
    /// first label, not kept apart).
    records: SlotRecords,
    /// Owners `_<name>._<protocol>.svc.ns`, one per named port, in name order.
    pub named: Box<[NamedSrv]>,
    /// Its `weight` attribute: how often a pick chooses it, relative to the others.
    pub weight: u16,
}

/// The records an instance may have, one each, besides named ports' SRV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Owner `svc.ns`.
    A,
    Aaaa,
    Srv,
    /// Owner `_svc._proto.ns`.
    SrvAlias,
    /// Owner `svc.ns` (Cloud Map CNAME services).
    Cname,
    /// Owner `<label>.svc.ns`, the SRV target.
    TargetA,
    TargetAaaa,
}

/// How many [`Slot`]s there are.
const SLOTS: usize = 7;

/// Every [`Slot`], in order; the first five are [`KINDS`]' records, in the same order.
const ALL_SLOTS: [Slot; SLOTS] = [
    Slot::A,
    Slot::Aaaa,
    Slot::Srv,
    Slot::SrvAlias,
    Slot::Cname,
    Slot::TargetA,
    Slot::TargetAaaa,
];

/// One slot's record as [`ServedInstance::build`] writes it: its owner, type, TTL (none:
/// the service has no such records) and RDATA in at most two parts (none: the instance
/// has no such record).
type SlotSpec<'a> = (&'a [u8], RecordType, Option<u32>, Option<[&'a [u8]; 2]>);

/// An instance's records of each [`Slot`], back to back in one buffer: one allocation
/// an instance where a `Box` per record took four (A, SRV, RFC 2782 SRV, the target's
/// A), each 24 bytes in the instance plus its own heap block, which a zone transfer
/// then read as one cache and TLB miss each.
#[derive(Debug)]
struct SlotRecords {
    wire: Box<[u8]>,
    /// Where each slot's record ends in `wire`; it starts where the previous one ends,
    /// so an absent record is an empty range.
    ends: [u16; SLOTS],
    /// The length of each record's owner name (at most 255 bytes, RFC 1035).
    owner_lens: [u8; SLOTS],
}

impl SlotRecords {
    fn get(&self, slot: Slot) -> Option<RrRef<'_>> {
        let at = slot as usize;
        let start = at.checked_sub(1).map_or(0, |before| self.ends[before]);
        let record = &self.wire[usize::from(start)..usize::from(self.ends[at])];
        (!record.is_empty()).then(|| RrRef::new(record, u16::from(self.owner_lens[at])))
    }
}

/// The owner names of a service's records, in wire form.
#[derive(Debug)]
struct Owners {
    /// Of the answers: `svc.ns`, or a subset's `value._key.svc.ns`.
    service: Box<[u8]>,
    alias: Box<[u8]>,
    /// Where SRV targets are, `<label>.<targets>`: always `svc.ns`.
    targets: Box<[u8]>,
}

impl ServiceRecords {
    /// The records of `service` in the namespace whose name is `origin` (wire form).
    /// Instances unchanged since `previous` (same id and addresses, same policy) keep
    /// their records.
    pub fn build(origin: &[u8], service: &Service, previous: Option<&Self>) -> Self {
        let policy = service.policy.clone();
        let previous = previous.filter(|p| p.policy == policy);
        let owners = match previous {
            Some(previous) => previous.owners.clone(),
            None => {
                let service_name = child(origin, &service.name);
                Arc::new(Owners {
                    targets: service_name.clone(),
                    service: service_name,
                    alias: child(
                        &child(origin, policy.protocol.label()),
                        &format!("_{}", service.name),
                    ),
                })
            }
        };
        let served = walk(
            service.serving(),
            previous.map_or(&[], |p| &p.instances),
            policy.locality == Locality::PreferZone,
            |instance| ServedInstance::build(&owners, instance, policy.records, false),
        );
        let mut records = Self::assemble(
            &policy,
            owners,
            served.instances,
            &served.kept,
            true,
            previous,
        );
        if policy.locality == Locality::PreferZone {
            records.zones = zone_views(&records, &served.current, previous);
        }
        if !policy.subsets.is_empty() {
            records.subsets = subset_views(&records, service, previous);
        }
        records
    }

    /// Asks the CPU to start loading the instances a build of `service` reads (each one,
    /// and each of `previous`'s records it may keep), without waiting for them: a
    /// batch's changed services are cold in a large registry, and a build that reads them
    /// one after another waits for each miss in turn.
    pub fn prefetch_build(service: &Service, previous: Option<&Self>) {
        for instance in service.instances.values() {
            prefetch(&**instance, usize::MAX);
        }
        if let Some(previous) = previous {
            for served in &previous.instances[..] {
                prefetch(&**served, 1);
            }
            // What the packing copies from, up to a few KiB (a service of ~40).
            prefetch(&previous.packed.candidates[..], PREFETCH_PACKED_LINES);
            prefetch(&previous.packed.bytes[..], PREFETCH_PACKED_LINES);
        }
    }

    /// The records of `instances` (in id order; `kept[i]` is the index in `previous` of
    /// an instance whose records are the same), sharing `owners`; `with_labels` for the
    /// service's own names (a subset or zone view answers no `iid.svc.ns`).
    fn assemble(
        policy: &Arc<AnswerPolicy>,
        owners: Arc<Owners>,
        instances: Vec<Arc<ServedInstance>>,
        kept: &[Option<u32>],
        with_labels: bool,
        previous: Option<&Self>,
    ) -> Self {
        let named = named_ports::names(&instances);
        let packed = {
            let old_named = previous.map_or(&[][..], |p| &p.named[..]);
            let fixed = KINDS
                .iter()
                .enumerate()
                .map(|(k, (kind, answer))| KindSpec {
                    answer: Answer::Fixed(*answer),
                    with_glue: matches!(kind, PickKind::Srv | PickKind::SrvAlias),
                    old: previous.map(|_| k),
                });
            let by_name = named.iter().map(|name| KindSpec {
                answer: Answer::Named(name),
                with_glue: true,
                old: (old_named.iter().position(|n| n == name)).map(|j| KINDS.len() + j),
            });
            let kinds: Vec<KindSpec<'_>> = fixed.chain(by_name).collect();
            let empty = Packed::default();
            let old = previous.map_or(&empty, |p| &p.packed);
            Packed::build(&instances, kept, old, &kinds)
        };
        let labels = match with_labels {
            true => label_order(&instances, kept, previous),
            false => Box::default(),
        };
        Self {
            cumulative_weights: packed.cumulative_weights(&instances),
            packed,
            policy: policy.clone(),
            instances,
            labels,
            named,
            owners,
            zones: Box::default(),
            subsets: Box::default(),
        }
    }

    /// The subset `value._key` of this service (`subsets` in its policy), if any of its
    /// instances is served there.
    pub fn subset(&self, key: &[u8], value: &[u8]) -> Option<&Self> {
        let at = self
            .subsets
            .binary_search_by(|view| {
                (view.key.as_bytes(), view.value.as_bytes()).cmp(&(key, value))
            })
            .ok()?;
        Some(&self.subsets[at].records)
    }

    /// Whether `_key.svc.ns` is the parent of subset names: an empty non-terminal.
    pub fn subset_key_in_use(&self, key: &[u8]) -> bool {
        self.subsets.iter().any(|view| view.key.as_bytes() == key)
    }

    /// The subset views, for zone transfers: each one's records.
    pub fn subset_records(&self) -> impl Iterator<Item = &Self> {
        self.subsets.iter().map(|view| &view.records)
    }

    /// Whether some of its served instances are in a zone (under `Locality::PreferZone`).
    pub fn has_zone_views(&self) -> bool {
        !self.zones.is_empty()
    }

    /// The view a client in `zone` is answered from under `Locality::PreferZone`: the
    /// zone's own served instances while at least `min_local` of them are healthy.
    pub fn zone_view(&self, zone: &str) -> Option<&Self> {
        let view = self.zones.iter().find(|view| &*view.zone == zone)?;
        let enough = view.healthy >= usize::try_from(self.policy.min_local).unwrap_or(usize::MAX);
        enough.then_some(&view.records)
    }

    /// Whether `svc.ns` exists in DNS: some served instance has a record at it or below
    /// it. A service with none is absent, as Route 53 has no record there (NXDOMAIN).
    pub fn has_names(&self) -> bool {
        !self.packed.candidates.is_empty() || !self.labels.is_empty()
    }

    /// The instances with an address at their SRV target `label.svc.ns`, in label order.
    pub fn labelled(&self) -> impl Iterator<Item = &ServedInstance> {
        self.labels.iter().map(|&i| &*self.instances[i as usize])
    }

    /// The instance whose SRV target is `label.svc.ns`, if it has an address there.
    pub fn by_label(&self, label: &str) -> Option<&ServedInstance> {
        let instance = |i: u32| &*self.instances[i as usize];
        let at = self
            .labels
            .binary_search_by(|&i| instance(i).label().cmp(label.as_bytes()))
            .ok()?;
        Some(instance(self.labels[at]))
    }

    /// Whether an IXFR delta may compare this version with another one instance by
    /// instance ([`ServiceRecords::lacks`]): no subsets (whose glue repeats the
    /// service's), no CNAME (of which a transfer keeps the first instance's alone), and
    /// every named port packed (`named_ports::MAX_NAMES` not reached).
    pub fn comparable_by_instance(&self) -> bool {
        self.subsets.is_empty()
            && self.candidates(PickKind::Cname).is_empty()
            && self.named.len() < named_ports::MAX_NAMES
    }

    /// The records of `instance`, a served instance of another version of this service,
    /// that no instance here has (in [`ServedInstance::records`] order): what a delta
    /// lists for it. Looked up in the packed records (one contiguous buffer) and the
    /// label order, not in each instance's records, which are cold in a large registry.
    /// Exact only where [`ServiceRecords::comparable_by_instance`] holds.
    pub fn lacks<'i>(&self, instance: &'i ServedInstance) -> Vec<RrRef<'i>> {
        let fixed = ALL_SLOTS.into_iter().filter_map(|slot| {
            let record = instance.record(slot)?;
            let held = match slot {
                Slot::TargetA | Slot::TargetAaaa => {
                    self.with_label(instance.label()).any(|other| {
                        other
                            .record(slot)
                            .is_some_and(|r| r.wire() == record.wire())
                    })
                }
                _ => self.packs(
                    slot as usize,
                    &Answer::Fixed(KINDS[slot as usize].1),
                    record,
                ),
            };
            (!held).then_some(record)
        });
        let named = instance.named.iter().filter_map(|named| {
            let record = named.rr.view();
            let held = self
                .named
                .iter()
                .position(|n| *n == named.name)
                .is_some_and(|n| self.packs(KINDS.len() + n, &Answer::Named(&named.name), record));
            (!held).then_some(record)
        });
        fixed.chain(named).collect()
    }

    /// Whether the `k`th kind's candidates include `record` (its answer, told apart from
    /// the packed bytes, then read whole from the instance on a match).
    fn packs(&self, k: usize, answer: &Answer<'_>, record: RrRef<'_>) -> bool {
        self.packed.of_kind(k).iter().any(|candidate| {
            self.packed_answer(candidate).get(2..) == Some(record.after_owner())
                && answer
                    .of(self.instance(candidate))
                    .is_some_and(|r| r.wire() == record.wire())
        })
    }

    /// The instances whose SRV target is `label.svc.ns` (more than one only if two ids
    /// map to one label).
    fn with_label<'s>(&'s self, label: &'s [u8]) -> impl Iterator<Item = &'s ServedInstance> {
        let instance = |i: &u32| &*self.instances[*i as usize];
        let start = self.labels.partition_point(|i| instance(i).label() < label);
        self.labels[start..]
            .iter()
            .map(instance)
            .take_while(move |other| other.label() == label)
    }

    /// Starts loading what a pick from these records reads first (the policy, where each
    /// kind's candidates start, the first candidates and packed bytes), for the fast
    /// path's batches (`dns::fast::respond::warm`).
    pub fn prefetch_picks(&self) {
        prefetch(&*self.policy, 1);
        prefetch(&self.packed.starts[..], 1);
        prefetch(&self.packed.candidates[..], 2);
        prefetch(&self.packed.bytes[..], 2);
    }

    /// The instances a pick of `kind` chooses from.
    pub fn candidates(&self, kind: PickKind) -> &[Candidate] {
        &self.packed.candidates[self.packed.range(kind_index(kind))]
    }

    /// The cumulative weights of `kind`'s candidates (see `sample::weighted`), or `None`
    /// when every served instance weighs the same.
    pub fn cumulative_weights(&self, kind: PickKind) -> Option<&[u64]> {
        let range = self.packed.range(kind_index(kind));
        (!self.cumulative_weights.is_empty()).then(|| &self.cumulative_weights[range])
    }

    /// The instance `candidate` stands for.
    pub fn instance(&self, candidate: &Candidate) -> &ServedInstance {
        &self.instances[candidate.instance as usize]
    }

    /// `candidate`'s answer record, owner `C0 0C`.
    pub fn packed_answer(&self, candidate: &Candidate) -> &[u8] {
        let at = candidate.at as usize;
        &self.packed.bytes[at..at + usize::from(candidate.answer_len)]
    }

    /// `candidate`'s glue records (none unless SRV), owner bytes to overwrite.
    pub fn packed_glue(&self, candidate: &Candidate) -> impl Iterator<Item = &[u8]> {
        let mut at = candidate.at as usize + usize::from(candidate.answer_len);
        candidate
            .glue_lens
            .into_iter()
            .filter(|&len| len > 0)
            .map(move |len| {
                let record = &self.packed.bytes[at..at + usize::from(len)];
                at += usize::from(len);
                record
            })
    }
}

impl ServedInstance {
    /// Whether its SRV target `label.svc.ns` has an address record.
    fn has_target(&self) -> bool {
        self.record(Slot::TargetA).is_some() || self.record(Slot::TargetAaaa).is_some()
    }

    /// The label of its SRV target `label.svc.ns`, read from the target's address
    /// record; empty without one (it then has no name of its own).
    pub fn label(&self) -> &[u8] {
        let target = self.record(Slot::TargetA).or(self.record(Slot::TargetAaaa));
        let owner = target.map_or(&[][..], RrRef::owner);
        let len = owner.first().map_or(0, |&len| usize::from(len));
        owner.get(1..1 + len).unwrap_or_default()
    }

    /// Its record of `slot`, if it has one.
    pub fn record(&self, slot: Slot) -> Option<RrRef<'_>> {
        self.records.get(slot)
    }

    /// Every record of the instance, once.
    pub fn records(&self) -> impl Iterator<Item = RrRef<'_>> {
        let named = self.named.iter().map(|n| n.rr.view());
        ALL_SLOTS
            .into_iter()
            .filter_map(|slot| self.record(slot))
            .chain(named)
    }

    /// The records of `instance` under `owners`, with the TTLs of `types`. `in_subset`,
    /// as a subset answers it: the same A, AAAA, SRV and CNAME at the subset's name, and
    /// the same SRV targets' glue; no RFC 2782 alias and no named ports, which live
    /// under the service's own name.
    fn build(
        owners: &Owners,
        instance: &Arc<Instance>,
        types: RecordTtls,
        in_subset: bool,
    ) -> Self {
        let label = instance_label(&instance.id);
        let target = child(&owners.targets, &label);
        let spec = &instance.spec;
        let ipv4 = spec.ipv4.map(|ip| ip.octets());
        let ipv6 = spec.ipv6.map(|ip| ip.octets());
        // Priority, weight, the port; the target follows.
        let (priority, weight) = spec.srv_priority_weight();
        let srv_fields = |port: u16| {
            let ([p0, p1], [w0, w1], [h, l]) = (
                priority.to_be_bytes(),
                weight.to_be_bytes(),
                port.to_be_bytes(),
            );
            [p0, p1, w0, w1, h, l]
        };
        let srv = spec.port.map(srv_fields);
        let cname = spec
            .cname()
            .and_then(|c| Name::from_str(c).ok())
            .and_then(|mut name| {
                name.set_fqdn(true);
                wire_name(&name)
            });
        let a = ipv4.as_ref().map(|ip| [&ip[..], &[]]);
        let aaaa = ipv6.as_ref().map(|ip| [&ip[..], &[]]);
        let srv = srv.as_ref().map(|fields| [&fields[..], &target]);
        let cname = cname.as_ref().map(|name| [&name[..], &[]]);
        let service = &owners.service;
        // In slot order; RDATA in at most two parts (SRV's fields, then its target).
        let alias = srv.filter(|_| !in_subset);
        let slots: [SlotSpec<'_>; SLOTS] = [
            (service, RecordType::A, types.a, a),
            (service, RecordType::AAAA, types.aaaa, aaaa),
            (service, RecordType::SRV, types.srv, srv),
            (&owners.alias, RecordType::SRV, types.srv, alias),
            (service, RecordType::CNAME, types.cname, cname),
            // SRV targets have addresses whenever the service has SRV records, as Cloud
            // Map creates them.
            (&target, RecordType::A, types.a.or(types.srv), a),
            (&target, RecordType::AAAA, types.aaaa.or(types.srv), aaaa),
        ];
        // Allocated at its exact size: a shrink would leave the larger block in place.
        let capacity = slots
            .iter()
            .filter(|(_, _, ttl, _)| ttl.is_some())
            .filter_map(|(owner, _, _, rdata)| {
                Some(
                    owner.len() + 10 + rdata.as_ref()?.iter().map(|part| part.len()).sum::<usize>(),
                )
            })
            .sum();
        let mut wire = Vec::with_capacity(capacity);
        let mut ends = [0; SLOTS];
        let mut owner_lens = [0; SLOTS];
        for (at, (owner, record_type, ttl, rdata)) in slots.into_iter().enumerate() {
            let start = wire.len();
            // Owners are at most 255 bytes, and 7 records of at most 255 + 10 + 261
            // bytes fit 16 bits; a record that would not is left out.
            if let (Some(ttl), Some(rdata), Ok(owner_len)) = (ttl, rdata, u8::try_from(owner.len()))
                && put_record(&mut wire, owner, record_type, ttl, &rdata).is_some()
                && u16::try_from(wire.len()).is_ok()
            {
                owner_lens[at] = owner_len;
            } else {
                wire.truncate(start);
            }
            ends[at] = wire.len() as u16;
        }
        let named = match in_subset {
            true => Box::default(),
            false => named_ports::records(service, &target, spec.ports(), types.srv, srv_fields),
        };
        Self {
            source: instance.clone(),
            records: SlotRecords {
                wire: wire.into_boxed_slice(),
                ends,
                owner_lens,
            },
            named,
            weight,
        }
    }
}

/// Whether two versions of an instance have the same records (health and heartbeats
/// decide whether it is served, not what its records are).
fn same_records(a: &Instance, b: &Instance) -> bool {
    a.id == b.id
        && a.spec.ipv4 == b.spec.ipv4
        && a.spec.ipv6 == b.spec.ipv6
        && a.spec.port == b.spec.port
        && a.spec.cname() == b.spec.cname()
        && a.spec.ports() == b.spec.ports()
        && a.spec.srv_priority_weight() == b.spec.srv_priority_weight()
}

/// `label.parent` in wire form; labels were validated when the service or instance was
/// accepted, so the fallback (the parent) is never taken.
fn child(parent: &[u8], label: &str) -> Box<[u8]> {
    child_name(label.as_bytes(), parent)
        .unwrap_or_else(|| parent.to_vec())
        .into_boxed_slice()
}

#[cfg(test)]
#[path = "service_records_tests.rs"]
pub(super) mod tests;
