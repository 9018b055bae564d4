//! The registry: the one model of namespaces, services and instances.
//!
//! Owns: the mutable model (inside the writer task), the `Change`s that mutate it, and the
//! immutable [`Snapshot`]s it publishes. Every source sends `Change`s through a
//! [`RegistryHandle`]; every frontend reads snapshots. Nothing outside this module mutates
//! the model, and nothing here knows about DNS or HTTP: frontends that need a derived view
//! (the DNS zone) register a publish hook and rebuild only what a change touched.

mod apply;
mod change;
mod check;
mod durable;
mod model;
mod policy;
mod snapshot;
pub mod validate;
mod writer;

pub use apply::Touched;
pub use change::{Applied, Change, ChangeError, InstanceKey, NamespaceDef, ServiceDef, Tagged};
pub use check::CheckSpec;
pub use durable::durable_state;
pub use model::{
    Instance, InstanceSpec, NamespaceKind, NamespaceMeta, Origin, Service, ServiceMeta, SourceId,
    fnv1a64, stable_id,
};
pub use policy::{
    AnswerPolicy, DnsConfig, NamespaceSettings, Protocol, RecordTtls, Routing, ServicePolicyRule,
    WhenAllUnhealthy,
};
pub use snapshot::{Namespace, Snapshot};
pub use validate::FieldError;
pub use writer::{PublishHook, Registry, RegistryHandle};
