//! Cloud Map's output shapes, ids and ARNs, built from registry snapshots.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{Value, json};

use crate::config::CloudMapConfig;
use crate::registry::{Instance, Namespace, NamespaceKind, Protocol, RecordTtls, Routing, Service};

/// `prefix` and 16 random characters of `[a-z0-9]`, like Cloud Map's `ns-…`/`srv-…` ids.
pub fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", random_chars(16))
}

/// `count` random characters of `[a-z0-9]`.
pub fn random_chars(count: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..count)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Epoch seconds with milliseconds, as AWS JSON 1.1 encodes timestamps.
pub fn timestamp(time: SystemTime) -> f64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_millis() as f64) / 1000.0
}

pub fn namespace_arn(config: &CloudMapConfig, id: &str) -> String {
    format!(
        "arn:aws:servicediscovery:{}:{}:namespace/{id}",
        config.region, config.account
    )
}

pub fn service_arn(config: &CloudMapConfig, id: &str) -> String {
    format!(
        "arn:aws:servicediscovery:{}:{}:service/{id}",
        config.region, config.account
    )
}

pub fn kind_name(kind: NamespaceKind) -> &'static str {
    match kind {
        NamespaceKind::DnsPrivate => "DNS_PRIVATE",
        NamespaceKind::DnsPublic => "DNS_PUBLIC",
        NamespaceKind::Http => "HTTP",
    }
}

/// Which shape of a namespace an operation answers with; AWS fills an HTTP namespace's
/// empty `DnsProperties` differently in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceShape {
    /// `Namespace` (GetNamespace): `"DnsProperties": {}`.
    Full,
    /// `NamespaceSummary` (ListNamespaces): `"DnsProperties": {"SOA": {}}`.
    Summary,
}

/// The `Namespace` shape (GetNamespace) or `NamespaceSummary` (ListNamespaces). Every
/// namespace has `DnsProperties`, empty for HTTP namespaces, as AWS answers, so clients
/// that index it do not break.
pub fn namespace(config: &CloudMapConfig, namespace: &Namespace, shape: NamespaceShape) -> Value {
    let meta = &namespace.meta;
    let name = &namespace.settings.name;
    let dns_properties = match (namespace.in_dns(), shape) {
        (true, _) => json!({
            "HostedZoneId": format!("Z{}", meta.id.trim_start_matches("ns-").to_ascii_uppercase()),
            "SOA": {"TTL": namespace.settings.negative_ttl},
        }),
        (false, NamespaceShape::Full) => json!({}),
        (false, NamespaceShape::Summary) => json!({"SOA": {}}),
    };
    let properties = json!({
        "DnsProperties": dns_properties,
        "HttpProperties": {"HttpName": name},
    });
    let mut shape = json!({
        "Id": meta.id,
        "Arn": namespace_arn(config, &meta.id),
        "ResourceOwner": config.account,
        "Name": name,
        "Type": kind_name(meta.kind),
        "ServiceCount": namespace.services.len(),
        "Properties": properties,
        "CreateDate": timestamp(meta.created),
    });
    if let Some(description) = &meta.description {
        shape["Description"] = json!(description);
    }
    if let Some(id) = &meta.creator_request_id {
        shape["CreatorRequestId"] = json!(id);
    }
    shape
}

/// The `Service` shape (CreateService, GetService) and `ServiceSummary` (ListServices).
/// A service without DNS records has `"DnsConfig": {}`, as AWS answers.
pub fn service(config: &CloudMapConfig, namespace: &Namespace, service: &Service) -> Value {
    let meta = &service.meta;
    let mut shape = json!({
        "Id": meta.id,
        "Arn": service_arn(config, &meta.id),
        "ResourceOwner": config.account,
        "CreatedByAccount": config.account,
        "Name": service.name,
        "NamespaceId": namespace.meta.id,
        "InstanceCount": service.instances.len(),
        "Type": if service.in_dns() && namespace.in_dns() { "DNS_HTTP" } else { "HTTP" },
        "CreateDate": timestamp(meta.created),
    });
    if service.in_dns() && namespace.in_dns() {
        let policy = &service.policy;
        shape["DnsConfig"] = json!({
            "NamespaceId": namespace.meta.id,
            "RoutingPolicy": match policy.routing {
                Routing::Multivalue => "MULTIVALUE",
                Routing::Weighted => "WEIGHTED",
            },
            "DnsRecords": dns_records(&policy.records),
        });
    } else {
        shape["DnsConfig"] = json!({});
    }
    if meta.custom_health {
        shape["HealthCheckCustomConfig"] = json!({"FailureThreshold": 1});
    }
    if let Some(description) = &meta.description {
        shape["Description"] = json!(description);
    }
    if let Some(id) = &meta.creator_request_id {
        shape["CreatorRequestId"] = json!(id);
    }
    shape
}

fn dns_records(records: &RecordTtls) -> Vec<Value> {
    [
        ("A", records.a),
        ("AAAA", records.aaaa),
        ("SRV", records.srv),
        ("CNAME", records.cname),
    ]
    .into_iter()
    .filter_map(|(kind, ttl)| ttl.map(|ttl| json!({"Type": kind, "TTL": ttl})))
    .collect()
}

/// An instance's attributes as Cloud Map shows them: what was registered, plus the
/// reserved `AWS_INSTANCE_*` attributes for addresses a source gave as fields.
pub fn attributes(instance: &Instance) -> BTreeMap<String, String> {
    let spec = &instance.spec;
    let mut attributes = spec.attributes.clone();
    let mut reserved = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            attributes.entry(key.to_owned()).or_insert(value);
        }
    };
    reserved("AWS_INSTANCE_IPV4", spec.ipv4.map(|ip| ip.to_string()));
    reserved("AWS_INSTANCE_IPV6", spec.ipv6.map(|ip| ip.to_string()));
    reserved("AWS_INSTANCE_PORT", spec.port.map(|port| port.to_string()));
    reserved("AWS_INSTANCE_CNAME", spec.cname().map(str::to_owned));
    // Cloud Map has no named ports: they show as attributes, `9090` or `53/udp`.
    for (name, named) in spec.ports() {
        let value = match named.protocol {
            Protocol::Tcp => named.port.to_string(),
            Protocol::Udp => format!("{}/udp", named.port),
        };
        reserved(&format!("{NAMED_PORT_PREFIX}{name}"), Some(value));
    }
    attributes
}

/// The attribute key prefix under which Cloud Map shapes show an instance's named ports.
const NAMED_PORT_PREFIX: &str = "MUSTER_PORT_";

pub fn health(instance: &Instance) -> &'static str {
    if instance.is_healthy() {
        "HEALTHY"
    } else {
        "UNHEALTHY"
    }
}
