//! DNS listeners: bound at start-up so errors surface before anything is served.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::handler::Handler;
use super::{fast, tcp};
use crate::config::DnsTcpConfig;

/// Bound DNS sockets: on each configured address, a group of UDP sockets (one per fast
/// path thread) and a TCP listener.
pub struct Listeners {
    udp: Vec<Vec<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

impl Listeners {
    /// The addresses actually bound (with the real port where port 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|group| group.first()?.local_addr().ok())
            .collect()
    }
}

/// Binds UDP and TCP on every address; with port 0, TCP takes the port UDP got.
pub async fn bind(addresses: &[SocketAddr]) -> io::Result<Listeners> {
    let mut listeners = Listeners {
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    for address in addresses {
        let (udp, tcp) = bind_pair(*address).await?;
        listeners.udp.push(udp);
        listeners.tcp.push(tcp);
    }
    Ok(listeners)
}

/// Tries for a port 0 pair: the port UDP is given may be taken for TCP (another
/// process's ephemeral connection), so try another.
const PORT_ZERO_ATTEMPTS: usize = 16;

/// UDP and TCP on one address (the same port for both).
async fn bind_pair(address: SocketAddr) -> io::Result<(Vec<UdpSocket>, TcpListener)> {
    let attempts = if address.port() == 0 {
        PORT_ZERO_ATTEMPTS
    } else {
        1
    };
    let mut attempt = 1;
    loop {
        let udp = fast::bind(address, fast::threads())
            .map_err(|e| io::Error::new(e.kind(), format!("DNS UDP {address}: {e}")))?;
        let bound = udp[0].local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < attempts => attempt += 1,
            Err(e) => return Err(io::Error::new(e.kind(), format!("DNS TCP {bound}: {e}"))),
        }
    }
}

/// Serves DNS until `shutdown`: UDP on the fast path's threads, TCP on muster's TCP
/// server. An error means a listener died.
pub async fn serve(
    listeners: Listeners,
    handler: Handler,
    tcp_config: DnsTcpConfig,
    tcp_metrics: Arc<tcp::TcpMetrics>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let udp = fast::serve(
        listeners.udp.into_iter().flatten().collect(),
        handler.clone(),
        shutdown.clone(),
    );
    let tcp = tcp::serve(listeners.tcp, handler, &tcp_config, tcp_metrics, shutdown);
    // Either one failing stops DNS; on shutdown both return.
    tokio::try_join!(udp, tcp).map(|_| ())
}
