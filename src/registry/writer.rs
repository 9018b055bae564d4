//! The single writer task and the handle everyone else uses to reach it.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::apply::{Model, TouchedServices};
use super::change::{Applied, Change, ChangeError};
use super::snapshot::Snapshot;

/// What changed between two published snapshots.
#[derive(Debug, Default)]
pub struct Touched {
    /// `(namespace, service)` pairs whose instances changed.
    pub services: TouchedServices,
}

/// Called by the writer after each publish and before the writers of that batch are
/// answered, so a derived view (the DNS zone) is current by the time a change is
/// acknowledged: read-your-writes without the view taking a lock.
pub type PublishHook = Box<dyn FnMut(&Arc<Snapshot>, &Touched) + Send>;

/// Changes queued at most; senders wait beyond this (back-pressure, not loss).
const QUEUE_DEPTH: usize = 4096;
/// Changes applied per published snapshot at most, so one flood cannot starve readers.
const MAX_BATCH: usize = 1024;

type Request = (Change, oneshot::Sender<Result<Applied, ChangeError>>);

/// The registry before its writer starts: where frontends attach their publish hooks.
pub struct Registry {
    model: Model,
    current: Arc<ArcSwap<Snapshot>>,
    hooks: Vec<PublishHook>,
    receiver: mpsc::Receiver<Request>,
    handle: RegistryHandle,
}

/// A cheap, cloneable way to submit changes and read the latest snapshot.
#[derive(Clone)]
pub struct RegistryHandle {
    sender: mpsc::Sender<Request>,
    current: Arc<ArcSwap<Snapshot>>,
}

impl Registry {
    pub fn new(initial: Snapshot) -> Self {
        let current = Arc::new(ArcSwap::from_pointee(initial.clone()));
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        Self {
            model: Model::new(initial),
            current: current.clone(),
            hooks: Vec::new(),
            receiver,
            handle: RegistryHandle { sender, current },
        }
    }

    pub fn handle(&self) -> RegistryHandle {
        self.handle.clone()
    }

    /// Runs `hook` with the initial snapshot now and after every publish.
    pub fn on_publish(&mut self, mut hook: PublishHook) {
        hook(&self.current.load_full(), &Touched::default());
        self.hooks.push(hook);
    }

    /// Applies changes until `shutdown` fires and the queue is drained.
    pub async fn run(mut self, shutdown: CancellationToken) {
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
                return;
            }
            apply_batch(&mut self.model, &self.current, &mut self.hooks, &mut batch);
        }
    }
}

fn apply_batch(
    model: &mut Model,
    current: &ArcSwap<Snapshot>,
    hooks: &mut [PublishHook],
    batch: &mut Vec<Request>,
) {
    let now = SystemTime::now();
    let mut touched = Touched::default();
    let mut results = Vec::with_capacity(batch.len());
    let mut changed = false;
    for (change, reply) in batch.drain(..) {
        let result = model.apply(change, now, &mut touched.services);
        if let Ok(true) = result {
            model.snapshot.revision += 1;
            changed = true;
        }
        let revision = model.snapshot.revision;
        results.push((reply, result.map(|_| Applied { revision })));
    }
    if changed {
        let snapshot = Arc::new(model.snapshot.clone());
        current.store(snapshot.clone());
        for hook in hooks.iter_mut() {
            hook(&snapshot, &touched);
        }
    }
    for (reply, result) in results {
        let _ = reply.send(result);
    }
}

impl RegistryHandle {
    /// Applies `change` and returns once it is visible to every reader.
    pub async fn apply(&self, change: Change) -> Result<Applied, ChangeError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((change, reply))
            .await
            .map_err(|_| ChangeError::ShuttingDown)?;
        answer.await.map_err(|_| ChangeError::ShuttingDown)?
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}
