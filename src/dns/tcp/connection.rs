//! One TCP connection, served by one task: it reads queries, answers ordinary ones at
//! once from the fast path, hands the rest to full-path tasks of its own (several at a
//! time, RFC 7766 pipelining: answers leave in the order they are ready), and writes the
//! responses as the client reads them.
//!
//! Everything it holds is bounded: one message being read, at most
//! [`OUTPUT_HIGH`](super::frames::OUTPUT_HIGH) bytes of responses queued plus the few
//! messages a full-path task may have encoded ahead ([`RESPONSES_AHEAD`]), and
//! `max_in_flight` full-path tasks. A zone transfer's task waits for room before encoding
//! its next message, so a secondary that reads slowly holds a few messages, not the zone.
//! The kernel's part is bounded too: its send buffer grows to megabytes (`tcp_wmem`) for a
//! client that sends queries and never reads the answers, so the socket takes more only
//! while less than [`KERNEL_UNSENT`] bytes of it are unsent (`TCP_NOTSENT_LOWAT`). Such a
//! client then stops being answered after about `OUTPUT_HIGH + KERNEL_UNSENT` bytes plus
//! its own receive window, and muster stops reading from it until the write timeout
//! closes it.
//!
//! The connection closes when the client closes it and everything is answered, when
//! nothing happens for `idle_timeout` (time spent answering does not count), when the
//! client leaves responses unread for `idle_timeout`, when a message started is not
//! finished within `message_timeout`, or at shutdown.
//!
//! A client reading a transfer slowly is active even while muster cannot write: the
//! kernel wakes a writer only once a good part of the socket's send buffer (which grows to
//! megabytes) is free, so muster also asks the kernel how many bytes the client has not
//! yet acknowledged (`TIOCOUTQ`); when that has shrunk since last asked, the client is
//! reading.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Record;
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::frames::{Input, OUTPUT_HIGH, Output};
use super::metrics::{TcpMetrics, Timeout};
use crate::dns::fast::{self, Handling, Scratch, respond};
use crate::dns::handler::{Handler, Responder};

/// Messages a full-path task may have encoded before the connection takes them.
const RESPONSES_AHEAD: usize = 2;
/// Bytes of responses the kernel may hold unsent per connection. Bytes in flight (sent,
/// not yet acknowledged) are not counted, so a transfer to a reader far away still gets
/// the window the kernel sizes for it; measured with a client that never reads, the
/// kernel otherwise held ~3 MB per connection (bench/README.md, "TCP").
const KERNEL_UNSENT: libc::c_int = 64 * 1024;

/// What bounds one connection (from `[dns.tcp]`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub idle_timeout: Duration,
    pub message_timeout: Duration,
    pub max_in_flight: usize,
}

/// Serves the connection `stream` from `peer` until it closes, times out or `shutdown`.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    limits: Limits,
    metrics: &TcpMetrics,
    shutdown: CancellationToken,
) {
    // Responses are whole messages, written as soon as they are ready.
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    limit_unsent(fd);
    let (mut reader, mut writer) = stream.split();
    let (outbox, mut responses) = mpsc::channel(RESPONSES_AHEAD);
    let mut queries = Queries::new(handler, peer, outbox);
    let mut input = Input::default();
    let mut output = Output::default();
    let mut reading = true;
    let mut last_activity = Instant::now();
    let mut message_started = None;
    // Bytes the client had not acknowledged when a write last left responses waiting.
    let mut unread = None;
    let sleep = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(sleep);

    loop {
        queries.take(&mut input, &mut output, limits.max_in_flight);
        // A message the client is still sending (not one that waits for a slot).
        message_started = match reading && input.is_partial() {
            true => message_started.or_else(|| Some(Instant::now())),
            false => None,
        };
        let answering = queries.in_flight() > 0 || !responses.is_empty();
        if !reading && !answering && output.is_empty() && !input.has_message() {
            return; // The client closed its side and has every answer.
        }
        let deadline = deadline(
            &limits,
            last_activity,
            message_started,
            !output.is_empty(),
            answering || input.has_message(),
        );
        if let Some((at, _)) = deadline {
            sleep.as_mut().reset(at);
        }
        let can_read = reading && !input.has_message();

        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            written = writer.write(output.unsent()), if !output.is_empty() => match written {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    output.advance(n);
                    last_activity = Instant::now();
                    unread = if output.is_empty() { None } else { unacknowledged(fd) };
                }
            },
            Some(message) = responses.recv(), if output.len() < OUTPUT_HIGH => {
                output.push(&message);
            }
            () = queries.finished(), if queries.in_flight() > 0 => {}
            read = reader.read_buf(input.buffer_for_read()), if can_read => match read {
                Ok(0) => reading = false,
                Ok(_) => last_activity = Instant::now(),
                Err(_) => return,
            },
            () = &mut sleep, if deadline.is_some() => {
                let Some((_, timeout)) = deadline else { continue };
                // Still reading what the kernel holds? Then not idle.
                let draining = unacknowledged(fd)
                    .filter(|&bytes| bytes > 0 && unread.is_none_or(|was| bytes < was));
                if let Some(bytes) = draining.filter(|_| timeout != Timeout::Message) {
                    unread = Some(bytes);
                    last_activity = Instant::now();
                    continue;
                }
                metrics.timed_out(timeout);
                return;
            }
        }
    }
}

/// A connection's queries on their way to responses: ordinary ones answered at once by
/// the fast path, the rest by the full path in tasks of the connection (ended with it).
struct Queries {
    handler: Arc<Handler>,
    peer: SocketAddr,
    scratch: Scratch,
    answer: Vec<u8>,
    outbox: mpsc::Sender<Vec<u8>>,
    full_path: JoinSet<()>,
}

impl Queries {
    fn new(handler: Arc<Handler>, peer: SocketAddr, outbox: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            handler,
            peer,
            scratch: Scratch::new(SmallRng::from_rng(&mut rand::rng())),
            answer: Vec::new(),
            outbox,
            full_path: JoinSet::new(),
        }
    }

    /// Takes the complete queries in `input` while fewer than `max_in_flight` are in the
    /// full path and `output` has room: fast-path answers go to `output`, full-path ones
    /// to the outbox when ready.
    fn take(&mut self, input: &mut Input, output: &mut Output, max_in_flight: usize) {
        while self.full_path.len() < max_in_flight && output.len() < OUTPUT_HIGH {
            let Some(message) = input.next_message() else {
                return;
            };
            let zone = self.handler.zone().load();
            let settings = fast::Settings {
                over_tcp: true,
                ..self.handler.fast_settings()
            };
            match respond(
                &zone,
                message,
                self.peer.ip(),
                settings,
                &mut self.scratch,
                &mut self.answer,
            ) {
                Handling::Answered { qtype, rcode, .. } => {
                    self.handler.metrics().count(Some(qtype), rcode);
                    output.push(&self.answer);
                }
                Handling::HandOff => {
                    let (handler, packet) = (self.handler.clone(), message.to_vec());
                    let (peer, outbox) = (self.peer, Outbox(self.outbox.clone()));
                    self.full_path.spawn(async move {
                        fast::handle(&handler, packet, peer, Protocol::Tcp, outbox).await;
                    });
                }
            }
        }
    }

    /// Queries in the full path.
    fn in_flight(&self) -> usize {
        self.full_path.len()
    }

    /// Waits until a full-path query is done (never, if none is in flight).
    async fn finished(&mut self) {
        if self.full_path.join_next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

/// When the connection must be closed, and why, if nothing happens first: a message
/// started must end within `message_timeout`; queued responses must be read within
/// `idle_timeout`; with nothing being answered, the client must send something within
/// `idle_timeout`. No deadline while the full path works and nothing waits to be written.
fn deadline(
    limits: &Limits,
    last_activity: Instant,
    message_started: Option<Instant>,
    writing: bool,
    answering: bool,
) -> Option<(Instant, Timeout)> {
    let message = message_started.map(|at| (at + limits.message_timeout, Timeout::Message));
    let quiet = last_activity + limits.idle_timeout;
    let idle = match (writing, answering) {
        (true, _) => Some((quiet, Timeout::Write)),
        (false, false) => Some((quiet, Timeout::Idle)),
        (false, true) => None,
    };
    [message, idle]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
}

/// Caps what the kernel holds unsent for the socket `fd` at [`KERNEL_UNSENT`]. If the
/// kernel refuses (it has had the option since Linux 3.12), the send buffer's own limit
/// still bounds it.
fn limit_unsent(fd: RawFd) {
    let value = KERNEL_UNSENT;
    let size = libc::socklen_t::try_from(std::mem::size_of_val(&value)).unwrap_or(4);
    // SAFETY: TCP_NOTSENT_LOWAT reads one int from the pointer given, which points at a
    // live local; `fd` is the connection's socket, open for as long as the caller runs.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            std::ptr::from_ref(&value).cast(),
            size,
        );
    }
}

/// Bytes written to the socket `fd` that its peer has not acknowledged yet (`None` if
/// the kernel does not say).
fn unacknowledged(fd: RawFd) -> Option<usize> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: TIOCOUTQ on a socket writes one int to the pointer given, which points at a
    // live local; `fd` is the connection's socket, open for as long as the caller runs.
    let result = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut bytes) };
    (result == 0).then(|| usize::try_from(bytes).ok()).flatten()
}

/// The full path's responses for one connection: each encoded as hickory encodes for
/// TCP, then queued for the connection's writer, waiting while the queue is full.
#[derive(Clone)]
struct Outbox(mpsc::Sender<Vec<u8>>);

#[async_trait::async_trait]
impl ResponseHandler for Outbox {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, bytes) = fast::encode(response, Protocol::Tcp)?;
        self.send_encoded(bytes).await?;
        Ok(info)
    }
}

#[async_trait::async_trait]
impl Responder for Outbox {
    async fn send_encoded(&mut self, message: Vec<u8>) -> Result<(), NetError> {
        self.0
            .send(message)
            .await
            .map_err(|_| NetError::from("the TCP connection closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        idle_timeout: Duration::from_secs(10),
        message_timeout: Duration::from_secs(2),
        max_in_flight: 4,
    };

    #[test]
    fn each_state_has_its_deadline() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let idle = deadline(&LIMITS, t, None, false, false);
        assert_eq!(idle, Some((t + s(10), Timeout::Idle)));
        assert_eq!(deadline(&LIMITS, t, None, false, true), None, "answering");
        let writing = deadline(&LIMITS, t, None, true, true);
        assert_eq!(writing, Some((t + s(10), Timeout::Write)));
        let started = deadline(&LIMITS, t, Some(t + s(1)), false, false);
        assert_eq!(started, Some((t + s(3), Timeout::Message)));
        let late = deadline(&LIMITS, t, Some(t + s(9)), false, false);
        assert_eq!(late, Some((t + s(10), Timeout::Idle)), "the earlier one");
    }
}
