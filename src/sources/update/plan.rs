//! What an UPDATE means for the registry: prerequisites checked against a snapshot
//! (RFC 2136 3.2), then the updates folded, in order, into the final state of every
//! instance they touch and turned into one [`Change::Batch`] (3.4), all or nothing.
//! Pure: the caller passes the snapshot and sends the change.
//!
//! The zone as UPDATE sees it is the registry's, health aside (an unhealthy instance
//! still owns its name and records):
//!
//! - the apex owns SOA and NS;
//! - `svc` owns the A and AAAA records of its instances and an SRV record for each
//!   instance with a port (compared on port and target: priority and weight come from
//!   attributes and are not compared);
//! - `iid.svc` owns the instance's A and AAAA record, where `iid` is the instance id
//!   (ids that are not DNS labels cannot be named by UPDATE).
//!
//! Prerequisites on other names, and updates other than A/AAAA at `iid.svc` and SRV at
//! `svc` (whose target must be an instance of that service), are REFUSED.

use std::collections::BTreeMap;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::SRV;
use hickory_proto::rr::{Name, RData, RecordType};

use super::parse::{Prerequisite, Relative, Update};
use crate::registry::{Change, Instance, InstanceKey, InstanceSpec, Namespace, Service, SourceId};

/// What a name is in the zone.
enum Node<'a> {
    Apex,
    Service(&'a Service),
    Instance(&'a Instance),
    Absent,
}

/// The node `name` is in `namespace`; REFUSED for names UPDATE does not model.
fn node<'a>(namespace: &'a Namespace, name: &Relative) -> Result<Node<'a>, ResponseCode> {
    let service = |label: &str| {
        namespace
            .services
            .get(label)
            .filter(|s| s.in_dns() && !s.instances.is_empty())
    };
    Ok(match name.as_slice() {
        [] => Node::Apex,
        [svc] if !svc.starts_with('_') => service(svc).map_or(Node::Absent, |s| Node::Service(s)),
        [iid, svc] if !svc.starts_with('_') => service(svc)
            .and_then(|s| s.instances.get(iid.as_str()))
            .map_or(Node::Absent, |i| Node::Instance(i)),
        _ => return Err(ResponseCode::Refused),
    })
}

/// One record's data as UPDATE compares it: addresses, or an SRV's port and target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Address(std::net::IpAddr),
    Srv(u16, Name),
}

fn value(data: &RData) -> Option<Value> {
    match data {
        RData::A(a) => Some(Value::Address(a.0.into())),
        RData::AAAA(aaaa) => Some(Value::Address(aaaa.0.into())),
        RData::SRV(srv) => Some(Value::Srv(srv.port, srv.target.to_lowercase())),
        _ => None,
    }
}

/// The records of `rtype` at `node`, as [`Value`]s, sorted and without repeats.
fn rrset(node: &Node<'_>, rtype: RecordType, origin: &Name) -> Vec<Value> {
    let address = |spec: &InstanceSpec| match rtype {
        RecordType::A => spec.ipv4.map(|a| Value::Address(a.into())),
        RecordType::AAAA => spec.ipv6.map(|a| Value::Address(a.into())),
        _ => None,
    };
    let mut values: Vec<Value> = match node {
        Node::Instance(instance) => address(&instance.spec).into_iter().collect(),
        Node::Service(service) if rtype == RecordType::SRV => service
            .instances
            .values()
            .filter_map(|i| {
                Some(Value::Srv(
                    i.spec.port?,
                    target(&i.id, &service.name, origin)?,
                ))
            })
            .collect(),
        Node::Service(service) => service
            .instances
            .values()
            .filter_map(|i| address(&i.spec))
            .collect(),
        Node::Apex | Node::Absent => Vec::new(),
    };
    values.sort();
    values.dedup();
    values
}

/// The SRV target naming instance `id` of `service`.
fn target(id: &str, service: &str, origin: &Name) -> Option<Name> {
    let label = crate::registry::instance_label(id);
    Name::from_labels([label.as_bytes(), service.as_bytes()])
        .ok()?
        .append_domain(origin)
        .ok()
        .map(|n| n.to_lowercase())
}

/// Checks every prerequisite against `namespace` (whose zone's origin is `origin`):
/// the first that fails gives the answer's rcode (RFC 2136 3.2.5).
pub fn check(
    namespace: &Namespace,
    origin: &Name,
    prerequisites: &[Prerequisite],
) -> Result<(), ResponseCode> {
    for prerequisite in prerequisites {
        match prerequisite {
            Prerequisite::NameInUse(name) => {
                if matches!(node(namespace, name)?, Node::Absent) {
                    return Err(ResponseCode::NXDomain);
                }
            }
            Prerequisite::NameNotInUse(name) => {
                if !matches!(node(namespace, name)?, Node::Absent) {
                    return Err(ResponseCode::YXDomain);
                }
            }
            Prerequisite::RrsetExists(name, rtype) => {
                if !has_rrset(&node(namespace, name)?, *rtype, origin) {
                    return Err(ResponseCode::NXRRSet);
                }
            }
            Prerequisite::RrsetAbsent(name, rtype) => {
                if has_rrset(&node(namespace, name)?, *rtype, origin) {
                    return Err(ResponseCode::YXRRSet);
                }
            }
            Prerequisite::RrsetEquals(name, rtype, data) => {
                let node = node(namespace, name)?;
                if matches!(node, Node::Apex) {
                    // SOA and NS values are not compared: not something UPDATE changes here.
                    return Err(ResponseCode::Refused);
                }
                let mut wanted: Vec<Value> = data.iter().filter_map(value).collect();
                wanted.sort();
                wanted.dedup();
                if wanted.len() != data.len() || wanted != rrset(&node, *rtype, origin) {
                    return Err(ResponseCode::NXRRSet);
                }
            }
        }
    }
    Ok(())
}

fn has_rrset(node: &Node<'_>, rtype: RecordType, origin: &Name) -> bool {
    match node {
        Node::Apex => matches!(rtype, RecordType::SOA | RecordType::NS),
        _ => !rrset(node, rtype, origin).is_empty(),
    }
}

/// Who sends the updates, and what they may touch.
pub struct Grant<'a> {
    /// `update:<key name>`: the owner of what the updates register.
    pub source: &'a SourceId,
    /// Whether the key may change the named service of this namespace.
    pub may_touch: &'a (dyn Fn(&str) -> bool + Sync),
}

/// An instance the updates touch: as it was, and as they leave it.
struct Working {
    before: Option<Arc<Instance>>,
    spec: Option<InstanceSpec>,
}

/// The change `updates` make to `namespace` (named `namespace_name`, origin `origin`),
/// or `None` when they change nothing; REFUSED for anything outside what UPDATE may do.
pub fn changes(
    namespace: &Namespace,
    namespace_name: &str,
    origin: &Name,
    updates: &[Update],
    by: &Grant<'_>,
) -> Result<Option<Change>, ResponseCode> {
    let mut touch = Touch {
        namespace,
        source: by.source,
        working: BTreeMap::new(),
    };
    for update in updates {
        let (service, instance) = match update_name(update) {
            [iid, svc] => (svc, Some(iid)),
            [svc] => (svc, None),
            _ => return Err(ResponseCode::Refused),
        };
        let service_ok = crate::registry::validate::service_name(service).is_ok();
        let id_ok = instance.is_none_or(|id| crate::registry::validate::is_label(id));
        if !service_ok || !id_ok || !(by.may_touch)(service) {
            return Err(ResponseCode::Refused);
        }
        match instance {
            Some(id) => touch.instance_record(update, service, id)?,
            None => touch.service_record(update, service, origin)?,
        }
    }
    let batch = touch.batch(namespace_name)?;
    Ok((!batch.is_empty()).then(|| Change::Batch {
        source: by.source.clone(),
        changes: batch,
    }))
}

/// The instances the updates have touched so far, read from the snapshot on first touch.
struct Touch<'a> {
    namespace: &'a Namespace,
    source: &'a SourceId,
    working: BTreeMap<(String, String), Working>,
}

impl Touch<'_> {
    /// Instance `id` of `service` as the updates so far leave it; REFUSED when another
    /// source owns it.
    fn get(&mut self, service: &str, id: &str) -> Result<&mut Working, ResponseCode> {
        let key = (service.to_owned(), id.to_owned());
        if !self.working.contains_key(&key) {
            let before = self
                .namespace
                .services
                .get(service)
                .and_then(|s| s.instances.get(id))
                .cloned();
            if before.as_ref().is_some_and(|i| i.source != *self.source) {
                return Err(ResponseCode::Refused);
            }
            let spec = before.as_ref().map(|i| i.spec.clone());
            self.working.insert(key.clone(), Working { before, spec });
        }
        Ok(self.working.get_mut(&key).expect("inserted above"))
    }

    /// An update of an instance's own name (`iid.svc`): its A and AAAA records.
    fn instance_record(
        &mut self,
        update: &Update,
        service: &str,
        id: &str,
    ) -> Result<(), ResponseCode> {
        match update {
            Update::Add(_, data) => {
                let spec = self.get(service, id)?.spec.get_or_insert_with(new_spec);
                match data {
                    RData::A(a) => spec.ipv4 = Some(a.0),
                    RData::AAAA(aaaa) => spec.ipv6 = Some(aaaa.0),
                    _ => return Err(ResponseCode::Refused),
                }
            }
            Update::DeleteRrset(_, rtype) => {
                if let Some(spec) = &mut self.get(service, id)?.spec {
                    match rtype {
                        RecordType::A => spec.ipv4 = None,
                        RecordType::AAAA => spec.ipv6 = None,
                        _ => return Err(ResponseCode::Refused),
                    }
                }
            }
            Update::DeleteRecord(_, data) => {
                if let Some(spec) = &mut self.get(service, id)?.spec {
                    match data {
                        RData::A(a) if spec.ipv4 == Some(a.0) => spec.ipv4 = None,
                        RData::AAAA(aaaa) if spec.ipv6 == Some(aaaa.0) => spec.ipv6 = None,
                        RData::A(_) | RData::AAAA(_) => {}
                        _ => return Err(ResponseCode::Refused),
                    }
                }
            }
            Update::DeleteName(_) => self.get(service, id)?.spec = None,
        }
        Ok(())
    }

    /// An update of the service's name: its SRV records, one per instance (the port).
    fn service_record(
        &mut self,
        update: &Update,
        service: &str,
        origin: &Name,
    ) -> Result<(), ResponseCode> {
        match update {
            Update::Add(_, RData::SRV(srv)) => {
                let id = srv_instance(srv, service, origin)?;
                let port =
                    crate::registry::validate::port(srv.port).map_err(|_| ResponseCode::Refused)?;
                self.get(service, &id)?
                    .spec
                    .get_or_insert_with(new_spec)
                    .port = Some(port);
            }
            Update::DeleteRecord(_, RData::SRV(srv)) => {
                let id = srv_instance(srv, service, origin)?;
                if let Some(spec) = &mut self.get(service, &id)?.spec
                    && spec.port == Some(srv.port)
                {
                    spec.port = None;
                }
            }
            Update::DeleteRrset(_, RecordType::SRV) => {
                // Only this key's instances: the others are not its to change.
                let mut ids: Vec<String> = self
                    .namespace
                    .services
                    .get(service)
                    .into_iter()
                    .flat_map(|s| s.instances.values())
                    .filter(|i| i.source == *self.source)
                    .map(|i| i.id.clone())
                    .collect();
                ids.extend(
                    self.working
                        .keys()
                        .filter(|(s, _)| s == service)
                        .map(|(_, id)| id.clone()),
                );
                for id in ids {
                    if let Some(spec) = &mut self.get(service, &id)?.spec {
                        spec.port = None;
                    }
                }
            }
            _ => return Err(ResponseCode::Refused),
        }
        Ok(())
    }

    /// What the updates change, instance by instance: an instance is its addresses,
    /// so with none left it is deregistered.
    fn batch(
        self,
        namespace: &str,
    ) -> Result<Vec<(InstanceKey, Option<InstanceSpec>)>, ResponseCode> {
        let mut batch = Vec::new();
        for ((service, id), work) in self.working {
            let port_only = work.spec.as_ref().is_some_and(|s| s.port.is_some());
            let spec = work.spec.filter(|s| s.ipv4.is_some() || s.ipv6.is_some());
            if spec.is_none() && work.before.is_none() && port_only {
                // An SRV record whose target has no address.
                return Err(ResponseCode::Refused);
            }
            if spec.as_ref() == work.before.as_ref().map(|i| &i.spec) {
                continue;
            }
            if spec.is_none() && work.before.is_none() {
                continue;
            }
            let key = InstanceKey {
                namespace: namespace.to_owned(),
                service,
                id,
            };
            batch.push((key, spec));
        }
        Ok(batch)
    }
}

fn update_name(update: &Update) -> &[String] {
    match update {
        Update::Add(name, _)
        | Update::DeleteRrset(name, _)
        | Update::DeleteName(name)
        | Update::DeleteRecord(name, _) => name,
    }
}

/// The instance an SRV record of `service` targets: `iid.<service>.<origin>`, else
/// REFUSED.
fn srv_instance(srv: &SRV, service: &str, origin: &Name) -> Result<String, ResponseCode> {
    let target = &srv.target;
    if !origin.zone_of(target) || target.num_labels() != origin.num_labels() + 2 {
        return Err(ResponseCode::Refused);
    }
    let mut labels = target.iter();
    let id = String::from_utf8_lossy(labels.next().unwrap_or_default()).to_ascii_lowercase();
    let svc = labels.next().unwrap_or_default();
    if !svc.eq_ignore_ascii_case(service.as_bytes()) || !crate::registry::validate::is_label(&id) {
        return Err(ResponseCode::Refused);
    }
    Ok(id)
}

/// A new instance registered by UPDATE: healthy, no port, no attributes.
fn new_spec() -> InstanceSpec {
    InstanceSpec {
        healthy: true,
        ..InstanceSpec::default()
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
