//! Container instances' addresses, which bridge and host networking tasks are reached
//! at: looked up once per container instance (ECS `DescribeContainerInstances` for its
//! EC2 instance, then EC2 `DescribeInstances`), in batches of 100, and cached. An EC2
//! instance keeps its private addresses while it runs, so an entry never goes stale
//! while tasks use it; the event loop drops the entries no known task uses after each
//! reconcile, and at most [`MAX_HOSTS`] are kept.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::aws::{Aws, AwsError, PAGE};
use super::parse::Host;

/// Container instances cached at most per source: twice ECS's quota of 5,000 per
/// cluster. Past it an arbitrary entry makes room (its next task looks it up again).
pub const MAX_HOSTS: usize = 10_000;

/// The cache of one source, shared by its reconcilers and its event loop.
#[derive(Default)]
pub struct Hosts {
    known: Mutex<HashMap<String, Arc<Host>>>,
}

impl Hosts {
    /// The cached host of container instance `arn`.
    pub fn get(&self, arn: &str) -> Option<Arc<Host>> {
        self.known.lock().expect("hosts lock").get(arn).cloned()
    }

    /// Container instances cached.
    pub fn len(&self) -> usize {
        self.known.lock().expect("hosts lock").len()
    }

    /// Forgets every container instance not in `used`.
    pub fn retain(&self, used: &HashSet<&str>) {
        let mut known = self.known.lock().expect("hosts lock");
        known.retain(|arn, _| used.contains(arn.as_str()));
    }

    fn insert(&self, arn: String, host: Arc<Host>) {
        let mut known = self.known.lock().expect("hosts lock");
        if known.len() >= MAX_HOSTS && !known.contains_key(&arn) {
            let evicted = known.keys().next().cloned();
            if let Some(evicted) = evicted {
                known.remove(&evicted);
            }
        }
        known.insert(arn, host);
    }

    /// The host of each of `arns` (container instances of `cluster`), from the cache or
    /// looked up. `None` for one ECS or EC2 does not know (deregistered, terminated) or
    /// that has no private address; such answers are not cached, so the next task or
    /// reconcile asks again. Any failed call fails the whole lookup.
    pub async fn resolve(
        &self,
        aws: &Aws,
        cluster: &str,
        arns: &HashSet<&str>,
    ) -> Result<HashMap<String, Option<Arc<Host>>>, AwsError> {
        let mut found = HashMap::with_capacity(arns.len());
        let mut missing = Vec::new();
        for &arn in arns {
            match self.get(arn) {
                Some(host) => {
                    found.insert(arn.to_owned(), Some(host));
                }
                None => missing.push(arn.to_owned()),
            }
        }
        for batch in missing.chunks(PAGE) {
            let instances = aws.container_instances(cluster, batch).await?;
            let ids: Vec<String> = instances.values().cloned().collect();
            let hosts: HashMap<String, Host> = if ids.is_empty() {
                HashMap::new()
            } else {
                let described = aws.instances(&ids).await?;
                described
                    .into_iter()
                    .filter(|h| h.ipv4.is_some() || h.ipv6.is_some())
                    .map(|h| (h.ec2_instance_id.clone(), h))
                    .collect()
            };
            for arn in batch {
                let id = arn.rsplit('/').next().unwrap_or(arn);
                let host = instances
                    .get(id)
                    .and_then(|ec2| hosts.get(ec2))
                    .map(|h| Arc::new(h.clone()));
                if let Some(host) = &host {
                    self.insert(arn.clone(), host.clone());
                }
                found.insert(arn.clone(), host);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: u8) -> Arc<Host> {
        Arc::new(Host {
            ec2_instance_id: format!("i-{n}"),
            ipv4: Some([10, 0, 0, n].into()),
            ipv6: None,
        })
    }

    #[test]
    fn bounded_and_trimmed_to_what_is_used() {
        let hosts = Hosts::default();
        for n in 0..MAX_HOSTS + 5 {
            hosts.insert(format!("ci/{n}"), host(n as u8));
        }
        assert_eq!(hosts.len(), MAX_HOSTS);
        assert!(hosts.get(&format!("ci/{}", MAX_HOSTS + 4)).is_some());
        let used: HashSet<&str> = ["ci/10004", "ci/gone"].into();
        hosts.retain(&used);
        assert_eq!(hosts.len(), 1);
        assert!(hosts.get("ci/10004").is_some());
    }
}
