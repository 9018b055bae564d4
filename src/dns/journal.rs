//! A namespace as a secondary sees it: every record muster serves, once, and the
//! differences between two versions that IXFR sends, which each [`NamespaceRecords`] keeps
//! as its journal. Zone data, below the transfer protocol that reads it (`transfer`).

use std::collections::HashSet;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hickory_proto::rr::RecordType;

use super::service_records::ServiceRecords;
use super::wire::{Rr, RrRef};
use super::zone::NamespaceRecords;

/// Records kept per namespace journal: enough for thousands of small changes; a
/// secondary further behind gets the whole zone.
pub const JOURNAL_RECORDS: usize = 100_000;

/// The changes from one serial to the next, as IXFR (RFC 1995) sends them, in the wire
/// form a transfer writes.
#[derive(Debug)]
pub struct Delta {
    /// The SOA before and after.
    pub from: Rr,
    pub to: Rr,
    pub removed: Vec<Rr>,
    pub added: Vec<Rr>,
}

impl Delta {
    pub fn serial_before(&self) -> u32 {
        self.from.soa_serial()
    }

    pub fn serial_after(&self) -> u32 {
        self.to.soa_serial()
    }

    /// Records this delta holds, for the journal's size limit.
    pub fn len(&self) -> usize {
        self.removed.len() + self.added.len() + 2
    }
}

/// Every record of the namespace except the SOA: the apex NS, then each service's, one
/// service at a time.
pub fn zone_records(zone: &NamespaceRecords) -> impl Iterator<Item = RrRef<'_>> + Send {
    std::iter::once(zone.ns.view()).chain(
        zone.services
            .values()
            .flat_map(|service| service_records(service)),
    )
}

/// A service's records for a secondary, its DNS subsets' included: all of them, not a
/// `max_answers` pick, and duplicates (two instances on one address) once, told apart by
/// their wire form (TTL included). A CNAME service keeps one CNAME, as a name may hold
/// only one.
pub fn service_records(service: &ServiceRecords) -> Vec<RrRef<'_>> {
    let mut seen = HashSet::with_capacity_and_hasher(
        service.instances.len().saturating_mul(4),
        RandomState::default(),
    );
    let mut records = Vec::new();
    // The service's own names, then each subset's (whose glue is the service's).
    for view in std::iter::once(service).chain(service.subset_records()) {
        let mut cname_seen = false;
        for instance in &view.instances {
            for record in instance.records() {
                if record.record_type() == RecordType::CNAME
                    && std::mem::replace(&mut cname_seen, true)
                {
                    continue;
                }
                if seen.insert(record.wire()) {
                    records.push(record);
                }
            }
        }
    }
    records
}

/// The records of the services `names` of `zone`.
fn services_records<'z>(zone: &'z NamespaceRecords, names: &[&str]) -> Vec<RrRef<'z>> {
    names
        .iter()
        .filter_map(|name| zone.services.get(*name))
        .flat_map(|service| service_records(service))
        .collect()
}

/// What changed between two versions of a namespace in `services` (every service when
/// `None`), or `None` when the serial did not move.
pub fn delta(
    old: &NamespaceRecords,
    new: &NamespaceRecords,
    services: Option<&[&str]>,
) -> Option<Arc<Delta>> {
    let (from, to) = (old.soa.clone(), new.soa.clone());
    if from.soa_serial() == to.soa_serial() {
        return None;
    }
    let (before, after) = match services {
        None => (zone_records(old).collect(), zone_records(new).collect()),
        Some(names) => (services_records(old, names), services_records(new, names)),
    };
    let before_set: HashSet<&[u8], RandomState> = before.iter().map(|r| r.wire()).collect();
    let after_set: HashSet<&[u8], RandomState> = after.iter().map(|r| r.wire()).collect();
    let only_in = |records: &[RrRef<'_>], other: &HashSet<&[u8], RandomState>| -> Vec<Rr> {
        records
            .iter()
            .filter(|r| !other.contains(r.wire()))
            .map(|r| r.to_rr())
            .collect()
    };
    Some(Arc::new(Delta {
        from,
        to,
        removed: only_in(&before, &after_set),
        added: only_in(&after, &before_set),
    }))
}
