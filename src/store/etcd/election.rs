//! Electing the one replica that runs a duty for all of them (the ECS source): etcd's
//! election API, campaigning with the member lease ([`super::members`]).
//!
//! The candidate key lives on the member lease, so a leader that dies or loses etcd
//! gives the election up when etcd expires its lease, within the lease TTL; the next
//! candidate's campaign then returns. A leader that cannot renew its lease within the
//! TTL stops leading at the same moment on its own side.
//!
//! That side can be late: a replica paused (or cut off) past its lease does not know it
//! lost, and a write it had in flight could land after the next leader's. So the leader's
//! writes carry a [`Fence`]: their transaction also compares the leader's key, which
//! exists only while its lease does, with the revision that created it. A deposed
//! leader's write fails as a whole, and the leader stops ([`Fence::depose`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::Expect;
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

    /// Waits until this replica leads, then returns its fence, whose term is cancelled
    /// when it no longer does (its lease lost, a fenced write refused, or `shutdown`);
    /// `None` at shutdown.
    pub async fn lead(&mut self, shutdown: &CancellationToken) -> Option<Fence> {
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
            let leader = match won {
                Ok(mut won) => won.take_leader(),
                Err(error) => {
                    tracing::debug!(%error, what = %self.what, "campaign failed; trying again");
                    None
                }
            };
            let Some(leader) = leader else {
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(RETRY) => continue,
                }
            };
            let term = shutdown.child_token();
            let (ends, mut view) = (term.clone(), self.members.view.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = ends.cancelled() => {}
                    _ = view.wait_for(|view| view.lease != Some(lease)) => ends.cancel(),
                }
            });
            return Some(Fence {
                what: self.what.clone().into(),
                key: leader.key().into(),
                revision: leader.rev(),
                term,
            });
        }
    }
}

/// Proof that this replica leads an election, which the leader's writes carry: etcd
/// commits them only while its candidate key is the one that won.
#[derive(Clone, Debug)]
pub struct Fence {
    what: Arc<str>,
    key: Arc<[u8]>,
    revision: i64,
    term: CancellationToken,
}

impl Fence {
    /// Cancelled when this replica no longer leads: what the led duty runs under.
    pub fn term(&self) -> &CancellationToken {
        &self.term
    }

    /// Whether this replica still believes it leads (etcd has the last word).
    pub fn holds(&self) -> bool {
        !self.term.is_cancelled()
    }

    /// Ends the term: etcd refused a fenced write, so another replica leads now.
    pub fn depose(&self) {
        self.term.cancel();
    }

    /// Whether `key` (as [`super::Committed::Deposed`] names it) is this fence's.
    pub fn is(&self, key: &[u8]) -> bool {
        *self.key == *key
    }

    /// What a fenced transaction compares: the winning key, still the same incarnation.
    pub fn expect(&self) -> Expect {
        Expect::Leads {
            key: self.key.clone(),
            revision: self.revision,
        }
    }
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} election (revision {})", self.what, self.revision)
    }
}
