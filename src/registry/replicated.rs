//! The writer on etcd: the same single writer, whose API changes go to etcd and whose
//! model is what the watch delivers.
//!
//! API changes are planned in rounds ([`round`](super::round)): validated against the
//! applied state, sent as one transaction, and answered once etcd committed it *and*
//! the watch brought it back and it was published here (read-your-writes). A failed
//! compare (another replica won a race) waits until the watch has applied the revision
//! etcd reported, then validates again, a bounded number of times. Both wait for an
//! event: every transaction, committed or not, writes the serial marker, so its revision
//! always comes back (progress notifications are not trusted, see
//! [`follow`](crate::store::etcd::follow)). Changes of
//! per-replica sources (files, health checks, heartbeats) are applied at once, as in
//! local mode, and do not move the serial: it is etcd's revision of the last applied
//! change. Every write is answered within `request_timeout`: 503 when etcd did not
//! commit it in time (or the watch did not bring it back in time). A shared change sent
//! by an elected leader carries its fence: its transaction also compares the leader's
//! election key, and a deposed leader's change is refused, never tried again.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::admission::Admission;
use super::change::{Applied, Change, ChangeError};
use super::metrics::{RegistryMetrics, cause};
use super::model::SourceId;
use super::recorder::Recorder;
use super::round::{Index, Planned, Txn};
use super::snapshot::Snapshot;
use super::state::{State, Touched};
use super::writer::{Kind, Lag, PublishHook, Request, publish};
use crate::config::EtcdConfig;
use crate::sources::SourceStatus;
use crate::store::etcd::{
    Committed, Connection, EtcdError, EtcdMetrics, Fence, Loaded, Stored, Update, follow,
};

/// The source that is unsynced until the first load: DNS answers SERVFAIL (not empty)
/// for the namespaces until this replica knows what etcd holds.
pub const STORE_SOURCE: &str = "etcd";
/// Changes taken off the queue at once.
const MAX_BATCH: usize = 1024;
/// Times one change is validated again after a failed compare before it gets 503.
const MAX_ATTEMPTS: u32 = 8;
/// A transaction that failed without an answer (a member down, a connection reset) is
/// sent again after this, while its writes' time lasts: another member may answer.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What the writer needs to reach etcd.
pub struct Shared {
    pub config: EtcdConfig,
    pub metrics: Arc<EtcdMetrics>,
    /// The store's sync state as a source (`etcd`): synced by each load and update the
    /// watch delivers, its last error the watch's.
    pub status: SourceStatus,
}

/// The writer's parts (from [`Registry`](super::Registry)).
pub(super) struct Parts {
    pub model: State,
    pub current: Arc<ArcSwap<Snapshot>>,
    pub hooks: Vec<PublishHook>,
    pub recorder: Recorder,
    pub receiver: mpsc::Receiver<Request>,
    pub admission: Option<Admission>,
    pub metrics: Arc<RegistryMetrics>,
}

type Reply = oneshot::Sender<Result<Applied, ChangeError>>;

/// An API change waiting for etcd.
struct Pending {
    change: Change,
    /// Held to the API's ceilings (an API change, not a shared source's).
    admit: bool,
    reply: Reply,
    deadline: Instant,
    attempts: u32,
    /// Its cause and arrival, observed once the watch brought it back and it was published.
    lag: Lag,
    /// The election its sender must still lead when etcd commits it.
    fence: Option<Fence>,
}

type Outcome = Result<Result<Committed, EtcdError>, tokio::task::JoinError>;

/// A round in flight: its changes (each with whether it is whole in the transaction) and
/// the commit.
type Round = (
    Vec<(Pending, bool)>,
    JoinHandle<Result<Committed, EtcdError>>,
);

struct Replica {
    parts: Parts,
    index: Index,
    connection: Connection,
    metrics: Arc<EtcdMetrics>,
    status: SourceStatus,
    request_timeout: Duration,
    loaded: bool,
    /// Every change up to this revision has been applied and published (from the watch's
    /// events and loads only).
    delivered: i64,
    queue: VecDeque<Pending>,
    /// The round in flight: its changes (and whether each is whole in it) and its commit.
    round: Option<Round>,
    /// Committed changes, answered once `delivered` reaches their revision.
    waiting: Vec<(i64, Pending, bool)>,
    /// After a failed compare: the next round waits until `delivered` reaches this.
    gate: Option<i64>,
    /// After a transaction got no answer: the next round waits until then.
    pause: Option<Instant>,
    /// Tells a broken watch that a write waits for it.
    hurry: mpsc::Sender<()>,
}

/// Runs the writer until `shutdown` and every accepted write is answered.
pub(super) async fn run(parts: Parts, shared: Shared, shutdown: CancellationToken) {
    let (updates_sender, mut updates) = mpsc::channel(64);
    let (hurry, hurry_receiver) = mpsc::channel(1);
    let connection = Connection::default();
    let stop_following = CancellationToken::new();
    let follower = tokio::spawn(follow(
        shared.config.clone(),
        connection.clone(),
        shared.metrics.clone(),
        shared.status.clone(),
        updates_sender,
        hurry_receiver,
        stop_following.clone(),
    ));
    let mut replica = Replica {
        parts,
        index: Index::new(),
        connection,
        metrics: shared.metrics,
        status: shared.status,
        request_timeout: shared.config.request_timeout,
        loaded: false,
        delivered: 0,
        queue: VecDeque::new(),
        round: None,
        waiting: Vec::new(),
        gate: None,
        pause: None,
        hurry,
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let (mut stopping, mut drained) = (false, false);
    loop {
        let deadline = replica.next_deadline();
        tokio::select! {
            received = replica.parts.receiver.recv_many(&mut batch, MAX_BATCH), if !drained => {
                if received == 0 {
                    drained = true;
                } else {
                    replica.receive(&mut batch);
                }
            }
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                replica.parts.receiver.close();
            }
            Some(update) = updates.recv() => replica.update(update),
            outcome = in_flight(&mut replica.round), if replica.round.is_some() => {
                replica.finished(outcome);
            }
            _ = sleep_until(deadline), if deadline.is_some() => replica.expire(),
        }
        replica.advance();
        if drained && replica.idle() {
            break;
        }
    }
    stop_following.cancel();
    let _ = follower.await;
}

/// The refusal of a change whose sender no longer leads the election it was sent under.
fn no_longer_leads(fence: &Fence) -> ChangeError {
    ChangeError::Storage(format!("this replica no longer leads {fence}"))
}

async fn in_flight(round: &mut Option<Round>) -> Outcome {
    match round {
        Some((_, commit)) => commit.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Replica {
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.round.is_none() && self.waiting.is_empty()
    }

    fn applied(&self) -> Applied {
        Applied {
            revision: self.parts.model.snapshot.revision,
        }
    }

    /// Queues API changes; applies the others (per-replica sources) at once.
    fn receive(&mut self, batch: &mut Vec<Request>) {
        let deadline = Instant::now() + self.request_timeout;
        let now = SystemTime::now();
        let mut touched = Touched::default();
        let mut changed = false;
        let mut answers = Vec::new();
        for request in batch.drain(..) {
            let lag = (cause(&request.change), request.received);
            if request.kind != Kind::Local {
                self.queue.push_back(Pending {
                    change: request.change,
                    admit: request.kind == Kind::Api,
                    reply: request.reply,
                    deadline,
                    attempts: 0,
                    lag,
                    fence: request.fence,
                });
                continue;
            }
            let result = self
                .parts
                .model
                .apply(request.change, now, &mut touched, None);
            changed |= matches!(result, Ok(true));
            answers.push((request.reply, result, lag));
        }
        if changed {
            self.publish(&mut touched);
        }
        self.answer(answers);
    }

    /// Plans and sends a round when none is in flight and the last conflict is applied.
    fn advance(&mut self) {
        if self.round.is_some() || self.queue.is_empty() {
            return;
        }
        if let Some(gate) = self.gate {
            if self.delivered < gate {
                return;
            }
            self.gate = None;
        }
        if let Some(pause) = self.pause {
            if Instant::now() < pause {
                return;
            }
            self.pause = None;
        }
        let etcd = match (self.loaded, self.connection.get()) {
            (true, Some(etcd)) => etcd.clone(),
            (loaded, _) => {
                let why = match loaded {
                    false => "this replica has not read the registry from etcd yet",
                    true => "etcd is not connected",
                };
                for pending in std::mem::take(&mut self.queue) {
                    let _ = pending
                        .reply
                        .send(Err(ChangeError::Storage(why.to_owned())));
                }
                return;
            }
        };
        let now = SystemTime::now();
        let model = &mut self.parts.model;
        let mut txn = Txn::new(model);
        let (mut staged, mut deferred, mut local) = (Vec::new(), VecDeque::new(), Vec::new());
        while let Some(pending) = self.queue.pop_front() {
            if let Some(fence) = pending.fence.as_ref().filter(|fence| !fence.holds()) {
                let _ = pending.reply.send(Err(no_longer_leads(fence)));
                continue;
            }
            let admission = self.parts.admission.as_ref().filter(|_| pending.admit);
            let fence = pending.fence.as_ref().map(Fence::expect);
            match txn.plan(model, &self.index, admission, &pending.change, fence, now) {
                Planned::Now(Ok(true)) => local.push(pending),
                Planned::Now(result) => {
                    let applied = Applied {
                        revision: model.snapshot.revision,
                    };
                    let _ = pending.reply.send(result.map(|_| applied));
                }
                Planned::InTxn { complete } => staged.push((pending, complete)),
                Planned::Deferred => deferred.push_back(pending),
            }
        }
        let (expects, ops) = txn.restore(model);
        self.queue = deferred;
        self.apply_local(local, now);
        if staged.is_empty() {
            // Nothing fits even alone (it cannot be split): refuse rather than spin.
            for pending in std::mem::take(&mut self.queue) {
                let error = "the change is too large for one etcd transaction".to_owned();
                let _ = pending.reply.send(Err(ChangeError::Invalid(error)));
            }
            return;
        }
        // One attempt gets a part of the time, so that a member that does not answer
        // leaves time to try another.
        let deadline = staged.iter().map(|(p, _)| p.deadline).min();
        let left = deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let timeout = left.min(self.request_timeout / 3);
        let commit = tokio::spawn(async move {
            match tokio::time::timeout(timeout, etcd.commit(&expects, &ops)).await {
                Ok(result) => result,
                Err(_) => Err(EtcdError::Timeout(timeout)),
            }
        });
        self.round = Some((staged, commit));
    }

    /// API changes that touch nothing etcd holds (the health of a file source's
    /// instance): this replica's alone.
    fn apply_local(&mut self, local: Vec<Pending>, now: SystemTime) {
        let mut touched = Touched::default();
        let mut answers = Vec::new();
        for pending in local {
            let admission = self.parts.admission.as_ref().filter(|_| pending.admit);
            let result = self
                .parts
                .model
                .apply(pending.change, now, &mut touched, admission);
            answers.push((pending.reply, result, pending.lag));
        }
        if !answers.is_empty() {
            self.publish(&mut touched);
        }
        self.answer(answers);
    }

    /// Answers changes applied here (after their publish), observing the lag of those
    /// that changed something.
    fn answer(&self, answers: Vec<(Reply, Result<bool, ChangeError>, Lag)>) {
        let published = Instant::now();
        for (reply, result, (cause, received)) in answers {
            if let Ok(true) = result {
                self.parts.metrics.published(cause, received, published);
            }
            let _ = reply.send(result.map(|_| self.applied()));
        }
    }

    /// A round's transaction ended.
    fn finished(&mut self, outcome: Outcome) {
        let Some((staged, _)) = self.round.take() else {
            return;
        };
        let error = match outcome {
            Ok(Ok(Committed::Done(revision))) => {
                if !self.metrics.reachable() {
                    // Committed while the watch is down (quorum just came back): it
                    // must not wait out its backoff while this write waits for it.
                    let _ = self.hurry.try_send(());
                }
                let staged = staged
                    .into_iter()
                    .map(|(p, complete)| (revision, p, complete));
                self.waiting.extend(staged);
                self.settle();
                return;
            }
            Ok(Ok(Committed::Deposed(revision, deposed))) => {
                // Another replica leads: the deposed leader's writes are refused and
                // its duty stops; the round's other changes are tried again.
                let (refused, others): (Vec<_>, Vec<_>) =
                    staged.into_iter().partition(|(pending, _)| {
                        let fence = pending.fence.as_ref();
                        fence.is_some_and(|fence| deposed.iter().any(|key| fence.is(key)))
                    });
                for (pending, _) in refused {
                    if let Some(fence) = &pending.fence {
                        tracing::warn!(%fence, "etcd refused a write: another replica leads");
                        fence.depose();
                        let _ = pending.reply.send(Err(no_longer_leads(fence)));
                    }
                }
                self.conflicted(others, revision);
                return;
            }
            Ok(Ok(Committed::Conflict(revision))) => {
                self.conflicted(staged, revision);
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(error) => format!("etcd: the commit task failed: {error}"),
        };
        // Sent again while there is time: if it did commit, the compares fail and the
        // change, validated again, is found applied.
        let retry_at = Instant::now() + RETRY_PAUSE;
        for (pending, _) in staged.into_iter().rev() {
            if pending.deadline > retry_at {
                self.queue.push_front(pending);
            } else {
                let _ = pending.reply.send(Err(ChangeError::Storage(error.clone())));
            }
        }
        self.pause = Some(retry_at);
    }

    /// A compare failed: the round's changes are validated again once the watch has
    /// applied etcd's `revision`, a bounded number of times.
    fn conflicted(&mut self, staged: Vec<(Pending, bool)>, revision: i64) {
        for (mut pending, _) in staged.into_iter().rev() {
            pending.attempts += 1;
            if pending.attempts > MAX_ATTEMPTS {
                let error = "etcd: concurrent writes kept conflicting; try again".to_owned();
                let _ = pending.reply.send(Err(ChangeError::Storage(error)));
            } else {
                self.queue.push_front(pending);
            }
        }
        self.gate = Some(revision);
        if !self.metrics.reachable() {
            let _ = self.hurry.try_send(());
        }
    }

    /// Answers the committed changes the watch has brought back; plans the rest of a
    /// partly committed change again.
    fn settle(&mut self) {
        let delivered = self.delivered;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(revision, _, _)| *revision <= delivered);
        self.waiting = waiting;
        let published = Instant::now();
        for (revision, pending, complete) in done.into_iter().rev() {
            if complete {
                let (cause, received) = pending.lag;
                self.parts.metrics.published(cause, received, published);
                let revision = u64::try_from(revision).unwrap_or(0);
                let _ = pending.reply.send(Ok(Applied { revision }));
            } else {
                self.queue.push_front(pending);
            }
        }
    }

    /// Answers 503 to writes whose time is up.
    fn expire(&mut self) {
        let now = Instant::now();
        let timeout = humantime::format_duration(self.request_timeout);
        let (expired, queue): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.queue = queue;
        for pending in expired {
            let error = format!("etcd did not take the write within {timeout}");
            let _ = pending.reply.send(Err(ChangeError::Storage(error)));
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, p, _)| p.deadline <= now);
        self.waiting = waiting;
        for (revision, pending, _) in expired {
            let error = format!(
                "etcd committed the write at revision {revision}, but this replica had not applied it within {timeout}"
            );
            let _ = pending.reply.send(Err(ChangeError::Storage(error)));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let queued = self.queue.iter().map(|p| p.deadline);
        let waiting = self.waiting.iter().map(|(_, p, _)| p.deadline);
        queued.chain(waiting).chain(self.pause).min()
    }

    /// Applies what the watch delivered, as one batch.
    fn update(&mut self, update: Update) {
        self.status.synced();
        match update {
            Update::Loaded(loaded) => self.reload(loaded),
            Update::Changes { revision, records } => {
                let mut touched = Touched::default();
                for stored in records {
                    self.apply_stored(stored, &mut touched);
                }
                self.set_revision(revision);
                self.publish(&mut touched);
            }
        }
        self.settle();
    }

    fn apply_stored(&mut self, stored: Stored, touched: &mut Touched) {
        let model = &mut self.parts.model;
        let result = match stored.record {
            Some(record) => {
                let revisions = (stored.create_revision, stored.mod_revision);
                self.index.insert(stored.key.clone(), revisions);
                model.put_record(&stored.key, record, touched).map(|_| ())
            }
            None => {
                self.index.remove(&stored.key);
                model.delete_record(&stored.key, touched);
                Ok(())
            }
        };
        if let Err(skipped) = result {
            self.metrics.count_skipped();
            tracing::debug!(key = ?stored.key, %skipped, "an etcd record was not applied");
        }
    }

    /// Swaps in the whole prefix as read at one revision (start, or a compacted watch):
    /// one batch, so DNS never sees it half applied.
    fn reload(&mut self, loaded: Loaded) {
        let mut touched = Touched::default();
        let mut present = HashSet::with_capacity(loaded.records.len());
        for stored in loaded.records {
            present.insert(stored.key.clone());
            if self.index.get(&stored.key) != Some(&(stored.create_revision, stored.mod_revision)) {
                self.apply_stored(stored, &mut touched);
            }
        }
        let mut gone: Vec<_> = self
            .index
            .keys()
            .filter(|key| !present.contains(*key))
            .cloned()
            .collect();
        // Instances before their service, services before their namespace.
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for key in gone {
            self.index.remove(&key);
            self.parts.model.delete_record(&key, &mut touched);
        }
        let unsynced = &mut self.parts.model.snapshot.unsynced;
        unsynced.remove(&SourceId::new(STORE_SOURCE));
        if !self.loaded {
            tracing::info!(
                revision = loaded.revision,
                records = self.index.len(),
                "loaded the registry from etcd"
            );
        }
        self.loaded = true;
        self.delivered = self.delivered.max(loaded.revision);
        self.set_revision(loaded.serial);
        self.publish(&mut touched);
    }

    /// The serial moves to etcd's revision; it never goes back.
    fn set_revision(&mut self, revision: i64) {
        self.delivered = self.delivered.max(revision);
        let snapshot = &mut self.parts.model.snapshot;
        snapshot.revision = snapshot.revision.max(u64::try_from(revision).unwrap_or(0));
        self.metrics.observe_applied(revision);
    }

    fn publish(&mut self, touched: &mut Touched) {
        let parts = &mut self.parts;
        let views = (&mut parts.hooks[..], &*parts.current, &mut parts.recorder);
        publish(&parts.model, views, touched);
    }
}
