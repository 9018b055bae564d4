//! The DNS frontend: answers for every namespace, over UDP and TCP.
//!
//! Owns: the [`ZoneSnapshot`] (a DNS view of the registry's snapshot, rebuilt per touched
//! instance through a publish hook, every record with its wire form), the pure
//! [`answer`] function and the `plan` it shares with the [`fast`] path, the hickory
//! request handler (the full path: whatever the fast path hands over) and the listeners:
//! UDP on the fast path's threads, TCP on muster's own server (`tcp`). Must not: mutate
//! the registry, take a lock per query, or log per query at the default level.
//!
//! UDP responses are rate limited per source prefix ([`rrl`]) when `[dns.rrl]` says so.
//!
//! Layers, each using only those above it: `wire` (encoded records, shared constants);
//! the zone data, `zone` with each service's records (`service_records`, `named_ports`)
//! and the IXFR journal (`journal`); what reads it, [`answer`] (with its random picks,
//! `sample`) and `transfer`; what
//! serves requests, the `handler` (full path) and [`fast`] (which hands over to it).
//!
//! Metrics (see [`DnsMetrics`]): `muster_dns_queries_total{qtype,rcode}`,
//! `muster_dns_truncated_total`, `muster_dns_rrl_dropped_total{class}`,
//! `muster_dns_rrl_slipped_total{class}`, `muster_dns_handoff_dropped_total`,
//! `muster_dns_forwarded_total`, `muster_dns_forward_rejected_total`,
//! `muster_dns_tsig_rejected_total{error}`; the transfers' in [`transfer`]; TCP's own
//! (see [`TcpMetrics`]): `muster_dns_tcp_*`.

mod answer;
pub mod fast;
mod forward;
mod handler;
mod journal;
pub mod locality;
mod metrics;
mod named_ports;
mod qname;
pub mod rrl;
mod sample;
mod server;
mod service_index;
mod service_records;
mod tcp;
#[cfg(test)]
mod test_registry;
mod transfer;
mod wire;
mod zone;

pub use answer::{Answer, answer};
pub use forward::Forwarder;
pub use handler::Handler;
pub use journal::JOURNAL_RECORDS;
pub use metrics::DnsMetrics;
pub use qname::QueryName;
pub use rrl::Rrl;
pub use server::{Listeners, bind, serve};
pub use tcp::TcpMetrics;
pub use transfer::{Transfers, notify_secondaries};
pub use zone::{PublishedZone, ZoneSnapshot};
