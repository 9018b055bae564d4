//! The load-then-watch loop: read the prefix at one revision, then watch from the next
//! one, and hand every change to the registry's writer in order.
//!
//! A watch whose start revision was compacted is cancelled by etcd: the loop reads the
//! whole prefix again (at the current revision) and the writer swaps it in as one batch.
//! A broken connection (a member down, no leader, a partition) resumes the watch from
//! the revision after the last one delivered, on whichever member answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};
use tokio::sync::{OnceCell, mpsc};
use tokio_util::sync::CancellationToken;

use super::client::{Etcd, EtcdError, Loaded, Stored};
use super::keys;
use super::metrics::EtcdMetrics;
use crate::config::EtcdConfig;
use crate::sources::SourceStatus;

/// What the writer receives, in etcd's order.
#[derive(Debug)]
pub enum Update {
    /// Everything under the prefix at one revision: replaces what the writer holds.
    Loaded(Loaded),
    /// The changes of one watch response (one or more revisions, each whole).
    Changes { revision: i64, records: Vec<Stored> },
}

/// The connection the writer and the watch share, made by the watch (with retries).
pub type Connection = Arc<OnceCell<Etcd>>;

/// The shortest and longest waits between attempts to reach etcd.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

enum Ended {
    Shutdown,
    Compacted,
    /// The watch broke; resume from this revision. True when it had been created (etcd
    /// answered), false when it could not be.
    Broken(String, i64, bool),
}

/// Follows the prefix until `shutdown`: connects, loads, watches, and reloads or resumes
/// as needed. A request on `hurry` means a write is waiting for the watch to bring back
/// its transaction's revision: a broken watch stops waiting out its backoff and tries
/// again at once, then every [`MIN_BACKOFF`] for as long as that write may wait
/// (`request_timeout`): the first try often meets a member still starting up after
/// quorum came back. Why etcd is unreachable goes to `status` too, the store's last
/// error as a source.
///
/// It never asks etcd for a progress notification: etcd before 3.4.24 and 3.5.8 may
/// answer one with a revision whose events the watch has not sent yet
/// (etcd-io/etcd#15220), and a write answered on that word would not be served yet.
/// Every transaction writes the serial marker instead (see `Etcd::commit`).
pub async fn follow(
    config: EtcdConfig,
    connection: Connection,
    metrics: Arc<EtcdMetrics>,
    status: SourceStatus,
    updates: mpsc::Sender<Update>,
    mut hurry: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    let mut next: Option<i64> = None;
    let mut backoff = Duration::ZERO;
    let mut hurry_until: Option<Instant> = None;
    loop {
        let attempt = async {
            let etcd = connection
                .get_or_try_init(|| Etcd::connect(&config, metrics.clone()))
                .await?
                .clone();
            let from = match next {
                Some(from) => from,
                None => {
                    let loaded = etcd.load().await?;
                    metrics.reloads.inc();
                    metrics.skipped.inc_by(loaded.undecodable as u64);
                    let from = loaded.revision + 1;
                    if updates.send(Update::Loaded(loaded)).await.is_err() {
                        return Ok(Ended::Shutdown);
                    }
                    next = Some(from);
                    from
                }
            };
            let watched = watch(
                &etcd,
                from,
                &updates,
                &mut hurry,
                &mut hurry_until,
                &shutdown,
            );
            Ok::<_, EtcdError>(watched.await)
        };
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return,
            ended = attempt => ended,
        };
        let problem = match ended {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Compacted) => {
                tracing::warn!("the watched revision was compacted; reloading the prefix");
                next = None;
                continue;
            }
            Ok(Ended::Broken(problem, from, delivered)) => {
                next = Some(from);
                if delivered {
                    // It ran: a connection reset is retried at once (on another member
                    // if need be) before etcd is called unreachable.
                    backoff = Duration::ZERO;
                    tracing::debug!(%problem, "the etcd watch broke; resuming it");
                    continue;
                }
                problem
            }
            Err(error) => error.to_string(),
        };
        if metrics.reachable() {
            tracing::warn!(%problem, "etcd is unreachable; DNS serves the last state, writes get 503");
        }
        status.failed(&problem);
        metrics.set_reachable(Some(problem));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
            Some(()) = hurry.recv() => {
                hurry_until = Some(Instant::now() + config.request_timeout);
            }
        }
        backoff = match hurry_until {
            Some(until) if Instant::now() < until => MIN_BACKOFF,
            _ => (backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF),
        };
    }
}

/// Watches from `from` until the watch ends. A request on `hurry` sets `hurry_until`: a
/// write waits on this watch, so if it breaks now it is retried without backing off.
async fn watch(
    etcd: &Etcd,
    mut from: i64,
    updates: &mpsc::Sender<Update>,
    hurry: &mut mpsc::Receiver<()>,
    hurry_until: &mut Option<Instant>,
    shutdown: &CancellationToken,
) -> Ended {
    let root = etcd.layout.root();
    let options = WatchOptions::new()
        .with_range(keys::prefix_end(&root))
        .with_start_revision(from);
    let mut client = etcd
        .client
        .watch_client()
        .max_decoding_message_size(super::client::MAX_MESSAGE);
    let mut stream = match etcd.timed("watch", client.watch(root, Some(options))).await {
        Ok(stream) => stream,
        Err(error) => return Ended::Broken(error.to_string(), from, false),
    };
    let mut created = false;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            Some(()) = hurry.recv() => {
                *hurry_until = Some(Instant::now() + etcd.request_timeout);
                continue;
            }
            message = stream.message() => message,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return Ended::Broken("the watch stream ended".into(), from, created),
            Err(error) => return Ended::Broken(error.to_string(), from, created),
        };
        if response.canceled() {
            if response.compact_revision() > 0 {
                return Ended::Compacted;
            }
            let reason = format!("watch cancelled: {}", response.cancel_reason());
            return Ended::Broken(reason, from, false);
        }
        let header = response.header().map_or(0, |h| h.revision());
        etcd.metrics.observe_revision(header);
        if response.created() {
            created = true;
            etcd.metrics.set_reachable(None);
            continue;
        }
        if response.events().is_empty() {
            // Only a progress notification has no events, and this watch asks for none.
            continue;
        }
        let mut records = Vec::with_capacity(response.events().len());
        let mut revision = from;
        let marker = etcd.layout.serial_marker();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            revision = revision.max(kv.mod_revision());
            if kv.key() == marker.as_slice() {
                continue;
            }
            let value = (event.event_type() == EventType::Put).then(|| kv.value());
            match etcd.decode(kv.key(), value) {
                Ok((key, record)) => records.push(Stored {
                    key,
                    record,
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                }),
                Err(error) => {
                    etcd.metrics.skipped.inc();
                    tracing::debug!(%error, "skipped an etcd key");
                }
            }
        }
        from = revision + 1;
        let update = Update::Changes { revision, records };
        if updates.send(update).await.is_err() {
            return Ended::Shutdown;
        }
    }
}
