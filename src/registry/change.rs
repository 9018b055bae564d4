//! The one way to mutate the registry.

use std::fmt;

use super::model::{InstanceSpec, SourceId};

/// Where an instance lives: namespace, service and instance id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// A mutation, applied by the registry's single writer in the order received.
#[derive(Clone, Debug)]
pub enum Change {
    /// Register or replace one instance owned by `source`.
    Upsert {
        key: InstanceKey,
        spec: InstanceSpec,
        source: SourceId,
    },
    /// Deregister one instance; only its owner may.
    Remove { key: InstanceKey, source: SourceId },
    /// Set the source-reported health of one instance, whoever owns it.
    SetHealth { key: InstanceKey, healthy: bool },
    /// Replace everything `source` owns with `instances`, and mark the source synced.
    /// Instances owned by other sources are never touched; entries that collide with
    /// them are skipped.
    Sync {
        source: SourceId,
        instances: Vec<(InstanceKey, InstanceSpec)>,
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
    #[error("service {namespace}/{service} does not exist")]
    ServiceNotFound { namespace: String, service: String },
    #[error("instance {0} does not exist")]
    InstanceNotFound(InstanceKey),
    #[error("instance {key} is owned by source {owner}")]
    OwnedByOther { key: InstanceKey, owner: SourceId },
    #[error("the registry is shutting down")]
    ShuttingDown,
}
