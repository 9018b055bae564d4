//! The DNS view of a registry snapshot: records built once per change, read per query.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record};

use super::journal::{Delta, delta};
use super::qname::{MAX_LABELS, QueryName};
use super::service_index::ServiceIndex;
use super::service_records::ServiceRecords;
use super::wire::{Rr, wire_name};
use crate::registry::{
    Namespace, NamespaceSettings, Protocol, PublishHook, Service, Snapshot, Touched, TouchedService,
};

/// Every namespace's records at one registry revision: the immutable DNS counterpart of
/// a registry `Snapshot`, which queries read and never change.
///
/// Namespaces are kept in persistent maps, so a change copies the zone in O(1) and
/// replaces one namespace in O(log n), and a query finds its namespace with one hash
/// lookup per origin depth in use ([`ZoneSnapshot::namespace_of`]), however many there are.
#[derive(Clone, Debug, Default)]
pub struct ZoneSnapshot {
    /// False until every source has synced; answers are SERVFAIL until then.
    pub synced: bool,
    /// Namespaces by the lowercase wire form of their origin (no root label).
    by_origin: OriginMap,
    /// The origin key of each namespace, by its registry name.
    origins: imbl::HashMap<String, Box<[u8]>>,
    /// How many origins have each number of labels: a lookup tries only those depths.
    depths: Depths,
    /// Services in all namespaces: whether the UDP path warms a batch's lookups.
    services: usize,
}

/// Namespaces by origin, hashed with foldhash: every query hashes its name's suffixes
/// into it, where SipHash (the map's default) cost more than the lookup itself.
type OriginMap = imbl::GenericHashMap<
    Box<[u8]>,
    Arc<NamespaceRecords>,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// The records of one namespace, the zone at its origin: apex SOA and NS, the
/// [`ServiceRecords`] of each service, and the IXFR journal.
#[derive(Clone, Debug)]
pub struct NamespaceRecords {
    /// The registry's name for it (`internal`).
    pub name: String,
    pub origin: LowerName,
    /// The origin in lowercase wire form without the root label (`\x03sub\x07example`):
    /// its key in the [`ZoneSnapshot`].
    origin_key: Box<[u8]>,
    /// Labels of the origin.
    origin_depth: usize,
    /// The origin in wire form, as configured, for the owners of records.
    origin_wire: Arc<[u8]>,
    pub soa: Rr,
    pub ns: Rr,
    pub services: ServiceIndex,
    /// How many services with names in DNS use each transport label; a label in use is
    /// an empty non-terminal (`_tcp.ns`), so NODATA rather than NXDOMAIN.
    tcp_services: usize,
    udp_services: usize,
    /// The changes that led to this version, oldest first, for IXFR; kept only when
    /// transfers are configured ([`PublishedZone::with_journal`]).
    pub journal: imbl::Vector<Arc<Delta>>,
    /// Records in `journal`, bounded by the journal's limit.
    journal_records: usize,
}

/// Origins per depth (labels), and the smallest and largest depth in use.
#[derive(Clone, Debug)]
struct Depths {
    count: [u32; MAX_LABELS + 1],
    min: usize,
    max: usize,
}

impl Default for Depths {
    fn default() -> Self {
        Self {
            count: [0; MAX_LABELS + 1],
            min: usize::MAX,
            max: 0,
        }
    }
}

impl Depths {
    fn add(&mut self, depth: usize, delta: i32) {
        let count = &mut self.count[depth];
        *count = count.saturating_add_signed(delta);
        let used = || self.count.iter().enumerate().filter(|(_, n)| **n > 0);
        self.min = used().map(|(d, _)| d).next().unwrap_or(usize::MAX);
        self.max = used().map(|(d, _)| d).next_back().unwrap_or(0);
    }
}

impl ZoneSnapshot {
    /// Builds every namespace from scratch.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut zone = Self {
            synced: snapshot.is_synced(),
            ..Self::default()
        };
        for namespace in snapshot.namespaces.values().filter(|n| n.in_dns()) {
            zone.insert(NamespaceRecords::build(namespace, snapshot.revision));
        }
        zone.count_services();
        zone
    }

    /// The zone after `touched` changed in `snapshot`; untouched namespaces and services
    /// are shared.
    pub fn updated(&self, snapshot: &Snapshot, touched: &Touched) -> Self {
        let mut zone = self.clone();
        zone.synced = snapshot.is_synced();
        for name in &touched.namespaces {
            zone.remove(name);
            if let Some(namespace) = snapshot.namespace(name).filter(|n| n.in_dns()) {
                zone.insert(NamespaceRecords::build(namespace, snapshot.revision));
            }
        }
        // Each changed service comes with its new version: none is looked up by name.
        let services = touched.services();
        for group in services.chunk_by(|a, b| a.namespace == b.namespace) {
            let namespace_name = &*group[0].namespace;
            if touched.namespaces.contains(namespace_name)
                || snapshot.namespace(namespace_name).is_none()
            {
                continue;
            }
            let Some(namespace_zone) = zone.namespace_mut(namespace_name) else {
                continue;
            };
            for (at, service) in group.iter().enumerate() {
                // The next service's instances start loading while this one builds: in
                // a large registry they are cold, and a batch touches many services.
                if let Some(TouchedService {
                    name,
                    after: Some(next),
                    ..
                }) = group.get(at + 1)
                {
                    namespace_zone.prefetch_build(name, next);
                }
                namespace_zone.set_service(&service.name, service.after.as_ref());
            }
            namespace_zone.soa = namespace_zone.soa.with_soa_serial(snapshot.revision as u32);
        }
        zone.count_services();
        zone
    }

    /// Services in all namespaces (what the UDP path's batch warming is worth).
    pub fn services(&self) -> usize {
        self.services
    }

    /// Counts [`ZoneSnapshot::services`] again: one read per namespace.
    fn count_services(&mut self) {
        self.services = self.namespaces().map(|n| n.services.len()).sum();
    }

    /// Adds (or replaces) a namespace.
    fn insert(&mut self, namespace: NamespaceRecords) {
        self.remove(&namespace.name);
        let key: Box<[u8]> = namespace.origin_key.clone();
        if let Some(shadowed) = self.by_origin.get(&key).map(|z| z.name.clone()) {
            // Registry names are unique and lowercase, so this is only reachable with
            // names that differ in escapes; the newer one wins, as before.
            self.remove(&shadowed);
        }
        self.depths.add(namespace.origin_depth(), 1);
        self.origins.insert(namespace.name.clone(), key.clone());
        self.by_origin.insert(key, Arc::new(namespace));
    }

    /// Removes the namespace with the registry name `name`, if it is there.
    fn remove(&mut self, name: &str) {
        if let Some(key) = self.origins.remove(name)
            && let Some(gone) = self.by_origin.remove(&key)
        {
            self.depths.add(gone.origin_depth(), -1);
        }
    }

    /// The namespace with the registry name `name`, to change (copied if shared).
    fn namespace_mut(&mut self, name: &str) -> Option<&mut NamespaceRecords> {
        let key = self.origins.get(name)?;
        self.by_origin.get_mut(key).map(Arc::make_mut)
    }

    /// The namespace with the registry name `name`.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceRecords> {
        let key = self.origins.get(name)?;
        self.by_origin.get(key).map(|z| &**z)
    }

    /// Every namespace, in no particular order.
    pub fn namespaces(&self) -> impl Iterator<Item = &NamespaceRecords> {
        self.by_origin.values().map(|z| &**z)
    }

    /// Appends to the journal of each namespace `touched` names what changed since
    /// `previous`, keeping at most `limit` records per journal (the oldest changes go
    /// first). Untouched namespaces are not visited.
    fn record_deltas(&mut self, previous: &ZoneSnapshot, touched: &Touched, limit: usize) {
        let mut services: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for service in touched.services() {
            let names = services.entry(&service.namespace).or_default();
            names.push(&service.name);
        }
        let names = touched
            .namespaces
            .iter()
            .map(String::as_str)
            .chain(services.keys().copied())
            .collect::<BTreeSet<&str>>();
        for name in names {
            let (Some(old), Some(new)) = (previous.namespace(name), self.namespace(name)) else {
                continue;
            };
            if !previous.synced {
                // Before every source synced, DNS answered SERVFAIL: the first sync's
                // delta would be every record the sources brought (as hickory records,
                // gigabytes at a million instances, dropped again for the journal's
                // limit). A secondary that transferred the unsynced zone gets a full
                // transfer, as when it is further behind than the journal.
                if let Some(zone) = self.namespace_mut(name) {
                    (zone.journal, zone.journal_records) = (imbl::Vector::new(), 0);
                }
                continue;
            }
            let rebuilt = touched.namespaces.contains(name);
            let touched_services = services.get(name).map_or(&[][..], Vec::as_slice);
            let Some(change) = delta(old, new, (!rebuilt).then_some(touched_services)) else {
                continue;
            };
            let (journal, journal_records) = (old.journal.clone(), old.journal_records);
            let Some(zone) = self.namespace_mut(name) else {
                continue;
            };
            let continues = journal
                .last()
                .is_none_or(|last| last.serial_after() == change.serial_before());
            (zone.journal, zone.journal_records) = if continues {
                (journal, journal_records)
            } else {
                (imbl::Vector::new(), 0)
            };
            zone.journal_records += change.len();
            zone.journal.push_back(change);
            while zone.journal_records > limit {
                match zone.journal.pop_front() {
                    Some(oldest) => zone.journal_records -= oldest.len(),
                    None => break,
                }
            }
        }
    }

    /// The namespace `name` is in, if any (the deepest origin wins): one lookup per
    /// depth of origin in use, deepest first, no allocation.
    pub fn namespace_of(&self, name: &QueryName) -> Option<&NamespaceRecords> {
        let deepest = self.depths.max.min(name.label_count());
        (self.depths.min..=deepest)
            .rev()
            .filter(|&depth| self.depths.count[depth] > 0)
            .find_map(|depth| self.by_origin.get(name.suffix(depth)))
            .map(|z| &**z)
    }
}

impl NamespaceRecords {
    fn build(namespace: &Namespace, revision: u64) -> Self {
        let mut zone = Self::empty(&namespace.settings, revision);
        for service in namespace.services.values() {
            zone.set_service(&service.name, Some(service));
        }
        zone
    }

    /// The apex records, with `revision` as the SOA serial (which each later batch
    /// patches in place).
    fn empty(settings: &NamespaceSettings, revision: u64) -> Self {
        let origin = origin_name(settings);
        let nameserver = Name::from_str(&settings.nameserver).unwrap_or_else(|_| origin.clone());
        let ns = Record::from_rdata(
            origin.clone(),
            settings.ttl,
            RData::NS(NS(nameserver.clone())),
        );
        let rname = Name::from_str("hostmaster")
            .and_then(|n| n.append_domain(&origin))
            .unwrap_or_else(|_| origin.clone());
        let soa = SOA::new(
            nameserver,
            rname,
            revision as u32,
            60,
            10,
            1_209_600,
            settings.negative_ttl,
        );
        let soa = Record::from_rdata(origin.clone(), settings.negative_ttl, RData::SOA(soa));
        let origin_wire = wire_name(&origin).expect("an origin is fully qualified");
        let origin = LowerName::new(&origin);
        let origin_key = QueryName::from_labels(origin.iter()).unwrap_or_default();
        Self {
            name: settings.name.clone(),
            origin_key: Box::from(origin_key.wire()),
            origin_depth: origin_key.label_count(),
            origin_wire: origin_wire.into(),
            origin,
            soa: encoded(&soa),
            ns: encoded(&ns),
            services: ServiceIndex::default(),
            tcp_services: 0,
            udp_services: 0,
            journal: imbl::Vector::new(),
            journal_records: 0,
        }
    }

    /// Labels of the origin.
    pub fn origin_depth(&self) -> usize {
        self.origin_depth
    }

    /// Asks the CPU to start loading what [`NamespaceRecords::set_service`] of `service`
    /// (named `name`) reads first, so its cache misses overlap with other work.
    fn prefetch_build(&self, name: &str, service: &Service) {
        ServiceRecords::prefetch_build(service, self.services.get(name).map(|p| &**p));
    }

    /// Replaces (or with `None` removes) one service's records.
    fn set_service(&mut self, name: &str, service: Option<&Arc<Service>>) {
        let previous = self.services.get(name).cloned();
        if let Some(gone) = &previous {
            self.count_names(gone, -1);
        }
        let Some(service) = service.filter(|s| s.in_dns()) else {
            self.services.remove(name);
            return;
        };
        let records = ServiceRecords::build(&self.origin_wire, service, previous.as_deref());
        let records = Arc::new(records);
        self.services.insert(name, records.clone());
        self.count_names(&records, 1);
    }

    /// Counts (or with -1 uncounts) `records` in the transport label it lives under, if
    /// it has names in DNS (an empty service makes no empty non-terminal).
    fn count_names(&mut self, records: &ServiceRecords, delta: isize) {
        if records.has_names() {
            self.count_protocol(records.policy.protocol, delta);
        }
    }

    fn count_protocol(&mut self, protocol: Protocol, delta: isize) {
        let count = match protocol {
            Protocol::Tcp => &mut self.tcp_services,
            Protocol::Udp => &mut self.udp_services,
        };
        *count = count.saturating_add_signed(delta);
    }

    /// Whether `_tcp.ns` / `_udp.ns` has names below it.
    pub fn protocol_in_use(&self, label: &[u8]) -> bool {
        match label {
            b"_tcp" => self.tcp_services > 0,
            b"_udp" => self.udp_services > 0,
            _ => false,
        }
    }
}

/// `record` with its wire form; muster's SOA and NS records always encode.
fn encoded(record: &Record) -> Rr {
    Rr::new(record).expect("SOA and NS records encode")
}

fn origin_name(settings: &NamespaceSettings) -> Name {
    let mut name = Name::from_str(&settings.name).unwrap_or_else(|_| Name::root());
    name.set_fqdn(true);
    name
}

/// Where the current [`ZoneSnapshot`] is published: the registry's publish hook swaps a
/// new one in, every DNS listener and transfer loads it without a lock.
#[derive(Clone)]
pub struct PublishedZone {
    current: Arc<ArcSwap<ZoneSnapshot>>,
    /// The revision of each publication, for tasks that act on changes (NOTIFY).
    published: Arc<tokio::sync::watch::Sender<u64>>,
    /// Records kept per namespace journal for IXFR; `None` keeps no journal (no transfers
    /// configured), which costs nothing per change.
    journal_limit: Option<usize>,
}

impl Default for PublishedZone {
    fn default() -> Self {
        Self {
            current: Arc::default(),
            published: Arc::new(tokio::sync::watch::Sender::new(0)),
            journal_limit: None,
        }
    }
}

impl PublishedZone {
    pub fn load(&self) -> arc_swap::Guard<Arc<ZoneSnapshot>> {
        self.current.load()
    }

    /// The current zone, to hold across awaits.
    pub fn load_full(&self) -> Arc<ZoneSnapshot> {
        self.current.load_full()
    }

    /// Wakes on every publication (several may be seen as one).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// A view that keeps each namespace's recent changes (up to `limit` records) for IXFR.
    pub fn with_journal(limit: usize) -> Self {
        Self {
            journal_limit: Some(limit),
            ..Self::default()
        }
    }

    /// The hook that keeps this view in step with the registry.
    pub fn publish_hook(&self) -> PublishHook {
        let current = self.current.clone();
        let journal_limit = self.journal_limit;
        let published = self.published.clone();
        let mut built = false;
        Box::new(move |snapshot, touched| {
            let previous = current.load_full();
            let next = if built {
                let mut next = previous.updated(snapshot, touched);
                if let Some(limit) = journal_limit {
                    next.record_deltas(&previous, touched, limit);
                }
                next
            } else {
                built = true;
                ZoneSnapshot::from_snapshot(snapshot)
            };
            current.store(Arc::new(next));
            published.send_replace(snapshot.revision);
        })
    }
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;
