//! One run of the health task: every heartbeat deadline and every check in one queue.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use super::handle::{Command, HeartbeatError, Parts, Reply, Share};
use super::metrics::{HealthMetrics, ResultLabels};
use super::probe::{self, Verdict};
use super::targets::{CheckLimits, check_target};
use crate::registry::check::heartbeat_period;
use crate::registry::{
    Change, ChangeError, CheckSpec, Instance, InstanceKey, RegistryHandle, Service, Snapshot,
};
use crate::store::members::{View, owner};

/// How soon a shared heartbeat's lease is asked about again when etcd says it is in its
/// last second, or cannot say.
const LEASE_RECHECK: Duration = Duration::from_millis(250);
/// Inconclusive checks are logged at most this often, with their count.
const INCONCLUSIVE_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a queue entry is due for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Due {
    Heartbeat(InstanceKey),
    Check(InstanceKey),
}

/// A finished check: which instance, which incarnation of its check, the verdict.
struct Outcome {
    key: InstanceKey,
    generation: u64,
    verdict: Verdict,
}

/// With `[etcd]`: what etcd said of a shared heartbeat's lease when its deadline came
/// (how long it has left, `None` once it is gone), for the registration `registered`.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
struct Lapse {
    key: InstanceKey,
    registered: SystemTime,
    left: Result<Option<Duration>, String>,
}

/// One instance's heartbeat deadline.
struct HeartbeatTimer {
    ttl: Duration,
    /// The registration it times; a new registration (or a change of TTL) restarts it.
    registered: SystemTime,
    /// In the queue while the instance is healthy; `None` once it expired (or, with
    /// `[etcd]`, while etcd is asked about its lease).
    entry: Option<delay_queue::Key>,
    deadline: Instant,
    /// The instance's heartbeat health as last followed: a change from unhealthy to
    /// healthy that this replica did not make (a heartbeat to another replica, with
    /// `[etcd]`) starts the deadline again.
    seen_ok: bool,
}

/// One instance's active check and its run of results.
struct CheckTimer {
    spec: Arc<CheckSpec>,
    target: SocketAddr,
    /// `None` when `[health]` denies the target: the check is never run.
    entry: Option<delay_queue::Key>,
    /// Bumped when the check is replaced, so a late result of the old one is ignored.
    generation: u64,
    running: bool,
    healthy: bool,
    passes: u32,
    failures: u32,
}

/// One run of the health task (see [`HealthTask::run`](super::HealthTask::run)).
pub(super) async fn run(
    parts: Parts,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    shutdown: CancellationToken,
) {
    let (outcomes, results) = mpsc::unbounded_channel();
    let (lapses, lapsed) = mpsc::unbounded_channel();
    let scheduler = Scheduler {
        registry: parts.registry,
        metrics: parts.metrics,
        limits: parts.limits,
        heartbeats: BTreeMap::new(),
        checks: BTreeMap::new(),
        queue: DelayQueue::new(),
        client: parts.client,
        slots: parts.slots,
        outcomes,
        generations: 0,
        notes: Vec::new(),
        inconclusive: Inconclusive::default(),
        members: Vec::new(),
        share: parts.share,
        lapses,
    };
    scheduler.run(commands, results, lapsed, shutdown).await
}

struct Scheduler {
    registry: RegistryHandle,
    metrics: HealthMetrics,
    /// Ordered, so a change to one service visits only that service's timers.
    heartbeats: BTreeMap<InstanceKey, HeartbeatTimer>,
    checks: BTreeMap<InstanceKey, CheckTimer>,
    queue: DelayQueue<Due>,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    generations: u64,
    limits: Arc<CheckLimits>,
    /// Check reasons to record for targets `[health]` denies (not run, health unchanged).
    notes: Vec<Change>,
    inconclusive: Inconclusive,
    /// With `[etcd]`: which checks are this replica's, and the members as last seen.
    share: Option<Share>,
    members: Vec<String>,
    /// Where the lease lookups of shared heartbeats' deadlines answer (one in flight
    /// per timer at most).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    lapses: mpsc::UnboundedSender<Lapse>,
}

/// Inconclusive checks since the last warning about them.
#[derive(Default)]
struct Inconclusive {
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
    async fn run(
        mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        mut results: mpsc::UnboundedReceiver<Outcome>,
        mut lapsed: mpsc::UnboundedReceiver<Lapse>,
        shutdown: CancellationToken,
    ) {
        let mut view = self.share.as_ref().map(|share| share.members.clone());
        if let Some(view) = &mut view {
            self.members = view.borrow_and_update().members.clone();
        }
        self.follow_everything();
        loop {
            for note in std::mem::take(&mut self.notes) {
                let _ = self.registry.apply_shared(note).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(members) = members_changed(&mut view) => {
                    // Checks move to and from this replica with the member set.
                    self.members = members;
                    self.follow_everything();
                }
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Touched(snapshot, services)) => self.follow(&snapshot, &services),
                    Some(Command::Heartbeat(key, reply)) => self.renew(key, reply).await,
                    #[cfg(test)]
                    Some(Command::Crash) => panic!("the health task was told to crash"),
                },
                Some(outcome) = results.recv() => self.judge(outcome).await,
                Some(lapse) = lapsed.recv() => self.lapsed(lapse),
                Some(due) = std::future::poll_fn(|cx| self.queue.poll_expired(cx)) => match due.into_inner() {
                    Due::Heartbeat(key) => self.expire(key).await,
                    Due::Check(key) => self.start_check(key),
                },
            }
        }
    }

    /// Follows every service of the registry's current snapshot.
    fn follow_everything(&mut self) {
        let snapshot = self.registry.snapshot();
        let everything: BTreeSet<_> = snapshot
            .namespaces
            .iter()
            .flat_map(|(ns, namespace)| {
                namespace
                    .services
                    .keys()
                    .map(move |svc| (ns.clone(), svc.to_string()))
            })
            .collect();
        self.follow(&snapshot, &everything);
    }

    /// Whether this replica runs the check of `instance` and keeps its heartbeat
    /// deadline (always, without `[etcd]`).
    fn owns(&self, key: &InstanceKey, instance: &Instance) -> bool {
        let Some(share) = &self.share else {
            return true;
        };
        share.local.contains(&instance.source)
            || owner(&self.members, &key_parts(key)) == Some(share.id.as_str())
    }

    /// Starts, restarts or stops the timers of the instances of `services`.
    fn follow(&mut self, snapshot: &Snapshot, services: &BTreeSet<(String, String)>) {
        for (ns, svc) in services {
            let service = snapshot.service(ns, svc);
            let instance =
                |key: &InstanceKey| service.and_then(|s| s.instances.get(key.id.as_str()));
            // Only this service's timers: keys sort by namespace, service, then id.
            let first = InstanceKey {
                namespace: ns.clone(),
                service: svc.clone(),
                id: String::new(),
            };
            let gone = stale(&self.heartbeats, &first, |key, timer| {
                instance(key).is_some_and(|i| {
                    i.spec.heartbeat_ttl == Some(timer.ttl)
                        && i.updated == timer.registered
                        && self.owns(key, i)
                })
            });
            for key in gone {
                if let Some(entry) = self.heartbeats.remove(&key).and_then(|t| t.entry) {
                    self.queue.remove(&entry);
                }
            }
            let gone = stale(&self.checks, &first, |key, timer| {
                instance(key).is_some_and(|i| {
                    let service = service.expect("the instance is in it");
                    check_of(service, i) == Some((&*timer.spec, timer.target)) && self.owns(key, i)
                })
            });
            for key in gone {
                if let Some(entry) = self.checks.remove(&key).and_then(|t| t.entry) {
                    self.queue.remove(&entry);
                }
            }
            let Some(service) = service else {
                continue;
            };
            for instance in service.instances.values() {
                let check = check_of(service, instance);
                if instance.spec.heartbeat_ttl.is_none() && check.is_none() {
                    continue;
                }
                let key = InstanceKey {
                    namespace: ns.clone(),
                    service: svc.clone(),
                    id: instance.id.clone(),
                };
                if let Some(ttl) = instance.spec.heartbeat_ttl
                    && self.owns(&key, instance)
                {
                    let deadline = Instant::now() + heartbeat_period(ttl);
                    match self.heartbeats.get_mut(&key) {
                        None => {
                            let entry = self
                                .queue
                                .insert_at(Due::Heartbeat(key.clone()), deadline.into());
                            let timer = HeartbeatTimer {
                                ttl,
                                registered: instance.updated,
                                entry: Some(entry),
                                deadline,
                                seen_ok: instance.heartbeat_ok,
                            };
                            self.heartbeats.insert(key.clone(), timer);
                        }
                        Some(timer) => {
                            let revived = instance.heartbeat_ok && !timer.seen_ok;
                            timer.seen_ok = instance.heartbeat_ok;
                            // Expired, then healthy again by a heartbeat to another
                            // replica (with `[etcd]`): its deadline runs again.
                            if revived && timer.entry.is_none() {
                                let entry = self
                                    .queue
                                    .insert_at(Due::Heartbeat(key.clone()), deadline.into());
                                timer.entry = Some(entry);
                                timer.deadline = deadline;
                            }
                        }
                    }
                }
                if let Some((spec, target)) = check
                    && !self.checks.contains_key(&key)
                    && self.owns(&key, instance)
                {
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
            }
        }
        let owned = i64::try_from(self.checks.len()).unwrap_or(i64::MAX);
        self.metrics.owned.set(owned);
    }

    /// Runs a due check in its own task and schedules the next one.
    fn start_check(&mut self, key: InstanceKey) {
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
    async fn judge(&mut self, outcome: Outcome) {
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

    /// Moves a heartbeat's deadline (if this replica keeps it) and makes an expired
    /// instance healthy again before `reply` is answered.
    async fn renew(&mut self, key: InstanceKey, reply: Reply) {
        let snapshot = self.registry.snapshot();
        let Some(instance) = snapshot.instance(&key).cloned() else {
            let _ = reply.send(Err(HeartbeatError::NotFound(key)));
            return;
        };
        let Some(ttl) = instance.spec.heartbeat_ttl else {
            let _ = reply.send(Err(HeartbeatError::NoTtl(key)));
            return;
        };
        if !self.heartbeats.contains_key(&key) && self.owns(&key, &instance) {
            self.follow(
                &snapshot,
                &BTreeSet::from([(key.namespace.clone(), key.service.clone())]),
            );
        }
        let deadline = Instant::now() + heartbeat_period(ttl);
        if let Some(timer) = self.heartbeats.get_mut(&key) {
            match &timer.entry {
                Some(entry) => self.queue.reset_at(entry, deadline.into()),
                None => {
                    timer.entry = Some(
                        self.queue
                            .insert_at(Due::Heartbeat(key.clone()), deadline.into()),
                    )
                }
            }
            timer.deadline = deadline;
        }
        if instance.heartbeat_ok {
            let _ = reply.send(Ok(()));
            return;
        }
        let change = Change::Heartbeat { key: key.clone() };
        if self.shared_heartbeat(&key, &instance) {
            // Into the instance's record, for every replica: a commit to wait for, off
            // this task.
            let registry = self.registry.clone();
            tokio::spawn(async move {
                let revived = registry.apply_shared(change).await;
                let _ = reply.send(revived.map(drop).map_err(unavailable));
            });
        } else {
            let revived = self.registry.apply(change).await;
            let _ = reply.send(revived.map(drop).map_err(|_| HeartbeatError::NotFound(key)));
        }
    }

    /// Whether the heartbeats of `instance` are shared by every replica (with `[etcd]`,
    /// an instance etcd holds): its deadline is then judged by its lease.
    fn shared_heartbeat(&self, key: &InstanceKey, instance: &Instance) -> bool {
        #[cfg(feature = "etcd")]
        if let Some(share) = &self.share {
            return share.lease(key, instance).is_some();
        }
        let _ = (key, instance);
        false
    }

    async fn expire(&mut self, key: InstanceKey) {
        let Some(timer) = self.heartbeats.get_mut(&key) else {
            return;
        };
        timer.entry = None;
        let deadline = timer.deadline;
        if self.ask_lease(&key) {
            return;
        }
        let expired = Change::HeartbeatExpired { key: key.clone() };
        if let Ok(applied) = self.registry.apply(expired).await {
            expired_metrics(&self.metrics, &key, deadline, applied.revision);
        }
    }

    /// For a shared heartbeat (with `[etcd]`), whose renewals other replicas may have
    /// taken: asks etcd, off this task, whether its lease lapsed; the answer comes back
    /// as a [`Lapse`]. False when the deadline is this replica's alone.
    fn ask_lease(&self, key: &InstanceKey) -> bool {
        #[cfg(feature = "etcd")]
        if let (Some(share), Some(timer)) = (&self.share, self.heartbeats.get(key)) {
            let snapshot = self.registry.snapshot();
            let instance = snapshot.instance(key);
            if let Some(lease) = instance.and_then(|i| share.lease(key, i)) {
                let (leases, lapses) = (share.leases.clone(), self.lapses.clone());
                let (key, registered) = (key.clone(), timer.registered);
                tokio::spawn(async move {
                    let left = leases.remaining(lease).await.map_err(|e| e.to_string());
                    let _ = lapses.send(Lapse {
                        key,
                        registered,
                        left,
                    });
                });
                return true;
            }
        }
        let _ = key;
        false
    }

    /// A shared heartbeat's lease as etcd reported it at the deadline: the deadline
    /// moves to the lease's end, or the expiry goes into the instance's record.
    fn lapsed(&mut self, lapse: Lapse) {
        let Some(timer) = self
            .heartbeats
            .get_mut(&lapse.key)
            .filter(|t| t.entry.is_none() && t.registered == lapse.registered)
        else {
            return;
        };
        let again = match lapse.left {
            // Whole seconds, rounded down: a lease in its last second says 0.
            Ok(Some(left)) => left.max(LEASE_RECHECK),
            Ok(None) => {
                let (registry, metrics) = (self.registry.clone(), self.metrics.clone());
                let (key, deadline) = (lapse.key, timer.deadline);
                tokio::spawn(async move {
                    let expired = Change::HeartbeatExpired { key: key.clone() };
                    if let Ok(applied) = registry.apply_shared(expired).await {
                        expired_metrics(&metrics, &key, deadline, applied.revision);
                    }
                });
                return;
            }
            // etcd cannot say: the instance keeps the health every replica serves.
            Err(problem) => {
                tracing::debug!(instance = %lapse.key, %problem, "heartbeat lease unknown");
                LEASE_RECHECK
            }
        };
        timer.deadline = Instant::now() + again;
        timer.entry = Some(
            self.queue
                .insert_at(Due::Heartbeat(lapse.key), timer.deadline.into()),
        );
    }
}

/// Counts an expiry and how late it was applied.
fn expired_metrics(metrics: &HealthMetrics, key: &InstanceKey, deadline: Instant, revision: u64) {
    metrics.expired.inc();
    metrics.lateness.observe(deadline.elapsed().as_secs_f64());
    tracing::info!(instance = %key, revision, "heartbeat missed: unhealthy");
}

fn unavailable(error: ChangeError) -> HeartbeatError {
    HeartbeatError::Unavailable(error.to_string())
}

/// The member set when it changes; never, without `[etcd]` or once it is gone.
async fn members_changed(view: &mut Option<watch::Receiver<View>>) -> Option<Vec<String>> {
    let Some(receiver) = view else {
        return std::future::pending().await;
    };
    if receiver.changed().await.is_err() {
        *view = None;
        return std::future::pending().await;
    }
    Some(receiver.borrow_and_update().members.clone())
}

/// An instance key as rendezvous hashing names it: `ns/service/id`, in parts.
fn key_parts(key: &InstanceKey) -> [&str; 5] {
    [&key.namespace, "/", &key.service, "/", &key.id]
}

/// Whether some instance of `service` has a timer to keep: a heartbeat TTL, or a check
/// with an address to probe (what [`Scheduler::follow`] starts timers for).
pub(super) fn has_timers(service: &Service) -> bool {
    service
        .instances
        .values()
        .any(|i| i.spec.heartbeat_ttl.is_some() || check_of(service, i).is_some())
}

/// The keys of one service's timers in `timers` that `current` no longer accepts;
/// `first` is the lowest key of that service (its id empty).
fn stale<T>(
    timers: &BTreeMap<InstanceKey, T>,
    first: &InstanceKey,
    current: impl Fn(&InstanceKey, &T) -> bool,
) -> Vec<InstanceKey> {
    timers
        .range(first..)
        .take_while(|(key, _)| key.namespace == first.namespace && key.service == first.service)
        .filter(|(key, timer)| !current(key, timer))
        .map(|(key, _)| key.clone())
        .collect()
}

/// The check an instance of `service` gets and where it goes (see [`check_target`]).
fn check_of<'a>(
    service: &'a Service,
    instance: &'a Instance,
) -> Option<(&'a CheckSpec, SocketAddr)> {
    check_target(&instance.spec, &service.policy)
}
