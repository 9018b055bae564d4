//! Fuzz targets of the HTTP APIs, through the real router (extractors, body parsing,
//! validation, dispatch) against a running in-memory registry: the REST registration
//! body, and every Cloud Map operation's input.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::dns::runtime;
use super::{JSON_TOKENS, Verdict, fuzz, outcome, shape};
use crate::api::{self, ApiState, Auth, CloudMapState};
use crate::config::{Config, HealthSettings};
use crate::health::{CheckLimits, Health, HealthMetrics};
use crate::registry::RegistryMetrics;
use crate::registry::{
    Change, InstanceKey, InstanceSpec, Registry, RegistryHandle, Snapshot, SourceId, SpecExtras,
    health_bounds, validate,
};
use crate::task::{Supervisor, TaskStates};

/// muster's HTTP side on an in-memory registry (namespace `internal`, service `web` with
/// one instance), on a runtime of this thread.
struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    registry: RegistryHandle,
    writer: tokio::task::JoinHandle<()>,
    tasks: TaskStates,
    _supervisor: Supervisor,
}

impl Api {
    fn start() -> Self {
        let runtime = runtime();
        let _context = runtime.enter();
        let config = Config::default();
        let mut registry = Registry::new(Snapshot::new(config.settings().unwrap().namespaces, []));
        let handle = registry.handle();
        let stop = CancellationToken::new();
        let mut metrics = prometheus_client::registry::Registry::default();
        let supervisor = Supervisor::new(stop.clone(), &mut metrics);
        // Checks may target nothing: fuzzed registrations must not probe the network.
        let nowhere = HealthSettings {
            allow: Vec::new(),
            deny: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            min_interval: config.health.min_interval,
        };
        let (health, task) = Health::new(
            handle.clone(),
            HealthMetrics::default(),
            CheckLimits::new(&nowhere),
            stop.clone(),
        );
        registry.on_publish(health.publish_hook());
        supervisor.spawn("health", move || task.run());
        let writer = runtime.spawn(registry.run(stop.clone()));
        let auth = Auth::new(&config.auth, &mut metrics).expect("the default [auth] loads");
        let state = ApiState::new(api::ApiParts {
            registry: handle.clone(),
            auth: Arc::new(auth),
            metrics: Arc::new(metrics),
            registry_metrics: Arc::new(RegistryMetrics::default()),
            cloudmap: Arc::new(CloudMapState::new(config.cloudmap.clone())),
            health,
            tasks: supervisor.states(),
            watch: Arc::new(api::Watchers::new(
                crate::reload::Reloader::new(config.clone()).subscribe(),
                Arc::default(),
                stop.clone(),
            )),
            status: Arc::new(api::StatusState::new(
                crate::dns::PublishedZone::default(),
                crate::sources::SourceStatuses::default(),
            )),
        });
        let key = InstanceKey {
            namespace: "internal".into(),
            service: "web".into(),
            id: "i-1".into(),
        };
        let spec = InstanceSpec {
            ipv4: Some("10.0.0.1".parse().unwrap()),
            port: Some(80),
            healthy: true,
            extras: SpecExtras {
                heartbeat_ttl: Some(std::time::Duration::from_secs(30)),
                ..SpecExtras::default()
            }
            .into(),
            ..InstanceSpec::default()
        };
        let upsert = Change::Upsert {
            key,
            spec,
            source: SourceId::api(),
        };
        runtime.block_on(handle.apply(upsert)).unwrap();
        Self {
            runtime,
            router: api::router(state),
            registry: handle,
            writer,
            tasks: supervisor.states(),
            _supervisor: supervisor,
        }
    }

    /// Sends one request, from a loopback client as the listener would tag it; returns
    /// its status and body.
    fn send(&self, mut request: Request<Body>) -> (u16, Vec<u8>) {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, body.to_vec())
        })
    }

    /// What must hold after every request: no 5xx, an error body naming the error, the
    /// registry's writer and the background tasks still running.
    fn check(&self, status: u16, body: &[u8], error_key: &str) -> Verdict {
        if status >= 500 {
            return Err(format!("{status}: {}", String::from_utf8_lossy(body)));
        }
        if self.writer.is_finished() {
            return Err("the registry's writer stopped".to_owned());
        }
        if let Some((task, _)) = self.tasks.list().iter().find(|(_, s)| s.restarts > 0) {
            return Err(format!("background task {task} panicked"));
        }
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("{status}: the body is not JSON ({e})"))?;
        let error = json.get(error_key).and_then(|e| e.as_str());
        match (status, error) {
            (200, _) => Ok(outcome(200)),
            (_, Some(error)) => Ok(outcome((status, shape(error)))),
            _ => Err(format!("{status} without {error_key:?}: {json}")),
        }
    }
}

/// Registration bodies that pass, and some that nearly do.
const REST_SEEDS: &[&str] = &[
    r#"{"ipv4": "10.0.0.5", "port": 8080}"#,
    r#"{"ipv4": "10.0.0.5", "ipv6": "2001:db8::5", "port": 8080, "attributes": {"zone": "a", "AVAILABILITY_ZONE": "us-east-1a"}, "healthy": false}"#,
    r#"{"ipv6": "2001:db8::5", "heartbeat_ttl": "3s"}"#,
    r#"{"ipv4": "10.0.0.5", "port": 8080, "check": {"http": "/healthz", "interval": "200ms", "timeout": "150ms", "healthy_threshold": 2, "unhealthy_threshold": 3, "status": "200-299", "host": "web.example:8080", "start_unhealthy": true}}"#,
    r#"{"ipv4": "10.0.0.5", "check": {"tcp": true, "interval": "1h", "port": 22}}"#,
    r#"{"ipv4": "127.0.0.1", "port": 1, "check": {"tcp": true, "interval": "100y"}}"#,
    r#"{"ipv4": "10.0.0.5", "heartbeat_ttl": "150000000000y"}"#,
];

#[test]
fn fuzz_rest_register() {
    let api = Api::start();
    let seeds = REST_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    fuzz("rest_register", seeds, JSON_TOKENS, |body| {
        let request = Request::builder()
            .method(Method::PUT)
            .uri("/v1/namespaces/internal/services/web/instances/i-2")
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .unwrap();
        let (status, response) = api.send(request);
        let summary = api.check(status, &response, "error")?;
        if status == 200 {
            // What was accepted is within every bound the registry relies on.
            let snapshot = api.registry.snapshot();
            let instance = snapshot
                .service("internal", "web")
                .unwrap()
                .instances
                .get("i-2")
                .unwrap();
            health_bounds(&instance.spec).map_err(|e| format!("accepted: {e}"))?;
            validate::attributes(&instance.spec.attributes).map_err(|e| e.to_string())?;
        }
        Ok(summary)
    });
}

/// One valid input per Cloud Map operation; `{ns}` and `{srv}` are replaced by the ids
/// of namespace `internal` and its service `web`.
const CLOUD_MAP_SEEDS: &[(&str, &str)] = &[
    (
        "CreatePrivateDnsNamespace",
        r#"{"Name": "fuzz.internal", "Vpc": "vpc-1", "CreatorRequestId": "r-1", "Description": "d", "Properties": {"DnsProperties": {"SOA": {"TTL": 60}}}, "Tags": [{"Key": "k", "Value": "v"}]}"#,
    ),
    ("CreateHttpNamespace", r#"{"Name": "http-ns"}"#),
    ("GetNamespace", r#"{"Id": "{ns}"}"#),
    (
        "ListNamespaces",
        r#"{"MaxResults": 10, "Filters": [{"Name": "TYPE", "Values": ["DNS_PRIVATE"], "Condition": "EQ"}]}"#,
    ),
    (
        "UpdatePrivateDnsNamespace",
        r#"{"Id": "{ns}", "UpdaterRequestId": "u-1", "Namespace": {"Description": "x", "Properties": {"DnsProperties": {"SOA": {"TTL": 30}}}}}"#,
    ),
    ("DeleteNamespace", r#"{"Id": "{ns}"}"#),
    (
        "CreateService",
        r#"{"Name": "svc", "NamespaceId": "{ns}", "DnsConfig": {"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}]}, "HealthCheckCustomConfig": {"FailureThreshold": 1}, "Tags": [{"Key": "k", "Value": "v"}]}"#,
    ),
    ("GetService", r#"{"Id": "{srv}"}"#),
    (
        "ListServices",
        r#"{"Filters": [{"Name": "NAMESPACE_ID", "Values": ["{ns}"], "Condition": "EQ"}]}"#,
    ),
    (
        "UpdateService",
        r#"{"Id": "{srv}", "Service": {"Description": "d", "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 5}]}}}"#,
    ),
    ("DeleteService", r#"{"Id": "{srv}"}"#),
    ("GetServiceAttributes", r#"{"ServiceId": "{srv}"}"#),
    (
        "UpdateServiceAttributes",
        r#"{"ServiceId": "{srv}", "Attributes": {"a": "b"}}"#,
    ),
    (
        "DeleteServiceAttributes",
        r#"{"ServiceId": "{srv}", "Attributes": ["a"]}"#,
    ),
    (
        "RegisterInstance",
        r#"{"ServiceId": "{srv}", "InstanceId": "i-3", "CreatorRequestId": "c-1", "Attributes": {"AWS_INSTANCE_IPV4": "10.0.0.3", "AWS_INSTANCE_PORT": "80", "AWS_INIT_HEALTH_STATUS": "HEALTHY", "zone": "a"}}"#,
    ),
    (
        "DeregisterInstance",
        r#"{"ServiceId": "{srv}", "InstanceId": "i-3"}"#,
    ),
    (
        "GetInstance",
        r#"{"ServiceId": "{srv}", "InstanceId": "i-1"}"#,
    ),
    (
        "ListInstances",
        r#"{"ServiceId": "{srv}", "MaxResults": 5, "NextToken": "1"}"#,
    ),
    (
        "GetInstancesHealthStatus",
        r#"{"ServiceId": "{srv}", "Instances": ["i-1"], "MaxResults": 5}"#,
    ),
    (
        "UpdateInstanceCustomHealthStatus",
        r#"{"ServiceId": "{srv}", "InstanceId": "i-1", "Status": "UNHEALTHY"}"#,
    ),
    (
        "DiscoverInstances",
        r#"{"NamespaceName": "internal", "ServiceName": "web", "QueryParameters": {"zone": "a"}, "OptionalParameters": {"x": "y"}, "HealthStatus": "HEALTHY_OR_ELSE_ALL", "MaxResults": 3}"#,
    ),
    (
        "DiscoverInstancesRevision",
        r#"{"NamespaceName": "internal", "ServiceName": "web"}"#,
    ),
    ("GetOperation", r#"{"OperationId": "op-1"}"#),
    (
        "ListOperations",
        r#"{"MaxResults": 2, "Filters": [{"Name": "STATUS", "Values": ["SUCCESS"], "Condition": "IN"}]}"#,
    ),
    (
        "TagResource",
        r#"{"ResourceARN": "arn:aws:servicediscovery:us-east-1:123456789012:service/{srv}", "Tags": [{"Key": "k", "Value": "v"}]}"#,
    ),
    (
        "UntagResource",
        r#"{"ResourceARN": "arn:aws:servicediscovery:us-east-1:123456789012:service/{srv}", "TagKeys": ["k"]}"#,
    ),
    (
        "ListTagsForResource",
        r#"{"ResourceARN": "arn:aws:servicediscovery:us-east-1:123456789012:namespace/{ns}"}"#,
    ),
];

/// The first byte of an input picks the operation, the rest is its body.
#[test]
fn fuzz_cloud_map() {
    let api = Api::start();
    let snapshot = api.registry.snapshot();
    let namespace = snapshot.namespace("internal").unwrap();
    let ns = namespace.meta.id.clone();
    let srv = namespace.services["web"].meta.id.clone();
    let seeds = CLOUD_MAP_SEEDS
        .iter()
        .enumerate()
        .map(|(n, (_, body))| {
            let body = body.replace("{ns}", &ns).replace("{srv}", &srv);
            [&[n as u8][..], body.as_bytes()].concat()
        })
        .collect();
    let mut tokens = JSON_TOKENS.to_vec();
    tokens.extend([
        ns.as_bytes(),
        srv.as_bytes(),
        b"\"aws:\"",
        b"\"AWS_INSTANCE_IPV4\"",
    ]);
    fuzz("cloud_map", seeds, &tokens, |input| {
        let Some((&selector, body)) = input.split_first() else {
            return Ok(outcome(0));
        };
        let (operation, _) = CLOUD_MAP_SEEDS[usize::from(selector) % CLOUD_MAP_SEEDS.len()];
        let request = Request::builder()
            .method(Method::POST)
            .uri("/")
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                format!("Route53AutoNaming_v20170314.{operation}"),
            )
            .body(Body::from(body.to_vec()))
            .unwrap();
        let (status, response) = api.send(request);
        api.check(status, &response, "__type")
            .map(|summary| outcome((operation, summary)))
    });
}
