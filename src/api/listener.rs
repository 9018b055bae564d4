//! muster's accept loop for an HTTP listener (the API's and the ops one).
//!
//! Owns: admitting connections under the caps ([`admission`](super::admission)),
//! backing off when accept fails, handing each connection to
//! [`connection::serve`](super::connection::serve), and draining them on shutdown.
//! A connection beyond a cap is closed at once (no answer: answering would cost what the
//! cap saves) and counted. An accept that fails for the connection's own sake
//! (ECONNABORTED, ECONNRESET...) is counted and the loop goes on: the error consumed its
//! connection, so it cannot spin, and pausing would let a client that resets connections
//! slow everyone's accepts. Any other failure (EMFILE, ENFILE, ENOBUFS, ENOMEM, or one
//! not known here) is a shortage that the next attempt would meet too: the loop pauses,
//! 50 ms doubling to 1 s (back to 50 ms after an accept succeeds), so a process out of
//! descriptors sleeps instead of spinning. Both are counted, and logged at most once per
//! [`LOG_INTERVAL`](super::log_limit::LOG_INTERVAL) with the count. Nothing is logged
//! per connection.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::{Admission, Caps, Permit};
use super::connection::{self, Ended, Timeouts};
use super::guard::Guarded;
use super::log_limit::LogLimit;
use super::metrics::HttpMetrics;
use super::tls::Tls;
use crate::process;
use crate::reload::ConfigUpdates;

/// The first pause after an accept failed for lack of a resource.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest pause between accepts while resources are short.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One listener's fixed parts.
pub struct Listener {
    /// The `listener` label of its metrics (`api`, `ops`).
    pub name: &'static str,
    pub socket: TcpListener,
    /// What its connections serve.
    pub api: Guarded,
    pub tls: Option<Tls>,
}

/// Accepts and serves connections until `shutdown`, then lets the requests in flight
/// finish (the caller bounds how long it waits). Reads the caps and timeouts in force
/// from `updates` at each accept.
pub async fn serve(
    listener: Listener,
    updates: ConfigUpdates,
    metrics: Arc<HttpMetrics>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let Listener {
        name,
        socket,
        api,
        tls,
    } = listener;
    let admission = Arc::new(Admission::default());
    let connections = TaskTracker::new();
    let open = metrics.listener(name);
    let refusals = LogLimit::default();
    let failures = LogLimit::default();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = FIRST_BACKOFF;
                accepted
            }
            Err(error) => {
                metrics.accept_error(name);
                let short = !process::accept_failed_for_the_connection(&error);
                if let Some(count) = failures.hit(Instant::now()) {
                    tracing::warn!(listener = name, %error, count, "HTTP accept failed");
                }
                if short {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                continue;
            }
        };
        let (caps, timeouts) = limits(&updates);
        let permit = match admission.admit(peer.ip(), caps) {
            Ok(permit) => permit,
            Err(refused) => {
                drop(stream);
                metrics.refused(name, refused.reason());
                if let Some(count) = refusals.hit(Instant::now()) {
                    let (open, sources) = admission.open();
                    tracing::warn!(
                        listener = name,
                        reason = refused.reason(),
                        count,
                        open,
                        sources,
                        "HTTP connections refused over a cap"
                    );
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = tls.as_ref().map(Tls::acceptor);
        let api = api.clone();
        let metrics = metrics.clone();
        let stop = shutdown.clone();
        let place = Place::take(open.clone(), permit);
        connections.spawn(async move {
            match connection::serve(stream, peer, acceptor, api, timeouts, stop).await {
                Ended::Closed => {}
                Ended::TimedOut(timeout) => metrics.timeout(name, timeout.kind()),
                Ended::TlsFailed => metrics.tls_handshake_failed(),
            }
            drop(place);
        });
    }
    drop(socket);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A connection's place: its permit and its count in the gauge, both given back when
/// the connection's task ends, however it ends.
struct Place {
    open: Gauge,
    _permit: Permit,
}

impl Place {
    fn take(open: Gauge, permit: Permit) -> Self {
        open.inc();
        Self {
            open,
            _permit: permit,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.open.dec();
    }
}

fn limits(updates: &ConfigUpdates) -> (Caps, Timeouts) {
    let config = updates.borrow();
    let http = &config.http;
    (
        Caps {
            total: http.max_connections,
            per_source: http.max_connections_per_source,
        },
        Timeouts {
            header: http.header_timeout,
            idle: http.idle_timeout,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_exhaustion_backs_off_a_reset_does_not() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EINVAL,
        ] {
            assert!(!process::accept_failed_for_the_connection(
                &io::Error::from_raw_os_error(errno)
            ));
        }
        for errno in [
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::EPERM,
            libc::EPROTO,
        ] {
            assert!(process::accept_failed_for_the_connection(
                &io::Error::from_raw_os_error(errno)
            ));
        }
    }
}
