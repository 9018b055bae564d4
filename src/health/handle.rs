//! The health task's handle (heartbeats, the publish hook, where checks may go) and the
//! task itself, restartable: its commands outlive a run that panics.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{Mutex, Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::metrics::HealthMetrics;
use super::scheduler::{self, gains_timers, has_timers};
use super::targets::CheckLimits;
use crate::registry::{
    FieldError, InstanceKey, InstanceSpec, PublishHook, RegistryHandle, SourceId, TouchedService,
};
use crate::store::members::View;

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
    /// With `[etcd]`: the heartbeat could not be shared with the other replicas.
    #[error("{0}")]
    Unavailable(String),
}

/// Where a heartbeat is answered.
pub(super) type Reply = oneshot::Sender<Result<(), HeartbeatError>>;

/// What the task is asked to do, in the order asked.
pub(super) enum Command {
    /// Services whose instances may have changed, in the snapshot that changed them
    /// (registry readers may see it only once every publish hook has run).
    Touched(Vec<TouchedService>),
    Heartbeat(InstanceKey, Reply),
    /// Panic, as a bug would: tests of the restart.
    #[cfg(test)]
    Crash,
}

/// What every run of the task shares.
#[derive(Clone)]
pub(super) struct Parts {
    pub registry: RegistryHandle,
    pub metrics: HealthMetrics,
    pub limits: Arc<CheckLimits>,
    pub client: reqwest::Client,
    pub slots: Arc<Semaphore>,
    pub share: Option<Share>,
}

/// With `[etcd]`: the active checks of the instances every replica serves are spread
/// over the live members (rendezvous hashing of the instance key), each run by one,
/// which writes its verdicts to etcd; so check traffic does not grow with replicas.
#[derive(Clone)]
pub struct Share {
    /// This replica's member id.
    pub id: String,
    /// The live members, as the membership publishes them.
    pub members: watch::Receiver<View>,
    /// Sources whose instances are this replica's own (files): it checks them itself.
    pub local: Arc<HashSet<SourceId>>,
    /// The leases behind the heartbeats of the instances every replica serves.
    #[cfg(feature = "etcd")]
    pub leases: crate::store::etcd::HeartbeatLeases,
}

impl Share {
    /// The lease of `instance`'s heartbeat, unless it has none or is this replica's own
    /// (a file source's: its deadline is kept here, as without etcd).
    #[cfg(feature = "etcd")]
    pub(super) fn lease(
        &self,
        key: &InstanceKey,
        instance: &crate::registry::Instance,
    ) -> Option<crate::store::etcd::Lease> {
        let ttl = instance.spec.heartbeat_ttl()?;
        (!self.local.contains(&instance.source))
            .then(|| self.leases.lease(key, instance.created.into(), ttl))
    }
}

/// A handle to the health task.
#[derive(Clone)]
pub struct Health {
    commands: mpsc::UnboundedSender<Command>,
    limits: Arc<CheckLimits>,
    /// With `[etcd]`: where heartbeats are shared, and the instances they name.
    #[cfg(feature = "etcd")]
    shared: Option<(Share, RegistryHandle)>,
}

/// The health task, to run under a supervisor: each [`HealthTask::run`] starts from the
/// registry's state and reads the same commands, so heartbeats and the publish hook keep
/// working across a restart after a panic.
pub struct HealthTask {
    parts: Parts,
    /// Held by the run in progress; a run that panics drops it for the next.
    commands: Arc<Mutex<mpsc::UnboundedReceiver<Command>>>,
    shutdown: CancellationToken,
}

impl Health {
    /// The health task (to run) and its handle; `registry` is where it sends changes and
    /// reads instances, `limits` where checks may go.
    pub fn new(
        registry: RegistryHandle,
        metrics: HealthMetrics,
        limits: CheckLimits,
        shutdown: CancellationToken,
    ) -> (Self, HealthTask) {
        let (commands, receiver) = mpsc::unbounded_channel();
        // reqwest is built with TLS for the client commands, and builds every client on
        // rustls's process-wide provider: aws-lc-rs, as the listener and the AWS SDK.
        // Checks themselves are plain HTTP.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per check, as kubelet's and Consul's HTTP probes do: over
            // a kept-alive connection a check passes after the listener has closed.
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client builds");
        let limits = Arc::new(limits);
        let parts = Parts {
            #[cfg(feature = "etcd")]
            registry: registry.clone(),
            #[cfg(not(feature = "etcd"))]
            registry,
            metrics,
            limits: limits.clone(),
            client,
            slots: Arc::new(Semaphore::new(CONCURRENT_CHECKS)),
            share: None,
        };
        let task = HealthTask {
            parts,
            commands: Arc::new(Mutex::new(receiver)),
            shutdown,
        };
        let health = Self {
            commands,
            limits,
            #[cfg(feature = "etcd")]
            shared: None,
        };
        (health, task)
    }

    /// Shares heartbeats with the other replicas through `share`'s leases (with
    /// `[etcd]`); the task gets the same `share` ([`HealthTask::shared`]).
    #[cfg(feature = "etcd")]
    pub fn shared(mut self, share: Share, registry: RegistryHandle) -> Self {
        self.shared = Some((share, registry));
        self
    }

    /// Refuses a heartbeat TTL below the floor: with `[etcd]`, etcd's lease minimum.
    pub fn admit_heartbeat(&self, spec: &InstanceSpec) -> Result<(), FieldError> {
        match (spec.heartbeat_ttl(), self.heartbeat_floor()) {
            (Some(ttl), Some(floor)) if ttl < floor => Err(FieldError::new(
                "heartbeat_ttl",
                format!(
                    "{} is below {}, the shortest with [etcd] (etcd's lease minimum)",
                    humantime::format_duration(ttl),
                    humantime::format_duration(floor),
                ),
            )),
            _ => Ok(()),
        }
    }

    fn heartbeat_floor(&self) -> Option<std::time::Duration> {
        #[cfg(feature = "etcd")]
        if self.shared.is_some() {
            return Some(crate::store::etcd::MIN_HEARTBEAT_TTL);
        }
        None
    }

    /// Where checks may go and how often (`[health]`).
    pub fn limits(&self) -> &CheckLimits {
        &self.limits
    }

    /// The hook that tells the task which services a registry change touched.
    ///
    /// Until some instance has a heartbeat TTL or a check, the task holds no timers and
    /// a change gives it nothing to do, so nothing is sent: a registry without health
    /// checks pays no wake-up of the task per change. Once one has, every change is sent.
    ///
    /// Before it arms, a publish is checked for what it changed: the instances that differ
    /// from the previous snapshot's (a pointer walk), or the whole service when its
    /// policy changed, so a registry without timers pays per change, not per instance of
    /// each changed service.
    pub fn publish_hook(&self) -> PublishHook {
        let commands = self.commands.clone();
        let mut armed = false;
        let mut attached = false;
        Box::new(move |snapshot, touched| {
            armed = armed
                || match std::mem::replace(&mut attached, true) {
                    // The snapshot the hook is attached with: the task starts from it.
                    false => snapshot
                        .namespaces
                        .values()
                        .flat_map(|namespace| namespace.services.values())
                        .any(|service| has_timers(service)),
                    // Each changed service comes with its versions: no lookup by name.
                    true => touched.services().iter().any(|touched| {
                        let Some(service) = &touched.after else {
                            return false;
                        };
                        match &touched.before {
                            Some(old) if Arc::ptr_eq(&old.policy, &service.policy) => {
                                gains_timers(old, service)
                            }
                            _ => has_timers(service),
                        }
                    }),
                };
            if armed && !touched.services().is_empty() {
                // Armed for good: the task follows every change from now on.
                let services = touched.services().to_vec();
                let _ = commands.send(Command::Touched(services));
            }
        })
    }

    /// Renews an instance's heartbeat: its deadline moves to now + TTL, and if it had
    /// expired it is healthy again before this returns.
    pub async fn heartbeat(&self, key: InstanceKey) -> Result<(), HeartbeatError> {
        // With `[etcd]`, the lease first: once this answers, the heartbeat counts on
        // every replica.
        #[cfg(feature = "etcd")]
        if let Some((share, registry)) = &self.shared {
            let snapshot = registry.snapshot();
            let instance = snapshot.instance(&key);
            if let Some(lease) = instance.and_then(|i| share.lease(&key, i)) {
                share
                    .leases
                    .renew(lease)
                    .await
                    .map_err(|e| HeartbeatError::Unavailable(e.to_string()))?;
            }
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Heartbeat(key, reply))
            .map_err(|_| HeartbeatError::Stopped)?;
        answer.await.map_err(|_| HeartbeatError::Stopped)?
    }

    /// Makes the task panic.
    #[cfg(test)]
    pub(super) fn crash(&self) {
        let _ = self.commands.send(Command::Crash);
    }
}

impl HealthTask {
    /// Runs only the checks `share` gives this replica (with `[etcd]`).
    pub fn shared(mut self, share: Share) -> Self {
        self.parts.share = Some(share);
        self
    }

    /// One run of the task: timers rebuilt from the registry's current snapshot (every
    /// heartbeat gets a full TTL of grace, checks start over from the health the
    /// registry holds), then commands and timers until shutdown.
    pub fn run(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let (parts, commands) = (self.parts.clone(), self.commands.clone());
        let shutdown = self.shutdown.clone();
        async move {
            let mut commands = commands.lock_owned().await;
            scheduler::run(parts, &mut commands, shutdown).await
        }
    }
}
