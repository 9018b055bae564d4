//! `[[zones]]`: where clients are, for services answered by zone (`locality =
//! "prefer_zone"`; docs/dns.md, "Zone-aware answers").

use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::dns::networks;

/// More zones than any region has: the bound keeps a hostile or broken config small.
pub const MAX_ZONES: usize = 64;
/// Subnets across every zone: each query of a zone-aware service scans them.
pub const MAX_ZONE_CIDRS: usize = 1_024;

/// `[[zones]]`: one zone and the client subnets in it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone's name as instances carry it in their `AVAILABILITY_ZONE` attribute
    /// (the ECS source sets it), e.g. `us-east-1a`.
    pub name: String,
    /// The subnets whose clients are in this zone (CIDR, or bare addresses).
    pub cidrs: Vec<String>,
}

impl ZoneConfig {
    /// Every subnet of `zones` with its zone's name, with their problems pushed to
    /// `problems`: a bad CIDR, an empty or overlong name, a name or subnet given twice,
    /// too many zones or subnets.
    pub(super) fn subnets(zones: &[Self], problems: &mut Vec<String>) -> Vec<(IpNet, Arc<str>)> {
        if zones.len() > MAX_ZONES {
            problems.push(format!("zones: {} zones, at most {MAX_ZONES}", zones.len()));
        }
        let mut subnets: Vec<(IpNet, Arc<str>)> = Vec::new();
        for (i, zone) in zones.iter().enumerate() {
            if zone.name.is_empty() || zone.name.len() > 255 {
                problems.push(format!("zones[{i}].name: 1 to 255 bytes"));
            }
            if zones[..i].iter().any(|other| other.name == zone.name) {
                problems.push(format!("zones[{i}].name: {:?} is given twice", zone.name));
            }
            let name: Arc<str> = zone.name.as_str().into();
            for network in networks(&format!("zones[{i}].cidrs"), &zone.cidrs, problems) {
                let network = network.trunc();
                if subnets.iter().any(|(other, _)| *other == network) {
                    problems.push(format!("zones[{i}].cidrs: {network} is in two zones"));
                }
                subnets.push((network, name.clone()));
            }
        }
        if subnets.len() > MAX_ZONE_CIDRS {
            problems.push(format!(
                "zones: {} subnets, at most {MAX_ZONE_CIDRS}",
                subnets.len()
            ));
        }
        subnets
    }
}
