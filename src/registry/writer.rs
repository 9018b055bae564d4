//! The single writer task and the handle everyone else uses to reach it.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::admission::Admission;
use super::change::{Applied, Change, ChangeError};
use super::changes::{ChangeFeed, RecentChanges};
use super::durable::{durable_state, replay};
use super::metrics::{RegistryMetrics, cause};
use super::recorder::Recorder;
use super::snapshot::Snapshot;
use super::state::{State, Touched};
use crate::store::{Recovered, Wal};

/// The log of the registry's changes.
pub type ChangeLog = Wal<Change>;

/// Called by the writer with each new snapshot, before registry readers see it and
/// before the writers of that batch are answered, so a derived view (the DNS zone) is
/// current by the time a change is acknowledged or `/readyz` reports it:
/// read-your-writes without the view taking a lock.
pub type PublishHook = Box<dyn FnMut(&Arc<Snapshot>, &Touched) + Send>;

/// Changes queued at most; senders wait beyond this (back-pressure, not loss).
const QUEUE_DEPTH: usize = 4096;
/// Changes applied per published snapshot at most, so one flood cannot starve readers.
const MAX_BATCH: usize = 1024;

/// Where a change is kept, which decides how the writer applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// This replica's alone (per-replica sources, health): applied at once.
    Local,
    /// An API change: logged before it is acknowledged (in etcd with `[etcd]`), and held
    /// to the API's ceilings.
    Api,
    /// A source's change that every replica serves: with `[etcd]`, committed to etcd
    /// like an API change but not held to the API's ceilings (the elected ECS source);
    /// with the local log, applied at once like [`Kind::Local`] (sources are not logged).
    Shared,
}

pub(super) struct Request {
    pub change: Change,
    pub kind: Kind,
    pub reply: oneshot::Sender<Result<Applied, ChangeError>>,
    /// When it was sent to the writer: where its change → DNS lag starts.
    pub received: Instant,
    /// With `[etcd]`: the election its sender leads, which etcd must still see it lead.
    #[cfg(feature = "etcd")]
    pub fence: Option<crate::store::etcd::Fence>,
}

/// A change that changed something, waiting for the publish that serves it: its cause
/// and arrival, for `muster_registry_publish_lag_seconds`.
pub(super) type Lag = (&'static str, Instant);

/// The registry before its writer starts: where frontends attach their publish hooks.
pub struct Registry {
    pub(super) model: State,
    pub(super) current: Arc<ArcSwap<Snapshot>>,
    pub(super) hooks: Vec<PublishHook>,
    /// Records each publish's changes for the handles' [`RecentChanges`].
    pub(super) recorder: Recorder,
    pub(super) receiver: mpsc::Receiver<Request>,
    handle: RegistryHandle,
    wal: Option<ChangeLog>,
    /// The ceilings API changes are checked against (with the log: API changes are the
    /// logged ones).
    pub(super) admission: Option<Admission>,
    /// With `[etcd]`: the shared store instead of the log.
    #[cfg(feature = "etcd")]
    pub(super) shared: Option<super::replicated::Shared>,
    /// Where the change → DNS lag is observed.
    pub(super) metrics: Arc<RegistryMetrics>,
}

/// A cheap, cloneable way to submit changes and read the latest snapshot.
#[derive(Clone)]
pub struct RegistryHandle {
    sender: mpsc::Sender<Request>,
    current: Arc<ArcSwap<Snapshot>>,
    /// Why API writes are refused, while the log cannot be written.
    read_only: Arc<ArcSwapOption<String>>,
    /// How the store is doing, for `/healthz?verbose` (set with etcd).
    status: Arc<OnceLock<StatusFn>>,
    /// The recent changes, for watchers.
    changes: Arc<ChangeFeed>,
    /// Instances one all-or-nothing batch may name on this store, when the store bounds
    /// it (one etcd transaction).
    max_batch: Option<usize>,
    /// With `[etcd]`: the election whose leader sends through this handle.
    #[cfg(feature = "etcd")]
    fence: Option<crate::store::etcd::Fence>,
}

/// Says how the store is doing, in one line.
pub type StatusFn = Box<dyn Fn() -> String + Send + Sync>;

impl Registry {
    /// A registry that keeps nothing on disk.
    pub fn new(initial: Snapshot) -> Self {
        let current = Arc::new(ArcSwap::from_pointee(initial.clone()));
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let changes = Arc::new(ChangeFeed::new(initial.revision));
        Self {
            model: State::new(initial),
            recorder: Recorder::new(changes.clone(), current.load_full()),
            current: current.clone(),
            hooks: Vec::new(),
            receiver,
            handle: RegistryHandle {
                sender,
                current,
                read_only: Arc::default(),
                status: Arc::default(),
                changes,
                max_batch: None,
                #[cfg(feature = "etcd")]
                fence: None,
            },
            wal: None,
            admission: None,
            #[cfg(feature = "etcd")]
            shared: None,
            metrics: Arc::default(),
        }
    }

    /// Observes the change → DNS lag into `metrics` (the ones `/metrics` serves).
    pub fn set_metrics(&mut self, metrics: Arc<RegistryMetrics>) {
        self.metrics = metrics;
    }

    /// A registry whose API-owned state is etcd's, shared with every replica on the same
    /// prefix: it serves `initial` (the configuration's namespaces) until the first load.
    #[cfg(feature = "etcd")]
    pub fn replicated(
        initial: Snapshot,
        shared: super::replicated::Shared,
        admission: Admission,
    ) -> Self {
        let mut registry = Self::new(initial);
        let metrics = shared.metrics.clone();
        let _ = registry
            .handle
            .status
            .set(Box::new(move || metrics.status()));
        registry.handle.max_batch = Some(super::round::MAX_BATCH_INSTANCES);
        registry.shared = Some(shared);
        registry.admission = Some(admission);
        registry
    }

    /// The etcd metrics of a replicated registry (shared with the membership).
    #[cfg(feature = "etcd")]
    pub fn etcd_metrics(&self) -> Option<Arc<crate::store::etcd::EtcdMetrics>> {
        self.shared.as_ref().map(|shared| shared.metrics.clone())
    }

    /// A registry that replays `recovered` onto `initial`, logs durable changes to
    /// `wal` and holds them to `admission`. Changes that no longer apply (a namespace removed from the config file) are
    /// skipped, as they would have been rejected live.
    pub fn durable(
        initial: Snapshot,
        wal: ChangeLog,
        recovered: Recovered<Change>,
        admission: Admission,
    ) -> Self {
        let mut registry = Self::new(replay(initial, recovered));
        let reason = wal.read_only().map(ToOwned::to_owned);
        registry.handle.read_only.store(reason.map(Arc::new));
        registry.wal = Some(wal);
        registry.admission = Some(admission);
        registry
    }

    pub fn handle(&self) -> RegistryHandle {
        self.handle.clone()
    }

    /// Runs `hook` with the current snapshot now and after every publish.
    pub fn on_publish(&mut self, mut hook: PublishHook) {
        hook(&self.current.load_full(), &Touched::default());
        self.hooks.push(hook);
    }

    /// Applies changes until `shutdown` fires and the queue is drained. It blocks on
    /// fsync, so run it on a thread of its own ([`Registry::spawn`]). A log that cannot
    /// be written does not stop it: API writes are refused until the log recovers.
    pub async fn run(mut self, shutdown: CancellationToken) {
        #[cfg(feature = "etcd")]
        if let Some(shared) = self.shared.take() {
            let Registry {
                model,
                current,
                hooks,
                recorder,
                receiver,
                admission,
                metrics,
                ..
            } = self;
            let parts = super::replicated::Parts {
                model,
                current,
                hooks,
                recorder,
                receiver,
                admission,
                metrics,
            };
            return super::replicated::run(parts, shared, shutdown).await;
        }
        let read_only = self.handle.read_only.clone();
        drop(self.handle);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let retry = self.wal.as_ref().and_then(|wal| wal.retry_at());
            tokio::select! {
                received = self.receiver.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                _ = shutdown.cancelled() => {
                    self.receiver.close();
                    if self.receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
                        return;
                    }
                }
                // A read-only log is tried again even when no write comes.
                _ = sleep_until(retry), if retry.is_some() => {}
            }
            let mut writer = Writer {
                model: &mut self.model,
                current: &self.current,
                hooks: &mut self.hooks,
                recorder: &mut self.recorder,
                wal: self.wal.as_mut(),
                admission: self.admission.as_ref(),
                read_only: &read_only,
                metrics: &self.metrics,
            };
            writer.apply_batch(&mut batch);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Registry {
    /// Runs the writer on a dedicated thread, so its fsyncs never stall DNS or HTTP.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<io::Result<()>> {
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(self.run(shutdown));
            Ok(())
        })
    }
}

/// One batch's view of the registry's parts.
struct Writer<'a> {
    model: &'a mut State,
    current: &'a ArcSwap<Snapshot>,
    hooks: &'a mut [PublishHook],
    recorder: &'a mut Recorder,
    wal: Option<&'a mut ChangeLog>,
    admission: Option<&'a Admission>,
    read_only: &'a ArcSwapOption<String>,
    metrics: &'a RegistryMetrics,
}

/// A writer's answer, and the lag to observe once published if its change changed
/// something.
type Reply = (
    oneshot::Sender<Result<Applied, ChangeError>>,
    Result<Applied, ChangeError>,
    Option<Lag>,
);

impl Writer<'_> {
    /// Applies, logs (one fsync), publishes, runs the hooks, then answers the writers.
    ///
    /// Changes that need no log (sources, health) are applied first and stand whatever
    /// the disk does; then the API's changes, which are logged. When the log cannot be
    /// written, the API's changes are undone and refused (503), and while the log stays
    /// read-only they are refused without being applied. The senders of one batch are
    /// concurrent (each waits for its answer before sending more), so applying the
    /// unlogged ones first is an order they could have arrived in.
    fn apply_batch(&mut self, batch: &mut Vec<Request>) {
        let now = SystemTime::now();
        let mut touched = Touched::default();
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let mut changed = false;
        let logging = self.wal.is_some();
        if let Some(wal) = self.wal.as_deref_mut() {
            wal.retry(now, self.model.snapshot.revision);
        }
        let (logged, unlogged): (Vec<Request>, Vec<Request>) = batch
            .drain(..)
            .partition(|r| r.kind == Kind::Api && logging);
        for request in unlogged {
            let lag = (cause(&request.change), request.received);
            let result = self.model.apply(request.change, now, &mut touched, None);
            let lag = matches!(result, Ok(true)).then_some(lag);
            changed |= lag.is_some();
            replies.push((request.reply, self.applied(result), lag));
        }
        let unlogged_changed = changed;
        let before = (!logged.is_empty()).then(|| (self.model.snapshot.clone(), touched.clone()));
        let mut staged = Vec::new();
        for request in logged {
            let lag = (cause(&request.change), request.received);
            let result = self.apply_logged(request.change, now, &mut touched);
            let lag = matches!(result, Ok(true)).then_some(lag);
            if lag.is_some() {
                staged.push(replies.len());
            }
            replies.push((request.reply, self.applied(result), lag));
        }
        changed |= !staged.is_empty();
        if let Some(wal) = self.wal.as_deref_mut() {
            wal.stage_revision(now, self.model.snapshot.revision);
            if let Err(error) = wal.commit()
                && let Some((snapshot, kept)) = before
                && !staged.is_empty()
            {
                // Undo and refuse what this batch logged; the rest stands.
                *self.model = State::new(snapshot);
                touched = kept;
                let refused = ChangeError::Storage(error.to_string());
                for index in staged {
                    replies[index].1 = Err(refused.clone());
                    replies[index].2 = None;
                }
                changed = unlogged_changed;
            }
        }
        if changed {
            self.publish(&mut touched);
            let published = Instant::now();
            for (cause, received) in replies.iter().filter_map(|r| r.2) {
                self.metrics.published(cause, received, published);
            }
        }
        let reason = self.wal.as_deref().and_then(|w| w.read_only());
        if reason != self.read_only.load().as_deref().map(String::as_str) {
            self.read_only.store(reason.map(|r| Arc::new(r.to_owned())));
        }
        for (reply, result, _) in replies {
            let _ = reply.send(result);
        }
    }

    /// Applies an API change that must be logged: refused at once while the log is
    /// read-only or when it is too large to log, staged when it changed something.
    fn apply_logged(
        &mut self,
        change: Change,
        now: SystemTime,
        touched: &mut Touched,
    ) -> Result<bool, ChangeError> {
        let wal = self.wal.as_deref_mut().expect("logged changes have a log");
        if let Some(reason) = wal.read_only() {
            return Err(ChangeError::Storage(reason.to_owned()));
        }
        let encoded = wal
            .encode(&change)
            .map_err(|e| ChangeError::Invalid(format!("the change is too large: {e}")))?;
        let result = self.model.apply(change, now, touched, self.admission);
        if let Ok(true) = result {
            // The revision this change makes (`applied` counts it next).
            let revision = self.model.snapshot.revision + 1;
            wal.stage(now, revision, encoded);
        }
        result
    }

    /// Counts an applied change in the revision and says which revision holds it.
    fn applied(&mut self, result: Result<bool, ChangeError>) -> Result<Applied, ChangeError> {
        if let Ok(true) = result {
            self.model.snapshot.revision += 1;
        }
        result.map(|_| Applied {
            revision: self.model.snapshot.revision,
        })
    }

    /// Runs the hooks on the new snapshot, makes it current, and compacts the log when due.
    fn publish(&mut self, touched: &mut Touched) {
        let view = (&mut *self.hooks, self.current, &mut *self.recorder);
        let snapshot = publish(self.model, view, touched);
        if let Some(wal) = self.wal.as_deref_mut() {
            wal.maybe_compact(snapshot.revision, move || durable_state(&snapshot));
        }
    }
}

/// Where a publish goes: the hooks, the current snapshot, the recent changes.
pub(super) type Views<'a> = (
    &'a mut [PublishHook],
    &'a ArcSwap<Snapshot>,
    &'a mut Recorder,
);

/// Runs the hooks on the model's snapshot, makes it current, then records its changes
/// (waking watchers, who then read it); returns it. `touched` is resolved against it
/// first: each changed service's new version read once, for every hook and the recorder.
pub(super) fn publish(model: &State, views: Views<'_>, touched: &mut Touched) -> Arc<Snapshot> {
    let (hooks, current, recorder) = views;
    let snapshot = Arc::new(model.snapshot.clone());
    touched.resolve(&snapshot);
    let touched = &*touched;
    // Derived views first: a reader that sees this snapshot (`/readyz` saying every
    // source synced) then finds the DNS zone built from it too.
    for hook in hooks.iter_mut() {
        hook(&snapshot, touched);
    }
    current.store(snapshot.clone());
    recorder.record(&snapshot, touched);
    snapshot
}

impl RegistryHandle {
    /// Applies `change` and returns once it is visible to every reader.
    pub async fn apply(&self, change: Change) -> Result<Applied, ChangeError> {
        self.submit(change, Kind::Local).await
    }

    /// Applies `change` and returns once it is on disk and visible to every reader.
    pub async fn apply_durable(&self, change: Change) -> Result<Applied, ChangeError> {
        self.submit(change, Kind::Api).await
    }

    /// Applies a source's change that every replica should serve: with `[etcd]`, once
    /// etcd committed it and this replica applied it (the elected ECS source runs on one
    /// replica for all); with the local log, as [`RegistryHandle::apply`].
    pub async fn apply_shared(&self, change: Change) -> Result<Applied, ChangeError> {
        self.submit(change, Kind::Shared).await
    }

    /// A handle whose shared changes etcd commits only while `fence`'s leader still
    /// leads (the elected ECS source's): a deposed leader's write is refused.
    #[cfg(feature = "etcd")]
    pub fn fenced(&self, fence: crate::store::etcd::Fence) -> Self {
        Self {
            fence: Some(fence),
            ..self.clone()
        }
    }

    async fn submit(&self, change: Change, kind: Kind) -> Result<Applied, ChangeError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            change,
            kind,
            reply,
            received: Instant::now(),
            #[cfg(feature = "etcd")]
            fence: self.fence.clone(),
        };
        self.sender
            .send(request)
            .await
            .map_err(|_| ChangeError::ShuttingDown)?;
        answer.await.map_err(|_| ChangeError::ShuttingDown)?
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Why API writes are refused, while the log cannot be written (a full disk).
    pub fn read_only(&self) -> Option<Arc<String>> {
        self.read_only.load_full()
    }

    /// The registry's recent changes (a bounded record, each change with its index);
    /// its entries lock-free; a service's index under a lock the writer holds only for
    /// one insertion per change ([`RecentChanges::service_index`]).
    pub fn recent_changes(&self) -> Arc<RecentChanges> {
        self.changes.recent()
    }

    /// Wakes (`changed()`) after each publish that recorded changes; the value is the
    /// latest index. Read [`RegistryHandle::recent_changes`] then: it is at least as new.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// How many instances one batch may name on this store, when the store bounds it
    /// below the API's own limit (with `[etcd]`: what one transaction always holds).
    pub fn max_batch(&self) -> Option<usize> {
        self.max_batch
    }

    /// How the shared store is doing (etcd reachable, how far behind), when there is one.
    pub fn store_status(&self) -> Option<String> {
        self.status.get().map(|status| status())
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
