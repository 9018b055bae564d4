//! The UDP listeners: one socket per core in one `SO_REUSEPORT` group per address, each
//! served by a thread of its own with a blocking loop.
//!
//! A thread takes every datagram waiting (one `recvmmsg`), loads the current zone (a
//! lock-free `ArcSwap` read), answers each from pre-encoded records into reused buffers
//! and sends the answers with one `sendmmsg`: no allocation, lock or log.
//! A datagram the fast path does not answer is copied and handed to a task on the tokio
//! runtime that runs the full path ([`handoff`](super::handoff)); that task sends the
//! reply from the same socket. At most [`MAX_HANDOFFS`] such tasks run at once; beyond
//! that a datagram is dropped and counted (`muster_dns_handoff_dropped_total`), so a
//! flood of slow queries cannot queue tasks and memory without bound.
//!
//! Every response, from either path, passes rate limiting ([`Rrl`]) when it is on.
//!
//! A thread that fails or panics stops DNS with an error (and so muster, with exit code
//! 3): DNS never runs on with a thread missing and its share of datagrams unanswered.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::batch::{Received, Replies};
use super::handoff::{MAX_HANDOFFS, full_path};
use super::respond::{Handling, Scratch, respond, warm};
use crate::dns::handler::Handler;
use crate::dns::metrics::QuerySlot;
use crate::dns::rrl::Rrl;

/// How each thread ended: its own result, or an error if it panicked.
type Exits = mpsc::UnboundedReceiver<io::Result<()>>;

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
    let handoffs = Arc::new(Semaphore::new(MAX_HANDOFFS));
    let (exited, exits) = mpsc::unbounded_channel();
    for (n, socket) in sockets.into_iter().enumerate() {
        let worker = Worker {
            socket: Arc::new(socket),
            slot: handler.metrics().thread_slot(),
            handler: handler.clone(),
            runtime: tokio::runtime::Handle::current(),
            handoffs: handoffs.clone(),
            stop: stop.clone(),
        };
        spawn_thread(format!("dns-udp-{n}"), exited.clone(), move || {
            crate::threads::answering();
            worker.run()
        })?;
    }
    drop(exited);
    let _stop_on_drop = StopOnDrop(stop.clone());
    supervise(exits, &stop, &shutdown).await
}

/// Tells the threads to stop when dropped, so they never outlive the task serving them: a
/// runtime that shuts down drops that task without a shutdown signal, and the threads
/// hold the handler (and through DNS UPDATE a registry handle, which keeps the
/// registry's writer waiting).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `body` on a thread named `name` and reports how it ended on `exited`: its result,
/// or an error naming the thread if it panicked.
fn spawn_thread(
    name: String,
    exited: mpsc::UnboundedSender<io::Result<()>>,
    body: impl FnOnce() -> io::Result<()> + Send + 'static,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            // The panic hook has printed the panic itself; this turns it into an ending.
            let result = std::panic::catch_unwind(AssertUnwindSafe(body))
                .unwrap_or_else(|_| Err(io::Error::other(format!("{name} panicked"))));
            let _ = exited.send(result);
        })?;
    Ok(())
}

/// Waits until `shutdown`, or until a thread ends, which is an error: then `stop` tells
/// the others, and this returns once every thread has ended.
async fn supervise(
    mut exits: Exits,
    stop: &AtomicBool,
    shutdown: &CancellationToken,
) -> io::Result<()> {
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
    /// Permits for hand-offs, shared by the threads.
    handoffs: Arc<Semaphore>,
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
            let rrl = self.handler.rrl();
            let now = rrl.map_or(0, Rrl::now);
            warm(&zone, (0..count).map(|n| received.query(n)), &mut scratch);
            for n in 0..count {
                let Some(src) = received.source(n).filter(|src| can_reply_to(*src)) else {
                    continue;
                };
                let packet = received.query(n);
                let reply = replies.next_buffer();
                match respond(&zone, packet, src.ip(), settings, &mut scratch, reply) {
                    Handling::Answered {
                        qtype,
                        rcode,
                        truncated,
                    } => {
                        self.slot.count(Some(qtype), rcode);
                        if truncated {
                            self.handler.metrics().truncated.inc();
                        }
                        if rrl.is_none_or(|rrl| rrl.admit(src.ip(), reply, now, &self.slot)) {
                            replies.push(n);
                        }
                    }
                    Handling::HandOff => self.hand_off(packet, src),
                }
            }
            replies.send(&self.socket, &received);
        }
        Ok(())
    }

    /// Runs the full path for `packet` on the runtime, which replies from this socket
    /// (through rate limiting); drops it if [`MAX_HANDOFFS`] are running.
    fn hand_off(&self, packet: &[u8], src: SocketAddr) {
        let Ok(permit) = self.handoffs.clone().try_acquire_owned() else {
            self.handler.metrics().handoff_dropped.inc();
            return;
        };
        let packet = packet.to_vec();
        let handler = self.handler.clone();
        let socket = self.socket.clone();
        self.runtime.spawn(async move {
            let _permit = permit;
            let udp = hickory_server::net::xfer::Protocol::Udp;
            let Some(mut response) = full_path(&handler, packet, src, udp).await else {
                return;
            };
            let slot = handler.metrics().shared_slot();
            if let Some(rrl) = handler.rrl()
                && !rrl.admit(src.ip(), &mut response, rrl.now(), slot)
            {
                return;
            }
            let _ = socket.send_to(&response, src);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that panics ends DNS with an error, and the threads still running are
    /// stopped, instead of DNS going on with one thread fewer.
    #[tokio::test]
    async fn a_panicking_thread_stops_every_thread_with_an_error() {
        let stop = Arc::new(AtomicBool::new(false));
        let (exited, exits) = mpsc::unbounded_channel();
        let running = stop.clone();
        spawn_thread("dns-udp-0".into(), exited.clone(), move || {
            while !running.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
        .unwrap();
        spawn_thread("dns-udp-1".into(), exited, || panic!("a bug")).unwrap();
        let shutdown = CancellationToken::new();
        let ended =
            tokio::time::timeout(Duration::from_secs(10), supervise(exits, &stop, &shutdown))
                .await
                .expect("DNS stops when a thread panics");
        let error = ended.expect_err("a panic is an error");
        assert!(error.to_string().contains("dns-udp-1 panicked"), "{error}");
        assert!(stop.load(Ordering::Relaxed));
    }
}
