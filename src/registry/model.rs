//! The data the registry holds: instances and the services that group them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::SystemTime;

use super::policy::AnswerPolicy;

/// Who owns an instance: `api`, `file:/etc/muster/static.toml`, `ecs:prod`.
///
/// Ownership is what lets a reconciling source replace "everything it owns" without
/// touching what other sources registered.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(Arc<str>);

impl SourceId {
    /// The REST and Cloud Map APIs.
    pub fn api() -> Self {
        Self::new("api")
    }

    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// What a source says about one instance; the registry adds ownership and timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: Option<u16>,
    pub attributes: BTreeMap<String, String>,
    /// Health as the owning source reports it.
    pub healthy: bool,
}

/// One registered instance, as published in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The id exactly as registered (Cloud Map allows `/:.@`); DNS uses a label form of it.
    pub id: String,
    pub spec: InstanceSpec,
    pub source: SourceId,
    pub created: SystemTime,
    pub updated: SystemTime,
}

/// A named group of instances answered together at `svc.ns`.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub policy: Arc<AnswerPolicy>,
    pub instances: imbl::OrdMap<String, Arc<Instance>>,
}

impl Service {
    /// Instances that DNS answers with: the healthy ones, or every one when none is healthy
    /// and the policy fails open (Cloud Map's behaviour).
    pub fn serving(&self) -> impl Iterator<Item = &Arc<Instance>> {
        let any_healthy = self.instances.values().any(|i| i.spec.healthy);
        let fail_open = !any_healthy && self.policy.when_all_unhealthy.serves_all();
        self.instances
            .values()
            .filter(move |i| i.spec.healthy || fail_open)
    }

    pub fn healthy_count(&self) -> usize {
        self.instances.values().filter(|i| i.spec.healthy).count()
    }
}
