//! Which connections may stay open: at most `max_connections` in all and
//! `max_connections_per_source` per source.
//!
//! A source is an IPv4 address, or an IPv6 /64 (what one host is usually given; per
//! address, one host could open a connection from each of its 2^64 addresses). The count
//! of a source is dropped when its last connection closes, so the map never holds more
//! sources than there are open connections. The lock is taken once when a connection is
//! accepted and once when it closes, never per query.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::metrics::{Refusal, TcpMetrics};

/// The open connections, counted in all and per source.
pub struct Admission {
    max_total: usize,
    max_per_source: u32,
    metrics: Arc<TcpMetrics>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_source: HashMap<IpAddr, u32>,
}

/// An admitted connection's place; dropping it frees the place.
pub struct Slot {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Admission {
    /// Room for `max_total` connections, `max_per_source` from each source.
    pub fn new(max_total: usize, max_per_source: u32, metrics: Arc<TcpMetrics>) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_source,
            metrics,
            open: Mutex::default(),
        })
    }

    /// A place for a connection from `peer`, or why there is none (counted).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let source = source_of(peer);
        let admitted = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let from_source = open.per_source.get(&source).copied().unwrap_or(0);
            if open.total >= self.max_total {
                Err(Refusal::Total)
            } else if from_source >= self.max_per_source {
                Err(Refusal::Source)
            } else {
                open.total += 1;
                open.per_source.insert(source, from_source + 1);
                Ok(())
            }
        };
        match admitted {
            Ok(()) => {
                self.metrics.opened();
                Ok(Slot {
                    admission: self.clone(),
                    source,
                })
            }
            Err(refusal) => {
                self.metrics.refused(refusal);
                Err(refusal)
            }
        }
    }

    fn release(&self, source: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_source.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_source.remove(&source);
            }
        }
        drop(open);
        self.metrics.closed();
    }

    #[cfg(test)]
    fn sources(&self) -> usize {
        self.open.lock().unwrap().per_source.len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.release(self.source);
    }
}

/// The source a connection counts against: the IPv4 address (IPv4-mapped IPv6 included),
/// or the IPv6 /64.
fn source_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn caps_in_all_and_per_source_and_frees_on_drop() {
        let admission = Admission::new(3, 2, Arc::default());
        let a1 = admission.admit(ip("10.0.0.1")).unwrap();
        let a2 = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(admission.admit(ip("10.0.0.1")).err(), Some(Refusal::Source));
        let b1 = admission.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(admission.admit(ip("10.0.0.3")).err(), Some(Refusal::Total));
        drop(a1);
        let a3 = admission.admit(ip("10.0.0.1")).unwrap();
        drop((a2, a3, b1));
        assert_eq!(
            admission.sources(),
            0,
            "no count is kept for a closed source"
        );
        assert_eq!(admission.open.lock().unwrap().total, 0);
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("2001:db8:1:2:ffff::9")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let admission = Admission::new(10, 1, Arc::default());
        let _first = admission.admit(ip("2001:db8::1")).unwrap();
        assert!(admission.admit(ip("2001:db8::2")).is_err());
        assert!(admission.admit(ip("2001:db8:0:1::2")).is_ok());
    }
}
