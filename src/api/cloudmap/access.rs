//! Authorization of Cloud Map calls: the action and namespace each operation acts on.
//!
//! Every operation is the IAM action `servicediscovery:<Operation>`. Its namespace is
//! found from what the request names: a namespace name (`Create*Namespace`,
//! `DiscoverInstances`), a namespace id or ARN, a service id or ARN (every service and
//! instance operation), a resource ARN (tags), or an operation id (`GetOperation`, from
//! the namespace recorded with the operation). Ids never move between namespaces (they
//! are random and never reused), so resolving them against the current snapshot cannot
//! race with the operation.
//!
//! A key may call an operation on a namespace when one of its `allow` entries matches
//! both. When the request names nothing that exists (an unknown id: the operation will
//! answer `NotFound`) or for the account-wide lists (`ListNamespaces`, `ListServices`,
//! `ListOperations`), the key needs the action on some namespace, and the lists show
//! only what the key may call the list operation on.

use super::error::CloudMapError;
use super::input::Input;
use super::operations::Operations;
use super::{namespaces, services, tags};
use crate::api::auth::Principal;
use crate::registry::{Snapshot, Tagged};

/// Every operation muster serves, and whether it changes the registry (a write: rate
/// limited and audited).
pub const OPERATIONS: &[(&str, bool)] = &[
    ("CreateHttpNamespace", true),
    ("CreatePrivateDnsNamespace", true),
    ("CreatePublicDnsNamespace", true),
    ("GetNamespace", false),
    ("ListNamespaces", false),
    ("UpdateHttpNamespace", true),
    ("UpdatePrivateDnsNamespace", true),
    ("UpdatePublicDnsNamespace", true),
    ("DeleteNamespace", true),
    ("CreateService", true),
    ("GetService", false),
    ("ListServices", false),
    ("UpdateService", true),
    ("DeleteService", true),
    ("GetServiceAttributes", false),
    ("UpdateServiceAttributes", true),
    ("DeleteServiceAttributes", true),
    ("RegisterInstance", true),
    ("DeregisterInstance", true),
    ("GetInstance", false),
    ("ListInstances", false),
    ("GetInstancesHealthStatus", false),
    ("UpdateInstanceCustomHealthStatus", true),
    ("DiscoverInstances", false),
    ("DiscoverInstancesRevision", false),
    ("GetOperation", false),
    ("ListOperations", false),
    ("TagResource", true),
    ("UntagResource", true),
    ("ListTagsForResource", false),
];

/// The operation named `name` (its static name) and whether it writes.
pub fn operation(name: &str) -> Option<(&'static str, bool)> {
    OPERATIONS.iter().find(|(known, _)| *known == name).copied()
}

/// What a call acts on.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// The namespace, when the request names one that exists (or one to create).
    pub namespace: Option<String>,
    /// For the audit log: `ns/svc/id`, `ns/svc`, `ns`, what the client named, or `*`.
    pub resource: String,
}

impl Target {
    fn named(namespace: &str, resource: String) -> Self {
        Self {
            namespace: Some(namespace.to_owned()),
            resource,
        }
    }

    fn unresolved(what: Option<&str>) -> Self {
        Self {
            namespace: None,
            resource: what.unwrap_or("-").to_owned(),
        }
    }
}

/// The target of `operation` with `input`, resolved in `snapshot`.
pub fn target(
    operation: &str,
    input: &Input,
    snapshot: &Snapshot,
    operations: &Operations,
) -> Target {
    let member = |name: &str| input.optional_string(name).ok().flatten();
    let service = |id: Option<&str>, instance: Option<&str>| {
        let Some((namespace, service)) = id.and_then(|id| services::by_id(snapshot, id).ok())
        else {
            return Target::unresolved(id);
        };
        let ns = &namespace.settings.name;
        let resource = match instance {
            Some(instance) => format!("{ns}/{}/{instance}", service.name),
            None => format!("{ns}/{}", service.name),
        };
        Target::named(ns, resource)
    };
    match operation {
        "CreateHttpNamespace" | "CreatePrivateDnsNamespace" | "CreatePublicDnsNamespace" => {
            match member("Name") {
                Some(name) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    Target::named(&name, name.clone())
                }
                None => Target::unresolved(None),
            }
        }
        "GetNamespace"
        | "DeleteNamespace"
        | "UpdateHttpNamespace"
        | "UpdatePrivateDnsNamespace"
        | "UpdatePublicDnsNamespace" => {
            let id = member("Id");
            match id.and_then(|id| namespaces::by_id(snapshot, id).ok()) {
                Some(namespace) => {
                    let name = &namespace.settings.name;
                    Target::named(name, name.clone())
                }
                None => Target::unresolved(id),
            }
        }
        "CreateService" => {
            let dns = input.object("DnsConfig").ok().flatten();
            let id = member("NamespaceId")
                .map(ToOwned::to_owned)
                .or_else(|| dns.and_then(|d| d.string("NamespaceId").ok().map(ToOwned::to_owned)));
            match id
                .as_deref()
                .and_then(|id| namespaces::by_id(snapshot, id).ok())
            {
                Some(namespace) => {
                    let name = &namespace.settings.name;
                    let resource = format!("{name}/{}", member("Name").unwrap_or("-"));
                    Target::named(name, resource)
                }
                None => Target::unresolved(id.as_deref()),
            }
        }
        "GetService" | "UpdateService" | "DeleteService" => service(member("Id"), None),
        "GetServiceAttributes"
        | "UpdateServiceAttributes"
        | "DeleteServiceAttributes"
        | "ListInstances"
        | "GetInstancesHealthStatus" => service(member("ServiceId"), None),
        "RegisterInstance"
        | "DeregisterInstance"
        | "GetInstance"
        | "UpdateInstanceCustomHealthStatus" => service(
            member("ServiceId"),
            Some(member("InstanceId").unwrap_or("-")),
        ),
        "DiscoverInstances" | "DiscoverInstancesRevision" => match member("NamespaceName") {
            Some(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let resource = format!("{name}/{}", member("ServiceName").unwrap_or("-"));
                Target::named(&name, resource)
            }
            None => Target::unresolved(None),
        },
        "GetOperation" => {
            let id = member("OperationId");
            match id.and_then(|id| operations.namespace_of(id)) {
                Some(namespace) => {
                    Target::named(&namespace, format!("operation {}", id.unwrap_or("-")))
                }
                None => Target::unresolved(id),
            }
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            let arn = member("ResourceARN");
            match arn.and_then(|arn| tags::resource(snapshot, arn).ok()) {
                Some((Tagged::Namespace(name), _)) => Target::named(&name, name.clone()),
                Some((Tagged::Service { namespace, service }, _)) => {
                    let resource = format!("{namespace}/{service}");
                    Target::named(&namespace, resource)
                }
                None => Target::unresolved(arn),
            }
        }
        _ => Target {
            namespace: None,
            resource: "*".to_owned(),
        },
    }
}

/// `AccessDeniedException` unless `principal` may call `operation` on `target`.
pub fn authorize(
    principal: &Principal,
    operation: &str,
    target: &Target,
) -> Result<(), CloudMapError> {
    if principal.may_call(operation, target.namespace.as_deref()) {
        return Ok(());
    }
    let on = match &target.namespace {
        Some(namespace) => format!("namespace {namespace}"),
        None => "any namespace".to_owned(),
    };
    Err(CloudMapError::new(
        "AccessDeniedException",
        format!(
            "User: {principal} is not authorized to perform: servicediscovery:{operation} on resource: {on}"
        ),
    ))
}
