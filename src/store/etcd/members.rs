//! The replicas on one prefix: each keeps a lease and a key `{prefix}members/{id}`
//! attached to it, renews the lease, and watches the member set.
//!
//! The lease is what the replica's shared duties hang on: the ECS election campaigns
//! with it (its candidate key dies with it) and health checks are spread over the
//! members it lists. A replica that dies, or loses etcd for longer than the TTL, drops
//! out of the set when etcd expires its lease; a replica that cannot renew its lease
//! within the TTL stops counting itself a member at the same moment, so two replicas
//! never both act on a duty for long.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, GetOptions, PutOptions, WatchOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::{Etcd, EtcdError};
use super::keys;
use super::metrics::EtcdMetrics;
use super::watch::Connection;
use crate::config::EtcdConfig;
use crate::store::members::View;

/// The most members counted: keys beyond it (a misconfigured fleet sharing a prefix)
/// are ignored rather than held.
pub const MAX_MEMBERS: usize = 1024;
/// The longest wait between attempts to rejoin.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// This replica's membership: its id, its view of the set, and the connection it uses.
#[derive(Clone)]
pub struct Members {
    pub id: String,
    pub view: watch::Receiver<View>,
    pub connection: Connection,
}

impl Members {
    /// Starts nothing: [`run`] keeps the membership; this is what it publishes to.
    pub fn new(id: String) -> (Self, watch::Sender<View>) {
        let (sender, view) = watch::channel(View::default());
        let members = Self {
            id,
            view,
            connection: Connection::default(),
        };
        (members, sender)
    }
}

enum Ended {
    Shutdown,
    Lost(String),
}

/// Keeps this replica a member until `shutdown` (then revokes its lease, so its duties
/// move at once): joins, renews, watches the set, and joins again with a new lease when
/// the old one is lost.
pub async fn run(
    config: EtcdConfig,
    members: Members,
    sender: watch::Sender<View>,
    metrics: Arc<EtcdMetrics>,
    shutdown: CancellationToken,
) {
    let ttl = i64::try_from(config.lease_ttl.as_secs())
        .unwrap_or(1)
        .max(1);
    let mut backoff = Duration::ZERO;
    loop {
        let etcd = match members
            .connection
            .get_or_try_init(|| Etcd::connect(&config, metrics.clone()))
            .await
        {
            Ok(etcd) => etcd.clone(),
            Err(error) => {
                tracing::warn!(%error, "cannot connect to etcd to join the members");
                if pause(&shutdown, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        let mut lease = None;
        let ended = tokio::select! {
            _ = shutdown.cancelled() => Ended::Shutdown,
            ended = member(&etcd, &members.id, ttl, &sender, &metrics, &mut lease) => ended,
        };
        sender.send_replace(View::default());
        metrics.set_members(0);
        match ended {
            Ended::Shutdown => {
                if let Some(lease) = lease {
                    let mut client = etcd.client.lease_client();
                    let _ = etcd.timed("lease_revoke", client.revoke(lease)).await;
                }
                return;
            }
            Ended::Lost(why) => {
                tracing::warn!(id = %members.id, %why, "not a member any more; joining again");
                if pause(&shutdown, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

/// Waits before another attempt; true when shutting down.
async fn pause(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}

/// One membership: a lease, the key on it, renewals every third of the TTL, and the
/// watch of the set; ends when the lease is lost or cannot be renewed in time.
async fn member(
    etcd: &Etcd,
    id: &str,
    ttl: i64,
    sender: &watch::Sender<View>,
    metrics: &EtcdMetrics,
    held: &mut Option<i64>,
) -> Ended {
    let lost = |error: EtcdError| Ended::Lost(error.to_string());
    let mut leases = etcd.client.lease_client();
    let granted = match etcd.timed("lease_grant", leases.grant(ttl, None)).await {
        Ok(granted) => granted,
        Err(error) => return lost(error),
    };
    let lease = granted.id();
    *held = Some(lease);
    let ttl = Duration::from_secs(ttl.unsigned_abs());
    // Renewed before the first request can fail: the lease runs from its grant.
    let mut renewed = Instant::now();
    let root = etcd.layout.members();
    let key = [root.as_slice(), id.as_bytes()].concat();
    let mut kv = etcd.client.kv_client();
    let put = kv.put(key, id, Some(PutOptions::new().with_lease(lease)));
    if let Err(error) = etcd.timed("put", put).await {
        return lost(error);
    }
    let (mut keeper, mut renewals) = match etcd
        .timed("lease_keep_alive", leases.keep_alive(lease))
        .await
    {
        Ok(pair) => pair,
        Err(error) => return lost(error),
    };
    let end = keys::prefix_end(&root);
    let options = GetOptions::new().with_range(end.clone()).with_keys_only();
    let listed = match etcd
        .timed("range", kv.get(root.clone(), Some(options)))
        .await
    {
        Ok(listed) => listed,
        Err(error) => return lost(error),
    };
    let mut set: BTreeSet<String> = listed
        .kvs()
        .iter()
        .filter_map(|kv| member_id(&root, kv.key()))
        .take(MAX_MEMBERS)
        .collect();
    let revision = listed.header().map_or(0, |h| h.revision());
    let options = WatchOptions::new()
        .with_range(end)
        .with_start_revision(revision + 1);
    let mut watcher = etcd.client.watch_client();
    let mut stream = match etcd
        .timed("watch", watcher.watch(root.clone(), Some(options)))
        .await
    {
        Ok(stream) => stream,
        Err(error) => return lost(error),
    };
    let publish = |set: &BTreeSet<String>| {
        metrics.set_members(set.len());
        sender.send_replace(View {
            lease: Some(lease),
            members: set.iter().cloned().collect(),
        });
    };
    publish(&set);
    tracing::info!(%id, lease, members = set.len(), "joined the members");
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if renewed.elapsed() >= ttl {
                    return Ended::Lost("the lease was not renewed within its TTL".into());
                }
                if let Err(error) = keeper.keep_alive().await {
                    return Ended::Lost(error.to_string());
                }
            }
            renewal = renewals.message() => match renewal {
                Ok(Some(renewal)) if renewal.ttl() > 0 => renewed = Instant::now(),
                Ok(Some(_)) => return Ended::Lost("the lease expired".into()),
                Ok(None) => return Ended::Lost("the keep-alive stream ended".into()),
                Err(error) => return Ended::Lost(error.to_string()),
            },
            message = stream.message() => {
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return Ended::Lost("the member watch ended".into()),
                    Err(error) => return Ended::Lost(error.to_string()),
                };
                if response.canceled() {
                    return Ended::Lost(format!("member watch cancelled: {}", response.cancel_reason()));
                }
                let mut changed = false;
                for event in response.events() {
                    let Some(id) = event.kv().and_then(|kv| member_id(&root, kv.key())) else {
                        continue;
                    };
                    changed |= match event.event_type() {
                        EventType::Put => set.len() < MAX_MEMBERS && set.insert(id),
                        EventType::Delete => set.remove(&id),
                    };
                }
                if changed {
                    publish(&set);
                }
            }
        }
    }
}

/// The id a member key names, if it is one.
fn member_id(root: &[u8], key: &[u8]) -> Option<String> {
    let id = std::str::from_utf8(key.strip_prefix(root)?).ok()?;
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_keys_are_read_back() {
        assert_eq!(
            member_id(b"/m/members/", b"/m/members/a-1"),
            Some("a-1".into())
        );
        assert_eq!(member_id(b"/m/members/", b"/m/members/"), None);
        assert_eq!(member_id(b"/m/members/", b"/m/ns/x"), None);
    }
}
