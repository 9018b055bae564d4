//! Operations endpoints: liveness, readiness, Prometheus metrics.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};

use super::ApiState;
use super::shape::OwnShape;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// 200 while every background task runs; 503 naming those that do not (restarting
/// after a panic, or dead). `?verbose` lists every task with its state and restarts,
/// and how the shared store is doing (etcd reachable or not, how far behind this
/// replica is): etcd being away does not make it 503, DNS keeps answering.
async fn healthz(State(state): State<ApiState>, RawQuery(query): RawQuery) -> impl IntoResponse {
    let verbose = query
        .unwrap_or_default()
        .split('&')
        .any(|p| p == "verbose" || p.starts_with("verbose="));
    let down = state.tasks.down();
    let status = match down.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    let tasks = if verbose { state.tasks.list() } else { down };
    let mut text = match status {
        StatusCode::OK => "ok\n".to_owned(),
        _ => "down\n".to_owned(),
    };
    for (name, task) in tasks {
        text.push_str(&format!(
            "task {name}: {} (restarts: {})\n",
            task.state, task.restarts
        ));
    }
    if let Some(store) = state.registry.store_status().filter(|_| verbose) {
        text.push_str(&store);
        text.push('\n');
    }
    (status, Extension(OwnShape), text)
}

/// 200 once every source has synced and the log takes writes; 503 saying why not (the
/// sources still pending, or why writes are refused while DNS answers on).
async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let snapshot = state.registry.snapshot();
    if let Some(reason) = state.registry.read_only() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Extension(OwnShape),
            format!("read-only: writes are refused: {reason}\n"),
        )
            .into_response()
    } else if snapshot.is_synced() {
        (StatusCode::OK, "ready\n".to_owned()).into_response()
    } else {
        let pending: Vec<String> = snapshot.unsynced.iter().map(|s| s.to_string()).collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Extension(OwnShape),
            format!("waiting for: {}\n", pending.join(", ")),
        )
            .into_response()
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
