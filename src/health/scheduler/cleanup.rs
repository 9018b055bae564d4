//! Clean-up of the dead (Consul's `DeregisterCriticalServiceAfter`): an API-owned
//! instance unhealthy for its `deregister_after` (its heartbeat expired, or its check
//! failing) is deregistered, durably, by the replica that keeps its timers. Instances of
//! other sources never are: their source decides.

use std::time::Duration;

use tokio_util::time::delay_queue;

use super::{Due, Scheduler};
use crate::health::metrics::HealthMetrics;
use crate::registry::{
    Change, Instance, InstanceKey, RegistryHandle, Service, SourceId, Timestamp,
};

/// Between attempts to deregister when the registry refuses (a full disk, etcd down).
const RETRY: Duration = Duration::from_secs(5);
/// Attempts at most; the next time the instance turns unhealthy starts over.
const ATTEMPTS: u32 = 12;

/// One instance's time left to recover.
pub(super) struct ReapTimer {
    /// The registration it times: a new one starts over.
    pub(super) registered: Timestamp,
    pub(super) entry: delay_queue::Key,
    after: Duration,
}

/// How long `instance` may stay as unhealthy as it is now before it is deregistered;
/// `None` while it is healthy, not the API's, or has no `deregister_after` (its own, else
/// its service's).
pub(super) fn reap_after(service: &Service, instance: &Instance) -> Option<Duration> {
    let after = instance
        .spec
        .deregister_after()
        .or(service.policy.deregister_after)?;
    let dead = !instance.heartbeat_ok || !instance.check_ok;
    (dead && instance.source == SourceId::api()).then_some(after)
}

impl Scheduler {
    /// Starts the clock of an instance that turned unhealthy (if it is not running).
    pub(super) fn follow_reap(&mut self, key: &InstanceKey, instance: &Instance, after: Duration) {
        if self.reaps.contains_key(key) {
            return;
        }
        let entry = self.queue.insert(Due::Reap(key.clone()), after);
        let timer = ReapTimer {
            registered: instance.updated,
            entry,
            after,
        };
        self.reaps.insert(key.clone(), timer);
    }

    /// The clock ran out: deregisters the instance, off this task (the write waits for
    /// the disk, or etcd).
    pub(super) fn reap(&mut self, key: InstanceKey) {
        let Some(timer) = self.reaps.remove(&key) else {
            return;
        };
        let (registry, metrics) = (self.registry.clone(), self.metrics.clone());
        tokio::spawn(deregister(registry, metrics, key, timer));
    }
}

/// Deregisters `key` while it is still the registration `timer` timed, still unhealthy.
async fn deregister(
    registry: RegistryHandle,
    metrics: HealthMetrics,
    key: InstanceKey,
    timer: ReapTimer,
) {
    for _ in 0..ATTEMPTS {
        let snapshot = registry.snapshot();
        let service = snapshot.service(&key.namespace, &key.service);
        let Some((service, instance)) =
            service.and_then(|s| Some((s, s.instances.get(key.id.as_str())?)))
        else {
            return;
        };
        if instance.updated != timer.registered || reap_after(service, instance).is_none() {
            return;
        }
        let remove = Change::Remove {
            key: key.clone(),
            source: SourceId::api(),
        };
        match registry.apply_durable(remove).await {
            Ok(applied) => {
                metrics.deregistered.inc();
                let after = humantime::format_duration(timer.after).to_string();
                tracing::info!(instance = %key, revision = applied.revision, %after, "deregistered after being unhealthy for deregister_after");
                return;
            }
            Err(error) => {
                tracing::warn!(instance = %key, %error, "could not deregister an instance past its deregister_after; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
