//! DNS-over-TCP counters, named `muster_dns_tcp_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Why a connection was refused (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` connections were open.
    Total,
    /// `max_connections_per_source` connections from its source were open.
    Source,
}

/// Why a connection was closed by muster (the `kind` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Nothing read or written, nothing being answered, for `idle_timeout`.
    Idle,
    /// A message started but not finished within `message_timeout`.
    Message,
    /// Responses waiting while the client read nothing for `idle_timeout`.
    Write,
}

/// Why `accept` failed (the `reason` label of accept errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// The process or the system is out of file descriptors (EMFILE, ENFILE).
    Descriptors,
    /// The kernel is out of memory for sockets (ENOBUFS, ENOMEM).
    Memory,
    /// A connection that failed before it was accepted (reset, aborted, network down).
    Connection,
    Other,
}

/// Counters of the TCP server; registered once in the process's metrics registry.
#[derive(Default)]
pub struct TcpMetrics {
    connections: Gauge,
    refused: Family<ReasonLabels, Counter>,
    timeouts: Family<KindLabels, Counter>,
    accept_errors: Family<ReasonLabels, Counter>,
}

impl TcpMetrics {
    /// Adds every TCP metric to the process's registry, under `muster_dns_tcp_`.
    pub fn register(&self, registry: &mut Registry) {
        let tcp = registry.sub_registry_with_prefix("muster_dns_tcp");
        tcp.register(
            "connections",
            "DNS TCP connections open",
            self.connections.clone(),
        );
        tcp.register(
            "refused",
            "DNS TCP connections closed at once: total (max_connections), source (max_connections_per_source)",
            self.refused.clone(),
        );
        tcp.register(
            "timeouts",
            "DNS TCP connections closed: idle (idle_timeout), message (message_timeout), write (the client read nothing for idle_timeout)",
            self.timeouts.clone(),
        );
        tcp.register(
            "accept_errors",
            "Failed accepts on the DNS TCP listeners: descriptors (EMFILE, ENFILE), memory, connection, other",
            self.accept_errors.clone(),
        );
    }

    pub(super) fn opened(&self) {
        self.connections.inc();
    }

    pub(super) fn closed(&self) {
        self.connections.dec();
    }

    pub(super) fn refused(&self, refusal: Refusal) {
        let reason = match refusal {
            Refusal::Total => "total",
            Refusal::Source => "source",
        };
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(super) fn timed_out(&self, timeout: Timeout) {
        let kind = match timeout {
            Timeout::Idle => "idle",
            Timeout::Message => "message",
            Timeout::Write => "write",
        };
        self.timeouts.get_or_create(&KindLabels { kind }).inc();
    }

    pub(super) fn accept_failed(&self, error: AcceptError) {
        let reason = match error {
            AcceptError::Descriptors => "descriptors",
            AcceptError::Memory => "memory",
            AcceptError::Connection => "connection",
            AcceptError::Other => "other",
        };
        self.accept_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}
