//! Operations endpoints: liveness, readiness, Prometheus metrics.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ApiState;
use crate::registry::Snapshot;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// 200 once every source has synced; 503 naming the ones still pending.
async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let snapshot = state.registry.snapshot();
    if snapshot.is_synced() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        let pending: Vec<String> = snapshot.unsynced.iter().map(|s| s.to_string()).collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for: {}\n", pending.join(", ")),
        )
    }
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    state.registry_metrics.observe(&state.registry.snapshot());
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.metrics) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            error.to_string(),
        ),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    namespace: String,
    health: &'static str,
}

/// `muster_registry_*` gauges, read from the snapshot when scraped (not per change).
#[derive(Default)]
pub struct RegistryMetrics {
    revision: Gauge,
    instances: Family<InstanceLabels, Gauge>,
    services: Family<NamespaceLabels, Gauge>,
}

impl RegistryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("muster_registry");
        sub.register(
            "revision",
            "Registry revision (the SOA serial of a change)",
            self.revision.clone(),
        );
        sub.register(
            "instances",
            "Registered instances, by namespace and health",
            self.instances.clone(),
        );
        sub.register("services", "Services, by namespace", self.services.clone());
    }

    fn observe(&self, snapshot: &Snapshot) {
        self.revision.set(snapshot.revision as i64);
        for (name, namespace) in &snapshot.namespaces {
            let healthy: usize = namespace.services.values().map(|s| s.healthy_count()).sum();
            let total = namespace.instance_count();
            let labels = |health| InstanceLabels {
                namespace: name.clone(),
                health,
            };
            self.instances
                .get_or_create(&labels("healthy"))
                .set(healthy as i64);
            self.instances
                .get_or_create(&labels("unhealthy"))
                .set((total - healthy) as i64);
            let namespace_labels = NamespaceLabels {
                namespace: name.clone(),
            };
            self.services
                .get_or_create(&namespace_labels)
                .set(namespace.services.len() as i64);
        }
    }
}
