//! The HTTP frontend: the REST registration API and the operations endpoints.
//!
//! Owns: request parsing and validation, and the mapping of registry errors to HTTP.
//! Writes go through `Change`s like any source (source id `api`) and are answered only
//! once the registry has published them, so a client that gets 200 can query DNS and
//! see its write. Must not: touch the registry's state except through changes.
//!
//! - `PUT|DELETE /v1/namespaces/{ns}/services/{svc}/instances/{id}`,
//!   `PUT .../{id}/health`, `PUT .../{id}/heartbeat`, `GET /v1/namespaces[/{ns}/services[/{svc}]]` ([`rest`]),
//!   blocking queries on the last ([`watch`]) and `GET /v1/watch` ([`sse`]);
//! - `POST /v1/namespaces/{ns}/batch`: many registrations at once ([`batch`]);
//! - `GET /healthz[?verbose]`, `GET /readyz`, `GET /metrics` ([`ops`]) and the status
//!   pages under `GET /ui/` ([`status`]), also on the `[ops]` listener when it is
//!   configured (and only they are there);
//! - `POST /` with `X-Amz-Target`: the AWS Cloud Map API ([`cloudmap`]).
//!
//! Around them: muster's own accept loop ([`listener`], [`admission`]) and connections
//! ([`connection`]: HTTP/1.1, header and idle timeouts, optional [`tls`]), the checks
//! every request passes and the JSON shape of every error ([`guard`], [`shape`]), and
//! their metrics ([`metrics`]). See docs/security.md, "The HTTP listeners". Every route
//! of the `[http]` listener but `/healthz` and `/readyz` is authenticated and authorized
//! ([`access`], [`auth`]).

mod access;
mod admission;
pub mod auth;
mod batch;
mod cloudmap;
mod connection;
mod error;
mod guard;
mod listener;
mod log_limit;
mod metrics;
mod ops;
mod rest;
mod shape;
mod sse;
mod status;
mod tls;
mod watch;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{CloudMapConfig, Config, ConfigError};
use crate::health::Health;
use crate::registry::{RegistryHandle, RegistryMetrics};
use crate::reload::ConfigUpdates;
use crate::task::TaskStates;

pub use auth::Auth;

pub use error::ApiError;
pub use metrics::HttpMetrics;
pub use status::StatusState;
pub use watch::Watchers;

/// The largest request body accepted; a larger one gets 413 in the API's shape. The
/// largest valid request (30 attributes of 1,024 characters, 50 tags) is a few tens of
/// KiB; with `http.max_connections` (1,024) this bounds what bodies being read can hold
/// at 256 MiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// What the HTTP handlers share: one allocation behind an `Arc`, because axum clones
/// the state for the guard's layer and for each `State` extractor of every request, and
/// a clone of the parts themselves was ~15 reference counts taken and dropped per clone
/// (~2% of a single REST write's CPU).
#[derive(Clone)]
pub struct ApiState(Arc<ApiParts>);

impl ApiState {
    /// The state every request of the listeners shares.
    pub fn new(parts: ApiParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiParts;

    fn deref(&self) -> &ApiParts {
        &self.0
    }
}

/// The parts of [`ApiState`].
pub struct ApiParts {
    pub registry: RegistryHandle,
    /// Credentials, write limits and the audit log.
    pub auth: Arc<Auth>,
    pub metrics: Arc<prometheus_client::registry::Registry>,
    pub registry_metrics: Arc<RegistryMetrics>,
    pub cloudmap: Arc<CloudMapState>,
    /// Where heartbeats go, and where checks may go.
    pub health: Health,
    /// The background tasks' states, for `/healthz`.
    pub tasks: TaskStates,
    /// Blocking queries' and `/v1/watch` streams' caps and shutdown.
    pub watch: Arc<Watchers>,
    /// What the status pages read besides the rest: the published DNS zone.
    pub status: Arc<StatusState>,
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

/// Every route of the `[http]` listener (REST, Cloud Map and the operations endpoints),
/// behind the access guard.
pub(crate) fn router(state: ApiState) -> Router {
    rest::routes()
        .merge(ops::routes())
        .merge(status::routes())
        .route("/", axum::routing::post(cloudmap::handle))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::guard,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The `[ops]` listener's routes: the operations endpoints and the status pages, without
/// authentication (docs/security.md: the ops listener is for operators and scrapers, and
/// neither shows a secret).
fn ops_router(state: ApiState) -> Router {
    ops::routes().merge(status::routes()).with_state(state)
}

/// The HTTP frontend's bound sockets and certificate, ready to serve.
pub struct Listeners {
    http: TcpListener,
    ops: Option<TcpListener>,
    tls: Option<tls::Tls>,
}

impl Listeners {
    /// The `[http]` listener's address (the real port where port 0 was configured).
    pub fn http_addr(&self) -> io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The `[ops]` listener's address, when there is one.
    pub fn ops_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.ops.as_ref().map(TcpListener::local_addr).transpose()
    }
}

/// Binds the `[http]` and `[ops]` listeners and loads the TLS certificate, so that a
/// taken port or a certificate that does not load stops muster at start.
pub async fn bind(config: &Config) -> Result<Listeners, crate::Error> {
    let tls = tls::Tls::load(&config.http).map_err(|error| {
        crate::Error::Config(ConfigError::Invalid(vec![format!(
            "http.tls_cert: {error}"
        )]))
    })?;
    let http = bind_one("HTTP", config.http.listen).await?;
    let ops = match config.ops.listen {
        Some(address) => Some(bind_one("ops", address).await?),
        None => None,
    };
    Ok(Listeners { http, ops, tls })
}

async fn bind_one(what: &str, address: SocketAddr) -> Result<TcpListener, crate::Error> {
    TcpListener::bind(address)
        .await
        .map_err(|e| crate::Error::Bind(io::Error::new(e.kind(), format!("{what} {address}: {e}"))))
}

/// Serves HTTP until `shutdown`, then finishes the requests in flight. `updates` carries
/// reloads: connection bounds, `http.hosts`, credentials and the certificate follow them.
pub async fn serve(
    listeners: Listeners,
    state: ApiState,
    updates: ConfigUpdates,
    metrics: Arc<HttpMetrics>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let guard = guard::Guard::new(updates.clone(), metrics.clone());
    if let Some(tls) = &listeners.tls {
        let follow = tls
            .clone()
            .follow(updates.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(follow);
    }
    let http = listener::serve(
        listener::Listener {
            name: "api",
            socket: listeners.http,
            api: guard::Guarded::new(router(state.clone()), guard.clone()),
            tls: listeners.tls,
        },
        updates.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    let Some(ops) = listeners.ops else {
        return http.await;
    };
    let ops = listener::serve(
        listener::Listener {
            name: "ops",
            socket: ops,
            api: guard::Guarded::new(ops_router(state), guard),
            tls: None,
        },
        updates,
        metrics,
        shutdown,
    );
    tokio::try_join!(http, ops).map(|_| ())
}
