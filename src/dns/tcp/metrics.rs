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
    /// Adds every TCP metric to the process's registry, under `muster_dns_tcp_`, every
    /// labelled series at zero.
    pub fn register(&self, registry: &mut Registry) {
        for refusal in [Refusal::Total, Refusal::Source] {
            let reason = refusal.label();
            drop(self.refused.get_or_create(&ReasonLabels { reason }));
        }
        for timeout in [Timeout::Idle, Timeout::Message, Timeout::Write] {
            let kind = timeout.label();
            drop(self.timeouts.get_or_create(&KindLabels { kind }));
        }
        use AcceptError::*;
        for error in [Descriptors, Memory, Connection, Other] {
            let reason = error.label();
            drop(self.accept_errors.get_or_create(&ReasonLabels { reason }));
        }
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
        let reason = refusal.label();
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(super) fn timed_out(&self, timeout: Timeout) {
        let kind = timeout.label();
        self.timeouts.get_or_create(&KindLabels { kind }).inc();
    }

    pub(super) fn accept_failed(&self, error: AcceptError) {
        let reason = error.label();
        self.accept_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::Source => "source",
        }
    }
}

impl Timeout {
    fn label(self) -> &'static str {
        match self {
            Timeout::Idle => "idle",
            Timeout::Message => "message",
            Timeout::Write => "write",
        }
    }
}

impl AcceptError {
    fn label(self) -> &'static str {
        match self {
            AcceptError::Descriptors => "descriptors",
            AcceptError::Memory => "memory",
            AcceptError::Connection => "connection",
            AcceptError::Other => "other",
        }
    }
}
