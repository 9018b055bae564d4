//! The data the registry holds: namespaces' and services' metadata, and instances.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::check::CheckSpec;
use super::policy::{AnswerPolicy, DnsConfig, Protocol};
use crate::fnv::Fnv1a;

/// Who owns an instance: `api`, `file:/etc/muster/static.toml`, `ecs:prod`.
///
/// Ownership is what lets a reconciling source replace "everything it owns" without
/// touching what other sources registered.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: Option<u16>,
    /// Target of the service's CNAME record (Cloud Map's `AWS_INSTANCE_CNAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    /// Named ports (ECS port mapping names): each answers SRV at
    /// `_<name>._<protocol>.<svc>.<ns>`, while `port` stays the service's own SRV port.
    /// Absent in logs written before named ports existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, NamedPort>,
    pub attributes: BTreeMap<String, String>,
    /// Health as the owning source reports it.
    pub healthy: bool,
    /// If set, the instance turns unhealthy when no heartbeat arrives for this long.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub heartbeat_ttl: Option<Duration>,
    /// An active check for this instance (overrides the service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Arc<CheckSpec>>,
    /// An API-owned instance unhealthy this long (heartbeat expired, or its check
    /// failing) is deregistered (overrides the service's; Consul's
    /// `DeregisterCriticalServiceAfter`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub deregister_after: Option<Duration>,
    /// The client's idempotency token (Cloud Map's `CreatorRequestId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_request_id: Option<String>,
}

impl InstanceSpec {
    /// The priority and weight of its SRV records, from its `priority` and `weight`
    /// attributes; 1 where one is absent (or, from a log older than their validation,
    /// not a number from 0 to 65535).
    pub fn srv_priority_weight(&self) -> (u16, u16) {
        let read = |key: &str| {
            let value = self.attributes.get(key);
            value.and_then(|v| v.parse().ok()).unwrap_or(1)
        };
        (read(PRIORITY_ATTRIBUTE), read(WEIGHT_ATTRIBUTE))
    }
}

/// One named port of an instance. Written `9090` (TCP) or `{"port": 53, "protocol":
/// "udp"}`; stored in the second form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NamedPortInput")]
pub struct NamedPort {
    pub port: u16,
    pub protocol: Protocol,
}

/// The two ways a named port is written.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a port number, or {\"port\": 1-65535, \"protocol\": \"tcp\" or \"udp\"}"
)]
enum NamedPortInput {
    Port(u16),
    Full(FullNamedPort),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullNamedPort {
    port: u16,
    #[serde(default = "tcp")]
    protocol: Protocol,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

impl TryFrom<NamedPortInput> for NamedPort {
    type Error = &'static str;

    fn try_from(input: NamedPortInput) -> Result<Self, Self::Error> {
        let (port, protocol) = match input {
            NamedPortInput::Port(port) => (port, Protocol::Tcp),
            NamedPortInput::Full(full) => (full.port, full.protocol),
        };
        if port == 0 {
            return Err("a named port must be 1-65535");
        }
        Ok(Self { port, protocol })
    }
}

/// The attribute that drains an instance when it is `true`.
pub const DRAIN_ATTRIBUTE: &str = "drain";
/// The attributes that set an instance's SRV priority and weight (0-65535, default 1).
pub const PRIORITY_ATTRIBUTE: &str = "priority";
pub const WEIGHT_ATTRIBUTE: &str = "weight";
/// The attribute that places an instance in a zone, for zone-aware answers; Cloud Map's
/// name for it, which the ECS source sets.
pub const ZONE_ATTRIBUTE: &str = "AVAILABILITY_ZONE";

/// One registered instance, as published in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The id exactly as registered (Cloud Map allows `/:.@`); DNS uses a label form of it.
    pub id: String,
    pub spec: InstanceSpec,
    pub source: SourceId,
    /// False once a heartbeat deadline passed; a heartbeat or a new registration clears it.
    pub heartbeat_ok: bool,
    /// False while the active check (if any) is failing, by its thresholds.
    pub check_ok: bool,
    /// Why the check last changed the instance's health (which check, what failed).
    pub check_reason: Option<String>,
    /// Taken out of answers by an operator (`PUT .../drain`), registration kept.
    pub draining: bool,
    pub created: SystemTime,
    pub updated: SystemTime,
}

impl Instance {
    /// Healthy as DNS and discovery see it: the source says so, no heartbeat is late and
    /// its check passes.
    pub fn is_healthy(&self) -> bool {
        self.spec.healthy && self.heartbeat_ok && self.check_ok
    }

    /// Out of answers (DNS and discovery) while it keeps its registration: drained
    /// through the API, or registered with the attribute `drain` = `true` (how a Cloud
    /// Map client drains, by registering again).
    pub fn is_draining(&self) -> bool {
        self.draining
            || self
                .spec
                .attributes
                .get(DRAIN_ATTRIBUTE)
                .map(String::as_str)
                == Some("true")
    }

    /// The check that applies: the instance's own, else its service's.
    pub fn check<'a>(&'a self, policy: &'a AnswerPolicy) -> Option<&'a CheckSpec> {
        self.spec.check.as_deref().or(policy.check.as_deref())
    }
}

/// What kind of namespace, in Cloud Map's terms. HTTP namespaces are discoverable only
/// through the API and have no DNS zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceKind {
    DnsPrivate,
    DnsPublic,
    Http,
}

/// Where a namespace was defined. The config file's namespaces cannot be deleted through
/// the API (they would come back at the next start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    Config,
    Api,
}

/// A namespace's identity and Cloud Map metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceMeta {
    /// `ns-` followed by 16 characters.
    pub id: String,
    pub kind: NamespaceKind,
    pub origin: Origin,
    pub description: Option<String>,
    pub creator_request_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub created: SystemTime,
}

/// A service's identity and Cloud Map metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceMeta {
    /// `srv-` followed by 16 characters.
    pub id: String,
    /// Created explicitly (Cloud Map `CreateService`): stays when its last instance goes.
    /// Services that sources create implicitly vanish with their last instance.
    pub declared: bool,
    pub description: Option<String>,
    /// Cloud Map's `DnsConfig`; none for implicit services and `Type: HTTP` services.
    pub dns: Option<DnsConfig>,
    /// `Type: HTTP`: discoverable through the API only, never in DNS.
    pub http_only: bool,
    /// Cloud Map's `HealthCheckCustomConfig` was given.
    pub custom_health: bool,
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub creator_request_id: Option<String>,
    pub created: SystemTime,
}

/// A named group of instances answered together at `svc.ns`.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub meta: Arc<ServiceMeta>,
    pub policy: Arc<AnswerPolicy>,
    pub instances: imbl::OrdMap<Arc<str>, Arc<Instance>>,
    /// Bumped when an instance is registered, replaced or deregistered, not on health
    /// changes: Cloud Map's `InstancesRevision`.
    pub instances_revision: u64,
}

impl Service {
    /// Instances that DNS answers with: of those not draining, the healthy ones, or
    /// every one when none is healthy and the policy fails open (Cloud Map's behaviour);
    /// of those, the ones of weight 0 only when every one has weight 0.
    pub fn serving(&self) -> impl Iterator<Item = &Arc<Instance>> {
        serving(self.instances.values(), &self.policy)
    }

    pub fn healthy_count(&self) -> usize {
        self.instances.values().filter(|i| i.is_healthy()).count()
    }

    /// Whether DNS has records for this service.
    pub fn in_dns(&self) -> bool {
        !self.meta.http_only
    }
}

/// What [`Service::serving`] gives for a service made of `instances` (all of a
/// service's, or a DNS subset of them) under `policy`: health, fail-open and weights
/// are judged among them alone.
///
/// Reads each instance once (its drain attribute, health and weight), where three
/// walks read them up to three times: in a large registry a changed service's
/// instances are cold, and a DNS rebuild paid those misses per walk.
pub fn serving<'a>(
    instances: impl Iterator<Item = &'a Arc<Instance>>,
    policy: &AnswerPolicy,
) -> impl Iterator<Item = &'a Arc<Instance>> + 'a {
    let candidates: Vec<(&Arc<Instance>, bool, bool)> = instances
        .filter(|i| !i.is_draining())
        .map(|i| (i, i.is_healthy(), i.spec.srv_priority_weight().1 > 0))
        .collect();
    let any_healthy = candidates.iter().any(|(_, healthy, _)| *healthy);
    let fail_open = !any_healthy && policy.when_all_unhealthy.serves_all();
    let served = move |(_, healthy, _): &(&Arc<Instance>, bool, bool)| *healthy || fail_open;
    let any_weighted = candidates
        .iter()
        .any(|candidate| served(candidate) && candidate.2);
    candidates
        .into_iter()
        .filter(move |candidate| served(candidate) && (candidate.2 || !any_weighted))
        .map(|(instance, _, _)| instance)
}

/// A stable id for something muster names itself (config namespaces, implicit services):
/// `prefix` then 16 base-36 characters of a hash of `key`, the same on every replica.
pub fn stable_id(prefix: &str, key: &str) -> String {
    let hash = Fnv1a::default().write(key.as_bytes());
    let mut n = (u128::from(hash.finish()) << 64) | u128::from(hash.write(b"#").finish());
    let mut id = String::from(prefix);
    for _ in 0..16 {
        id.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
    }
    id
}
