//! The ECS source's I/O: one reconciler per cluster, one SQS poller, and the loop that
//! owns the task state and applies both to the registry in the order they arrive
//! (the event path itself is `events.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::aws::{Aws, AwsError};
use super::backoff::Backoff;
use super::config::EcsSourceConfig;
use super::events::{self, Disposition, Events, LOOKUPS_IN_FLIGHT};
use super::hosts::Hosts;
use super::mapping::{self, Placement};
use super::metrics::EcsMetrics;
use super::parse::{TaskDefinition, TaskFacts};
use crate::sources::{SourceContext, SourceStatus};

/// First retry delay after an AWS error.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest retry delay of a reconcile (also never longer than the reconcile interval).
const RECONCILE_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest retry delay of the queue poller: events are the fast path, so a queue that
/// comes back is used again within seconds.
const POLL_BACKOFF_CAP: Duration = Duration::from_secs(10);

/// One full description of a cluster, made after event `since` was applied.
struct Described {
    cluster: String,
    since: u64,
    started: Instant,
    tasks: Vec<(TaskFacts, Placement)>,
    /// Whether the registry took the sync: one it refused (etcd not loaded yet, or
    /// unreachable) is described again with backoff, not at the next interval.
    applied: oneshot::Sender<bool>,
}

/// Messages from one receive, and where to send back the receipt handles to delete.
struct Batch {
    messages: Vec<aws_sdk_sqs::types::Message>,
    delete: oneshot::Sender<Vec<String>>,
}

/// Everything the event loop needs, shared with the reconcilers and lookups.
pub struct Shared {
    pub config: EcsSourceConfig,
    pub aws: Arc<Aws>,
    pub metrics: Arc<EcsMetrics>,
    /// The event loop's [`Tasks::generation`](super::state::Tasks::generation), read by
    /// reconcilers before they list.
    pub generation: AtomicU64,
    /// Container instances' addresses.
    pub hosts: Hosts,
    /// Container instance lookups of the event path under way at once.
    pub lookup_permits: Semaphore,
    /// Each cluster's sync state, by cluster name: synced by an applied reconcile.
    pub statuses: BTreeMap<String, SourceStatus>,
}

impl Shared {
    /// Records a failure of `cluster`'s reconcile, or of the queue (`None`: every
    /// cluster's events come through it).
    fn failed(&self, cluster: Option<&str>, error: &dyn std::fmt::Display) {
        for (name, status) in &self.statuses {
            if cluster.is_none_or(|c| c == name) {
                status.failed(error);
            }
        }
    }
}

/// Watches the configured clusters until shutdown.
pub async fn run(config: EcsSourceConfig, context: SourceContext, metrics: Arc<EcsMetrics>) {
    let aws = Arc::new(Aws::connect(&config, metrics.clone()).await);
    let statuses = config
        .cluster_names()
        .map(|c| {
            (
                c.to_owned(),
                context.statuses.register(super::state::source_id(c)),
            )
        })
        .collect();
    let shared = Arc::new(Shared {
        config,
        aws,
        metrics,
        generation: AtomicU64::new(0),
        hosts: Hosts::default(),
        lookup_permits: Semaphore::new(LOOKUPS_IN_FLIGHT),
        statuses,
    });
    let clusters: Vec<String> = shared.config.cluster_names().map(str::to_owned).collect();
    let mut workers = JoinSet::new();
    let (described_tx, mut described) = mpsc::channel(clusters.len());
    for cluster in &clusters {
        let task = reconcile_loop(shared.clone(), cluster.clone(), described_tx.clone());
        workers.spawn(until(context.shutdown.clone(), task));
    }
    let (batches_tx, mut batches) = mpsc::channel(1);
    if let Some(queue) = shared.config.queue_url.clone() {
        let task = poll_loop(shared.clone(), queue, batches_tx.clone());
        workers.spawn(until(context.shutdown.clone(), task));
    }
    let mut events = Events::default();
    loop {
        tokio::select! {
            _ = context.shutdown.cancelled() => return,
            Some(batch) = batches.recv() => {
                let mut delete = Vec::new();
                for message in batch.messages {
                    let body = message.body().unwrap_or_default();
                    let handle = message.receipt_handle.clone();
                    let disposition = events.handle(&shared, &context, &clusters, body, handle).await;
                    if let (Disposition::Delete, Some(handle)) = (disposition, message.receipt_handle) {
                        delete.push(handle);
                    }
                }
                shared.generation.store(events.tasks.generation(), Ordering::SeqCst);
                let _ = batch.delete.send(delete);
            }
            Some(result) = described.recv() => apply_reconcile(&shared, &context, &mut events, result).await,
            Some(done) = events.lookups.join_next() => match done {
                Ok(done) => events.resume(&shared, &context, done).await,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => {}
            },
            Some(_) = events.deletes.join_next() => {}
        }
    }
}

/// Runs `task` until `shutdown` fires.
async fn until(shutdown: CancellationToken, task: impl Future<Output = ()>) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = task => {}
    }
}

async fn apply_reconcile(
    shared: &Shared,
    context: &SourceContext,
    events: &mut Events,
    described: Described,
) {
    let Described {
        cluster,
        since,
        started,
        tasks: listed,
        applied,
    } = described;
    let problems = listed
        .iter()
        .filter_map(|(_, placement)| events::count_problem(&shared.metrics, placement))
        .count();
    if problems > 0 {
        tracing::warn!(%cluster, tasks = problems, "running tasks kept out of DNS (see muster_ecs_tasks_skipped_total)");
    }
    let (sync, drift) = events
        .tasks
        .reconcile(&cluster, listed, since, Instant::now());
    shared.hosts.retain(&events.hosts_in_use());
    shared.metrics.container_instances(shared.hosts.len());
    let result = context.registry.apply_shared(sync).await;
    let _ = applied.send(result.is_ok());
    if let Err(error) = result {
        tracing::warn!(%cluster, %error, "reconcile not applied; describing again soon");
        shared.failed(
            Some(&cluster),
            &format_args!("reconcile not applied: {error}"),
        );
        return;
    }
    if let Some(status) = shared.statuses.get(&cluster) {
        status.synced();
    }
    if drift.total() > 0 {
        tracing::info!(%cluster, ?drift, "reconcile corrected instances that events had missed");
    }
    let placed = events.tasks.placed(&cluster);
    shared
        .metrics
        .reconciled(&cluster, started.elapsed(), drift, placed);
    tracing::debug!(%cluster, tasks = placed, took = ?started.elapsed(), "reconciled");
}

/// Describes `cluster` now and every interval after a success; after a failure (of the
/// ECS API, or of the registry to take the sync), keeps what it had and retries with
/// backoff.
async fn reconcile_loop(shared: Arc<Shared>, cluster: String, out: mpsc::Sender<Described>) {
    let interval = shared.config.reconcile_interval;
    let mut backoff = Backoff::new(BACKOFF_BASE, RECONCILE_BACKOFF_CAP.min(interval));
    loop {
        let started = Instant::now();
        let since = shared.generation.load(Ordering::SeqCst);
        let wait = match describe(&shared, &cluster).await {
            Ok(tasks) => {
                let (applied, taken) = oneshot::channel();
                let described = Described {
                    cluster: cluster.clone(),
                    since,
                    started,
                    tasks,
                    applied,
                };
                if out.send(described).await.is_err() {
                    return;
                }
                match taken.await {
                    Ok(true) => {
                        if backoff.succeeded() {
                            tracing::info!(%cluster, "reconciles succeed again");
                        }
                        interval
                    }
                    Ok(false) => backoff.failed(),
                    Err(_) => return,
                }
            }
            Err(error) => {
                if !backoff.is_failing() {
                    tracing::error!(%cluster, %error, "reconcile failed; keeping the last known tasks and retrying");
                }
                shared.failed(Some(&cluster), &format_args!("reconcile failed: {error}"));
                backoff.failed()
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Lists and describes `cluster`'s tasks and places each, looking up the container
/// instances of those that need one's address.
async fn describe(shared: &Shared, cluster: &str) -> Result<Vec<(TaskFacts, Placement)>, AwsError> {
    let facts = shared.aws.running_tasks(cluster).await?;
    let needed = facts.iter().filter(|t| mapping::lifecycle(t).is_none());
    let needed = needed.map(|t| t.task_definition_arn.as_str()).collect();
    shared.aws.prefetch(needed).await?;
    let region = shared.aws.region.as_deref();
    let mut placed: Vec<(TaskFacts, Placement, Option<Arc<TaskDefinition>>)> =
        Vec::with_capacity(facts.len());
    for task in facts {
        let (placement, definition) = match mapping::lifecycle(&task) {
            Some(out) => (Placement::Out(out), None),
            None => {
                let definition = shared
                    .aws
                    .task_definition(&task.task_definition_arn)
                    .await?;
                let placement = mapping::place(&task, &definition, &shared.config, region, None);
                (placement, Some(definition))
            }
        };
        placed.push((task, placement, definition));
    }
    let hosts: HashMap<String, Option<Arc<_>>> = {
        let wanted: HashSet<&str> = placed
            .iter()
            .filter_map(|(task, placement, definition)| {
                mapping::host_needed(task, definition.as_deref()?, placement)
            })
            .collect();
        if wanted.is_empty() {
            HashMap::new()
        } else {
            shared.hosts.resolve(&shared.aws, cluster, &wanted).await?
        }
    };
    Ok(placed
        .into_iter()
        .map(|(task, placement, definition)| {
            let host = definition.as_deref().and_then(|definition| {
                let arn = mapping::host_needed(&task, definition, &placement)?;
                Some((definition, hosts.get(arn)?.as_deref()?))
            });
            match host {
                Some((definition, host)) => {
                    let placement =
                        mapping::place(&task, definition, &shared.config, region, Some(host));
                    (task, placement)
                }
                None => (task, placement),
            }
        })
        .collect())
}

/// Long-polls `queue` and hands each batch to the event loop, then deletes what it
/// applied. Errors (queue unreachable, deleted, access denied) are retried with backoff;
/// reconciles go on meanwhile.
async fn poll_loop(shared: Arc<Shared>, queue: String, out: mpsc::Sender<Batch>) {
    let mut backoff = Backoff::new(BACKOFF_BASE, POLL_BACKOFF_CAP);
    loop {
        let messages = match shared.aws.receive(&queue).await {
            Ok(messages) => {
                if backoff.succeeded() {
                    tracing::info!(%queue, "SQS queue reachable again");
                }
                messages
            }
            Err(error) => {
                if !backoff.is_failing() {
                    tracing::error!(%queue, %error, "cannot receive events; retrying (reconciles go on)");
                }
                shared.failed(None, &format_args!("cannot receive events: {error}"));
                tokio::time::sleep(backoff.failed()).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let (delete, applied) = oneshot::channel();
        if out.send(Batch { messages, delete }).await.is_err() {
            return;
        }
        let Ok(handles) = applied.await else { return };
        if handles.is_empty() {
            continue;
        }
        if let Err(error) = shared.aws.delete(&queue, handles).await {
            // They come back after the visibility timeout and are ignored as duplicates.
            tracing::warn!(%queue, %error, "applied messages not deleted");
        }
    }
}

/// The source ids of a config: one per cluster.
pub fn source_ids(
    config: &EcsSourceConfig,
) -> impl Iterator<Item = crate::registry::SourceId> + '_ {
    config.cluster_names().map(super::state::source_id)
}
