//! With `[etcd]`: the ECS source runs on one replica, elected among the members, and
//! writes what it sees into etcd, which every replica serves.
//!
//! The other replicas neither poll ECS nor read the queue. A new leader starts as a
//! fresh source does: its first reconcile lists every running task and replaces the
//! cluster's instances only then (a `Sync` from a complete listing), while the
//! instances the last leader wrote stay in etcd, and in DNS, meanwhile.
//!
//! The leader's writes are fenced by its election ([`crate::store::etcd::Fence`]): one
//! that etcd commits after another replica took over is refused instead, and this
//! replica stops running the source.

use std::sync::Arc;

use super::config::EcsSourceConfig;
use super::metrics::EcsMetrics;
use super::watch::run;
use crate::sources::SourceContext;
use crate::store::etcd::Election;

/// Runs the source whenever this replica wins `election`, until shutdown.
pub async fn run_elected(
    config: EcsSourceConfig,
    context: SourceContext,
    metrics: Arc<EcsMetrics>,
    mut election: Election,
) {
    let clusters = config.cluster_names().collect::<Vec<_>>().join(",");
    while let Some(fence) = election.lead(&context.shutdown).await {
        tracing::info!(%clusters, "this replica runs the ECS source now");
        metrics.leading(true);
        let term = fence.term().clone();
        // Its writes land only while this replica still leads (a replica paused past
        // its lease must not overwrite what the next leader wrote).
        let leading = SourceContext {
            shutdown: term.clone(),
            registry: context.registry.fenced(fence),
            ..context.clone()
        };
        run(config.clone(), leading, metrics.clone()).await;
        term.cancel();
        metrics.leading(false);
        for id in super::source_ids(&config) {
            context.statuses.stand_by(&id);
        }
        if !context.shutdown.is_cancelled() {
            tracing::warn!(%clusters, "this replica no longer runs the ECS source (its member lease was lost, or another replica leads)");
        }
    }
}
