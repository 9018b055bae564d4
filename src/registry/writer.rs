//! The single writer task and the handle everyone else uses to reach it.

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::apply::{Model, Touched};
use super::change::{Applied, Change, ChangeError};
use super::durable::durable_state;
use super::snapshot::Snapshot;
use crate::store::{Recovered, Wal};

/// Called by the writer with each new snapshot, before registry readers see it and
/// before the writers of that batch are answered, so a derived view (the DNS zone) is
/// current by the time a change is acknowledged or `/readyz` reports it:
/// read-your-writes without the view taking a lock.
pub type PublishHook = Box<dyn FnMut(&Arc<Snapshot>, &Touched) + Send>;

/// Changes queued at most; senders wait beyond this (back-pressure, not loss).
const QUEUE_DEPTH: usize = 4096;
/// Changes applied per published snapshot at most, so one flood cannot starve readers.
const MAX_BATCH: usize = 1024;

struct Request {
    change: Change,
    /// Log it before acknowledging (changes from the APIs).
    durable: bool,
    reply: oneshot::Sender<Result<Applied, ChangeError>>,
}

/// The registry before its writer starts: where frontends attach their publish hooks.
pub struct Registry {
    model: Model,
    current: Arc<ArcSwap<Snapshot>>,
    hooks: Vec<PublishHook>,
    receiver: mpsc::Receiver<Request>,
    handle: RegistryHandle,
    wal: Option<Wal>,
}

/// A cheap, cloneable way to submit changes and read the latest snapshot.
#[derive(Clone)]
pub struct RegistryHandle {
    sender: mpsc::Sender<Request>,
    current: Arc<ArcSwap<Snapshot>>,
}

impl Registry {
    /// A registry that keeps nothing on disk.
    pub fn new(initial: Snapshot) -> Self {
        let current = Arc::new(ArcSwap::from_pointee(initial.clone()));
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        Self {
            model: Model::new(initial),
            current: current.clone(),
            hooks: Vec::new(),
            receiver,
            handle: RegistryHandle { sender, current },
            wal: None,
        }
    }

    /// A registry that replays `recovered` onto `initial` and logs durable changes to
    /// `wal`. Changes that no longer apply (a namespace removed from the config file) are
    /// skipped, as they would have been rejected live.
    pub fn durable(initial: Snapshot, wal: Wal, recovered: Recovered) -> Self {
        let mut registry = Self::new(initial);
        let mut touched = Touched::default();
        let mut skipped = 0usize;
        let recovered_revision = recovered.next_revision;
        for (time, change) in recovered.changes {
            match registry.model.apply(change, time, &mut touched) {
                Ok(true) => registry.model.snapshot.revision += 1,
                Ok(false) => {}
                Err(error) => {
                    skipped += 1;
                    tracing::debug!(%error, "a logged change no longer applies");
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(skipped, "logged changes that no longer apply were skipped");
        }
        let revision = &mut registry.model.snapshot.revision;
        *revision = (*revision).max(recovered_revision);
        registry
            .current
            .store(Arc::new(registry.model.snapshot.clone()));
        registry.wal = Some(wal);
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
    /// fsync, so run it on a thread of its own ([`Registry::spawn`]). An error means
    /// the log could not be written: the batch was not published or acknowledged, and
    /// muster must stop (a restart recovers what was durable).
    pub async fn run(mut self, shutdown: CancellationToken) -> io::Result<()> {
        drop(self.handle);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let received = tokio::select! {
                n = self.receiver.recv_many(&mut batch, MAX_BATCH) => n,
                _ = shutdown.cancelled() => {
                    self.receiver.close();
                    self.receiver.recv_many(&mut batch, MAX_BATCH).await
                }
            };
            if received == 0 {
                return Ok(());
            }
            let mut writer = Writer {
                model: &mut self.model,
                current: &self.current,
                hooks: &mut self.hooks,
                wal: self.wal.as_mut(),
            };
            writer.apply_batch(&mut batch)?;
        }
    }
}

impl Registry {
    /// Runs the writer on a dedicated thread, so its fsyncs never stall DNS or HTTP.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<io::Result<()>> {
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(self.run(shutdown))
        })
    }
}

/// One batch's view of the registry's parts.
struct Writer<'a> {
    model: &'a mut Model,
    current: &'a ArcSwap<Snapshot>,
    hooks: &'a mut [PublishHook],
    wal: Option<&'a mut Wal>,
}

impl Writer<'_> {
    /// Applies, logs (one fsync), publishes, runs the hooks, then answers the writers.
    fn apply_batch(&mut self, batch: &mut Vec<Request>) -> io::Result<()> {
        let now = SystemTime::now();
        let mut touched = Touched::default();
        let mut results = Vec::with_capacity(batch.len());
        let mut changed = false;
        for request in batch.drain(..) {
            let logged = (request.durable && self.wal.is_some()).then(|| request.change.clone());
            let result = self.model.apply(request.change, now, &mut touched);
            if let Ok(true) = result {
                self.model.snapshot.revision += 1;
                changed = true;
                if let (Some(change), Some(wal)) = (logged, self.wal.as_deref_mut()) {
                    wal.stage(now, self.model.snapshot.revision, change);
                }
            }
            let revision = self.model.snapshot.revision;
            results.push((request.reply, result.map(|_| Applied { revision })));
        }
        if let Some(wal) = self.wal.as_deref_mut() {
            wal.stage_revision(now, self.model.snapshot.revision);
        }
        if let Some(wal) = self.wal.as_deref_mut()
            && let Err(error) = wal.commit()
        {
            tracing::error!(%error, "cannot write the write-ahead log; stopping");
            for (reply, _) in results {
                let _ = reply.send(Err(ChangeError::Storage(error.to_string())));
            }
            return Err(error);
        }
        if changed {
            let snapshot = Arc::new(self.model.snapshot.clone());
            // Derived views first: a reader that sees this snapshot (`/readyz` saying
            // every source synced) then finds the DNS zone built from it too.
            for hook in self.hooks.iter_mut() {
                hook(&snapshot, &touched);
            }
            self.current.store(snapshot.clone());
            if let Some(wal) = self.wal.as_deref_mut() {
                wal.maybe_compact(snapshot.revision, move || durable_state(&snapshot))?;
            }
        }
        for (reply, result) in results {
            let _ = reply.send(result);
        }
        Ok(())
    }
}

impl RegistryHandle {
    /// Applies `change` and returns once it is visible to every reader.
    pub async fn apply(&self, change: Change) -> Result<Applied, ChangeError> {
        self.submit(change, false).await
    }

    /// Applies `change` and returns once it is on disk and visible to every reader.
    pub async fn apply_durable(&self, change: Change) -> Result<Applied, ChangeError> {
        self.submit(change, true).await
    }

    async fn submit(&self, change: Change, durable: bool) -> Result<Applied, ChangeError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            change,
            durable,
            reply,
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
}
