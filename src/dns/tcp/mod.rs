//! DNS over TCP (RFC 7766): muster's own server, in place of hickory's, which had no
//! connection cap, spun a core when descriptors ran out, could not tell an idle client
//! from a secondary reading a transfer slowly, and queued every message of a transfer
//! before writing the first.
//!
//! Owns: the TCP listeners' accept loops ([`accept`]: never spin, back off and count when
//! `accept` fails), the caps on open connections in all and per source ([`admission`]),
//! each connection's task ([`connection`]: pipelined queries, the fast path inline, the
//! full path in tasks of its own, timeouts that reset on activity, bounded buffers) and
//! its framing ([`frames`]). What a query is answered is decided by the fast path's
//! `respond` and the full path's [`Handler`], exactly as over UDP but with TCP's rules
//! (no truncation, transfers allowed). Must not: answer anything itself, log per query or
//! per connection at the default level, or keep anything per connection or source
//! beyond the caps.
//!
//! Settings: `[dns.tcp]` (`max_connections`, `max_connections_per_source`,
//! `idle_timeout`, `message_timeout`, `max_in_flight`), read at start.
//!
//! Metrics (see [`TcpMetrics`]): `muster_dns_tcp_connections` (open),
//! `muster_dns_tcp_refused_total{reason="total"|"source"}`,
//! `muster_dns_tcp_timeouts_total{kind="idle"|"message"|"write"}`,
//! `muster_dns_tcp_accept_errors_total{reason="descriptors"|"memory"|"connection"|"other"}`.
//! Queries are counted with the others in `muster_dns_queries_total`.

mod accept;
mod admission;
mod connection;
mod frames;
mod metrics;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DnsTcpConfig;
use crate::dns::handler::Handler;
use admission::Admission;
use connection::Limits;

pub use metrics::TcpMetrics;

/// What every listener's accept loop shares.
struct Server {
    handler: Arc<Handler>,
    admission: Arc<Admission>,
    limits: Limits,
    metrics: Arc<TcpMetrics>,
    connections: TaskTracker,
    shutdown: CancellationToken,
}

/// Serves DNS over TCP on every listener until `shutdown`, then closes every connection.
/// An error means a listener failed.
pub async fn serve(
    listeners: Vec<TcpListener>,
    handler: Handler,
    config: &DnsTcpConfig,
    metrics: Arc<TcpMetrics>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let max_total = usize::try_from(config.max_connections).unwrap_or(usize::MAX);
    let server = Arc::new(Server {
        handler: Arc::new(handler),
        admission: Admission::new(
            max_total,
            config.max_connections_per_source,
            metrics.clone(),
        ),
        limits: Limits {
            idle_timeout: config.idle_timeout,
            message_timeout: config.message_timeout,
            max_in_flight: usize::try_from(config.max_in_flight).unwrap_or(usize::MAX),
        },
        metrics,
        connections: TaskTracker::new(),
        shutdown: shutdown.clone(),
    });
    let mut accepting = JoinSet::new();
    for listener in listeners {
        let (server, shutdown) = (server.clone(), shutdown.clone());
        accepting.spawn(async move { accept::run(listener, &server, shutdown).await });
    }
    let mut result = Ok(());
    while let Some(done) = accepting.join_next().await {
        result = done.unwrap_or_else(|panic| Err(io::Error::other(panic)));
        if result.is_err() {
            break;
        }
    }
    // Connections end at shutdown; after a listener failed, DNS is stopping anyway.
    server.connections.close();
    if result.is_ok() {
        server.connections.wait().await;
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("DNS TCP: {e}")))
}

impl Server {
    /// Serves a new connection if the caps allow it; otherwise closes it at once.
    fn open(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let Ok(slot) = self.admission.admit(peer.ip()) else {
            return; // Dropping the stream closes it; the refusal is counted.
        };
        let server = self.clone();
        self.connections.spawn(async move {
            let _slot = slot;
            connection::serve(
                stream,
                peer,
                server.handler.clone(),
                server.limits,
                &server.metrics,
                server.shutdown.clone(),
            )
            .await;
        });
    }
}
