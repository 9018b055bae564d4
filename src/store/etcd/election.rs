//! Electing the one replica that runs a duty for all of them (the ECS source): etcd's
//! election API, campaigning with the member lease ([`super::members`]).
//!
//! The candidate key lives on the member lease, so a leader that dies or loses etcd
//! gives the election up when etcd expires its lease, within the lease TTL; the next
//! candidate's campaign then returns. A leader that cannot renew its lease within the
//! TTL stops leading at the same moment on its own side.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::members::Members;

/// Wait between campaigns that failed (etcd unreachable): the membership is being
/// rebuilt meanwhile.
const RETRY: Duration = Duration::from_millis(500);

/// One election among the members.
#[derive(Clone)]
pub struct Election {
    members: Members,
    what: String,
}

impl Election {
    /// The election named `what` under the prefix, among `members`.
    pub fn new(members: Members, what: &str) -> Self {
        Self {
            members,
            what: what.to_owned(),
        }
    }

    /// Waits until this replica leads, then returns a token that is cancelled when it
    /// no longer does (its lease lost, or `shutdown`); `None` at shutdown.
    pub async fn lead(&mut self, shutdown: &CancellationToken) -> Option<CancellationToken> {
        loop {
            let lease = tokio::select! {
                _ = shutdown.cancelled() => return None,
                view = self.members.view.wait_for(|view| view.lease.is_some()) => {
                    view.ok().and_then(|view| view.lease)
                }
            };
            let lease = lease?;
            let Some(etcd) = self.members.connection.get().cloned() else {
                continue;
            };
            let name = etcd.layout().election(&self.what);
            let mut client = etcd.client.election_client();
            let campaign = client.campaign(name, self.members.id.clone(), lease);
            let mut view = self.members.view.clone();
            let lost = view.wait_for(|view| view.lease != Some(lease));
            let won = tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = lost => continue,
                won = campaign => won,
            };
            if let Err(error) = won {
                tracing::debug!(%error, what = %self.what, "campaign failed; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            }
            let term = shutdown.child_token();
            let (ends, mut view) = (term.clone(), self.members.view.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = ends.cancelled() => {}
                    _ = view.wait_for(|view| view.lease != Some(lease)) => ends.cancel(),
                }
            });
            return Some(term);
        }
    }
}
