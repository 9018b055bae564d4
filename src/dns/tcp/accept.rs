//! Accepting connections on one listener, without ever spinning.
//!
//! `accept` fails for two kinds of reasons. A connection that broke before it was taken
//! (reset, aborted, a network error the kernel passes on) uses up that connection, so the
//! loop goes on at once. Anything else, above all running out of descriptors (EMFILE,
//! ENFILE) or socket memory, fails again at once while the cause lasts; then the loop
//! waits, from [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`], and the connections wait in
//! the kernel's backlog until descriptors are free again. Every failure is counted; a
//! warning is logged at most once per [`LOG_INTERVAL`], with how many it stands for. A
//! listener that is no socket any more (EBADF, ENOTSOCK, EINVAL) ends the loop with an
//! error, which stops DNS and so the process.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Server;
use super::metrics::AcceptError;

/// The first wait after an accept failed for lack of a resource.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest wait: how late muster may notice that descriptors are free again.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning about failed accepts per interval.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` for `server` until `shutdown`; an error means the
/// listener itself failed.
pub async fn run(
    listener: TcpListener,
    server: &Arc<Server>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut backoff = BACKOFF_MIN;
    let mut warnings = Throttle::default();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let error = match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                server.open(stream, peer);
                continue;
            }
            Err(error) => error,
        };
        let kind = classify(&error);
        server.metrics.accept_failed(kind);
        match kind {
            AcceptError::Connection => continue,
            _ if is_fatal(&error) => return Err(error),
            _ => {}
        }
        if let Some(suppressed) = warnings.ready(Instant::now()) {
            tracing::warn!(
                %error,
                suppressed,
                retry_in = ?backoff,
                "cannot accept DNS TCP connections; waiting (muster_dns_tcp_accept_errors_total counts every failure)"
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// What an accept error means for the loop.
fn classify(error: &io::Error) -> AcceptError {
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => AcceptError::Descriptors,
        Some(libc::ENOBUFS | libc::ENOMEM) => AcceptError::Memory,
        _ if crate::process::accept_failed_for_the_connection(error) => AcceptError::Connection,
        _ => AcceptError::Other,
    }
}

/// Whether the listener is unusable for good.
fn is_fatal(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL)
    )
}

/// Lets a warning through at most once per [`LOG_INTERVAL`], counting the rest.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(warnings suppressed since the last one)` if one may be logged at `now`.
    fn ready(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < LOG_INTERVAL => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_waits_and_a_broken_connection_does_not() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify(&os(libc::EMFILE)), AcceptError::Descriptors);
        assert_eq!(classify(&os(libc::ENFILE)), AcceptError::Descriptors);
        assert_eq!(classify(&os(libc::ENOBUFS)), AcceptError::Memory);
        assert_eq!(classify(&os(libc::ECONNABORTED)), AcceptError::Connection);
        assert_eq!(classify(&os(libc::EIO)), AcceptError::Other);
        assert!(is_fatal(&os(libc::EBADF)) && !is_fatal(&os(libc::EMFILE)));
    }

    #[test]
    fn one_warning_per_interval_with_the_count_of_the_others() {
        let mut throttle = Throttle::default();
        let t = Instant::now();
        assert_eq!(throttle.ready(t), Some(0));
        for n in 1..=5 {
            assert_eq!(throttle.ready(t + Duration::from_secs(n)), None);
        }
        assert_eq!(throttle.ready(t + LOG_INTERVAL), Some(5));
        assert_eq!(throttle.ready(t + LOG_INTERVAL), None);
    }
}
