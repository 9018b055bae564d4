//! The ECS source's I/O: one reconciler per cluster, one SQS poller, and the loop that
//! owns the task state and applies both to the registry in the order they arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::aws::{Aws, AwsError};
use super::backoff::Backoff;
use super::config::{EcsSourceConfig, Malformed};
use super::mapping::{self, Placement};
use super::metrics::EcsMetrics;
use super::parse::{Message, TaskFacts, parse_message};
use super::state::{Freshness, Tasks};
use crate::registry::ChangeError;
use crate::sources::SourceContext;

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
}

/// Messages from one receive, and where to send back the receipt handles to delete.
struct Batch {
    messages: Vec<aws_sdk_sqs::types::Message>,
    delete: oneshot::Sender<Vec<String>>,
}

/// What the event loop decided about one message.
enum Disposition {
    Delete,
    /// Leave it in the queue: it comes back after its visibility timeout.
    Keep,
}

/// Everything the event loop needs, shared with the reconcilers.
struct Shared {
    config: EcsSourceConfig,
    aws: Arc<Aws>,
    metrics: Arc<EcsMetrics>,
    /// The event loop's [`Tasks::generation`], read by reconcilers before they list.
    generation: AtomicU64,
}

/// Watches the configured clusters until shutdown.
pub async fn run(config: EcsSourceConfig, context: SourceContext, metrics: Arc<EcsMetrics>) {
    let aws = Arc::new(Aws::connect(&config, metrics.clone()).await);
    let shared = Arc::new(Shared {
        config,
        aws,
        metrics,
        generation: AtomicU64::new(0),
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
    let mut tasks = Tasks::default();
    loop {
        tokio::select! {
            _ = context.shutdown.cancelled() => return,
            Some(batch) = batches.recv() => {
                let mut delete = Vec::new();
                for message in batch.messages {
                    let body = message.body().unwrap_or_default();
                    let disposition = handle(&shared, &context, &mut tasks, &clusters, body).await;
                    if let (Disposition::Delete, Some(handle)) = (disposition, message.receipt_handle) {
                        delete.push(handle);
                    }
                }
                shared.generation.store(tasks.generation(), Ordering::SeqCst);
                let _ = batch.delete.send(delete);
            }
            Some(result) = described.recv() => apply_reconcile(&shared, &context, &mut tasks, result).await,
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

/// Reads, orders and applies one queue message.
async fn handle(
    shared: &Shared,
    context: &SourceContext,
    tasks: &mut Tasks,
    clusters: &[String],
    body: &str,
) -> Disposition {
    let metrics = &shared.metrics;
    metrics.received();
    let (facts, time) = match parse_message(body) {
        Ok(Message::Task { facts, time }) => (facts, time),
        Ok(Message::Other { detail_type }) => {
            tracing::debug!(%detail_type, "ignoring an event that is not a task state change");
            metrics.ignored("other_event");
            return Disposition::Delete;
        }
        Err(error) => {
            tracing::warn!(%error, keep = ?shared.config.malformed, "malformed queue message");
            metrics.malformed();
            return match shared.config.malformed {
                Malformed::Delete => Disposition::Delete,
                Malformed::Keep => Disposition::Keep,
            };
        }
    };
    if !clusters.contains(&facts.cluster) {
        metrics.ignored("other_cluster");
        return Disposition::Delete;
    }
    match tasks.freshness(&facts) {
        Freshness::Fresh => {}
        Freshness::Duplicate => {
            metrics.ignored("duplicate");
            return Disposition::Delete;
        }
        Freshness::Stale => {
            metrics.ignored("stale");
            return Disposition::Delete;
        }
    }
    let placement = match mapping::lifecycle(&facts) {
        Some(out) => Placement::Out(out),
        None => match shared.aws.task_definition(&facts.task_definition_arn).await {
            Ok(definition) => {
                let region = shared.aws.region.as_deref();
                mapping::place(&facts, &definition, &shared.config, region)
            }
            Err(error) => {
                // Entering DNS needs the task definition; the event comes back later.
                tracing::warn!(%error, task = %facts.task_arn, "event kept for a retry");
                return Disposition::Keep;
            }
        },
    };
    if let Some(reason) = count_problem(metrics, &placement) {
        tracing::warn!(task = %facts.task_arn, group = ?facts.group, reason, "running task kept out of DNS");
    }
    for change in tasks.record(&facts, placement, Instant::now()) {
        match context.registry.apply(change).await {
            Ok(_) => {}
            Err(ChangeError::ShuttingDown) => return Disposition::Keep,
            Err(error) => tracing::warn!(%error, task = %facts.task_arn, "change not applied"),
        }
    }
    let changed_at = facts.updated_at.or(time);
    metrics.applied(changed_at.and_then(|t| SystemTime::now().duration_since(t).ok()));
    metrics.tasks(&facts.cluster, tasks.placed(&facts.cluster));
    Disposition::Delete
}

/// Counts a running task kept out of DNS by a problem; returns the problem.
fn count_problem(metrics: &EcsMetrics, placement: &Placement) -> Option<&'static str> {
    let Placement::Out(out) = placement else {
        return None;
    };
    let reason = out.problem()?;
    metrics.skipped(reason);
    Some(reason)
}

async fn apply_reconcile(
    shared: &Shared,
    context: &SourceContext,
    tasks: &mut Tasks,
    described: Described,
) {
    let Described {
        cluster,
        since,
        started,
        tasks: listed,
    } = described;
    let problems = listed
        .iter()
        .filter_map(|(_, placement)| count_problem(&shared.metrics, placement))
        .count();
    if problems > 0 {
        tracing::warn!(%cluster, tasks = problems, "running tasks kept out of DNS (see muster_ecs_tasks_skipped_total)");
    }
    let (sync, drift) = tasks.reconcile(&cluster, listed, since, Instant::now());
    if let Err(error) = context.registry.apply(sync).await {
        tracing::warn!(%cluster, %error, "reconcile not applied");
        return;
    }
    if drift.total() > 0 {
        tracing::info!(%cluster, ?drift, "reconcile corrected instances that events had missed");
    }
    let placed = tasks.placed(&cluster);
    shared
        .metrics
        .reconciled(&cluster, started.elapsed(), drift, placed);
    tracing::debug!(%cluster, tasks = placed, took = ?started.elapsed(), "reconciled");
}

/// Describes `cluster` now and every interval after a success; after a failure, keeps
/// what it had and retries with backoff.
async fn reconcile_loop(shared: Arc<Shared>, cluster: String, out: mpsc::Sender<Described>) {
    let interval = shared.config.reconcile_interval;
    let mut backoff = Backoff::new(BACKOFF_BASE, RECONCILE_BACKOFF_CAP.min(interval));
    loop {
        let started = Instant::now();
        let since = shared.generation.load(Ordering::SeqCst);
        let wait = match describe(&shared, &cluster).await {
            Ok(tasks) => {
                if backoff.succeeded() {
                    tracing::info!(%cluster, "ECS API reachable again");
                }
                let described = Described {
                    cluster: cluster.clone(),
                    since,
                    started,
                    tasks,
                };
                if out.send(described).await.is_err() {
                    return;
                }
                interval
            }
            Err(error) => {
                if !backoff.is_failing() {
                    tracing::error!(%cluster, %error, "reconcile failed; keeping the last known tasks and retrying");
                }
                backoff.failed()
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Lists and describes `cluster`'s tasks and places each.
async fn describe(shared: &Shared, cluster: &str) -> Result<Vec<(TaskFacts, Placement)>, AwsError> {
    let facts = shared.aws.running_tasks(cluster).await?;
    let needed = facts.iter().filter(|t| mapping::lifecycle(t).is_none());
    let needed = needed.map(|t| t.task_definition_arn.as_str()).collect();
    shared.aws.prefetch(needed).await?;
    let mut placed = Vec::with_capacity(facts.len());
    for task in facts {
        let placement = match mapping::lifecycle(&task) {
            Some(out) => Placement::Out(out),
            None => {
                let definition = shared
                    .aws
                    .task_definition(&task.task_definition_arn)
                    .await?;
                let region = shared.aws.region.as_deref();
                mapping::place(&task, &definition, &shared.config, region)
            }
        };
        placed.push((task, placement));
    }
    Ok(placed)
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
