//! The DNS frontend: answers for every namespace, over UDP and TCP.
//!
//! Owns: the [`Zone`] (a DNS view of the registry's snapshot, rebuilt per touched
//! instance through a publish hook, every record with its wire form), the pure
//! [`answer`] function and the `plan` it shares with the UDP [`fast`] path, the hickory
//! request handler (the full path: TCP, and whatever the fast path hands over) and the
//! listeners. Must not: mutate the registry, take a lock per query, or log per query at
//! the default level.
//!
//! Metrics (see [`DnsMetrics`]): `muster_dns_queries_total{qtype,rcode}`,
//! `muster_dns_truncated_total`.

mod answer;
pub mod fast;
mod forward;
mod handler;
mod metrics;
mod names;
mod server;
mod service_records;
#[cfg(test)]
mod test_registry;
mod transfer;
mod wire;
mod zone;

pub use answer::{Answer, answer};
pub use forward::Forwarder;
pub use handler::Handler;
pub use metrics::DnsMetrics;
pub use names::instance_label;
pub use server::{Listeners, bind, serve};
pub use transfer::{JOURNAL_RECORDS, Transfers, notify_secondaries};
pub use zone::{Zone, ZoneView};
