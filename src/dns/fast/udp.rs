//! The UDP listeners: one socket per core in one `SO_REUSEPORT` group per address, each
//! served by a thread of its own with a blocking loop.
//!
//! A thread takes every datagram waiting (one `recvmmsg`), loads the current zone (a
//! lock-free `ArcSwap` read), answers each from pre-encoded records into reused buffers
//! and sends the answers with one `sendmmsg`: no allocation, lock or log.
//! A datagram the fast path does not answer is copied and handed to a task on the tokio
//! runtime that runs the full path ([`handoff`](super::handoff)); that task sends the
//! reply from the same socket.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::batch::{Received, Replies};
use super::handoff::full_path;
use super::respond::{Outcome, Scratch, respond};
use crate::dns::handler::Handler;
use crate::dns::metrics::QuerySlot;

/// How often an idle thread looks at the shutdown flag.
const WAKE_INTERVAL: Duration = Duration::from_millis(100);
/// Socket buffers (the kernel caps them at its `rmem_max`/`wmem_max`): room for bursts.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds `count` UDP sockets to `address` in one `SO_REUSEPORT` group; with port 0, the
/// first socket's port is used for the rest.
pub fn bind(address: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut sockets: Vec<UdpSocket> = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let at = sockets.first().map_or(Ok(address), UdpSocket::local_addr)?;
        let socket = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        // Best effort: a smaller buffer only means earlier drops under bursts.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.bind(&at.into())?;
        socket.set_read_timeout(Some(WAKE_INTERVAL))?;
        socket.set_write_timeout(Some(WAKE_INTERVAL))?;
        sockets.push(socket.into());
    }
    Ok(sockets)
}

/// How many UDP sockets (and threads) to serve an address with: one per core this
/// process may run on.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Serves every socket on its own thread until `shutdown`; an error means a thread's
/// socket failed.
pub async fn serve(
    sockets: Vec<UdpSocket>,
    handler: Handler,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let (exited, mut exits) = mpsc::unbounded_channel();
    for (n, socket) in sockets.into_iter().enumerate() {
        let worker = Worker {
            socket: Arc::new(socket),
            slot: handler.metrics().thread_slot(),
            handler: handler.clone(),
            runtime: tokio::runtime::Handle::current(),
            stop: stop.clone(),
        };
        let exited = exited.clone();
        std::thread::Builder::new()
            .name(format!("dns-udp-{n}"))
            .spawn(move || {
                crate::threads::answering();
                let _ = exited.send(worker.run());
            })?;
    }
    drop(exited);
    let result = tokio::select! {
        Some(result) = exits.recv() => {
            result.and_then(|()| Err(io::Error::other("a DNS UDP thread stopped")))
        }
        _ = shutdown.cancelled() => Ok(()),
    };
    stop.store(true, Ordering::Relaxed);
    while exits.recv().await.is_some() {}
    result
}

/// One socket's thread.
struct Worker {
    socket: Arc<UdpSocket>,
    handler: Handler,
    slot: Arc<QuerySlot>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(self) -> io::Result<()> {
        let mut received = Received::new();
        let mut replies = Replies::new();
        let mut scratch = Scratch::new(SmallRng::from_rng(&mut rand::rng()));
        let settings = self.handler.fast_settings();
        while !self.stop.load(Ordering::Relaxed) {
            let count = match received.receive(&self.socket) {
                Ok(count) => count,
                // Timeouts (to look at `stop`), signals, and ICMP errors for earlier
                // replies (a client that went away) are not the socket failing.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let zone = self.handler.zone().load();
            for n in 0..count {
                let Some(src) = received.source(n).filter(|src| can_reply_to(*src)) else {
                    continue;
                };
                let packet = received.query(n);
                match respond(&zone, packet, settings, &mut scratch, replies.next_buffer()) {
                    Outcome::Answered { qtype, rcode } => {
                        self.slot.count(Some(qtype), rcode);
                        replies.push(n);
                    }
                    Outcome::HandOff => self.hand_off(packet.to_vec(), src),
                }
            }
            replies.send(&self.socket, &received);
        }
        Ok(())
    }

    /// Runs the full path for `packet` on the runtime; it replies from this socket.
    fn hand_off(&self, packet: Vec<u8>, src: SocketAddr) {
        let handler = self.handler.clone();
        let socket = self.socket.clone();
        self.runtime.spawn(async move {
            if let Some(response) = full_path(&handler, packet, src).await {
                let _ = socket.send_to(&response, src);
            }
        });
    }
}

/// hickory's rule for UDP sources: never answer port 0 or an unspecified or broadcast
/// address (a reflection target, not a client).
fn can_reply_to(src: SocketAddr) -> bool {
    let ip = src.ip();
    src.port() != 0
        && !ip.is_unspecified()
        && !matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast())
}
