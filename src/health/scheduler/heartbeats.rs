//! Heartbeat deadlines: each instance with a TTL has one in the queue while it is
//! healthy; a renewal moves it, its expiry makes the instance unhealthy. With `[etcd]` a
//! deadline that comes is first checked against the instance's lease, which heartbeats
//! to any replica renew.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::time::delay_queue;

use super::{Due, Scheduler};
use crate::health::handle::{HeartbeatError, Reply};
use crate::health::metrics::HealthMetrics;
use crate::registry::check::heartbeat_period;
use crate::registry::{Change, ChangeError, Instance, InstanceKey, Timestamp};

/// How soon a shared heartbeat's lease is asked about again when etcd says it is in its
/// last second, or cannot say.
const LEASE_RECHECK: Duration = Duration::from_millis(250);

/// With `[etcd]`: what etcd said of a shared heartbeat's lease when its deadline came
/// (how long it has left, `None` once it is gone), for the registration `registered`.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
pub(super) struct Lapse {
    key: InstanceKey,
    registered: Timestamp,
    left: Result<Option<Duration>, String>,
}

/// One instance's heartbeat deadline.
pub(super) struct HeartbeatTimer {
    pub(super) ttl: Duration,
    /// The registration it times; a new registration (or a change of TTL) restarts it.
    pub(super) registered: Timestamp,
    /// In the queue while the instance is healthy; `None` once it expired (or, with
    /// `[etcd]`, while etcd is asked about its lease).
    pub(super) entry: Option<delay_queue::Key>,
    deadline: Instant,
    /// The instance's heartbeat health as last followed: a change from unhealthy to
    /// healthy that this replica did not make (a heartbeat to another replica, with
    /// `[etcd]`) starts the deadline again.
    seen_ok: bool,
}

impl Scheduler {
    /// Starts the deadline of a heartbeat this replica keeps, or starts it again when
    /// the instance was revived elsewhere.
    pub(super) fn follow_heartbeat(
        &mut self,
        key: &InstanceKey,
        instance: &Instance,
        ttl: Duration,
    ) {
        let deadline = Instant::now() + heartbeat_period(ttl);
        match self.heartbeats.get_mut(key) {
            None => {
                let entry = self.queue.insert_at(Due::Heartbeat(key.clone()), deadline);
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
                    let entry = self.queue.insert_at(Due::Heartbeat(key.clone()), deadline);
                    timer.entry = Some(entry);
                    timer.deadline = deadline;
                }
            }
        }
    }

    /// Moves a heartbeat's deadline (if this replica keeps it) and makes an expired
    /// instance healthy again before `reply` is answered.
    pub(super) async fn renew(&mut self, key: InstanceKey, reply: Reply) {
        let snapshot = self.registry.snapshot();
        let Some(instance) = snapshot.instance(&key).cloned() else {
            let _ = reply.send(Err(HeartbeatError::NotFound(key)));
            return;
        };
        let Some(ttl) = instance.spec.heartbeat_ttl() else {
            let _ = reply.send(Err(HeartbeatError::NoTtl(key)));
            return;
        };
        if !self.heartbeats.contains_key(&key) && self.owns(&key, &instance) {
            let service = snapshot.service(&key.namespace, &key.service);
            self.follow([(key.namespace.as_str(), key.service.as_str(), service)]);
        }
        let deadline = Instant::now() + heartbeat_period(ttl);
        if let Some(timer) = self.heartbeats.get_mut(&key) {
            match &timer.entry {
                Some(entry) => self.queue.reset_at(entry, deadline),
                None => {
                    timer.entry = Some(self.queue.insert_at(Due::Heartbeat(key.clone()), deadline))
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

    pub(super) async fn expire(&mut self, key: InstanceKey) {
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
    pub(super) fn lapsed(&mut self, lapse: Lapse) {
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
                .insert_at(Due::Heartbeat(lapse.key), timer.deadline),
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
