//! Building the answer to one question from a zone: every rule of DESIGN.md's "Names and
//! records" and "Answer policy", as a pure function the handler only converts.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Record, RecordType};
use rand::Rng;
use rand::seq::index;

use super::zone::{NamespaceZone, ServedInstance, ServiceRecords, Zone};
use crate::registry::Routing;

/// The sections of a response, borrowing records from the zone.
#[derive(Debug, Default, PartialEq)]
pub struct Answer<'z> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<&'z Record>,
    pub authorities: Vec<&'z Record>,
    pub additionals: Vec<&'z Record>,
}

impl<'z> Answer<'z> {
    fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            ..Self::default()
        }
    }

    fn records(
        answers: Vec<&'z Record>,
        additionals: Vec<&'z Record>,
        zone: &'z NamespaceZone,
    ) -> Self {
        if answers.is_empty() {
            return Self::negative(ResponseCode::NoError, zone);
        }
        Self {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authorities: Vec::new(),
            additionals,
        }
    }

    /// NODATA (`NoError`) or NXDOMAIN, with the SOA for negative caching.
    fn negative(rcode: ResponseCode, zone: &'z NamespaceZone) -> Self {
        Self {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![&zone.soa],
            additionals: Vec::new(),
        }
    }
}

/// Answers `qtype` at `name` (already lowercase, class IN) from `zone`.
///
/// ANY gets one RRset (RFC 8482). Zone transfers are not answered here.
pub fn answer<'z>(
    zone: &'z Zone,
    name: &LowerName,
    qtype: RecordType,
    rng: &mut impl Rng,
) -> Answer<'z> {
    let Some(namespace) = zone.namespace_of(name) else {
        return Answer::refused();
    };
    if !zone.synced {
        return Answer {
            rcode: ResponseCode::ServFail,
            ..Answer::default()
        };
    }
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Answer::refused();
    }
    let depth = usize::from(name.num_labels() - namespace.origin.num_labels());
    let mut labels = name.iter().take(depth);
    let nxdomain = Answer::negative(ResponseCode::NXDomain, namespace);
    match (labels.next(), labels.next(), depth) {
        (None, _, _) => apex(namespace, qtype),
        (Some(first), None, _) => match service(namespace, first) {
            Some(records) => service_answer(namespace, records, qtype, rng),
            None if namespace.protocol_in_use(first) => {
                Answer::negative(ResponseCode::NoError, namespace)
            }
            None => nxdomain,
        },
        (Some(first), Some(second), 2) => {
            if let Some(records) = service(namespace, second) {
                return match records
                    .by_label
                    .get(std::str::from_utf8(first).unwrap_or(""))
                {
                    Some(&index) => instance_answer(namespace, &records.instances[index], qtype),
                    None => nxdomain,
                };
            }
            let alias = first
                .strip_prefix(b"_")
                .and_then(|svc| service(namespace, svc))
                .filter(|r| r.policy.protocol.label().as_bytes() == second);
            match alias {
                Some(records) if matches!(qtype, RecordType::SRV | RecordType::ANY) => {
                    let (answers, additionals) = pick_srv(records, rng, |i| &i.srv_alias);
                    Answer::records(answers, additionals, namespace)
                }
                Some(_) => Answer::negative(ResponseCode::NoError, namespace),
                None => nxdomain,
            }
        }
        _ => nxdomain,
    }
}

fn service<'z>(namespace: &'z NamespaceZone, label: &[u8]) -> Option<&'z ServiceRecords> {
    namespace
        .services
        .get(std::str::from_utf8(label).ok()?)
        .map(|s| &**s)
}

fn apex<'z>(namespace: &'z NamespaceZone, qtype: RecordType) -> Answer<'z> {
    let answers = match qtype {
        RecordType::SOA | RecordType::ANY => vec![&namespace.soa],
        RecordType::NS => vec![&namespace.ns],
        _ => Vec::new(),
    };
    Answer::records(answers, Vec::new(), namespace)
}

fn service_answer<'z>(
    namespace: &'z NamespaceZone,
    records: &'z ServiceRecords,
    qtype: RecordType,
    rng: &mut impl Rng,
) -> Answer<'z> {
    let qtype = match qtype {
        RecordType::ANY => [RecordType::A, RecordType::AAAA, RecordType::SRV]
            .into_iter()
            .find(|t| !with_type(records, *t).is_empty())
            .unwrap_or(RecordType::A),
        other => other,
    };
    match qtype {
        RecordType::A => {
            let answers = pick(records, &records.with_a, rng).filter_map(|i| i.a.as_ref());
            Answer::records(answers.collect(), Vec::new(), namespace)
        }
        RecordType::AAAA => {
            let answers = pick(records, &records.with_aaaa, rng).filter_map(|i| i.aaaa.as_ref());
            Answer::records(answers.collect(), Vec::new(), namespace)
        }
        RecordType::SRV => {
            let (answers, additionals) = pick_srv(records, rng, |i| &i.srv);
            Answer::records(answers, additionals, namespace)
        }
        _ => Answer::negative(ResponseCode::NoError, namespace),
    }
}

fn with_type(records: &ServiceRecords, qtype: RecordType) -> &[usize] {
    match qtype {
        RecordType::A => &records.with_a,
        RecordType::AAAA => &records.with_aaaa,
        _ => &records.with_srv,
    }
}

fn instance_answer<'z>(
    namespace: &'z NamespaceZone,
    instance: &'z ServedInstance,
    qtype: RecordType,
) -> Answer<'z> {
    let record = match qtype {
        RecordType::A => instance.target_a.as_ref(),
        RecordType::AAAA => instance.target_aaaa.as_ref(),
        RecordType::ANY => instance.target_a.as_ref().or(instance.target_aaaa.as_ref()),
        _ => None,
    };
    Answer::records(record.into_iter().collect(), Vec::new(), namespace)
}

/// SRV records chosen under the policy, with their targets' addresses as glue.
fn pick_srv<'z>(
    records: &'z ServiceRecords,
    rng: &mut impl Rng,
    srv: impl Fn(&'z ServedInstance) -> &'z Option<Record>,
) -> (Vec<&'z Record>, Vec<&'z Record>) {
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for instance in pick(records, &records.with_srv, rng) {
        answers.extend(srv(instance).as_ref());
        additionals.extend(instance.target_a.as_ref());
        additionals.extend(instance.target_aaaa.as_ref());
    }
    (answers, additionals)
}

/// A fresh random subset (in random order) of `candidates`, as many as the policy allows.
fn pick<'z>(
    records: &'z ServiceRecords,
    candidates: &'z [usize],
    rng: &mut impl Rng,
) -> impl Iterator<Item = &'z ServedInstance> {
    let available = candidates.len();
    let wanted = match (records.policy.routing, records.policy.max_answers) {
        (Routing::Weighted, _) => 1,
        (Routing::Multivalue, 0) => available,
        (Routing::Multivalue, max) => max,
    }
    .min(available);
    index::sample(rng, available, wanted)
        .into_iter()
        .map(move |i| &records.instances[candidates[i]])
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
