//! Heartbeats every replica shares: one etcd lease per incarnation of an instance.
//!
//! The lease's id is derived from the prefix, the instance's key, its registration time
//! and its TTL, the same on every replica: a heartbeat to any replica renews the same
//! lease (granting it when it lapsed or never existed) with one request and no lookup.
//! The replica that watches the instance's deadline (one, as for checks) asks etcd how
//! long the lease has left when the deadline comes, and once it is gone writes the
//! expiry into the instance's record, which every replica applies.
//!
//! etcd counts lease TTLs in whole seconds and grants no less than its minimum (1.5x
//! the election timeout: 2 s with its default timings), so with `[etcd]` a heartbeat
//! TTL is at least [`MIN_TTL`], rounded up to whole seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::LeaseGrantOptions;

use super::client::{Etcd, EtcdError};
use super::watch::Connection;
use crate::fnv::Fnv1a;
use crate::registry::InstanceKey;

/// The shortest heartbeat TTL with `[etcd]`: etcd's minimum lease TTL.
pub const MIN_TTL: Duration = Duration::from_secs(2);

/// The lease of one incarnation of an instance's heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// Whole seconds, at least [`MIN_TTL`].
    pub ttl: i64,
}

/// Renews and reads heartbeat leases over the replica's connection.
#[derive(Clone)]
pub struct HeartbeatLeases {
    connection: Connection,
    prefix: String,
}

impl HeartbeatLeases {
    pub fn new(connection: Connection, prefix: &str) -> Self {
        Self {
            connection,
            prefix: prefix.to_owned(),
        }
    }

    /// The lease of `key` as registered at `registered` with `ttl`: another
    /// registration or TTL is another lease, so it starts with its own grace.
    pub fn lease(&self, key: &InstanceKey, registered: SystemTime, ttl: Duration) -> Lease {
        let ttl = ttl.max(MIN_TTL);
        let seconds = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        let millis = registered
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let hash = [&self.prefix, &key.namespace, &key.service, &key.id]
            .iter()
            .fold(Fnv1a::default(), |hash, part| {
                hash.write(part.as_bytes()).write(&[0])
            })
            .write(&millis.to_le_bytes())
            .write(&seconds.to_le_bytes())
            .finish();
        // Positive and non-zero: etcd picks an id itself for 0.
        let id = i64::try_from(hash >> 1).unwrap_or(1).max(1);
        Lease {
            id,
            ttl: i64::try_from(seconds).unwrap_or(i64::MAX),
        }
    }

    /// Renews `lease` for its TTL, granting it if etcd does not hold it (expired, or
    /// never renewed): the instance's heartbeats are current on every replica.
    pub async fn renew(&self, lease: Lease) -> Result<(), EtcdError> {
        let etcd = self.etcd()?;
        let mut leases = etcd.client.lease_client();
        let renewed = async {
            match leases.keep_alive(lease.id).await {
                Ok(_) => Ok(true),
                Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(false),
                Err(error) => Err(error),
            }
        };
        if etcd.timed("lease_keep_alive", renewed).await? {
            return Ok(());
        }
        let options = LeaseGrantOptions::new().with_id(lease.id);
        let granted = async {
            match leases.grant(lease.ttl, Some(options)).await {
                Ok(_) => Ok(()),
                // Another replica granted it a moment ago, for the full TTL.
                Err(etcd_client::Error::GRpcStatus(status))
                    if status.message().contains("lease already exists") =>
                {
                    Ok(())
                }
                Err(error) => Err(error),
            }
        };
        etcd.timed("lease_grant", granted).await
    }

    /// How long `lease` has left (whole seconds, rounded down); `None` once it is gone.
    pub async fn remaining(&self, lease: Lease) -> Result<Option<Duration>, EtcdError> {
        let etcd = self.etcd()?;
        let mut leases = etcd.client.lease_client();
        let answer = etcd
            .timed("lease_time_to_live", leases.time_to_live(lease.id, None))
            .await?;
        Ok(u64::try_from(answer.ttl()).ok().map(Duration::from_secs))
    }

    fn etcd(&self) -> Result<Etcd, EtcdError> {
        self.connection
            .get()
            .cloned()
            .ok_or_else(|| EtcdError::Unavailable("not connected yet".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replica_derives_the_same_lease_and_a_new_registration_another() {
        let leases = HeartbeatLeases::new(Connection::default(), "/muster/");
        let key = InstanceKey {
            namespace: "internal".into(),
            service: "web".into(),
            id: "a".into(),
        };
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let lease = leases.lease(&key, at, Duration::from_millis(2500));
        assert_eq!(lease, leases.lease(&key, at, Duration::from_millis(2500)));
        assert_eq!(lease.ttl, 3);
        assert!(lease.id > 0);
        assert_eq!(leases.lease(&key, at, Duration::from_millis(100)).ttl, 2);
        let later = at + Duration::from_millis(1);
        assert_ne!(
            lease.id,
            leases.lease(&key, later, Duration::from_millis(2500)).id
        );
        assert_ne!(lease.id, leases.lease(&key, at, Duration::from_secs(4)).id);
        let other = HeartbeatLeases::new(Connection::default(), "/other/");
        assert_ne!(
            lease.id,
            other.lease(&key, at, Duration::from_millis(2500)).id
        );
    }
}
