//! A namespace as a secondary sees it: every record muster serves, once, and the
//! differences between two versions that IXFR sends, which each [`NamespaceRecords`] keeps
//! as its journal. Zone data, below the transfer protocol that reads it (`transfer`).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hickory_proto::rr::RecordType;

use super::service_records::{ServedInstance, ServiceRecords};
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

/// Instances of a service (old and new versions together) that its delta compares one
/// by one at most: each changed record is looked for among the other version's packed
/// records, so past a few, hashing every record of both versions costs less.
const MAX_COMPARED: usize = 16;

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
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    match services {
        None => {
            let (before, after): (Vec<_>, Vec<_>) =
                (zone_records(old).collect(), zone_records(new).collect());
            difference(&before, &after, &mut removed, &mut added);
        }
        // Services have records under their own names only, so each is compared alone.
        Some(names) => {
            for name in names {
                let (before, after) = (old.services.get(*name), new.services.get(*name));
                service_delta(
                    before.map(|s| &**s),
                    after.map(|s| &**s),
                    &mut removed,
                    &mut added,
                );
            }
        }
    }
    Some(Arc::new(Delta {
        from,
        to,
        removed,
        added,
    }))
}

/// Appends what changed from `before` to `after` (each absent when the service is) to
/// `removed` and `added`: by instance when few changed (the others are the same
/// `ServedInstance`s, not read), else as the difference of every record.
fn service_delta(
    before: Option<&ServiceRecords>,
    after: Option<&ServiceRecords>,
    removed: &mut Vec<Rr>,
    added: &mut Vec<Rr>,
) {
    if let (Some(before), Some(after)) = (before, after) {
        if std::ptr::eq(before, after) {
            return;
        }
        if before.comparable_by_instance()
            && after.comparable_by_instance()
            && let Some((gone, came)) = changed(&before.instances, &after.instances)
        {
            lacking(&gone, after, removed);
            lacking(&came, before, added);
            return;
        }
    }
    let (before, after) = (before.map(service_records), after.map(service_records));
    difference(
        before.as_deref().unwrap_or_default(),
        after.as_deref().unwrap_or_default(),
        removed,
        added,
    );
}

/// The served instances only `before` has and only `after` has, in id order (an
/// instance both have is the same `Arc`, passed by its pointer without reading it), or
/// `None` past [`MAX_COMPARED`] of them.
fn changed<'a>(
    before: &'a [Arc<ServedInstance>],
    after: &'a [Arc<ServedInstance>],
) -> Option<(Vec<&'a ServedInstance>, Vec<&'a ServedInstance>)> {
    let (mut old, mut new) = (before.iter().peekable(), after.iter().peekable());
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    loop {
        let order = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) if Arc::ptr_eq(o, n) => {
                old.next();
                new.next();
                continue;
            }
            (Some(o), Some(n)) => o.source.id.cmp(&n.source.id),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return Some((gone, came)),
        };
        if order != Ordering::Greater {
            gone.extend(old.next().map(|i| &**i));
        }
        if order != Ordering::Less {
            came.extend(new.next().map(|i| &**i));
        }
        if gone.len() + came.len() > MAX_COMPARED {
            return None;
        }
    }
}

/// Appends the records of `instances` that `other` lacks to `out`, each once, in order.
fn lacking(instances: &[&ServedInstance], other: &ServiceRecords, out: &mut Vec<Rr>) {
    let mut seen: Vec<RrRef<'_>> = Vec::new();
    for instance in instances {
        for record in other.lacks(instance) {
            if !seen.iter().any(|r| r.wire() == record.wire()) {
                seen.push(record);
                out.push(record.to_rr());
            }
        }
    }
}

/// Appends the records only `before` has to `removed`, those only `after` has to
/// `added`, each in its list's order.
fn difference(
    before: &[RrRef<'_>],
    after: &[RrRef<'_>],
    removed: &mut Vec<Rr>,
    added: &mut Vec<Rr>,
) {
    let before_set: HashSet<&[u8], RandomState> = before.iter().map(|r| r.wire()).collect();
    let after_set: HashSet<&[u8], RandomState> = after.iter().map(|r| r.wire()).collect();
    let only_in =
        |records: &[RrRef<'_>], other: &HashSet<&[u8], RandomState>, out: &mut Vec<Rr>| {
            let only = records.iter().filter(|r| !other.contains(r.wire()));
            out.extend(only.map(|r| r.to_rr()));
        };
    only_in(before, &after_set, removed);
    only_in(after, &before_set, added);
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
