//! Named ports' SRV records: `_<name>._<protocol>.<svc>.<ns>`, one record set per port
//! name of a service (an instance's [`NamedPort`]s, ECS port mapping names), beside the
//! service's own SRV at `svc.ns`, with the same targets (`<label>.<svc>.<ns>`) and glue.
//!
//! Owns: an instance's named SRV records and the list of names a service answers. Must
//! not: decide answers (that is `answer::plan`).
//!
//! These names cannot collide with others: they are three labels below the namespace,
//! where instance names (`iid.svc.ns`) and RFC 2782 aliases (`_svc._tcp.ns`) are two.
//! `_tcp.svc.ns` between them is an empty non-terminal unless an instance is labelled
//! `_tcp` (Cloud Map allows such ids); either way it exists.

use std::collections::BTreeMap;
use std::sync::Arc;

use hickory_proto::rr::RecordType;

use super::service_records::ServedInstance;
use super::wire::{Rr, RrRef, child_name};
use crate::registry::{NamedPort, Protocol};

/// One named port's SRV record of one instance.
#[derive(Debug)]
pub struct NamedSrv {
    pub name: NamedName,
    pub rr: Rr,
}

/// A port name and its transport: the set of records at `_<name>._<protocol>.<svc>.<ns>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedName {
    pub protocol: Protocol,
    /// The name without its `_`, lowercase (validated on input).
    pub name: Arc<str>,
}

impl NamedName {
    /// The order of names in a service and in an instance: TCP first, then by name.
    fn key(&self) -> (bool, &str) {
        (self.protocol == Protocol::Udp, &self.name)
    }
}

/// An instance's named SRV records, in [`NamedName`] order: `srv_fields(port)` (the
/// instance's priority, weight and the port), then `target`. None without an SRV TTL (the service has no SRV records), and a
/// name that would make the owner longer than 255 bytes is left out.
pub fn records(
    service_owner: &[u8],
    target: &[u8],
    ports: &BTreeMap<String, NamedPort>,
    ttl: Option<u32>,
    srv_fields: impl Fn(u16) -> [u8; 6],
) -> Box<[NamedSrv]> {
    let Some(ttl) = ttl else {
        return Box::default();
    };
    let mut records: Vec<NamedSrv> = ports
        .iter()
        .filter_map(|(name, named)| {
            let under = child_name(named.protocol.label().as_bytes(), service_owner)?;
            let owner = child_name(format!("_{name}").as_bytes(), &under)?;
            let fields = srv_fields(named.port);
            let rr = Rr::from_parts(&owner, RecordType::SRV, ttl, &[&fields, target])?;
            let name = NamedName {
                protocol: named.protocol,
                name: name.as_str().into(),
            };
            Some(NamedSrv { name, rr })
        })
        .collect();
    records.sort_by(|a, b| a.name.key().cmp(&b.name.key()));
    records.into_boxed_slice()
}

/// The instance's record for `name`, if it has that port.
pub fn find<'i>(records: &'i [NamedSrv], name: &NamedName) -> Option<RrRef<'i>> {
    let at = records
        .binary_search_by(|r| r.name.key().cmp(&name.key()))
        .ok()?;
    Some(records[at].rr.view())
}

/// Names a service answers at most: every name is one more pass over the service's
/// instances when it changes, so a client that registers many distinct names (16 per
/// instance) cannot make each change cost thousands of passes.
pub const MAX_NAMES: usize = 32;

/// Every name the `instances` have, in order, once; the first [`MAX_NAMES`] of them.
pub fn names(instances: &[Arc<ServedInstance>]) -> Vec<NamedName> {
    let mut names: Vec<NamedName> = instances
        .iter()
        .flat_map(|i| i.named.iter().map(|r| r.name.clone()))
        .collect();
    names.sort_by(|a, b| a.key().cmp(&b.key()));
    names.dedup();
    names.truncate(MAX_NAMES);
    names
}

/// The index in `names` of `_<port>._<protocol>` (labels as asked, lowercase).
pub fn position(names: &[NamedName], port_label: &[u8], protocol_label: &[u8]) -> Option<usize> {
    let udp = match protocol_label {
        b"_tcp" => false,
        b"_udp" => true,
        _ => return None,
    };
    let name = std::str::from_utf8(port_label.strip_prefix(b"_")?).ok()?;
    names.binary_search_by(|n| n.key().cmp(&(udp, name))).ok()
}

/// Whether `_tcp.<svc>` / `_udp.<svc>` has named ports below it.
pub fn protocol_in_use(names: &[NamedName], label: &[u8]) -> bool {
    names.iter().any(|n| n.protocol.label().as_bytes() == label)
}
