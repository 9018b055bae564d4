//! The event path: a queue message read, ordered against what is known of its task,
//! placed and applied. A task on a container instance whose address is not cached
//! waits for its lookup (`waiting.rs`) while the loop goes on with other events; the
//! lookups run in the background, at most [`LOOKUPS_IN_FLIGHT`] at once, and each is
//! retried with backoff [`LOOKUP_ATTEMPTS`] times before its events are left in the
//! queue for a later delivery.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;

use super::aws::AwsError;
use super::backoff::Backoff;
use super::config::Malformed;
use super::mapping::{self, Placement};
use super::metrics::EcsMetrics;
use super::parse::{Host, Message, TaskFacts, parse_message};
use super::state::{Freshness, Tasks};
use super::waiting::{Parked, Parking, Waiting};
use super::watch::Shared;
use crate::registry::ChangeError;
use crate::sources::SourceContext;

/// Container instance lookups (each one `DescribeContainerInstances` and one
/// `DescribeInstances`) under way at once, so a burst of tasks on new container
/// instances does not burst into ECS's and EC2's rate limits.
pub const LOOKUPS_IN_FLIGHT: usize = 4;
/// Attempts of one lookup before its events go back to the queue.
const LOOKUP_ATTEMPTS: u32 = 4;
/// Retry delays of a lookup: events are the fast path, so short.
const LOOKUP_BACKOFF_BASE: Duration = Duration::from_millis(200);
const LOOKUP_BACKOFF_CAP: Duration = Duration::from_secs(2);
/// DeleteMessageBatch's limit.
const DELETE_BATCH: usize = 10;

/// What the event loop decided about one message.
pub enum Disposition {
    Delete,
    /// Leave it in the queue: it comes back after its visibility timeout.
    Keep,
    /// It waits for its container instance; it is deleted once applied.
    Waiting,
}

/// A lookup that ended: the container instance and what was found.
pub struct LookedUp {
    host: String,
    found: Result<Option<Arc<Host>>, AwsError>,
}

/// The event loop's own state: what is known of every task, the events waiting for
/// lookups, and the background lookups and deletions.
#[derive(Default)]
pub struct Events {
    pub tasks: Tasks,
    waiting: Waiting,
    pub lookups: JoinSet<LookedUp>,
    /// Deletions of messages that waited for a lookup.
    pub deletes: JoinSet<()>,
    /// Lookups have failed since the last success: log the first failure only.
    failing: bool,
}

impl Events {
    /// Reads, orders and applies one queue message (`handle` is its receipt handle).
    pub async fn handle(
        &mut self,
        shared: &Arc<Shared>,
        context: &SourceContext,
        clusters: &[String],
        body: &str,
        handle: Option<String>,
    ) -> Disposition {
        let metrics = &shared.metrics;
        metrics.received();
        let (facts, time) = match parse_message(body) {
            Ok(Message::Task { facts, time }) => (*facts, time),
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
        if !self.is_fresh(metrics, &facts) {
            return Disposition::Delete;
        }
        let placement = match mapping::lifecycle(&facts) {
            Some(out) => Placement::Out(out),
            None => match shared.aws.task_definition(&facts.task_definition_arn).await {
                Ok(definition) => {
                    let region = shared.aws.region.as_deref();
                    let placement =
                        mapping::place(&facts, &definition, &shared.config, region, None);
                    match mapping::host_needed(&facts, &definition, &placement) {
                        None => placement,
                        Some(arn) => match shared.hosts.get(arn) {
                            Some(host) => {
                                let config = &shared.config;
                                mapping::place(&facts, &definition, config, region, Some(&host))
                            }
                            None => {
                                let host = arn.to_owned();
                                let handles = handle.into_iter().collect();
                                let event = Parked {
                                    facts,
                                    time,
                                    definition,
                                    handles,
                                };
                                return self.park(shared, host, event);
                            }
                        },
                    }
                }
                Err(error) => {
                    // Entering DNS needs the task definition; the event comes back later.
                    tracing::warn!(%error, task = %facts.task_arn, "event kept for a retry");
                    return Disposition::Keep;
                }
            },
        };
        self.apply(shared, context, &facts, time, placement).await
    }

    /// Whether `facts` carries news; counts it if not.
    fn is_fresh(&self, metrics: &EcsMetrics, facts: &TaskFacts) -> bool {
        match self.tasks.freshness(facts) {
            Freshness::Fresh => true,
            Freshness::Duplicate => {
                metrics.ignored("duplicate");
                false
            }
            Freshness::Stale => {
                metrics.ignored("stale");
                false
            }
        }
    }

    /// Parks `event` until `host` is looked up, starting the lookup if it is the first.
    fn park(&mut self, shared: &Arc<Shared>, host: String, event: Parked) -> Disposition {
        let cluster = event.facts.cluster.clone();
        match self.waiting.park(&host, event) {
            Parking::Joined => Disposition::Waiting,
            Parking::LookUp => {
                self.lookups.spawn(look_up(shared.clone(), cluster, host));
                Disposition::Waiting
            }
            Parking::Full => {
                shared.metrics.ignored("deferred");
                Disposition::Keep
            }
        }
    }

    /// Records a fresh event's placement and applies its changes.
    async fn apply(
        &mut self,
        shared: &Shared,
        context: &SourceContext,
        facts: &TaskFacts,
        time: Option<SystemTime>,
        placement: Placement,
    ) -> Disposition {
        let metrics = &shared.metrics;
        if let Some(reason) = count_problem(metrics, &placement) {
            tracing::warn!(task = %facts.task_arn, group = ?facts.group, reason, "running task kept out of DNS");
        }
        for change in self.tasks.record(facts, placement, Instant::now()) {
            match context.registry.apply_shared(change).await {
                Ok(_) => {}
                // etcd did not take it (with `[etcd]`): keep the message; the next reconcile
                // corrects the instance either way.
                Err(ChangeError::ShuttingDown | ChangeError::Storage(_)) => {
                    return Disposition::Keep;
                }
                Err(error) => tracing::warn!(%error, task = %facts.task_arn, "change not applied"),
            }
        }
        let changed_at = facts.updated_at.or(time);
        metrics.applied(changed_at.and_then(|t| SystemTime::now().duration_since(t).ok()));
        metrics.tasks(&facts.cluster, self.tasks.placed(&facts.cluster));
        Disposition::Delete
    }

    /// Applies the events that waited for a lookup that ended, and deletes their
    /// messages; after a failed lookup they stay in the queue for a later delivery.
    pub async fn resume(&mut self, shared: &Arc<Shared>, context: &SourceContext, done: LookedUp) {
        let parked = self.waiting.take(&done.host);
        let found = match done.found {
            Ok(found) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!("container instance lookups succeed again");
                }
                found
            }
            Err(error) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!(%error, host = %done.host, events = parked.len(), "container instance lookup failed; its events stay in the queue");
                }
                return;
            }
        };
        shared.metrics.container_instances(shared.hosts.len());
        let mut delete = Vec::new();
        for event in parked {
            if self.is_fresh(&shared.metrics, &event.facts) {
                let (config, region) = (&shared.config, shared.aws.region.as_deref());
                let (facts, definition) = (&event.facts, &event.definition);
                let placement = mapping::place(facts, definition, config, region, found.as_deref());
                match self
                    .apply(shared, context, facts, event.time, placement)
                    .await
                {
                    Disposition::Delete => {}
                    Disposition::Keep | Disposition::Waiting => return,
                }
            }
            delete.extend(event.handles);
        }
        shared
            .generation
            .store(self.tasks.generation(), Ordering::SeqCst);
        let Some(queue) = shared.config.queue_url.clone() else {
            return;
        };
        for chunk in delete.chunks(DELETE_BATCH) {
            let (shared, queue, handles) = (shared.clone(), queue.clone(), chunk.to_vec());
            self.deletes.spawn(async move {
                if let Err(error) = shared.aws.delete(&queue, handles).await {
                    // They come back after the visibility timeout and are ignored as duplicates.
                    tracing::warn!(%queue, %error, "applied messages not deleted");
                }
            });
        }
    }

    /// The container instances worth keeping in the cache: those of known tasks that
    /// are not stopping, and those being looked up.
    pub fn hosts_in_use(&self) -> HashSet<&str> {
        self.tasks
            .hosts_in_use()
            .chain(self.waiting.hosts())
            .collect()
    }
}

/// Looks up container instance `host` of `cluster`, retrying with backoff.
async fn look_up(shared: Arc<Shared>, cluster: String, host: String) -> LookedUp {
    let mut backoff = Backoff::new(LOOKUP_BACKOFF_BASE, LOOKUP_BACKOFF_CAP);
    let mut attempts = 0;
    let found = loop {
        attempts += 1;
        let result = {
            let _permit = shared.lookup_permits.acquire().await;
            let wanted = [host.as_str()].into();
            shared.hosts.resolve(&shared.aws, &cluster, &wanted).await
        };
        match result {
            Ok(mut found) => break Ok(found.remove(&host).flatten()),
            Err(error) if attempts >= LOOKUP_ATTEMPTS => break Err(error),
            Err(_) => tokio::time::sleep(backoff.failed()).await,
        }
    };
    LookedUp { host, found }
}

/// Counts a running task kept out of DNS by a problem; returns the problem.
pub fn count_problem(metrics: &EcsMetrics, placement: &Placement) -> Option<&'static str> {
    let Placement::Out(out) = placement else {
        return None;
    };
    let reason = out.problem()?;
    metrics.skipped(reason);
    Some(reason)
}
