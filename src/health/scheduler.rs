//! The health task: per-instance deadlines in one queue.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::registry::{Change, InstanceKey, PublishHook, RegistryHandle, Snapshot};

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
    /// Services whose instances may have changed.
    Touched(BTreeSet<(String, String)>),
    Heartbeat(InstanceKey, oneshot::Sender<Result<(), HeartbeatError>>),
}

/// `muster_health_*` metrics.
#[derive(Clone)]
pub struct HealthMetrics {
    expired: Counter,
    lateness: Histogram,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        Self {
            expired: Counter::default(),
            lateness: Histogram::new(exponential_buckets(0.000_1, 2.0, 14)),
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
    }
}

/// A handle to the health task.
#[derive(Clone)]
pub struct Health {
    commands: mpsc::UnboundedSender<Command>,
}

/// One instance's heartbeat timer.
struct Timer {
    ttl: Duration,
    /// The registration it times; a new registration (or a change of TTL) restarts it.
    registered: SystemTime,
    /// In the queue while the instance is healthy; `None` once it expired.
    entry: Option<delay_queue::Key>,
    deadline: Instant,
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
        let task = Scheduler {
            registry,
            metrics,
            timers: HashMap::new(),
            queue: DelayQueue::new(),
        };
        (Self { commands }, task.run(receiver, shutdown))
    }

    /// The hook that tells the task which services a registry change touched.
    pub fn publish_hook(&self) -> PublishHook {
        let commands = self.commands.clone();
        Box::new(move |_snapshot, touched| {
            if !touched.services.is_empty() {
                let _ = commands.send(Command::Touched(touched.services.clone()));
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
    timers: HashMap<InstanceKey, Timer>,
    queue: DelayQueue<InstanceKey>,
}

impl Scheduler {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
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
                    .map(move |svc| (ns.clone(), svc.clone()))
            })
            .collect();
        self.follow(&snapshot, &everything);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Touched(services)) => self.follow(&self.registry.snapshot(), &services),
                    Some(Command::Heartbeat(key, reply)) => {
                        let result = self.renew(key).await;
                        let _ = reply.send(result);
                    }
                },
                Some(expired) = std::future::poll_fn(|cx| self.queue.poll_expired(cx)) => {
                    self.expire(expired.into_inner()).await;
                }
            }
        }
    }

    /// Starts, restarts or stops the timers of the instances of `services`.
    fn follow(&mut self, snapshot: &Snapshot, services: &BTreeSet<(String, String)>) {
        for (ns, svc) in services {
            self.timers.retain(|key, timer| {
                let current = key.namespace != *ns
                    || key.service != *svc
                    || snapshot
                        .service(ns, svc)
                        .and_then(|s| s.instances.get(&key.id))
                        .is_some_and(|i| {
                            i.spec.heartbeat_ttl == Some(timer.ttl) && i.updated == timer.registered
                        });
                if !current && let Some(entry) = timer.entry.take() {
                    self.queue.remove(&entry);
                }
                current
            });
            let Some(service) = snapshot.service(ns, svc) else {
                continue;
            };
            for instance in service.instances.values() {
                let Some(ttl) = instance.spec.heartbeat_ttl else {
                    continue;
                };
                let key = InstanceKey {
                    namespace: ns.clone(),
                    service: svc.clone(),
                    id: instance.id.clone(),
                };
                if !self.timers.contains_key(&key) {
                    let deadline = Instant::now() + ttl;
                    let timer = Timer {
                        ttl,
                        registered: instance.updated,
                        entry: Some(self.queue.insert_at(key.clone(), deadline.into())),
                        deadline,
                    };
                    self.timers.insert(key, timer);
                }
            }
        }
    }

    async fn renew(&mut self, key: InstanceKey) -> Result<(), HeartbeatError> {
        let snapshot = self.registry.snapshot();
        let instance = snapshot
            .service(&key.namespace, &key.service)
            .and_then(|s| s.instances.get(&key.id))
            .cloned()
            .ok_or_else(|| HeartbeatError::NotFound(key.clone()))?;
        let ttl = instance
            .spec
            .heartbeat_ttl
            .ok_or_else(|| HeartbeatError::NoTtl(key.clone()))?;
        if !self.timers.contains_key(&key) {
            self.follow(
                &snapshot,
                &BTreeSet::from([(key.namespace.clone(), key.service.clone())]),
            );
        }
        let deadline = Instant::now() + ttl;
        if let Some(timer) = self.timers.get_mut(&key) {
            match &timer.entry {
                Some(entry) => self.queue.reset_at(entry, deadline.into()),
                None => timer.entry = Some(self.queue.insert_at(key.clone(), deadline.into())),
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
        let Some(timer) = self.timers.get_mut(&key) else {
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
