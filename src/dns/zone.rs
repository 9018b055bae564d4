//! The DNS view of a registry snapshot: records built once per change, read per query.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record};

use super::names::instance_label;
use super::transfer::{Delta, delta};
use crate::registry::{
    AnswerPolicy, Namespace, NamespaceSettings, Protocol, PublishHook, Service, Snapshot, Touched,
};

/// Every namespace's records at one registry revision.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    /// False until every source has synced; answers are SERVFAIL until then.
    pub synced: bool,
    pub namespaces: Vec<Arc<NamespaceZone>>,
}

/// One namespace: apex records and one record set per service.
#[derive(Clone, Debug)]
pub struct NamespaceZone {
    /// The registry's name for it (`internal`).
    pub name: String,
    pub origin: LowerName,
    pub soa: Record,
    pub ns: Record,
    pub services: imbl::HashMap<String, Arc<ServiceRecords>>,
    /// How many services use each transport label; a label in use is an empty
    /// non-terminal (`_tcp.ns`), so NODATA rather than NXDOMAIN.
    tcp_services: usize,
    udp_services: usize,
    /// The changes that led to this version, oldest first, for IXFR; kept only when
    /// transfers are configured ([`ZoneView::with_journal`]).
    pub journal: imbl::Vector<Arc<Delta>>,
    /// Records in `journal`, bounded by the journal's limit.
    journal_records: usize,
}

/// A service's answerable records: only the instances DNS currently serves (healthy, or
/// all under fail-open), so a secondary sees exactly what clients are answered.
#[derive(Debug)]
pub struct ServiceRecords {
    pub policy: Arc<AnswerPolicy>,
    pub instances: Vec<ServedInstance>,
    /// Indexes into `instances` of those with an IPv4, an IPv6 address, a port.
    pub with_a: Vec<usize>,
    pub with_aaaa: Vec<usize>,
    pub with_srv: Vec<usize>,
    pub with_cname: Vec<usize>,
    /// Instance label → index, for `iid.svc.ns`.
    pub by_label: HashMap<String, usize>,
}

/// One served instance's records. SRV targets are `<label>.<svc>.<ns>`, whose A/AAAA
/// are `a`/`aaaa` (the glue).
#[derive(Debug)]
pub struct ServedInstance {
    /// Owner `svc.ns`.
    pub a: Option<Record>,
    pub aaaa: Option<Record>,
    pub srv: Option<Record>,
    /// Owner `_svc._proto.ns`.
    pub srv_alias: Option<Record>,
    /// Owner `svc.ns` (Cloud Map CNAME services).
    pub cname: Option<Record>,
    /// Owner `<label>.svc.ns`.
    pub target_a: Option<Record>,
    pub target_aaaa: Option<Record>,
}

impl Zone {
    /// Builds every namespace from scratch.
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let namespaces = snapshot
            .namespaces
            .values()
            .filter(|namespace| namespace.in_dns())
            .map(|namespace| Arc::new(NamespaceZone::build(namespace, snapshot.revision)))
            .collect();
        Self {
            synced: snapshot.is_synced(),
            namespaces,
        }
    }

    /// The zone after `touched` changed in `snapshot`; untouched services are shared.
    pub fn updated(&self, snapshot: &Snapshot, touched: &Touched) -> Self {
        let mut zone = self.clone();
        zone.synced = snapshot.is_synced();
        for name in &touched.namespaces {
            zone.namespaces.retain(|z| z.name != *name);
            if let Some(namespace) = snapshot.namespace(name).filter(|n| n.in_dns()) {
                zone.namespaces
                    .push(Arc::new(NamespaceZone::build(namespace, snapshot.revision)));
            }
        }
        for (namespace_name, service_name) in &touched.services {
            if touched.namespaces.contains(namespace_name) {
                continue;
            }
            let Some(namespace) = snapshot.namespace(namespace_name) else {
                continue;
            };
            let Some(slot) = zone
                .namespaces
                .iter_mut()
                .find(|z| z.name == *namespace_name)
            else {
                continue;
            };
            let namespace_zone = Arc::make_mut(slot);
            namespace_zone.set_service(
                &namespace.settings,
                service_name,
                namespace.services.get(service_name),
            );
            namespace_zone.set_serial(&namespace.settings, snapshot.revision);
        }
        zone
    }

    /// Appends to each namespace's journal what changed since `previous`, keeping at most
    /// `limit` records per journal (the oldest changes go first).
    fn record_deltas(&mut self, previous: &Zone, touched: &Touched, limit: usize) {
        for slot in &mut self.namespaces {
            let Some(old) = previous.namespaces.iter().find(|z| z.name == slot.name) else {
                continue;
            };
            let services: Vec<&str> = touched
                .services
                .iter()
                .filter(|(namespace, _)| *namespace == slot.name)
                .map(|(_, service)| service.as_str())
                .collect();
            let rebuilt = touched.namespaces.contains(&slot.name);
            let Some(change) = delta(old, slot, (!rebuilt).then_some(&services[..])) else {
                continue;
            };
            let zone = Arc::make_mut(slot);
            let continues = old
                .journal
                .last()
                .is_none_or(|last| last.serial_after() == change.serial_before());
            (zone.journal, zone.journal_records) = if continues {
                (old.journal.clone(), old.journal_records)
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

    /// The namespace `name` is in, if any (the longest match wins).
    pub fn namespace_of(&self, name: &LowerName) -> Option<&NamespaceZone> {
        self.namespaces
            .iter()
            .filter(|z| z.origin.zone_of(name))
            .max_by_key(|z| z.origin.num_labels())
            .map(|z| &**z)
    }
}

impl NamespaceZone {
    fn build(namespace: &Namespace, revision: u64) -> Self {
        let mut zone = Self::empty(&namespace.settings, revision);
        for service in namespace.services.values() {
            zone.set_service(&namespace.settings, &service.name, Some(service));
        }
        zone
    }

    fn empty(settings: &NamespaceSettings, revision: u64) -> Self {
        let origin = origin_name(settings);
        let nameserver = Name::from_str(&settings.nameserver).unwrap_or_else(|_| origin.clone());
        let ns = Record::from_rdata(origin.clone(), settings.ttl, RData::NS(NS(nameserver)));
        let mut zone = Self {
            name: settings.name.clone(),
            origin: LowerName::new(&origin),
            soa: ns.clone(),
            ns,
            services: imbl::HashMap::new(),
            tcp_services: 0,
            udp_services: 0,
            journal: imbl::Vector::new(),
            journal_records: 0,
        };
        zone.set_serial(settings, revision);
        zone
    }

    /// Rebuilds the SOA with `revision` as its serial.
    fn set_serial(&mut self, settings: &NamespaceSettings, revision: u64) {
        let origin = origin_name(settings);
        let RData::NS(NS(mname)) = &self.ns.data else {
            unreachable!("the apex NS record holds NS data");
        };
        let rname = Name::from_str("hostmaster")
            .and_then(|n| n.append_domain(&origin))
            .unwrap_or_else(|_| origin.clone());
        let soa = SOA::new(
            mname.clone(),
            rname,
            revision as u32,
            60,
            10,
            1_209_600,
            settings.negative_ttl,
        );
        self.soa = Record::from_rdata(origin, settings.negative_ttl, RData::SOA(soa));
    }

    /// Replaces (or with `None` removes) one service's records.
    fn set_service(
        &mut self,
        settings: &NamespaceSettings,
        name: &str,
        service: Option<&Arc<Service>>,
    ) {
        if let Some(old) = self.services.remove(name) {
            self.count_protocol(old.policy.protocol, -1);
        }
        if let Some(service) = service.filter(|s| s.in_dns()) {
            let records = ServiceRecords::build(&origin_name(settings), service);
            self.count_protocol(records.policy.protocol, 1);
            self.services.insert(name.to_owned(), Arc::new(records));
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

impl ServiceRecords {
    fn build(origin: &Name, service: &Service) -> Self {
        let policy = service.policy.clone();
        let types = policy.records;
        let owner = child(origin, &service.name);
        let alias_owner = child(
            &child(origin, policy.protocol.label()),
            &format!("_{}", service.name),
        );
        let mut records = Self {
            policy,
            instances: Vec::new(),
            with_a: Vec::new(),
            with_aaaa: Vec::new(),
            with_srv: Vec::new(),
            with_cname: Vec::new(),
            by_label: HashMap::new(),
        };
        for instance in service.serving() {
            let label = instance_label(&instance.id);
            let target = child(&owner, &label);
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
            let served = ServedInstance {
                a: record(&owner, &a, types.a),
                aaaa: record(&owner, &aaaa, types.aaaa),
                srv: record(&owner, &srv, types.srv),
                srv_alias: record(&alias_owner, &srv, types.srv),
                cname: record(&owner, &cname, types.cname),
                // SRV targets have addresses whenever the service has SRV records, as
                // Cloud Map creates them.
                target_a: record(&target, &a, types.a.or(types.srv)),
                target_aaaa: record(&target, &aaaa, types.aaaa.or(types.srv)),
            };
            let index = records.instances.len();
            for (present, list) in [
                (served.a.is_some(), &mut records.with_a),
                (served.aaaa.is_some(), &mut records.with_aaaa),
                (served.srv.is_some(), &mut records.with_srv),
                (served.cname.is_some(), &mut records.with_cname),
            ] {
                if present {
                    list.push(index);
                }
            }
            if served.target_a.is_some() || served.target_aaaa.is_some() {
                records.by_label.insert(label, index);
            }
            records.instances.push(served);
        }
        records
    }
}

/// A record of `data` at `name` if there is data and the type is served (`ttl`).
fn record(name: &Name, data: &Option<RData>, ttl: Option<u32>) -> Option<Record> {
    Some(Record::from_rdata(name.clone(), ttl?, data.clone()?))
}

fn origin_name(settings: &NamespaceSettings) -> Name {
    let mut name = Name::from_str(&settings.name).unwrap_or_else(|_| Name::root());
    name.set_fqdn(true);
    name
}

/// `label.parent`; labels were validated when the service or instance was accepted.
fn child(parent: &Name, label: &str) -> Name {
    Name::from_labels([label.as_bytes()])
        .and_then(|n| n.append_domain(parent))
        .unwrap_or_else(|_| parent.clone())
}

/// The published zone, shared by every DNS listener.
#[derive(Clone)]
pub struct ZoneView {
    current: Arc<ArcSwap<Zone>>,
    /// The revision of each publication, for tasks that act on changes (NOTIFY).
    published: Arc<tokio::sync::watch::Sender<u64>>,
    /// Records kept per namespace journal for IXFR; `None` keeps no journal (no transfers
    /// configured), which costs nothing per change.
    journal_limit: Option<usize>,
}

impl Default for ZoneView {
    fn default() -> Self {
        Self {
            current: Arc::default(),
            published: Arc::new(tokio::sync::watch::Sender::new(0)),
            journal_limit: None,
        }
    }
}

impl ZoneView {
    pub fn load(&self) -> arc_swap::Guard<Arc<Zone>> {
        self.current.load()
    }

    /// The current zone, to hold across awaits.
    pub fn load_full(&self) -> Arc<Zone> {
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
                Zone::from_snapshot(snapshot)
            };
            current.store(Arc::new(next));
            published.send_replace(snapshot.revision);
        })
    }
}
