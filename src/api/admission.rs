//! Connection caps: how many connections a listener keeps open, in all and per source.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host commonly owns a whole /64, so
//! a per-address cap would not bind it); an IPv4-mapped IPv6 address counts as its IPv4
//! address. The per-source table holds only sources with a connection open, so it never
//! has more than `max_connections` entries whatever the clients do.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The caps in force when a connection arrives (they follow reloads).
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub total: u32,
    pub per_source: u32,
}

/// Why a connection was refused; the value is the metric's `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerSource,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerSource => "max_connections_per_source",
        }
    }
}

/// The open connections of one listener.
#[derive(Default)]
pub struct Admission {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: u32,
    per_source: HashMap<IpAddr, u32>,
}

/// One admitted connection; dropping it frees its place.
pub struct Permit {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Admission {
    /// Admits a connection from `peer`, or says which cap it would break.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, caps: Caps) -> Result<Permit, Refused> {
        let source = source_of(peer);
        let mut open = self.lock();
        if open.total >= caps.total {
            return Err(Refused::Total);
        }
        let from_source = open.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= caps.per_source {
            return Err(Refused::PerSource);
        }
        open.total += 1;
        open.per_source.insert(source, from_source + 1);
        Ok(Permit {
            admission: self.clone(),
            source,
        })
    }

    /// Connections open now, and sources they come from.
    pub fn open(&self) -> (u32, usize) {
        let open = self.lock();
        (open.total, open.per_source.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.per_source.remove(&self.source);
            }
        }
    }
}

/// The key a peer address is counted under: IPv4 as is, IPv6 by its /64.
pub fn source_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        total: 4,
        per_source: 2,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn per_source_then_total() {
        let admission = Arc::new(Admission::default());
        let a1 = admission.admit(ip("10.0.0.1"), CAPS).unwrap();
        let _a2 = admission.admit(ip("10.0.0.1"), CAPS).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1"), CAPS).err(),
            Some(Refused::PerSource)
        );
        let _b1 = admission.admit(ip("10.0.0.2"), CAPS).unwrap();
        let _c1 = admission.admit(ip("10.0.0.3"), CAPS).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.4"), CAPS).err(),
            Some(Refused::Total)
        );
        drop(a1);
        assert_eq!(admission.open(), (3, 3));
        let _a3 = admission.admit(ip("10.0.0.1"), CAPS).unwrap();
    }

    #[test]
    fn the_table_forgets_sources_without_connections() {
        let admission = Arc::new(Admission::default());
        let caps = Caps {
            total: 10_000,
            per_source: 1,
        };
        for i in 0..5000u32 {
            let peer = IpAddr::V4(std::net::Ipv4Addr::from_bits(0x0a00_0000 + i));
            drop(admission.admit(peer, caps).unwrap());
        }
        assert_eq!(admission.open(), (0, 0));
        let permits: Vec<Permit> = (0..100u32)
            .map(|i| {
                let peer = IpAddr::V4(std::net::Ipv4Addr::from_bits(0x0b00_0000 + i));
                admission.admit(peer, caps).unwrap()
            })
            .collect();
        assert_eq!(admission.open(), (100, 100));
        drop(permits);
        assert_eq!(admission.open(), (0, 0));
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            source_of(ip("2001:db8:1:2:aaaa::1")),
            source_of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:2::1")),
            source_of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        let admission = Arc::new(Admission::default());
        let _a = admission.admit(ip("2001:db8::1"), CAPS).unwrap();
        let _b = admission.admit(ip("2001:db8::2"), CAPS).unwrap();
        assert_eq!(
            admission.admit(ip("2001:db8::3"), CAPS).err(),
            Some(Refused::PerSource)
        );
    }
}
