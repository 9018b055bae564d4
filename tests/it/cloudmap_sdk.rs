//! The Cloud Map story of issue 3 with the official Rust SDK (`aws-sdk-servicediscovery`)
//! against muster in-process: create a namespace, a service with A+SRV records and TTL 7,
//! register three instances, discover them (each HealthStatus, query parameters), mark one
//! UNHEALTHY, deregister one, delete. Every step is checked in the SDK's answer and in DNS
//! (support.rs's own UDP client).
//!
//! The SDK prefixes `data-` to the endpoint's host for DiscoverInstances (the model's
//! `hostPrefix`), even with a custom `endpoint_url`, and this SDK release has no setting to
//! turn that off: `http://data-127.0.0.1:PORT` cannot be reached. [`NoHostPrefix`] is the
//! interceptor a user adds to take the prefix off before the request is signed.
//!
//! With access keys configured, the SDK's SigV4 signatures are checked: good credentials
//! work, a wrong secret, an unknown key and a key without the action get AWS's errors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::config::http::HttpResponse;
use aws_sdk_servicediscovery::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_servicediscovery::config::retry::RetryConfig;
use aws_sdk_servicediscovery::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_servicediscovery::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_servicediscovery::types::{
    CustomHealthStatus, DnsConfig, DnsRecord, HealthCheckCustomConfig, HealthStatusFilter,
    OperationStatus, PrivateDnsNamespaceProperties, PrivateDnsPropertiesMutable, RecordType,
    RoutingPolicy, Soa,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType as DnsType};

use super::support::{self, ask_udp, query};

const NAMESPACE: &str = "story.example";
const SERVICE: &str = "web";
const NAME: &str = "web.story.example.";

/// Takes the `data-` host prefix off requests to a custom endpoint, and counts how often.
#[derive(Debug, Default)]
struct NoHostPrefix {
    removed: Arc<AtomicUsize>,
}

impl Intercept for NoHostPrefix {
    fn name(&self) -> &'static str {
        "NoHostPrefix"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut();
        if let Some(rest) = request.uri().strip_prefix("http://data-") {
            let uri = format!("http://{rest}");
            request.set_uri(uri)?;
            self.removed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn client(http: SocketAddr, removed: Arc<AtomicUsize>) -> Client {
    signing_client(http, removed, "test", "test")
}

/// A client signing with `key` and `secret`, no retries.
fn signing_client(http: SocketAddr, removed: Arc<AtomicUsize>, key: &str, secret: &str) -> Client {
    let config = aws_sdk_servicediscovery::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, secret, None, None, "static"))
        .endpoint_url(format!("http://{http}"))
        .interceptor(NoHostPrefix { removed })
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// A UDP query from the test's own client, off the runtime that serves it.
async fn ask(dns: SocketAddr, name: &str, qtype: DnsType) -> Message {
    let message = query(name, qtype);
    tokio::task::spawn_blocking(move || ask_udp(dns, &message))
        .await
        .unwrap()
}

fn texts(records: &[Record]) -> Vec<String> {
    let mut texts: Vec<String> = records
        .iter()
        .filter(|r| r.record_type() != DnsType::OPT)
        .map(|r| {
            r.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    texts.sort();
    texts
}

/// `NAME TTL IN TYPE RDATA` lines for the A records of `ips`, in sorted order.
fn a_records(owner: &str, ips: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = ips
        .iter()
        .map(|ip| format!("{owner} 7 IN A {ip}"))
        .collect();
    lines.sort();
    lines
}

fn srv_records(ids: &[u8]) -> Vec<String> {
    ids.iter()
        .map(|i| format!("{NAME} 7 IN SRV 1 1 8080 i-{i}.{NAME}"))
        .collect()
}

/// Checks `web.story.example` A and SRV and each instance name against the served ids.
async fn assert_dns_serves(dns: SocketAddr, served: &[u8], gone: &[u8]) {
    let ips: Vec<String> = served.iter().map(|i| format!("10.9.0.{i}")).collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    let a = ask(dns, NAME, DnsType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative, "AA on namespace answers");
    assert_eq!(texts(&a.answers), a_records(NAME, &ips), "{NAME} A");
    let srv = ask(dns, NAME, DnsType::SRV).await;
    assert_eq!(texts(&srv.answers), srv_records(served), "{NAME} SRV");
    let targets: Vec<String> = served.iter().map(|i| format!("i-{i}.{NAME}")).collect();
    let mut additional: Vec<String> = served
        .iter()
        .zip(&targets)
        .map(|(i, target)| format!("{target} 7 IN A 10.9.0.{i}"))
        .collect();
    additional.sort();
    assert_eq!(
        texts(&srv.additionals),
        additional,
        "SRV targets' addresses"
    );
    for (i, target) in served.iter().zip(&targets) {
        let one = ask(dns, target, DnsType::A).await;
        assert_eq!(texts(&one.answers), [format!("{target} 7 IN A 10.9.0.{i}")]);
    }
    for i in gone {
        let one = ask(dns, &format!("i-{i}.{NAME}"), DnsType::A).await;
        assert_eq!(
            one.metadata.response_code,
            ResponseCode::NXDomain,
            "i-{i} is not served"
        );
    }
}

/// DiscoverInstances ids (sorted) and the InstancesRevision.
async fn discover(
    sd: &Client,
    health: HealthStatusFilter,
    query: &[(&str, &str)],
    optional: &[(&str, &str)],
) -> (Vec<String>, i64) {
    let mut request = sd
        .discover_instances()
        .namespace_name(NAMESPACE)
        .service_name(SERVICE)
        .health_status(health);
    for (k, v) in query {
        request = request.query_parameters(*k, *v);
    }
    for (k, v) in optional {
        request = request.optional_parameters(*k, *v);
    }
    let found = request.send().await.expect("DiscoverInstances");
    let mut ids: Vec<String> = found
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect();
    ids.sort();
    (ids, found.instances_revision().unwrap())
}

fn ids(list: &[u8]) -> Vec<String> {
    list.iter().map(|i| format!("i-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cloud_map_story_with_the_rust_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[namespaces]]\nname = \"internal\"\n";
    let muster = support::start(config, &dir.path().join("data")).await;
    let removed = Arc::new(AtomicUsize::new(0));
    let sd = client(muster.http, removed.clone());

    // Namespace, with an SOA TTL of 3 (the negative TTL).
    let soa = Soa::builder().ttl(3).build().unwrap();
    let properties = PrivateDnsNamespaceProperties::builder()
        .dns_properties(PrivateDnsPropertiesMutable::builder().soa(soa).build())
        .build();
    let created = sd
        .create_private_dns_namespace()
        .name(NAMESPACE)
        .vpc("vpc-1")
        .properties(properties)
        .send()
        .await
        .expect("CreatePrivateDnsNamespace");
    let operation = sd
        .get_operation()
        .operation_id(created.operation_id().unwrap())
        .send()
        .await
        .expect("GetOperation");
    assert_eq!(
        operation.operation().unwrap().status(),
        Some(&OperationStatus::Success)
    );
    let namespaces = sd.list_namespaces().send().await.expect("ListNamespaces");
    let namespace = namespaces
        .namespaces()
        .iter()
        .find(|n| n.name() == Some(NAMESPACE))
        .expect("the namespace is listed");
    let namespace_id = namespace.id().unwrap().to_owned();
    assert!(namespace_id.starts_with("ns-"), "{namespace_id}");

    // Service: A and SRV with TTL 7, custom health.
    let record = |kind| DnsRecord::builder().r#type(kind).ttl(7).build().unwrap();
    let dns_config = DnsConfig::builder()
        .routing_policy(RoutingPolicy::Multivalue)
        .dns_records(record(RecordType::A))
        .dns_records(record(RecordType::Srv))
        .build()
        .unwrap();
    let service = sd
        .create_service()
        .name(SERVICE)
        .namespace_id(&namespace_id)
        .dns_config(dns_config)
        .health_check_custom_config(HealthCheckCustomConfig::builder().build())
        .send()
        .await
        .expect("CreateService");
    let service = service.service().unwrap();
    let service_id = service.id().unwrap().to_owned();
    assert!(service_id.starts_with("srv-"), "{service_id}");
    let records = service.dns_config().unwrap().dns_records();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.ttl() == 7));
    let empty = ask(muster.dns, NAME, DnsType::A).await;
    assert_eq!(
        empty.metadata.response_code,
        ResponseCode::NXDomain,
        "a service without instances has no records, as in Route 53"
    );
    assert!(empty.answers.is_empty());
    assert_eq!(
        empty.authorities[0].ttl, 3,
        "negative answers use the SOA TTL"
    );

    // Three instances.
    for (i, stage) in [(1, "prod"), (2, "prod"), (3, "canary")] {
        sd.register_instance()
            .service_id(&service_id)
            .instance_id(format!("i-{i}"))
            .attributes("AWS_INSTANCE_IPV4", format!("10.9.0.{i}"))
            .attributes("AWS_INSTANCE_PORT", "8080")
            .attributes("stage", stage)
            .send()
            .await
            .expect("RegisterInstance");
    }
    assert_dns_serves(muster.dns, &[1, 2, 3], &[]).await;

    // Discovery: every HealthStatus, query and optional parameters.
    let (all, revision) = discover(&sd, HealthStatusFilter::All, &[], &[]).await;
    assert_eq!(all, ids(&[1, 2, 3]));
    let prod = [("stage", "prod")];
    let (healthy_prod, _) = discover(&sd, HealthStatusFilter::Healthy, &prod, &[]).await;
    assert_eq!(healthy_prod, ids(&[1, 2]));
    let (preferred, _) = discover(&sd, HealthStatusFilter::All, &[], &[("stage", "canary")]).await;
    assert_eq!(
        preferred,
        ids(&[3]),
        "optional parameters narrow when they match"
    );
    let (fallback, _) = discover(&sd, HealthStatusFilter::All, &prod, &[("stage", "none")]).await;
    assert_eq!(
        fallback,
        ids(&[1, 2]),
        "and are ignored when nothing matches"
    );
    let (unhealthy, _) = discover(&sd, HealthStatusFilter::Unhealthy, &[], &[]).await;
    assert!(unhealthy.is_empty());
    let one = sd
        .discover_instances()
        .namespace_name(NAMESPACE)
        .service_name(SERVICE)
        .health_status(HealthStatusFilter::All)
        .max_results(1)
        .send()
        .await
        .expect("DiscoverInstances MaxResults 1");
    let summary = &one.instances()[0];
    assert_eq!(one.instances().len(), 1);
    assert_eq!(summary.namespace_name(), Some(NAMESPACE));
    let attributes = summary.attributes().unwrap();
    let id = summary.instance_id().unwrap();
    assert_eq!(
        attributes.get("AWS_INSTANCE_IPV4").map(String::as_str),
        Some(format!("10.9.0.{}", &id[2..]).as_str())
    );
    let revision_only = sd
        .discover_instances_revision()
        .namespace_name(NAMESPACE)
        .service_name(SERVICE)
        .send()
        .await
        .expect("DiscoverInstancesRevision");
    assert_eq!(revision_only.instances_revision(), Some(revision));

    // i-2 UNHEALTHY: out of DNS at once, and out of HEALTHY discovery.
    sd.update_instance_custom_health_status()
        .service_id(&service_id)
        .instance_id("i-2")
        .status(CustomHealthStatus::Unhealthy)
        .send()
        .await
        .expect("UpdateInstanceCustomHealthStatus");
    assert_dns_serves(muster.dns, &[1, 3], &[2]).await;
    let (healthy, same_revision) = discover(&sd, HealthStatusFilter::Healthy, &[], &[]).await;
    assert_eq!(healthy, ids(&[1, 3]));
    assert_eq!(
        same_revision, revision,
        "health changes keep InstancesRevision"
    );
    let (unhealthy, _) = discover(&sd, HealthStatusFilter::Unhealthy, &[], &[]).await;
    assert_eq!(unhealthy, ids(&[2]));
    let (either, _) = discover(&sd, HealthStatusFilter::HealthyOrElseAll, &[], &[]).await;
    assert_eq!(either, ids(&[1, 3]));
    let status = sd
        .get_instances_health_status()
        .service_id(&service_id)
        .send()
        .await
        .expect("GetInstancesHealthStatus");
    let status: HashMap<&str, &str> = status
        .status()
        .unwrap()
        .iter()
        .map(|(id, health)| (id.as_str(), health.as_str()))
        .collect();
    let expected = HashMap::from([("i-1", "HEALTHY"), ("i-2", "UNHEALTHY"), ("i-3", "HEALTHY")]);
    assert_eq!(status, expected);

    // Deregister i-3.
    sd.deregister_instance()
        .service_id(&service_id)
        .instance_id("i-3")
        .send()
        .await
        .expect("DeregisterInstance");
    assert_dns_serves(muster.dns, &[1], &[2, 3]).await;
    let (all, new_revision) = discover(&sd, HealthStatusFilter::All, &[], &[]).await;
    assert_eq!(all, ids(&[1, 2]));
    assert_ne!(
        new_revision, revision,
        "a deregistration moves InstancesRevision"
    );
    let missing = sd
        .get_instance()
        .service_id(&service_id)
        .instance_id("i-3")
        .send()
        .await
        .expect_err("i-3 is gone");
    assert!(missing.into_service_error().is_instance_not_found());

    // Delete: refused while in use, then the service and the namespace go.
    let in_use = sd
        .delete_service()
        .id(&service_id)
        .send()
        .await
        .expect_err("the service still has instances");
    assert!(in_use.into_service_error().is_resource_in_use());
    for i in [1, 2] {
        sd.deregister_instance()
            .service_id(&service_id)
            .instance_id(format!("i-{i}"))
            .send()
            .await
            .expect("DeregisterInstance");
    }
    sd.delete_service()
        .id(&service_id)
        .send()
        .await
        .expect("DeleteService");
    let gone = ask(muster.dns, NAME, DnsType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    sd.delete_namespace()
        .id(&namespace_id)
        .send()
        .await
        .expect("DeleteNamespace");
    let refused = ask(muster.dns, NAME, DnsType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let no_namespace = sd
        .get_namespace()
        .id(&namespace_id)
        .send()
        .await
        .expect_err("the namespace is gone");
    assert!(no_namespace.into_service_error().is_namespace_not_found());

    // The prefix was there, and taken off, on each of the 10 DiscoverInstances calls and
    // the one DiscoverInstancesRevision; no other operation has one.
    assert_eq!(removed.load(Ordering::Relaxed), 11);
}

/// The code and HTTP status of a failed call.
fn failure<E>(error: SdkError<E, HttpResponse>) -> (String, u16)
where
    SdkError<E, HttpResponse>: ProvideErrorMetadata,
{
    let status = error.raw_response().map_or(0, |r| r.status().as_u16());
    (error.code().unwrap_or_default().to_owned(), status)
}

/// With `[[auth.access_keys]]` configured, the SDK's SigV4 signatures are checked:
/// good credentials work, a wrong secret, an unknown key and a key without the action
/// get AWS's errors.
#[tokio::test(flavor = "multi_thread")]
async fn the_rust_sdk_with_good_and_wrong_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[[namespaces]]
name = "internal"
[[auth.access_keys]]
id = "AKIDRUSTSDK"
secret = "rust/sdk+secret"
[[auth.access_keys.allow]]
actions = ["servicediscovery:*"]
[[auth.access_keys]]
id = "AKIDDISCOVER"
secret = "discover"
[[auth.access_keys.allow]]
actions = ["servicediscovery:DiscoverInstances"]
"#;
    let muster = support::start(config, &dir.path().join("data")).await;
    let removed = Arc::new(AtomicUsize::new(0));
    let good = signing_client(
        muster.http,
        removed.clone(),
        "AKIDRUSTSDK",
        "rust/sdk+secret",
    );
    let namespaces = good.list_namespaces().send().await.expect("ListNamespaces");
    let namespace_id = namespaces.namespaces()[0].id().unwrap().to_owned();
    let record = DnsRecord::builder()
        .r#type(RecordType::A)
        .ttl(7)
        .build()
        .unwrap();
    let dns_config = DnsConfig::builder().dns_records(record).build().unwrap();
    let service = good
        .create_service()
        .name("api")
        .namespace_id(&namespace_id)
        .dns_config(dns_config)
        .send()
        .await
        .expect("CreateService");
    let service_id = service.service().unwrap().id().unwrap().to_owned();
    let register = |client: &Client| {
        client
            .register_instance()
            .service_id(&service_id)
            .instance_id("i-1")
            .attributes("AWS_INSTANCE_IPV4", "10.9.1.1")
            .send()
    };
    register(&good).await.expect("RegisterInstance");
    let discoverer = signing_client(muster.http, removed.clone(), "AKIDDISCOVER", "discover");
    let found = discoverer
        .discover_instances()
        .namespace_name("internal")
        .service_name("api")
        .send()
        .await
        .expect("DiscoverInstances with a key allowed only that");
    assert_eq!(found.instances().len(), 1);

    let denied = register(&discoverer)
        .await
        .expect_err("not allowed to register");
    assert_eq!(failure(denied), ("AccessDeniedException".into(), 400));
    let wrong = signing_client(muster.http, removed.clone(), "AKIDRUSTSDK", "not-it");
    let refused = wrong
        .list_namespaces()
        .send()
        .await
        .expect_err("wrong secret");
    assert_eq!(failure(refused), ("InvalidSignatureException".into(), 400));
    let unknown = signing_client(muster.http, removed, "AKIDNOBODY", "x");
    let refused = register(&unknown).await.expect_err("unknown key");
    assert_eq!(
        failure(refused),
        ("UnrecognizedClientException".into(), 400)
    );
    let listed = good
        .list_instances()
        .service_id(&service_id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.instances().len(), 1, "nothing refused was applied");
}
