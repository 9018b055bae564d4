//! The data the registry holds: namespaces' and services' metadata, and instances.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::check::CheckSpec;
use super::instance_map::InstanceMap;
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
///
/// Most instances have an address, a port, attributes and their health, and none of the
/// rest: the rest ([`SpecExtras`]) is boxed apart, read through the accessors below, so
/// that an [`Instance`] fits 144 bytes (issue 17: a million instances). Its serde form,
/// the durable log's and etcd's, is [`SpecFields`]: every field inline, as before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "SpecFields<'static>")]
pub struct InstanceSpec {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: Option<u16>,
    pub attributes: BTreeMap<String, String>,
    /// Health as the owning source reports it.
    pub healthy: bool,
    /// The fields most instances leave empty.
    pub extras: Extras,
}

/// The fields of an [`InstanceSpec`] that most instances leave empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecExtras {
    /// Target of the service's CNAME record (Cloud Map's `AWS_INSTANCE_CNAME`).
    pub cname: Option<String>,
    /// Named ports (ECS port mapping names): each answers SRV at
    /// `_<name>._<protocol>.<svc>.<ns>`, while `port` stays the service's own SRV port.
    pub ports: BTreeMap<String, NamedPort>,
    /// If set, the instance turns unhealthy when no heartbeat arrives for this long.
    pub heartbeat_ttl: Option<Duration>,
    /// An active check for this instance (overrides the service's).
    pub check: Option<Arc<CheckSpec>>,
    /// An API-owned instance unhealthy this long (heartbeat expired, or its check
    /// failing) is deregistered (overrides the service's; Consul's
    /// `DeregisterCriticalServiceAfter`).
    pub deregister_after: Option<Duration>,
    /// The client's idempotency token (Cloud Map's `CreatorRequestId`).
    pub creator_request_id: Option<String>,
}

/// What [`SpecExtras::default`] gives, for the instances that have none.
static NO_EXTRAS: SpecExtras = SpecExtras {
    cname: None,
    ports: BTreeMap::new(),
    heartbeat_ttl: None,
    check: None,
    deregister_after: None,
    creator_request_id: None,
};

/// [`SpecExtras`] in a box, or nothing while they are all empty: 8 bytes in an instance
/// that has none, where they would take 112. Made from a [`SpecExtras`] (`.into()`),
/// which keeps "all empty" as nothing, so that equal specs compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras(Option<Box<SpecExtras>>);

impl Extras {
    fn get(&self) -> &SpecExtras {
        self.0.as_deref().unwrap_or(&NO_EXTRAS)
    }

    /// Applies `change` to them, boxed again if anything is left set.
    pub fn edit(&mut self, change: impl FnOnce(&mut SpecExtras)) {
        let mut extras = self
            .0
            .take()
            .map_or_else(SpecExtras::default, |boxed| *boxed);
        change(&mut extras);
        *self = extras.into();
    }
}

impl From<SpecExtras> for Extras {
    fn from(extras: SpecExtras) -> Self {
        Self((extras != NO_EXTRAS).then(|| Box::new(extras)))
    }
}

/// [`InstanceSpec`] as the durable log and etcd hold it (and held it before the rare
/// fields were boxed): borrowed to write it, owned when read.
#[derive(Serialize, Deserialize)]
struct SpecFields<'a> {
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cname: Option<Cow<'a, str>>,
    /// Absent in logs written before named ports existed.
    #[serde(default, skip_serializing_if = "no_ports")]
    ports: Cow<'a, BTreeMap<String, NamedPort>>,
    attributes: Cow<'a, BTreeMap<String, String>>,
    healthy: bool,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    heartbeat_ttl: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<Arc<CheckSpec>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    deregister_after: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creator_request_id: Option<Cow<'a, str>>,
}

#[expect(
    clippy::ptr_arg,
    reason = "serde's skip_serializing_if passes the field"
)]
fn no_ports(ports: &Cow<'_, BTreeMap<String, NamedPort>>) -> bool {
    ports.is_empty()
}

impl Serialize for InstanceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let extras = self.extras.get();
        SpecFields {
            ipv4: self.ipv4,
            ipv6: self.ipv6,
            port: self.port,
            cname: extras.cname.as_deref().map(Cow::Borrowed),
            ports: Cow::Borrowed(&extras.ports),
            attributes: Cow::Borrowed(&self.attributes),
            healthy: self.healthy,
            heartbeat_ttl: extras.heartbeat_ttl,
            check: extras.check.clone(),
            deregister_after: extras.deregister_after,
            creator_request_id: extras.creator_request_id.as_deref().map(Cow::Borrowed),
        }
        .serialize(serializer)
    }
}

impl From<SpecFields<'_>> for InstanceSpec {
    fn from(fields: SpecFields<'_>) -> Self {
        let extras = SpecExtras {
            cname: fields.cname.map(Cow::into_owned),
            ports: fields.ports.into_owned(),
            heartbeat_ttl: fields.heartbeat_ttl,
            check: fields.check,
            deregister_after: fields.deregister_after,
            creator_request_id: fields.creator_request_id.map(Cow::into_owned),
        };
        Self {
            ipv4: fields.ipv4,
            ipv6: fields.ipv6,
            port: fields.port,
            attributes: fields.attributes.into_owned(),
            healthy: fields.healthy,
            extras: extras.into(),
        }
    }
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

    /// [`SpecExtras::cname`].
    pub fn cname(&self) -> Option<&str> {
        self.extras.get().cname.as_deref()
    }

    /// [`SpecExtras::ports`].
    pub fn ports(&self) -> &BTreeMap<String, NamedPort> {
        &self.extras.get().ports
    }

    /// [`SpecExtras::heartbeat_ttl`].
    pub fn heartbeat_ttl(&self) -> Option<Duration> {
        self.extras.get().heartbeat_ttl
    }

    /// [`SpecExtras::check`].
    pub fn check(&self) -> Option<&CheckSpec> {
        self.extras.get().check.as_deref()
    }

    /// [`SpecExtras::deregister_after`].
    pub fn deregister_after(&self) -> Option<Duration> {
        self.extras.get().deregister_after
    }

    /// [`SpecExtras::creator_request_id`].
    pub fn creator_request_id(&self) -> Option<&str> {
        self.extras.get().creator_request_id.as_deref()
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
    pub check_reason: Option<Box<str>>,
    /// Taken out of answers by an operator (`PUT .../drain`), registration kept.
    pub draining: bool,
    pub created: Timestamp,
    pub updated: Timestamp,
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
        self.spec.check().or(policy.check.as_deref())
    }
}

/// A moment, as nanoseconds since the Unix epoch: 8 bytes where a `SystemTime` takes 16,
/// twice in every instance. From 1970 to 2554: a moment before reads as 1970, one after
/// as 2554.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl From<Timestamp> for SystemTime {
    fn from(time: Timestamp) -> Self {
        UNIX_EPOCH + Duration::from_nanos(time.0)
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
    pub instances: InstanceMap,
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

/// What unit tests build instances from: an API instance `id` with `spec`, healthy,
/// registered at the epoch.
#[cfg(test)]
pub(crate) fn registered(id: &str, spec: InstanceSpec) -> Instance {
    Instance {
        id: id.into(),
        spec,
        source: SourceId::api(),
        heartbeat_ok: true,
        check_ok: true,
        check_reason: None,
        draining: false,
        created: SystemTime::UNIX_EPOCH.into(),
        updated: SystemTime::UNIX_EPOCH.into(),
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
