//! muster: DNS-based service discovery.
//!
//! Data flows one way, and the modules are cut along it:
//!
//! 1. **Sources** ([`sources`]) watch something (a file, ECS, health checks) and send
//!    [`registry::Change`]s. The REST API ([`api`]) is a source too.
//! 2. The **registry** ([`registry`]) applies changes with one writer, bumps a revision
//!    per change and publishes immutable snapshots.
//! 3. **Frontends** read snapshots: [`dns`] answers queries from a zone view rebuilt per
//!    touched service; [`api`] serves reads and metrics.
//!
//! [`config`] turns the TOML file into validated settings. [`threads`] keeps the
//! control plane from preempting the threads that answer queries. [`start`] binds every
//! listener first (so a taken port fails at once), then runs everything until the
//! shutdown token fires or a frontend dies.

pub mod api;
pub mod config;
pub mod dns;
pub mod health;
pub mod registry;
pub mod sources;
pub mod store;
pub mod threads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError};
use crate::registry::Registry;

/// muster's allocator, for every binary that links the library (muster, tests, benches),
/// so benchmarks measure what production runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long each shutdown stage may take before muster stops waiting for it.
const STAGE_DEADLINE: Duration = Duration::from_secs(5);

/// Why muster could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot bind: {0}")]
    Bind(std::io::Error),
    #[error("cannot open the data directory: {0}")]
    Store(#[from] store::StoreError),
    #[error("a frontend stopped: {0}")]
    Frontend(String),
}

/// A started muster: its bound addresses, and the tasks to wait for.
pub struct Running {
    /// DNS addresses actually bound (the real port where port 0 was configured).
    pub dns_addrs: Vec<SocketAddr>,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    sources: TaskTracker,
    sources_stop: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    http_stop: CancellationToken,
    registry: JoinHandle<std::io::Result<()>>,
    registry_stop: CancellationToken,
    dns: JoinHandle<std::io::Result<()>>,
    dns_stop: CancellationToken,
}

/// Validates `config`, binds every listener, and starts sources, registry and frontends.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, Error> {
    let namespaces = config.validate()?;
    let dns_listeners = dns::bind(&config.dns.listen).await.map_err(Error::Bind)?;
    let http_listener = api::bind(config.http.listen).await.map_err(Error::Bind)?;
    let dns_addrs = dns_listeners.local_addrs();
    let http_addr = http_listener.local_addr().map_err(Error::Bind)?;

    let mut metrics = prometheus_client::registry::Registry::default();
    // The API's registrations are back once the log is replayed: it needs no sync.
    let (wal, recovered) = store::Wal::open(&config.data_dir, &mut metrics)?;
    let replayed = recovered.changes.len();
    let file_sources = config.sources.file.clone();
    let ecs_sources = config.sources.ecs.clone();
    let source_ids = file_sources
        .iter()
        .map(sources::file::source_id)
        .chain(ecs_sources.iter().flat_map(sources::ecs::source_ids));
    let initial = registry::Snapshot::new(namespaces, source_ids);
    let mut registry = Registry::durable(initial, wal, recovered);
    let handle = registry.handle();
    let invalid = |problem: String| Error::Config(ConfigError::Invalid(vec![problem]));
    let transfers = dns::Transfers::from_config(&config.transfer).map_err(invalid)?;
    let forwarder = dns::Forwarder::new(&config.forward).map_err(invalid)?;
    let zone = match transfers.enabled() {
        true => dns::ZoneView::with_journal(dns::JOURNAL_RECORDS),
        false => dns::ZoneView::default(),
    };
    registry.on_publish(zone.publish_hook());
    let health_metrics = health::HealthMetrics::default();
    health_metrics.register(&mut metrics);
    let sources_stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (health, health_task) =
        health::Health::new(handle.clone(), health_metrics, sources_stop.clone());
    registry.on_publish(health.publish_hook());
    tracker.spawn(health_task);

    let dns_metrics = Arc::new(dns::DnsMetrics::default());
    dns_metrics.register(&mut metrics);
    let registry_metrics = Arc::new(api::RegistryMetrics::default());
    registry_metrics.register(&mut metrics);
    let ecs_metrics = Arc::new(sources::ecs::EcsMetrics::default());
    ecs_metrics.register(&mut metrics);

    let registry_stop = CancellationToken::new();
    let registry_task = registry.spawn(registry_stop.clone());

    let dns_stop = CancellationToken::new();
    if !transfers.notify.is_empty() {
        tracker.spawn(dns::notify_secondaries(
            zone.clone(),
            transfers.notify.clone(),
            transfers.notify_key().cloned(),
            dns_metrics.clone(),
            sources_stop.clone(),
        ));
    }
    let handler = dns::Handler::new(
        zone,
        config.dns.max_udp_payload,
        dns_metrics,
        forwarder,
        transfers,
    );
    let dns_task = tokio::spawn(dns::serve(dns_listeners, handler, dns_stop.clone()));

    let http_stop = CancellationToken::new();
    let state = api::ApiState {
        registry: handle.clone(),
        metrics: Arc::new(metrics),
        registry_metrics,
        cloudmap: Arc::new(api::CloudMapState::new(config.cloudmap.clone())),
        health,
    };
    let http_task = tokio::spawn(api::serve(http_listener, state, http_stop.clone()));

    let context = sources::SourceContext {
        registry: handle,
        shutdown: sources_stop.clone(),
    };
    for file in file_sources {
        tracker.spawn(sources::file::run(file, context.clone()));
    }
    for ecs in ecs_sources {
        tracker.spawn(sources::ecs::run(ecs, context.clone(), ecs_metrics.clone()));
    }
    tracker.close();
    tracing::info!(dns = ?dns_addrs, http = %http_addr, replayed, "muster is serving");
    Ok(Running {
        dns_addrs,
        http_addr,
        shutdown,
        sources: tracker,
        sources_stop,
        http: http_task,
        http_stop,
        registry: registry_task,
        registry_stop,
        dns: dns_task,
        dns_stop,
    })
}

impl Running {
    /// Runs until shutdown (or a frontend fails), then stops in order: sources and the
    /// API (no new writes), the registry (drains queued changes), DNS last.
    pub async fn wait(mut self) -> Result<(), Error> {
        let failure = tokio::select! {
            _ = self.shutdown.cancelled() => None,
            result = &mut self.dns => Some(format!("DNS: {}", outcome(result))),
            result = &mut self.http => Some(format!("HTTP: {}", outcome(result))),
            result = &mut self.registry => Some(format!("registry: {}", outcome(result))),
        };
        if let Some(failure) = &failure {
            tracing::error!(%failure, "a frontend stopped; shutting down");
        }
        self.sources_stop.cancel();
        self.http_stop.cancel();
        let _ = tokio::time::timeout(STAGE_DEADLINE, self.sources.wait()).await;
        if !self.http.is_finished() {
            let _ = tokio::time::timeout(STAGE_DEADLINE, &mut self.http).await;
        }
        self.registry_stop.cancel();
        if !self.registry.is_finished() {
            let _ = tokio::time::timeout(STAGE_DEADLINE, &mut self.registry).await;
        }
        self.dns_stop.cancel();
        if !self.dns.is_finished() {
            let _ = tokio::time::timeout(STAGE_DEADLINE, &mut self.dns).await;
        }
        failure.map_or(Ok(()), |f| Err(Error::Frontend(f)))
    }
}

fn outcome(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> String {
    match result {
        Ok(Ok(())) => "stopped unexpectedly".to_owned(),
        Ok(Err(error)) => error.to_string(),
        Err(error) => error.to_string(),
    }
}

/// Starts muster and runs it until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}
