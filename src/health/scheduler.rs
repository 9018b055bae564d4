//! The health task: every heartbeat deadline and every check in one queue.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rand::Rng;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use super::probe;
use crate::registry::{
    Change, CheckSpec, Instance, InstanceKey, PublishHook, RegistryHandle, Service, Snapshot,
};

/// Checks running at once at most; more wait for a slot (the next tick skips a check
/// still running).
const CONCURRENT_CHECKS: usize = 512;

/// Why a heartbeat was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    #[error("instance {0} does not exist")]
    NotFound(InstanceKey),
    #[error("instance {0} was registered without a heartbeat_ttl")]
    NoTtl(InstanceKey),
    #[error("the health task has stopped")]
    Stopped,
}

enum Command {
    /// Services whose instances may have changed, in the snapshot that changed them
    /// (registry readers may see it only once every publish hook has run).
    Touched(Arc<Snapshot>, BTreeSet<(String, String)>),
    Heartbeat(InstanceKey, oneshot::Sender<Result<(), HeartbeatError>>),
}

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
    result: Result<(), String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `muster_health_*` metrics.
#[derive(Clone)]
pub struct HealthMetrics {
    expired: Counter,
    lateness: Histogram,
    checks: Family<ResultLabels, Counter>,
    transitions: Family<ResultLabels, Counter>,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        Self {
            expired: Counter::default(),
            lateness: Histogram::new(exponential_buckets(0.000_1, 2.0, 14)),
            checks: Family::default(),
            transitions: Family::default(),
        }
    }
}

impl HealthMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let health = registry.sub_registry_with_prefix("muster_health");
        health.register(
            "heartbeat_expired",
            "Instances marked unhealthy by a missed heartbeat",
            self.expired.clone(),
        );
        health.register(
            "expiry_lateness_seconds",
            "From a heartbeat deadline to the registry applying the expiry",
            self.lateness.clone(),
        );
        health.register(
            "checks",
            "Active checks run, by result (pass, fail)",
            self.checks.clone(),
        );
        health.register(
            "transitions",
            "Instances a check turned healthy or unhealthy, by result",
            self.transitions.clone(),
        );
    }
}

/// A handle to the health task.
#[derive(Clone)]
pub struct Health {
    commands: mpsc::UnboundedSender<Command>,
}

/// One instance's heartbeat deadline.
struct HeartbeatTimer {
    ttl: Duration,
    /// The registration it times; a new registration (or a change of TTL) restarts it.
    registered: SystemTime,
    /// In the queue while the instance is healthy; `None` once it expired.
    entry: Option<delay_queue::Key>,
    deadline: Instant,
}

/// One instance's active check and its run of results.
struct CheckTimer {
    spec: Arc<CheckSpec>,
    target: SocketAddr,
    entry: delay_queue::Key,
    /// Bumped when the check is replaced, so a late result of the old one is ignored.
    generation: u64,
    running: bool,
    healthy: bool,
    passes: u32,
    failures: u32,
}

impl Health {
    /// The health task (to spawn) and its handle; `registry` is where it sends changes and
    /// reads instances.
    pub fn new(
        registry: RegistryHandle,
        metrics: HealthMetrics,
        shutdown: CancellationToken,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (outcomes, results) = mpsc::unbounded_channel();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per check, as kubelet's and Consul's HTTP probes do: over
            // a kept-alive connection a check passes after the listener has closed.
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client without TLS builds");
        let task = Scheduler {
            registry,
            metrics,
            heartbeats: BTreeMap::new(),
            checks: BTreeMap::new(),
            queue: DelayQueue::new(),
            client,
            slots: Arc::new(Semaphore::new(CONCURRENT_CHECKS)),
            outcomes,
            generations: 0,
        };
        (Self { commands }, task.run(receiver, results, shutdown))
    }

    /// The hook that tells the task which services a registry change touched.
    ///
    /// Until some instance has a heartbeat TTL or a check, the task holds no timers and
    /// a change gives it nothing to do, so nothing is sent: a registry without health
    /// checks pays no wake-up of the task per change. Once one has, every change is sent.
    pub fn publish_hook(&self) -> PublishHook {
        let commands = self.commands.clone();
        let (mut armed, mut first) = (false, true);
        Box::new(move |snapshot, touched| {
            armed = armed
                || match std::mem::replace(&mut first, false) {
                    // The snapshot the hook is attached with: the task starts from it.
                    true => snapshot
                        .namespaces
                        .values()
                        .flat_map(|namespace| namespace.services.values())
                        .any(|service| has_timers(service)),
                    false => touched
                        .services
                        .iter()
                        .filter_map(|(ns, svc)| snapshot.service(ns, svc))
                        .any(|service| has_timers(service)),
                };
            if armed && !touched.services.is_empty() {
                let services = touched.services.clone();
                let _ = commands.send(Command::Touched(snapshot.clone(), services));
            }
        })
    }

    /// Renews an instance's heartbeat: its deadline moves to now + TTL, and if it had
    /// expired it is healthy again before this returns.
    pub async fn heartbeat(&self, key: InstanceKey) -> Result<(), HeartbeatError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Heartbeat(key, reply))
            .map_err(|_| HeartbeatError::Stopped)?;
        answer.await.map_err(|_| HeartbeatError::Stopped)?
    }
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
}

impl Scheduler {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut results: mpsc::UnboundedReceiver<Outcome>,
        shutdown: CancellationToken,
    ) {
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
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Touched(snapshot, services)) => self.follow(&snapshot, &services),
                    Some(Command::Heartbeat(key, reply)) => {
                        let result = self.renew(key).await;
                        let _ = reply.send(result);
                    }
                },
                Some(outcome) = results.recv() => self.judge(outcome).await,
                Some(due) = std::future::poll_fn(|cx| self.queue.poll_expired(cx)) => match due.into_inner() {
                    Due::Heartbeat(key) => self.expire(key).await,
                    Due::Check(key) => self.start_check(key),
                },
            }
        }
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
                    i.spec.heartbeat_ttl == Some(timer.ttl) && i.updated == timer.registered
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
                    check_of(service, i) == Some((&*timer.spec, timer.target))
                })
            });
            for key in gone {
                if let Some(timer) = self.checks.remove(&key) {
                    self.queue.remove(&timer.entry);
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
                    && !self.heartbeats.contains_key(&key)
                {
                    let deadline = Instant::now() + ttl;
                    let timer = HeartbeatTimer {
                        ttl,
                        registered: instance.updated,
                        entry: Some(
                            self.queue
                                .insert_at(Due::Heartbeat(key.clone()), deadline.into()),
                        ),
                        deadline,
                    };
                    self.heartbeats.insert(key.clone(), timer);
                }
                if let Some((spec, target)) = check
                    && !self.checks.contains_key(&key)
                {
                    // A random first delay spreads thousands of checks over the interval.
                    let first = spec.interval.mul_f64(rand::rng().random::<f64>());
                    self.generations += 1;
                    let timer = CheckTimer {
                        spec: Arc::new(spec.clone()),
                        target,
                        entry: self.queue.insert(Due::Check(key.clone()), first),
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
    }

    /// Runs a due check in its own task and schedules the next one.
    fn start_check(&mut self, key: InstanceKey) {
        let Some(timer) = self.checks.get_mut(&key) else {
            return;
        };
        timer.entry = self
            .queue
            .insert(Due::Check(key.clone()), timer.spec.interval);
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
        tokio::spawn(async move {
            let _slot = slots.acquire().await;
            let result = probe::probe(&client, target, &spec).await;
            let _ = outcomes.send(Outcome {
                key,
                generation,
                result,
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
        let label = if outcome.result.is_ok() {
            "pass"
        } else {
            "fail"
        };
        self.metrics
            .checks
            .get_or_create(&ResultLabels { result: label })
            .inc();
        let verdict = match outcome.result {
            Ok(()) => {
                timer.passes += 1;
                timer.failures = 0;
                (!timer.healthy && timer.passes >= timer.spec.healthy_threshold)
                    .then(|| (true, format!("{} consecutive checks passed", timer.passes)))
            }
            Err(failure) => {
                timer.failures += 1;
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
            key: outcome.key,
            healthy,
            reason,
        };
        let _ = self.registry.apply(change).await;
    }

    async fn renew(&mut self, key: InstanceKey) -> Result<(), HeartbeatError> {
        let snapshot = self.registry.snapshot();
        let instance = snapshot
            .service(&key.namespace, &key.service)
            .and_then(|s| s.instances.get(key.id.as_str()))
            .cloned()
            .ok_or_else(|| HeartbeatError::NotFound(key.clone()))?;
        let ttl = instance
            .spec
            .heartbeat_ttl
            .ok_or_else(|| HeartbeatError::NoTtl(key.clone()))?;
        if !self.heartbeats.contains_key(&key) {
            self.follow(
                &snapshot,
                &BTreeSet::from([(key.namespace.clone(), key.service.clone())]),
            );
        }
        let deadline = Instant::now() + ttl;
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
        if !instance.heartbeat_ok {
            self.registry
                .apply(Change::Heartbeat { key: key.clone() })
                .await
                .map_err(|_| HeartbeatError::NotFound(key))?;
        }
        Ok(())
    }

    async fn expire(&mut self, key: InstanceKey) {
        let Some(timer) = self.heartbeats.get_mut(&key) else {
            return;
        };
        timer.entry = None;
        let deadline = timer.deadline;
        if let Ok(applied) = self
            .registry
            .apply(Change::HeartbeatExpired { key: key.clone() })
            .await
        {
            self.metrics.expired.inc();
            self.metrics
                .lateness
                .observe(deadline.elapsed().as_secs_f64());
            tracing::info!(instance = %key, revision = applied.revision, "heartbeat missed: unhealthy");
        }
    }
}

/// Whether some instance of `service` has a timer to keep: a heartbeat TTL, or a check
/// with an address to probe (what [`Scheduler::follow`] starts timers for).
fn has_timers(service: &Service) -> bool {
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

/// The check an instance gets and where it goes, if it has one and an address to probe.
fn check_of<'a>(
    service: &'a Service,
    instance: &'a Instance,
) -> Option<(&'a CheckSpec, SocketAddr)> {
    let spec = instance.check(&service.policy)?;
    let ip = instance
        .spec
        .ipv4
        .map(Into::into)
        .or(instance.spec.ipv6.map(Into::into))?;
    Some((spec, probe::target(ip, instance.spec.port, spec)?))
}
