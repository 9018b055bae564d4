//! Where a client is, for zone-aware answers (`locality = "prefer_zone"`).
//!
//! Owns: the `[[zones]]` subnet table, and the client's location as one query tells it:
//! the Client Subnet option when the query carries one (RFC 7871; the resolver speaks for
//! its client), else the querier's own address. Must not: decide which instances are
//! answered (that is `answer::plan`, with each service's zone views).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// `[[zones]]`: each client subnet with its zone, longest prefix first so the first
/// match is the most specific.
#[derive(Debug, Default)]
pub struct ClientZones {
    subnets: Box<[(IpNet, Arc<str>)]>,
}

/// A query's Client Subnet option (RFC 7871 §6): the client's address cut to
/// `source_prefix` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub address: IpAddr,
    pub source_prefix: u8,
}

/// What one query says about where its client is.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    zones: &'a ClientZones,
    /// The querier's address (a resolver's, when it forwards for its clients).
    address: IpAddr,
    subnet: Option<Subnet>,
}

/// A client's zone, and the prefix length a tailored answer holds for, to echo in the
/// Client Subnet option's SCOPE (only when the query carried one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location<'a> {
    pub zone: Option<&'a str>,
    pub scope: Option<u8>,
}

impl ClientZones {
    /// The table of `subnets`, each with its zone's name.
    pub fn new(mut subnets: Vec<(IpNet, Arc<str>)>) -> Self {
        subnets.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self {
            subnets: subnets.into_boxed_slice(),
        }
    }

    /// A client at `address`, speaking for `subnet` if the query has a Client Subnet.
    pub fn client(&self, address: IpAddr, subnet: Option<Subnet>) -> Client<'_> {
        Client {
            zones: self,
            // A dual-stack socket gives IPv4 clients as ::ffff:a.b.c.d.
            address: address.to_canonical(),
            subnet,
        }
    }

    /// The zone of the most specific subnet holding `address` and everything within
    /// `prefix` bits of it, with that subnet's prefix length.
    fn zone_of(&self, address: IpAddr, prefix: u8) -> Option<(&str, u8)> {
        self.subnets
            .iter()
            .find(|(net, _)| net.prefix_len() <= prefix && net.contains(&address))
            .map(|(net, zone)| (&**zone, net.prefix_len()))
    }
}

impl<'a> Client<'a> {
    /// A client whose location nobody knows (tests, and answers that do not depend on
    /// it).
    pub fn unknown(zones: &'a ClientZones) -> Self {
        zones.client(IpAddr::from([0, 0, 0, 0]), None)
    }

    /// Where the client is. With a Client Subnet, its subnet decides, and the answer
    /// holds for the zone's whole subnet (SCOPE = its prefix length), or for the
    /// client's prefix as sent when no zone holds it; without one, the querier's address
    /// decides.
    pub fn locate(&self) -> Location<'a> {
        match self.subnet {
            Some(subnet) => match self.zones.zone_of(subnet.address, subnet.source_prefix) {
                Some((zone, scope)) => Location {
                    zone: Some(zone),
                    scope: Some(scope),
                },
                None => Location {
                    zone: None,
                    scope: Some(subnet.source_prefix),
                },
            },
            None => Location {
                zone: self.zones.zone_of(self.address, 128).map(|(zone, _)| zone),
                scope: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> ClientZones {
        let subnet = |net: &str, zone: &str| (net.parse().unwrap(), Arc::from(zone));
        ClientZones::new(vec![
            subnet("10.0.0.0/16", "a"),
            subnet("10.0.5.0/24", "b"),
            subnet("fd00::/48", "c"),
        ])
    }

    #[test]
    fn the_querier_address_finds_the_most_specific_zone() {
        let zones = zones();
        let at = |ip: &str| zones.client(ip.parse().unwrap(), None).locate();
        assert_eq!(at("10.0.1.9").zone, Some("a"));
        assert_eq!(at("10.0.5.9").zone, Some("b"), "the /24 inside the /16");
        assert_eq!(at("fd00::1").zone, Some("c"));
        assert_eq!(at("192.0.2.1"), Location::default());
    }

    #[test]
    fn a_client_subnet_decides_and_sets_the_scope() {
        let zones = zones();
        let resolver = "192.0.2.53".parse().unwrap();
        let via = |ip: &str, source_prefix| {
            let subnet = Subnet {
                address: ip.parse().unwrap(),
                source_prefix,
            };
            zones.client(resolver, Some(subnet)).locate()
        };
        let at = |zone, scope| Location {
            zone: Some(zone),
            scope: Some(scope),
        };
        assert_eq!(via("10.0.5.0", 24), at("b", 24));
        assert_eq!(via("10.0.1.0", 24), at("a", 16));
        // A /20 spans b's /24 and the rest of a: only a holds all of it.
        assert_eq!(via("10.0.0.0", 20), at("a", 16));
        // Not in any zone: the answer holds for the prefix as sent.
        let nowhere = via("198.51.100.0", 24);
        assert_eq!((nowhere.zone, nowhere.scope), (None, Some(24)));
    }
}
