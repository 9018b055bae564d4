//! One HTTP connection: the TLS handshake if any, HTTP/1.1 by hyper, and the two clocks
//! that bound how long a client may hold it.
//!
//! - **Header clock** (`header_timeout`): runs from the connection's start (TLS handshake
//!   and first request included), and again from the first byte of each later request,
//!   until that request's head and body have arrived. A client that half-sends a request
//!   is dropped when it runs out.
//! - **Idle clock** (`idle_timeout`): runs while no request is in flight, from the end of
//!   the last one (or the last byte written, for a slow reader of a large answer). A
//!   keep-alive connection with nothing to do is closed when it runs out; a request in
//!   flight, however long (a long poll), stops it.
//!
//! Both are read by one watchdog per connection, which wakes at most every
//! `min(header_timeout, idle_timeout)`; the I/O and the request path only store
//! timestamps in atomics. Only HTTP/1.1 is served (no h2c, ALPN offers `http/1.1`): the
//! APIs' clients all speak it, and it keeps one request in flight per connection.
//! Must not: log per connection or per request at the default level.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::guard::Guarded;

/// The largest request head (431 beyond), and the read buffer hyper keeps per
/// connection. SigV4-signed requests carry a few KiB of headers; hyper's default buffer
/// (~400 KiB) would let 1,024 connections hold 400 MiB of half-sent heads.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The clocks' settings for one connection, fixed when it is accepted.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// Which clock closed a connection; the value is the metric's `kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    Header,
    Idle,
}

impl Timeout {
    pub fn kind(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Idle => "idle",
        }
    }
}

/// How a connection ended, for the listener's metrics.
pub enum Ended {
    /// The client or the server closed it (or shutdown drained it).
    Closed,
    TimedOut(Timeout),
    TlsFailed,
}

/// Serves one accepted connection from `peer` until it closes, a clock runs out, or
/// `shutdown` (then the request in flight finishes first).
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    api: Guarded,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = Tracked {
        inner: stream,
        activity: activity.clone(),
    };
    let work = async {
        match tls {
            None => http(io, peer, api, activity.clone(), shutdown).await,
            Some(acceptor) => match acceptor.accept(io).await {
                Ok(stream) => http(stream, peer, api, activity.clone(), shutdown).await,
                Err(_) => return Ended::TlsFailed,
            },
        }
        Ended::Closed
    };
    tokio::select! {
        ended = work => ended,
        timeout = watchdog(&activity, timeouts) => Ended::TimedOut(timeout),
    }
}

/// Runs hyper's HTTP/1.1 server on `io` until the connection ends; each request carries
/// `peer` as axum's `ConnectInfo` (the source the API authorizes, limits and audits).
async fn http<I>(
    io: I,
    peer: SocketAddr,
    api: Guarded,
    activity: Arc<Activity>,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(activity.clone(), request.body().is_end_stream());
        let activity = activity.clone();
        let mut request = request.map(|body| Body::new(TrackedBody { body, activity }));
        request.extensions_mut().insert(ConnectInfo(peer));
        let api = api.clone();
        async move {
            let response = api.call(request).await;
            drop(in_flight);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(io), service));
    tokio::select! {
        // Errors are the client's (a reset, a malformed request hyper already answered).
        _ = connection.as_mut() => {}
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Waits until one of the connection's clocks runs out.
async fn watchdog(activity: &Activity, timeouts: Timeouts) -> Timeout {
    let step = timeouts.header.min(timeouts.idle);
    loop {
        let now = activity.now_ms();
        let wake = match activity.expired(now, timeouts) {
            Ok(timeout) => return timeout,
            Err(Some(deadline)) => deadline.min(now.saturating_add(millis(step))),
            Err(None) => now.saturating_add(millis(step)),
        };
        tokio::time::sleep_until(activity.instant(wake).into()).await;
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// No timestamp (a clock that is not running).
const NONE: u64 = u64::MAX;

/// What the clocks read: written by the I/O and request path, read by the watchdog.
/// Times are milliseconds since the connection started.
pub struct Activity {
    start: Instant,
    in_flight: AtomicU32,
    /// When the request being received began (its first byte); NONE between requests.
    head_since: AtomicU64,
    /// The end of the last request, or the last byte moved.
    last: AtomicU64,
}

impl Activity {
    /// A connection accepted at `start`: the header clock runs (the first request, and
    /// the TLS handshake before it, must come within header_timeout).
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            in_flight: AtomicU32::new(0),
            head_since: AtomicU64::new(0),
            last: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.start.elapsed())
    }

    fn instant(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Bytes arrived: between requests, they start the next one's header clock.
    pub fn read(&self, now: u64) {
        self.last.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_since
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Bytes left: an answer is moving.
    pub fn wrote(&self, now: u64) {
        self.last.store(now, Ordering::Relaxed);
    }

    /// A request's head arrived; with `body_done`, all of it did.
    pub fn request_started(&self, body_done: bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if body_done {
            self.head_since.store(NONE, Ordering::Relaxed);
        }
    }

    /// The request's body has all arrived: its header clock stops.
    pub fn body_done(&self) {
        self.head_since.store(NONE, Ordering::Relaxed);
    }

    /// The answer is ready: the idle clock starts from `now` once nothing is in flight.
    pub fn request_finished(&self, now: u64) {
        self.head_since.store(NONE, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// At `now`, the clock that ran out, or the time the first running one will
    /// (none while a request is in flight and fully received).
    pub fn expired(&self, now: u64, timeouts: Timeouts) -> Result<Timeout, Option<u64>> {
        let head_since = self.head_since.load(Ordering::Relaxed);
        let (deadline, timeout) = if head_since != NONE {
            (
                head_since.saturating_add(millis(timeouts.header)),
                Timeout::Header,
            )
        } else if self.in_flight.load(Ordering::Relaxed) == 0 {
            let last = self.last.load(Ordering::Relaxed);
            (last.saturating_add(millis(timeouts.idle)), Timeout::Idle)
        } else {
            return Err(None);
        };
        if now >= deadline {
            Ok(timeout)
        } else {
            Err(Some(deadline))
        }
    }
}

/// Marks a request in flight until dropped (answered, or abandoned with its connection).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>, body_done: bool) -> Self {
        activity.request_started(body_done);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished(self.0.now_ms());
    }
}

/// A request body that stops the header clock once it has all arrived.
struct TrackedBody {
    body: Incoming,
    activity: Arc<Activity>,
}

impl hyper::body::Body for TrackedBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.activity.body_done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A stream that tells the clocks when bytes move.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(self.activity.now_ms());
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> Tracked<S> {
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.wrote(self.activity.now_ms());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header: Duration::from_millis(100),
        idle: Duration::from_millis(1000),
    };

    #[test]
    fn the_first_request_is_on_the_header_clock_from_the_start() {
        let activity = Activity::new(Instant::now());
        assert_eq!(activity.expired(50, TIMEOUTS), Err(Some(100)));
        // Bytes trickling in do not restart it.
        activity.read(60);
        assert_eq!(activity.expired(100, TIMEOUTS), Ok(Timeout::Header));
    }

    #[test]
    fn a_request_in_flight_stops_both_clocks_once_its_body_is_in() {
        let activity = Activity::new(Instant::now());
        activity.read(10);
        activity.request_started(false);
        // The body is still coming: the header clock still runs.
        assert_eq!(activity.expired(100, TIMEOUTS), Ok(Timeout::Header));
        activity.body_done();
        assert_eq!(activity.expired(60_000, TIMEOUTS), Err(None));
        activity.request_finished(60_000);
        assert_eq!(activity.expired(60_500, TIMEOUTS), Err(Some(61_000)));
        assert_eq!(activity.expired(61_000, TIMEOUTS), Ok(Timeout::Idle));
    }

    #[test]
    fn between_requests_the_first_byte_starts_the_header_clock() {
        let activity = Activity::new(Instant::now());
        activity.request_started(true);
        activity.request_finished(20);
        assert_eq!(activity.expired(500, TIMEOUTS), Err(Some(1020)));
        activity.read(700);
        assert_eq!(activity.expired(750, TIMEOUTS), Err(Some(800)));
        activity.read(790);
        assert_eq!(activity.expired(800, TIMEOUTS), Ok(Timeout::Header));
    }

    #[test]
    fn bytes_read_while_a_request_is_in_flight_start_no_clock() {
        let activity = Activity::new(Instant::now());
        activity.request_started(true);
        activity.read(5_000);
        assert_eq!(activity.expired(10_000, TIMEOUTS), Err(None));
    }

    #[test]
    fn a_slow_reader_of_an_answer_is_idle_only_when_nothing_moves() {
        let activity = Activity::new(Instant::now());
        activity.request_started(true);
        activity.request_finished(10);
        activity.wrote(900);
        activity.wrote(1800);
        assert_eq!(activity.expired(2700, TIMEOUTS), Err(Some(2800)));
        assert_eq!(activity.expired(2800, TIMEOUTS), Ok(Timeout::Idle));
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod socket_tests;
