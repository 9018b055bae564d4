//! The HTTP frontend: the REST registration API and the operations endpoints.
//!
//! Owns: request parsing and validation, and the mapping of registry errors to HTTP.
//! Writes go through `Change`s like any source (source id `api`) and are answered only
//! once the registry has published them, so a client that gets 200 can query DNS and
//! see its write. Must not: touch the registry's state except through changes.
//!
//! - `PUT|DELETE /v1/namespaces/{ns}/services/{svc}/instances/{id}`,
//!   `PUT .../{id}/health`, `PUT .../{id}/heartbeat`, `GET /v1/namespaces[/{ns}/services[/{svc}]]` ([`rest`]);
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` ([`ops`]);
//! - `POST /` with `X-Amz-Target`: the AWS Cloud Map API ([`cloudmap`]).

mod cloudmap;
mod error;
mod ops;
mod rest;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::CloudMapConfig;
use crate::health::Health;
use crate::registry::RegistryHandle;

pub use error::ApiError;
pub use ops::RegistryMetrics;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub registry: RegistryHandle,
    pub metrics: Arc<prometheus_client::registry::Registry>,
    pub registry_metrics: Arc<RegistryMetrics>,
    pub cloudmap: Arc<CloudMapState>,
    /// Where heartbeats go.
    pub health: Health,
}

/// The Cloud Map API's own state: how it names ARNs, and its recent operations.
pub struct CloudMapState {
    pub config: CloudMapConfig,
    pub operations: cloudmap::Operations,
}

impl CloudMapState {
    pub fn new(config: CloudMapConfig) -> Self {
        Self {
            config,
            operations: cloudmap::Operations::default(),
        }
    }
}

/// Every route on the HTTP port.
pub fn router(state: ApiState) -> Router {
    rest::routes()
        .merge(ops::routes())
        .route("/", axum::routing::post(cloudmap::handle))
        .with_state(state)
}

/// Binds the HTTP port.
pub async fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("HTTP {address}: {e}")))
}

/// Serves HTTP until `shutdown`, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
