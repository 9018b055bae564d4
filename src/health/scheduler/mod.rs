//! One run of the health task: every heartbeat deadline and every check in one queue,
//! and which of them this replica keeps.

mod checks;
mod cleanup;
mod heartbeats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

use self::checks::{CheckTimer, Inconclusive, Outcome};
use self::cleanup::{ReapTimer, reap_after};
use self::heartbeats::{HeartbeatTimer, Lapse};
use super::handle::{Command, Parts, Share};
use super::metrics::HealthMetrics;
use super::targets::{CheckLimits, check_target};
use crate::registry::{
    Change, CheckSpec, Difference, Instance, InstanceKey, RegistryHandle, Service,
};
use crate::store::members::{View, owner};

/// What a queue entry is due for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Due {
    Heartbeat(InstanceKey),
    Check(InstanceKey),
    /// An unhealthy instance's `deregister_after` ran out.
    Reap(InstanceKey),
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
        reaps: BTreeMap::new(),
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
    /// Unhealthy API instances with a `deregister_after`, until they recover or go.
    reaps: BTreeMap<InstanceKey, ReapTimer>,
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
                    Some(Command::Touched(services)) => self.follow(
                        services.iter().map(|s| (&*s.namespace, &*s.name, s.after.as_ref())),
                    ),
                    Some(Command::Heartbeat(key, reply)) => self.renew(key, reply).await,
                    #[cfg(test)]
                    Some(Command::Crash) => panic!("the health task was told to crash"),
                },
                Some(outcome) = results.recv() => self.judge(outcome).await,
                Some(lapse) = lapsed.recv() => self.lapsed(lapse),
                Some(due) = std::future::poll_fn(|cx| self.queue.poll_expired(cx)) => match due.into_inner() {
                    Due::Heartbeat(key) => self.expire(key).await,
                    Due::Check(key) => self.start_check(key),
                    Due::Reap(key) => self.reap(key),
                },
            }
        }
    }

    /// Follows every service of the registry's current snapshot.
    fn follow_everything(&mut self) {
        let snapshot = self.registry.snapshot();
        let everything = snapshot.namespaces.iter().flat_map(|(ns, namespace)| {
            let services = namespace.services.iter();
            services.map(move |(svc, service)| (ns.as_str(), &**svc, Some(service)))
        });
        self.follow(everything);
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

    /// Starts, restarts or stops the timers of the instances of `services` (namespace,
    /// name, and the service now: None when deleted).
    fn follow<'a>(
        &mut self,
        services: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a Arc<Service>>)>,
    ) {
        for (ns, svc, service) in services {
            let instance =
                |key: &InstanceKey| service.and_then(|s| s.instances.get(key.id.as_str()));
            // Only this service's timers: keys sort by namespace, service, then id.
            let first = InstanceKey {
                namespace: ns.to_owned(),
                service: svc.to_owned(),
                id: String::new(),
            };
            let gone = stale(&self.heartbeats, &first, |key, timer| {
                instance(key).is_some_and(|i| {
                    i.spec.heartbeat_ttl() == Some(timer.ttl)
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
            let gone = stale(&self.reaps, &first, |key, timer| {
                instance(key).is_some_and(|i| {
                    let service = service.expect("the instance is in it");
                    reap_after(service, i).is_some()
                        && i.updated == timer.registered
                        && self.owns(key, i)
                })
            });
            for key in gone {
                if let Some(timer) = self.reaps.remove(&key) {
                    self.queue.remove(&timer.entry);
                }
            }
            let Some(service) = service else {
                continue;
            };
            for instance in service.instances.values() {
                let check = check_of(service, instance);
                if instance.spec.heartbeat_ttl().is_none() && check.is_none() {
                    continue;
                }
                let key = InstanceKey {
                    namespace: ns.to_owned(),
                    service: svc.to_owned(),
                    id: instance.id.clone(),
                };
                if let Some(ttl) = instance.spec.heartbeat_ttl()
                    && self.owns(&key, instance)
                {
                    self.follow_heartbeat(&key, instance, ttl);
                }
                if let Some(after) = reap_after(service, instance)
                    && self.owns(&key, instance)
                {
                    self.follow_reap(&key, instance, after);
                }
                if let Some((spec, target)) = check
                    && !self.checks.contains_key(&key)
                    && self.owns(&key, instance)
                {
                    self.follow_check(key, instance, spec, target);
                }
            }
        }
        let owned = i64::try_from(self.checks.len()).unwrap_or(i64::MAX);
        self.metrics.owned.set(owned);
    }
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
    service.instances.values().any(|i| has_timer(service, i))
}

/// Whether an instance `service` has in place of `old`'s (the same service one publish
/// earlier, with the same policy) has a timer to keep: only the instances that changed
/// are read.
pub(super) fn gains_timers(old: &Service, service: &Service) -> bool {
    old.instances
        .diff(&service.instances)
        .any(|difference| match difference {
            Difference::Added(new) | Difference::Updated { new, .. } => has_timer(service, new),
            Difference::Removed(_) => false,
        })
}

/// Whether `instance` of `service` has a timer to keep.
fn has_timer(service: &Service, instance: &Instance) -> bool {
    instance.spec.heartbeat_ttl().is_some() || check_of(service, instance).is_some()
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
