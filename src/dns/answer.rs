//! Building the answer to one question from a zone: every rule of DESIGN.md's "Names and
//! records" and "Answer policy", as pure functions.
//!
//! [`plan`] decides what a question gets (which rcode, which record set, how many of it);
//! [`answer`] turns that into hickory records for the full path, and the UDP fast path
//! (`dns::fast`) turns the same plan into pre-encoded bytes, so the two paths cannot
//! disagree on a rule.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};
use rand::Rng;

use super::locality::Client;
use super::named_ports;
use super::qname::QueryName;
use super::sample;
use super::service_records::{Candidate, PickKind, ServedInstance, ServiceRecords, Slot};
use super::wire::RrRef;
use super::zone::{NamespaceRecords, ZoneSnapshot};
use crate::registry::{Locality, Routing};

/// The sections of a response, as hickory records decoded from the zone's wire forms
/// (the full path is the rare one; the fast path copies the wire forms).
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The SCOPE PREFIX-LENGTH of the Client Subnet option to echo, when the answer was
    /// chosen by the query's Client Subnet (RFC 7871 §7.2.1).
    pub client_subnet_scope: Option<u8>,
}

impl Answer {
    /// NODATA (`NoError`) or NXDOMAIN, with the SOA for negative caching.
    fn negative(rcode: ResponseCode, zone: &NamespaceRecords) -> Self {
        Self {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![zone.soa.view().record()],
            additionals: Vec::new(),
            client_subnet_scope: None,
        }
    }

    fn positive(answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        Self {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authorities: Vec::new(),
            additionals,
            client_subnet_scope: None,
        }
    }
}

/// What a question gets, before any record is copied.
#[derive(Debug)]
pub enum Plan<'z> {
    /// Not ours: outside every namespace, or a zone transfer.
    Refused,
    /// The namespace's sources have not all synced yet.
    ServFail,
    /// NXDOMAIN or NODATA (`NoError`), with the namespace's SOA.
    Negative(ResponseCode, &'z NamespaceRecords),
    /// Exactly one record (the apex SOA or NS, one instance's address).
    Single(RrRef<'z>),
    /// A random subset of a service's instances, as many as its policy allows; never
    /// empty (an empty set is NODATA).
    Pick(Pick<'z>),
}

/// A service's record set to sample from.
#[derive(Debug)]
pub struct Pick<'z> {
    pub records: &'z ServiceRecords,
    /// The instances that have the record.
    pub candidates: &'z [Candidate],
    pub kind: PickKind,
    /// How many to answer with.
    pub wanted: usize,
    /// The Client Subnet SCOPE to echo, when the query's Client Subnet chose the records
    /// (a zone-aware service).
    pub scope: Option<u8>,
}

impl<'z> Pick<'z> {
    /// The answer record of the `n`th candidate.
    pub fn answer(&self, n: usize) -> Option<RrRef<'z>> {
        let instance = self.instance(n);
        match self.kind {
            PickKind::A => instance.record(Slot::A),
            PickKind::Aaaa => instance.record(Slot::Aaaa),
            PickKind::Srv => instance.record(Slot::Srv),
            PickKind::SrvAlias => instance.record(Slot::SrvAlias),
            PickKind::Named(n) => named_ports::find(&instance.named, &self.records.named[n]),
            PickKind::Cname => instance.record(Slot::Cname),
        }
    }

    /// The `n`th candidate instance.
    pub fn instance(&self, n: usize) -> &'z ServedInstance {
        self.records.instance(&self.candidates[n])
    }

    /// Fills `chosen` with the candidates to answer with, in answer order: drawn by the
    /// instances' `weight` attributes when they differ, uniformly when they do not or
    /// when every candidate is answered anyway. `sorted` is scratch.
    pub fn choose(&self, rng: &mut impl Rng, chosen: &mut Vec<usize>, sorted: &mut Vec<usize>) {
        let available = self.candidates.len();
        match self.records.cumulative_weights(self.kind) {
            Some(cumulative) if self.wanted < available => {
                sample::weighted(rng, cumulative, self.wanted, chosen, sorted);
            }
            _ => sample::uniform(rng, available, self.wanted, chosen),
        }
    }

    /// The fewest bytes the pick's records take in any encoding: each owner compressed to
    /// a pointer (2), type, class, TTL and length (10), then the least data of its type
    /// (an SRV target at least a pointer). When every candidate is answered, so is all
    /// their glue, which counts too (owners as pointers: as the fast path packs it).
    pub fn least_len(&self) -> usize {
        let record = match self.kind {
            PickKind::A => 16,
            PickKind::Aaaa => 28,
            PickKind::Srv | PickKind::SrvAlias | PickKind::Named(_) => 20,
            PickKind::Cname => 14,
        };
        let answers = self.wanted.saturating_mul(record);
        if !self.has_glue() || self.wanted < self.candidates.len() {
            return answers;
        }
        let glue = self
            .candidates
            .iter()
            .flat_map(|c| self.records.packed_glue(c));
        answers.saturating_add(glue.map(<[u8]>::len).sum())
    }

    /// Whether answers carry glue (SRV targets' addresses).
    pub fn has_glue(&self) -> bool {
        matches!(
            self.kind,
            PickKind::Srv | PickKind::SrvAlias | PickKind::Named(_)
        )
    }
}

/// Decides what `qtype` at `name` (class IN) gets from `zone`.
///
/// ANY gets one RRset (RFC 8482). Zone transfers are refused here.
pub fn plan<'z>(
    zone: &'z ZoneSnapshot,
    name: &QueryName,
    qtype: RecordType,
    client: &Client<'_>,
) -> Plan<'z> {
    let Some(namespace) = zone.namespace_of(name) else {
        return Plan::Refused;
    };
    if !zone.synced {
        return Plan::ServFail;
    }
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Plan::Refused;
    }
    let nodata = Plan::Negative(ResponseCode::NoError, namespace);
    let nxdomain = Plan::Negative(ResponseCode::NXDomain, namespace);
    // The namespace's origin is a suffix of the name: this cannot underflow.
    let below_origin = name.label_count() - namespace.origin_depth();
    match below_origin {
        0 => match qtype {
            RecordType::SOA | RecordType::ANY => Plan::Single(namespace.soa.view()),
            RecordType::NS => Plan::Single(namespace.ns.view()),
            _ => nodata,
        },
        1 => match service(namespace, name.label(0)).filter(|r| r.has_names()) {
            Some(records) => service_plan(namespace, records, qtype, client),
            None if namespace.protocol_in_use(name.label(0)) => nodata,
            None => nxdomain,
        },
        2 => {
            let (first, second) = (name.label(0), name.label(1));
            if let Some(records) = service(namespace, second) {
                let label = std::str::from_utf8(first).unwrap_or("");
                let Some(instance) = records.by_label(label) else {
                    // `_tcp.svc.ns` above a named port's `_http._tcp.svc.ns`, or
                    // `_version.svc.ns` above a subset's `v2._version.svc.ns`.
                    let below = named_ports::protocol_in_use(&records.named, first)
                        || first
                            .strip_prefix(b"_")
                            .is_some_and(|key| records.subset_key_in_use(key));
                    return if below { nodata } else { nxdomain };
                };
                let record = match qtype {
                    RecordType::A => instance.record(Slot::TargetA),
                    RecordType::AAAA => instance.record(Slot::TargetAaaa),
                    RecordType::ANY => instance
                        .record(Slot::TargetA)
                        .or(instance.record(Slot::TargetAaaa)),
                    _ => None,
                };
                return record.map_or(nodata, Plan::Single);
            }
            let alias = first
                .strip_prefix(b"_")
                .and_then(|svc| service(namespace, svc))
                .filter(|r| r.has_names() && r.policy.protocol.label().as_bytes() == second);
            match alias {
                Some(records) if matches!(qtype, RecordType::SRV | RecordType::ANY) => {
                    pick(namespace, records, PickKind::SrvAlias, client)
                }
                Some(_) => nodata,
                None => nxdomain,
            }
        }
        3 => {
            let (port, protocol) = (name.label(0), name.label(1));
            // `v2._version.svc.ns`: a subset (its value never starts with `_`, a named
            // port's first label always does).
            if let Some(key) = protocol
                .strip_prefix(b"_")
                .filter(|_| !port.starts_with(b"_"))
            {
                let subset = service(namespace, name.label(2)).and_then(|r| r.subset(key, port));
                return match subset {
                    Some(subset) => service_plan(namespace, subset, qtype, client),
                    None => nxdomain,
                };
            }
            let named = service(namespace, name.label(2)).and_then(|records| {
                let n = named_ports::position(&records.named, port, protocol)?;
                Some((records, n))
            });
            match named {
                Some((records, n)) if matches!(qtype, RecordType::SRV | RecordType::ANY) => {
                    pick(namespace, records, PickKind::Named(n), client)
                }
                Some(_) => nodata,
                None => nxdomain,
            }
        }
        _ => nxdomain,
    }
}

fn service<'z>(namespace: &'z NamespaceRecords, label: &[u8]) -> Option<&'z ServiceRecords> {
    namespace.services.get(label).map(|s| &**s)
}

fn service_plan<'z>(
    namespace: &'z NamespaceRecords,
    records: &'z ServiceRecords,
    qtype: RecordType,
    client: &Client<'_>,
) -> Plan<'z> {
    // A CNAME service has nothing else at its name: every type gets the CNAME, and the
    // resolver follows it (targets are not chased, even inside the namespace).
    if !records.candidates(PickKind::Cname).is_empty() {
        return pick(namespace, records, PickKind::Cname, client);
    }
    let kind = match qtype {
        RecordType::ANY => [PickKind::A, PickKind::Aaaa, PickKind::Srv]
            .into_iter()
            .find(|kind| !records.candidates(*kind).is_empty())
            .unwrap_or(PickKind::A),
        RecordType::A => PickKind::A,
        RecordType::AAAA => PickKind::Aaaa,
        RecordType::SRV => PickKind::Srv,
        _ => return Plan::Negative(ResponseCode::NoError, namespace),
    };
    pick(namespace, records, kind, client)
}

/// A pick of the candidates of `kind` under the service's policy; NODATA if there are
/// none.
fn pick<'z>(
    namespace: &'z NamespaceRecords,
    records: &'z ServiceRecords,
    kind: PickKind,
    client: &Client<'_>,
) -> Plan<'z> {
    let (records, kind, scope) = localized(records, kind, client);
    let candidates = records.candidates(kind);
    let available = candidates.len();
    let wanted = match (records.policy.routing, records.policy.max_answers) {
        // Several CNAMEs at one name are not a valid RRset, whatever the routing.
        _ if kind == PickKind::Cname => 1,
        (Routing::Weighted, _) => 1,
        (Routing::Multivalue, 0) => available,
        (Routing::Multivalue, max) => max,
    }
    .min(available);
    if wanted == 0 {
        return Plan::Negative(ResponseCode::NoError, namespace);
    }
    Plan::Pick(Pick {
        records,
        candidates,
        kind,
        wanted,
        scope,
    })
}

/// The records `client` is answered from, and the kind of pick in them: under
/// `locality = "prefer_zone"`, its zone's view when the zone has enough healthy
/// instances with such a record, else the whole service. Also the Client Subnet SCOPE
/// to echo when the client's location came from one.
fn localized<'z>(
    records: &'z ServiceRecords,
    kind: PickKind,
    client: &Client<'_>,
) -> (&'z ServiceRecords, PickKind, Option<u8>) {
    if records.policy.locality != Locality::PreferZone || !records.has_zone_views() {
        return (records, kind, None);
    }
    let location = client.locate();
    let local = location.zone.and_then(|zone| {
        let view = records.zone_view(zone)?;
        let kind = match kind {
            // The view numbers the named ports its own instances have.
            PickKind::Named(n) => PickKind::Named(
                view.named
                    .iter()
                    .position(|name| *name == records.named[n])?,
            ),
            kind => kind,
        };
        (!view.candidates(kind).is_empty()).then_some((view, kind))
    });
    let (records, kind) = local.unwrap_or((records, kind));
    (records, kind, location.scope)
}

/// Answers `qtype` at `name` (class IN) from `zone`.
pub fn answer(
    zone: &ZoneSnapshot,
    name: &QueryName,
    qtype: RecordType,
    client: &Client<'_>,
    rng: &mut impl Rng,
) -> Answer {
    match plan(zone, name, qtype, client) {
        Plan::Refused => Answer {
            rcode: ResponseCode::Refused,
            ..Answer::default()
        },
        Plan::ServFail => Answer {
            rcode: ResponseCode::ServFail,
            ..Answer::default()
        },
        Plan::Negative(rcode, namespace) => Answer::negative(rcode, namespace),
        Plan::Single(rr) => Answer::positive(vec![rr.record()], Vec::new()),
        Plan::Pick(pick) => {
            let mut chosen = Vec::with_capacity(pick.wanted);
            pick.choose(rng, &mut chosen, &mut Vec::new());
            let mut answers = Vec::with_capacity(chosen.len());
            let mut additionals = Vec::new();
            for &n in &chosen {
                answers.extend(pick.answer(n).map(RrRef::record));
                if pick.has_glue() {
                    let instance = pick.instance(n);
                    additionals.extend(instance.record(Slot::TargetA).map(RrRef::record));
                    additionals.extend(instance.record(Slot::TargetAaaa).map(RrRef::record));
                }
            }
            Answer {
                client_subnet_scope: pick.scope,
                ..Answer::positive(answers, additionals)
            }
        }
    }
}
