//! The one way to mutate the registry.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::{InstanceSpec, NamespaceKind, SourceId};
use super::policy::{DnsConfig, RecordTtls};

/// Where an instance lives: namespace, service and instance id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InstanceKey {
    pub namespace: String,
    pub service: String,
    pub id: String,
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.service, self.id)
    }
}

/// A namespace created through the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceDef {
    pub name: String,
    pub id: String,
    pub kind: NamespaceKind,
    pub description: Option<String>,
    /// The SOA TTL: how long resolvers cache negative answers.
    pub negative_ttl: Option<u32>,
    pub creator_request_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A service created through the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDef {
    pub id: String,
    pub description: Option<String>,
    pub dns: Option<DnsConfig>,
    pub http_only: bool,
    pub custom_health: bool,
    pub creator_request_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Something that carries tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tagged {
    Namespace(String),
    Service { namespace: String, service: String },
}

/// A mutation, applied by the registry's single writer in the order received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Change {
    /// Register or replace one instance owned by `source`.
    Upsert {
        key: InstanceKey,
        spec: InstanceSpec,
        source: SourceId,
    },
    /// Deregister one instance; only its owner may.
    Remove {
        key: InstanceKey,
        source: SourceId,
    },
    /// Set the source-reported health of one instance, whoever owns it.
    SetHealth {
        key: InstanceKey,
        healthy: bool,
    },
    /// Take one instance out of answers (`true`) or put it back, whoever owns it: it
    /// keeps its registration, checks and heartbeats.
    Drain {
        key: InstanceKey,
        draining: bool,
    },
    /// Replace everything `source` owns with `instances`, and mark the source synced.
    /// Instances owned by other sources are never touched; entries that collide with
    /// them are skipped.
    Sync {
        source: SourceId,
        instances: Vec<(InstanceKey, InstanceSpec)>,
    },
    /// Register (`Some(spec)`) and deregister (`None`) instances of one `source` all
    /// together or not at all, in order (a DNS UPDATE, RFC 2136 3.4): if the owner rule
    /// or an admission ceiling refuses any of them, nothing changes. One revision.
    Batch {
        source: SourceId,
        changes: Vec<(InstanceKey, Option<InstanceSpec>)>,
    },
    /// Renew an instance's heartbeat (it is healthy again if it had expired).
    Heartbeat {
        key: InstanceKey,
    },
    /// An instance's heartbeat deadline passed: it is unhealthy until the next one.
    HeartbeatExpired {
        key: InstanceKey,
    },
    /// An instance's active check crossed a threshold.
    CheckResult {
        key: InstanceKey,
        healthy: bool,
        reason: String,
    },
    CreateNamespace(NamespaceDef),
    /// Change a namespace's description and SOA (negative) TTL.
    UpdateNamespace {
        name: String,
        description: Option<String>,
        negative_ttl: Option<u32>,
    },
    /// Delete an API-created namespace that has no services.
    DeleteNamespace {
        name: String,
    },
    /// Declare a service (adopting it if a source already created it implicitly).
    CreateService {
        namespace: String,
        name: String,
        def: ServiceDef,
    },
    /// Change a declared service's description and record TTLs (not its types).
    UpdateService {
        namespace: String,
        name: String,
        description: Option<String>,
        records: Option<RecordTtls>,
    },
    /// Delete a service that has no instances.
    DeleteService {
        namespace: String,
        name: String,
    },
    /// Set and remove service-level attributes.
    SetServiceAttributes {
        namespace: String,
        service: String,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    /// Set and remove tags.
    Tag {
        target: Tagged,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
}

/// What the registry says after applying a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The revision that contains the change (unchanged if the change was a no-op).
    pub revision: u64,
}

/// Why a change was rejected; a rejected change modifies nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("namespace {0:?} does not exist")]
    NamespaceNotFound(String),
    #[error("namespace {0:?} already exists")]
    NamespaceExists(String),
    #[error("service {namespace}/{service} does not exist")]
    ServiceNotFound { namespace: String, service: String },
    #[error("service {namespace}/{service} already exists")]
    ServiceExists { namespace: String, service: String },
    #[error("instance {0} does not exist")]
    InstanceNotFound(InstanceKey),
    #[error("instance {key} is owned by source {owner}")]
    OwnedByOther { key: InstanceKey, owner: SourceId },
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    Invalid(String),
    /// More than the store can write at once (one etcd transaction): a change that must
    /// be all or nothing and cannot be split.
    #[error("{0}")]
    TooLarge(String),
    #[error("{message} ({limit})")]
    LimitExceeded {
        limit: super::admission::Limit,
        message: String,
    },
    #[error("the registry is shutting down")]
    ShuttingDown,
    #[error("the write-ahead log failed: {0}")]
    Storage(String),
}
