//! One service's records in the zone, updated per instance.
//!
//! Owns: building a service's answerable records from the registry's `Service`, reusing
//! the records of every instance whose addresses did not change since the previous
//! build, so a change to one instance of a 20,000-instance service costs one instance's
//! encoding plus a walk over pointers, not 20,000 encodings. Must not: decide answers
//! (that is `answer::plan`).

use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
use hickory_proto::rr::{Name, RData, Record};

use super::answer::PickKind;
use super::names::instance_label;
use super::wire::{QUESTION_POINTER, Rr};
use crate::registry::{AnswerPolicy, Instance, RecordTtls, Service};

/// A service's answerable records: only the instances DNS currently serves (healthy, or
/// all under fail-open), so a secondary sees exactly what clients are answered.
#[derive(Debug)]
pub struct ServiceRecords {
    pub policy: Arc<AnswerPolicy>,
    /// Served instances in id order (the registry's order, which the next update walks).
    pub instances: Vec<Arc<ServedInstance>>,
    /// Indexes into `instances` of those with an IPv4, an IPv6 address, a port.
    pub with_a: Vec<usize>,
    pub with_aaaa: Vec<usize>,
    pub with_srv: Vec<usize>,
    pub with_cname: Vec<usize>,
    /// Instance label → instance, for `iid.svc.ns` (a persistent map: updated per
    /// instance, shared with the previous version).
    pub by_label: imbl::HashMap<Arc<str>, Arc<ServedInstance>>,
    /// The wire form of `with_a`, `with_aaaa`, `with_srv` and the SRV alias answers, in
    /// that order ([`ServiceRecords::packed`]).
    packed: [Packed; 4],
}

/// One pick kind's answers packed for the fast path: for each candidate, its answer
/// record with the owner `C0 0C` and, for SRV, its glue records, whose first two bytes
/// (the owner) the fast path overwrites with a pointer to the SRV target. Contiguous, so
/// a query touches a few cache lines rather than one allocation per record.
#[derive(Debug, Default)]
pub struct Packed {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

/// Where one candidate's records are in [`Packed::bytes`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    at: u32,
    answer_len: u16,
    glue_lens: [u16; 2],
    /// The full path's size bound of the answer and its glue (uncompressed).
    bound: u16,
}

impl Packed {
    fn build(
        instances: &[Arc<ServedInstance>],
        candidates: &[usize],
        answer: fn(&ServedInstance) -> Option<&Rr>,
        glue: bool,
    ) -> Self {
        let mut packed = Self::default();
        for instance in candidates.iter().map(|&i| &instances[i]) {
            let Some(rr) = answer(instance) else { continue };
            let at = packed.bytes.len();
            rr.put_with_owner_at(&mut packed.bytes, QUESTION_POINTER);
            let answer_len = packed.bytes.len() - at;
            let mut bound = rr.len();
            let mut glue_lens = [0; 2];
            let glue_records = [&instance.target_a, &instance.target_aaaa];
            for (len, rr) in glue_lens.iter_mut().zip(glue_records) {
                if let (true, Some(rr)) = (glue, rr) {
                    let start = packed.bytes.len();
                    rr.put_with_owner_at(&mut packed.bytes, 0);
                    *len = (packed.bytes.len() - start) as u16;
                    bound += rr.len();
                }
            }
            packed.entries.push(Entry {
                at: at as u32,
                answer_len: answer_len as u16,
                glue_lens,
                bound: bound.min(usize::from(u16::MAX)) as u16,
            });
        }
        packed
    }

    /// The `n`th candidate's answer record, owner `C0 0C`.
    pub fn answer(&self, n: usize) -> &[u8] {
        let entry = self.entries[n];
        let at = entry.at as usize;
        &self.bytes[at..at + usize::from(entry.answer_len)]
    }

    /// The `n`th candidate's glue records (none unless SRV), owner bytes to overwrite.
    pub fn glue(&self, n: usize) -> impl Iterator<Item = &[u8]> {
        let entry = self.entries[n];
        let mut at = entry.at as usize + usize::from(entry.answer_len);
        entry
            .glue_lens
            .into_iter()
            .filter(|&len| len > 0)
            .map(move |len| {
                let record = &self.bytes[at..at + usize::from(len)];
                at += usize::from(len);
                record
            })
    }

    /// The full path's size bound of the `n`th candidate's answer and glue.
    pub fn bound(&self, n: usize) -> usize {
        usize::from(self.entries[n].bound)
    }
}

/// One served instance's records. SRV targets are `<label>.<svc>.<ns>`, whose A/AAAA
/// are `target_a`/`target_aaaa` (the glue).
#[derive(Debug)]
pub struct ServedInstance {
    /// The registry's instance the records were built from.
    pub source: Arc<Instance>,
    pub label: Arc<str>,
    /// Owner `svc.ns`.
    pub a: Option<Rr>,
    pub aaaa: Option<Rr>,
    pub srv: Option<Rr>,
    /// Owner `_svc._proto.ns`.
    pub srv_alias: Option<Rr>,
    /// Owner `svc.ns` (Cloud Map CNAME services).
    pub cname: Option<Rr>,
    /// Owner `<label>.svc.ns`.
    pub target_a: Option<Rr>,
    pub target_aaaa: Option<Rr>,
}

/// The owner names of a service's records.
struct Owners {
    service: Name,
    alias: Name,
}

impl ServiceRecords {
    /// The records of `service` in the namespace `origin`. Instances unchanged since
    /// `previous` (same id and addresses, same policy) keep their records.
    pub fn build(origin: &Name, service: &Service, previous: Option<&Self>) -> Self {
        let policy = service.policy.clone();
        let previous = previous.filter(|p| p.policy == policy);
        let owners = Owners {
            service: child(origin, &service.name),
            alias: child(
                &child(origin, policy.protocol.label()),
                &format!("_{}", service.name),
            ),
        };
        let mut by_label = previous.map_or_else(imbl::HashMap::new, |p| p.by_label.clone());
        let mut old = previous
            .map(|p| &p.instances[..])
            .unwrap_or_default()
            .iter()
            .peekable();
        let mut instances = Vec::with_capacity(old.len());
        let built = |instance: &Arc<Instance>, by_label: &mut imbl::HashMap<_, _>| {
            let served = Arc::new(ServedInstance::build(&owners, instance, policy.records));
            if served.target_a.is_some() || served.target_aaaa.is_some() {
                by_label.insert(served.label.clone(), served.clone());
            }
            served
        };
        for instance in service.serving() {
            while let Some(gone) = old.next_if(|o| o.source.id < instance.id) {
                by_label.remove(&gone.label);
            }
            let served = match old.next_if(|o| o.source.id == instance.id) {
                Some(same) if same_records(&same.source, instance) => same.clone(),
                Some(changed) => {
                    by_label.remove(&changed.label);
                    built(instance, &mut by_label)
                }
                None => built(instance, &mut by_label),
            };
            instances.push(served);
        }
        for gone in old {
            by_label.remove(&gone.label);
        }
        let indexes = |has: fn(&ServedInstance) -> bool| {
            (0..instances.len())
                .filter(|&i| has(&instances[i]))
                .collect::<Vec<_>>()
        };
        let (with_a, with_aaaa) = (indexes(|i| i.a.is_some()), indexes(|i| i.aaaa.is_some()));
        let with_srv = indexes(|i| i.srv.is_some());
        let packed = [
            Packed::build(&instances, &with_a, |i| i.a.as_ref(), false),
            Packed::build(&instances, &with_aaaa, |i| i.aaaa.as_ref(), false),
            Packed::build(&instances, &with_srv, |i| i.srv.as_ref(), true),
            Packed::build(&instances, &with_srv, |i| i.srv_alias.as_ref(), true),
        ];
        Self {
            with_cname: indexes(|i| i.cname.is_some()),
            with_a,
            with_aaaa,
            with_srv,
            policy,
            instances,
            by_label,
            packed,
        }
    }

    /// The wire form of a pick of `kind`; entry `n` is the pick's candidate `n`.
    pub fn packed(&self, kind: PickKind) -> &Packed {
        &self.packed[match kind {
            PickKind::A => 0,
            PickKind::Aaaa => 1,
            PickKind::Srv => 2,
            PickKind::SrvAlias => 3,
        }]
    }
}

impl ServedInstance {
    fn build(owners: &Owners, instance: &Arc<Instance>, types: RecordTtls) -> Self {
        let label: Arc<str> = instance_label(&instance.id).into();
        let target = child(&owners.service, &label);
        let spec = &instance.spec;
        let a = spec.ipv4.map(|ip| RData::A(A(ip)));
        let aaaa = spec.ipv6.map(|ip| RData::AAAA(AAAA(ip)));
        let srv = spec
            .port
            .map(|port| RData::SRV(SRV::new(1, 1, port, target.clone())));
        let cname = spec
            .cname
            .as_deref()
            .and_then(|c| Name::from_str(c).ok())
            .map(|mut name| {
                name.set_fqdn(true);
                RData::CNAME(CNAME(name))
            });
        Self {
            source: instance.clone(),
            a: record(&owners.service, &a, types.a),
            aaaa: record(&owners.service, &aaaa, types.aaaa),
            srv: record(&owners.service, &srv, types.srv),
            srv_alias: record(&owners.alias, &srv, types.srv),
            cname: record(&owners.service, &cname, types.cname),
            // SRV targets have addresses whenever the service has SRV records, as Cloud
            // Map creates them.
            target_a: record(&target, &a, types.a.or(types.srv)),
            target_aaaa: record(&target, &aaaa, types.aaaa.or(types.srv)),
            label,
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
        && a.spec.cname == b.spec.cname
}

/// A record of `data` at `name` if there is data and the type is served (`ttl`).
fn record(name: &Name, data: &Option<RData>, ttl: Option<u32>) -> Option<Rr> {
    Rr::new(Record::from_rdata(name.clone(), ttl?, data.clone()?))
}

/// `label.parent`; labels were validated when the service or instance was accepted.
pub fn child(parent: &Name, label: &str) -> Name {
    Name::from_labels([label.as_bytes()])
        .and_then(|n| n.append_domain(parent))
        .unwrap_or_else(|_| parent.clone())
}
