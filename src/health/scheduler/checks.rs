//! Active checks: each runs in a task of its own on its interval, and a run of passes
//! or failures as long as its threshold changes the instance's health.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::time::delay_queue;

use super::{Due, Scheduler};
use crate::health::metrics::ResultLabels;
use crate::health::probe::{self, Verdict};
use crate::registry::{Change, CheckSpec, Instance, InstanceKey};

/// Inconclusive checks are logged at most this often, with their count.
const INCONCLUSIVE_LOG_EVERY: Duration = Duration::from_secs(10);

/// A finished check: which instance, which incarnation of its check, the verdict.
pub(super) struct Outcome {
    key: InstanceKey,
    generation: u64,
    verdict: Verdict,
}

/// One instance's active check and its run of results.
pub(super) struct CheckTimer {
    pub(super) spec: Arc<CheckSpec>,
    pub(super) target: SocketAddr,
    /// `None` when `[health]` denies the target: the check is never run.
    pub(super) entry: Option<delay_queue::Key>,
    /// Bumped when the check is replaced, so a late result of the old one is ignored.
    generation: u64,
    running: bool,
    healthy: bool,
    passes: u32,
    failures: u32,
}

/// Inconclusive checks since the last warning about them.
#[derive(Default)]
pub(super) struct Inconclusive {
    logged: Option<Instant>,
    unlogged: u64,
}

impl Inconclusive {
    /// Counts one; warns if none was logged in the last [`INCONCLUSIVE_LOG_EVERY`].
    fn note(&mut self, key: &InstanceKey, why: &str) {
        self.unlogged += 1;
        if self
            .logged
            .is_some_and(|at| at.elapsed() < INCONCLUSIVE_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            checks = self.unlogged,
            last = %key,
            reason = why,
            "checks could not run for a local reason; health unchanged"
        );
        self.logged = Some(Instant::now());
        self.unlogged = 0;
    }
}

impl Scheduler {
    /// Starts the check of an instance this replica checks: first after a random part
    /// of its interval, or never when `[health]` denies its target.
    pub(super) fn follow_check(
        &mut self,
        key: InstanceKey,
        instance: &Instance,
        spec: &CheckSpec,
        target: SocketAddr,
    ) {
        let entry = match self.limits.permits(target.ip()) {
            Ok(()) => {
                // A random first delay spreads thousands of checks over the
                // interval.
                let period = self.limits.period(spec);
                let first = period.mul_f64(rand::rng().random::<f64>());
                Some(self.queue.insert(Due::Check(key.clone()), first))
            }
            Err(why) => {
                self.notes.push(Change::CheckResult {
                    key: key.clone(),
                    healthy: instance.check_ok,
                    reason: format!("not checked: {why}"),
                });
                None
            }
        };
        self.generations += 1;
        let timer = CheckTimer {
            spec: Arc::new(spec.clone()),
            target,
            entry,
            generation: self.generations,
            running: false,
            healthy: instance.check_ok,
            passes: 0,
            failures: 0,
        };
        self.checks.insert(key, timer);
    }

    /// Runs a due check in its own task and schedules the next one.
    pub(super) fn start_check(&mut self, key: InstanceKey) {
        let Some(timer) = self.checks.get_mut(&key) else {
            return;
        };
        let period = self.limits.period(&timer.spec);
        timer.entry = Some(self.queue.insert(Due::Check(key.clone()), period));
        if timer.running {
            return;
        }
        timer.running = true;
        let (client, slots, outcomes) = (
            self.client.clone(),
            self.slots.clone(),
            self.outcomes.clone(),
        );
        let (spec, target, generation) = (timer.spec.clone(), timer.target, timer.generation);
        let timeout = spec.timeout().min(period);
        tokio::spawn(async move {
            let _slot = slots.acquire().await;
            // In a task of its own, so a probe that panics is a check that could not run,
            // not a check that never ends.
            let probe =
                tokio::spawn(async move { probe::probe(&client, target, &spec, timeout).await });
            let verdict = probe.await.unwrap_or_else(|error| {
                Verdict::Inconclusive(format!("the check's task failed: {error}"))
            });
            let _ = outcomes.send(Outcome {
                key,
                generation,
                verdict,
            });
        });
    }

    /// Counts a check's result and changes the instance's health when a threshold is met.
    pub(super) async fn judge(&mut self, outcome: Outcome) {
        let Some(timer) = self
            .checks
            .get_mut(&outcome.key)
            .filter(|t| t.generation == outcome.generation)
        else {
            return;
        };
        timer.running = false;
        let verdict = match outcome.verdict {
            Verdict::Inconclusive(why) => {
                self.metrics.checked("inconclusive");
                self.inconclusive.note(&outcome.key, &why);
                return;
            }
            Verdict::Pass => {
                self.metrics.checked("pass");
                timer.passes = timer.passes.saturating_add(1);
                timer.failures = 0;
                (!timer.healthy && timer.passes >= timer.spec.healthy_threshold)
                    .then(|| (true, format!("{} consecutive checks passed", timer.passes)))
            }
            Verdict::Fail(failure) => {
                self.metrics.checked("fail");
                timer.failures = timer.failures.saturating_add(1);
                timer.passes = 0;
                (timer.healthy && timer.failures >= timer.spec.unhealthy_threshold).then(|| {
                    (
                        false,
                        format!("{} consecutive checks failed: {failure}", timer.failures),
                    )
                })
            }
        };
        let Some((healthy, reason)) = verdict else {
            return;
        };
        timer.healthy = healthy;
        let label = if healthy { "healthy" } else { "unhealthy" };
        self.metrics
            .transitions
            .get_or_create(&ResultLabels { result: label })
            .inc();
        tracing::info!(instance = %outcome.key, healthy, %reason, "check changed health");
        let change = Change::CheckResult {
            key: outcome.key.clone(),
            healthy,
            reason,
        };
        // With `[etcd]`, into the instance's record, which every replica applies; when
        // etcd does not take it, the next result tries again.
        if self.registry.apply_shared(change).await.is_err()
            && let Some(timer) = self.checks.get_mut(&outcome.key)
        {
            timer.healthy = !healthy;
        }
    }
}
