//! The registry: the one model of namespaces, services and instances.
//!
//! Owns: the mutable model (inside the writer task), the `Change`s that mutate it, and the
//! immutable [`Snapshot`]s it publishes. Every source sends `Change`s through a
//! [`RegistryHandle`]; every frontend reads snapshots. Nothing outside this module mutates
//! the model, and nothing here knows about DNS or HTTP: frontends that need a derived view
//! (the DNS zone) register a publish hook and rebuild only what a change touched.
//! Each publish is also recorded as numbered [`ChangeEntry`]s in a bounded ring
//! ([`RecentChanges`], read from a [`RegistryHandle`]) for watchers and the status page.

mod admission;
mod catalog;
mod change;
mod changes;
pub mod check;
mod durable;
mod instance_map;
mod instances;
mod metrics;
mod model;
mod names;
mod owned;
mod policy;
mod recorder;
mod records;
#[cfg(feature = "etcd")]
mod replicated;
#[cfg(feature = "etcd")]
mod round;
mod snapshot;
mod state;
pub mod validate;
mod writer;

pub use admission::{Admission, BadPattern, Limit, MAX_SERVICE_ATTRIBUTES, MAX_TAGS, NamePattern};
pub use change::{Applied, Change, ChangeError, InstanceKey, NamespaceDef, ServiceDef, Tagged};
pub use changes::{ChangeEntry, Event, Missed, RECENT_CHANGES, RecentChanges};
pub use check::{CheckSpec, deregister_after_bounds, health_bounds};
pub use durable::{durable_state, replay};
pub use instance_map::{Difference, InstanceMap};
pub use metrics::RegistryMetrics;
pub use model::{
    Extras, Instance, InstanceSpec, NamedPort, NamespaceKind, NamespaceMeta, Origin, Service,
    ServiceMeta, SourceId, SpecExtras, Timestamp, ZONE_ATTRIBUTE, serving, stable_id,
};
pub use names::{instance_label, subset_label};
pub use policy::{
    AnswerPolicy, DnsConfig, Locality, MAX_MIN_LOCAL, MAX_SUBSET_KEYS, NamespaceSettings, Protocol,
    RecordTtls, Routing, ServicePolicyRule, WhenAllUnhealthy, subset_key_problem,
};
pub use records::{
    CheckVerdict, InstanceRecord, NamespaceRecord, Record, RecordKey, ServiceRecord, Skipped,
    from_records, record, records,
};
#[cfg(feature = "etcd")]
pub use replicated::{STORE_SOURCE, Shared};
pub use snapshot::{Namespace, Snapshot};
pub use state::{Touched, TouchedService};
pub use validate::FieldError;
pub use writer::{PublishHook, Registry, RegistryHandle, StatusFn};
