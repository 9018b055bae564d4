//! muster: DNS-based service discovery.
//!
//! Data flows one way, and the modules are cut along it:
//!
//! 1. **Sources** ([`sources`]) watch something (a file, ECS, health checks, signed DNS
//!    UPDATE messages the DNS handler passes on) and send [`registry::Change`]s. The REST API ([`api`]) is a source too.
//! 2. The **registry** ([`registry`]) applies changes with one writer, bumps a revision
//!    per change and publishes immutable snapshots.
//! 3. **Frontends** read snapshots: [`dns`] answers queries from a zone view rebuilt per
//!    touched service; [`api`] serves reads and metrics, and authenticates, authorizes,
//!    rate-limits and audits every API call (`api::auth`).
//!
//! [`config`] turns the TOML file into validated settings. [`logging`] holds the default
//! log filter and the throttle for events clients can cause per packet. [`fnv`] is the
//! hash every replica computes alike (ids, shares of work). [`threads`] keeps the
//! control plane from preempting the threads that answer queries. [`start`] binds every
//! listener first (so a taken port fails at once), then runs everything until the
//! shutdown token fires, a frontend dies or a background task dies ([`task`] restarts
//! one that panics, up to a point).

pub mod api;
pub mod config;
pub mod dns;
pub mod fnv;
#[cfg(test)]
mod fuzz;
pub mod health;
pub mod logging;
pub mod process;
pub mod registry;
pub mod reload;
pub mod sources;
pub mod store;
pub mod task;
pub mod threads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::registry::Registry;
use crate::reload::Reloader;
use crate::task::Supervisor;

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
    /// `muster etcd import|export` failed.
    #[error("{0}")]
    Migrate(String),
    #[error("background task {0:?} panicked too often")]
    TaskDied(String),
}

/// A started muster: its bound addresses, and the tasks to wait for.
pub struct Running {
    /// DNS addresses actually bound (the real port where port 0 was configured).
    pub dns_addrs: Vec<SocketAddr>,
    pub http_addr: SocketAddr,
    /// The `[ops]` listener's address, when one is configured.
    pub ops_addr: Option<SocketAddr>,
    reloader: Reloader,
    shutdown: CancellationToken,
    tasks: Supervisor,
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
    let settings = config.settings()?;
    let open_files = process::raise_open_files_limit();
    let reloader = Reloader::new(config.clone());
    let dns_listeners = dns::bind(&config.dns.listen).await.map_err(Error::Bind)?;
    let http_listeners = api::bind(&config).await?;
    let dns_addrs = dns_listeners.local_addrs();
    let http_addr = http_listeners.http_addr().map_err(Error::Bind)?;
    let ops_addr = http_listeners.ops_addr().map_err(Error::Bind)?;

    let mut metrics = prometheus_client::registry::Registry::default();
    let admission = config.admission(&settings);
    let namespaces = settings.namespaces.clone();
    let source_ids = unsynced_sources(&config);
    let statuses = sources::SourceStatuses::new(&mut metrics);
    let sources = (source_ids, &statuses);
    let (mut registry, replayed) =
        open_registry(&config, namespaces, sources, admission, &mut metrics)?;
    let handle = registry.handle();
    #[cfg(feature = "etcd")]
    let etcd_metrics = registry.etcd_metrics();
    let transfers = dns::Transfers::new(&settings.transfer);
    let forwarder = dns::Forwarder::new(&config.forward)
        .map_err(|e| Error::Config(ConfigError::Invalid(vec![e.to_string()])))?;
    let zone = match transfers.enabled() {
        true => dns::PublishedZone::with_journal(dns::JOURNAL_RECORDS),
        false => dns::PublishedZone::default(),
    };
    registry.on_publish(zone.publish_hook());
    let health_metrics = health::HealthMetrics::default();
    health_metrics.register(&mut metrics);
    let sources_stop = CancellationToken::new();
    let tasks = Supervisor::new(sources_stop.clone(), &mut metrics);
    let limits = health::CheckLimits::new(&settings.health);
    let (health, health_task) =
        health::Health::new(handle.clone(), health_metrics, limits, sources_stop.clone());
    #[cfg(not(feature = "etcd"))]
    let members: Option<Members> = None;
    #[cfg(feature = "etcd")]
    let (members, health, health_task) = share_health(
        &config,
        etcd_metrics,
        &tasks,
        &sources_stop,
        (health, health_task),
        &handle,
    );
    registry.on_publish(health.publish_hook());
    tasks.spawn("health", move || health_task.run());

    let parts = Metrics::new(&mut metrics);
    registry.set_metrics(parts.registry.clone());

    let registry_stop = CancellationToken::new();
    let registry_task = registry.spawn(registry_stop.clone());

    let dns_stop = CancellationToken::new();
    if !transfers.notify.is_empty() {
        spawn_notify(&tasks, &zone, &transfers, &parts.dns, &sources_stop);
    }
    let status = Arc::new(api::StatusState::new(zone.clone(), statuses.clone()));
    let dns = (zone, transfers, forwarder, parts.dns);
    let handler = dns_handler(&config, &settings, dns, handle.clone(), &mut metrics);
    let dns_task = tokio::spawn(dns::serve(
        dns_listeners,
        handler,
        config.dns.tcp.clone(),
        parts.tcp,
        dns_stop.clone(),
    ));

    let auth = Arc::new(api::Auth::new(&config.auth, &mut metrics).map_err(ConfigError::Invalid)?);
    let (follower, updates, stop) = (auth.clone(), reloader.clone(), sources_stop.clone());
    tasks.spawn("auth", move || {
        follower.clone().follow(updates.subscribe(), stop.clone())
    });
    let http_stop = CancellationToken::new();
    let state = api::ApiState::new(api::ApiParts {
        registry: handle.clone(),
        auth,
        metrics: Arc::new(metrics),
        registry_metrics: parts.registry,
        cloudmap: Arc::new(api::CloudMapState::new(config.cloudmap.clone())),
        health,
        tasks: tasks.states(),
        watch: Arc::new(api::Watchers::new(
            reloader.subscribe(),
            parts.http.clone(),
            http_stop.clone(),
        )),
        status,
    });
    let http_task = tokio::spawn(api::serve(
        http_listeners,
        state,
        reloader.subscribe(),
        parts.http,
        http_stop.clone(),
    ));

    let context = sources::SourceContext {
        registry: handle,
        shutdown: sources_stop.clone(),
        reload: reloader.subscribe(),
        statuses,
    };
    spawn_sources(&tasks, &config, &context, &parts.ecs, members.as_ref());
    tracing::info!(dns = ?dns_addrs, http = %http_addr, ops = ?ops_addr, replayed, open_files, "muster is serving");
    Ok(Running {
        dns_addrs,
        http_addr,
        ops_addr,
        reloader,
        shutdown,
        tasks,
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
    /// Where reloaded configurations go (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Runs until shutdown (or a frontend fails, or a background task dies), then stops
    /// in order: sources and the API (no new writes), the registry (drains queued
    /// changes), DNS last.
    pub async fn wait(mut self) -> Result<(), Error> {
        let failure = tokio::select! {
            _ = self.shutdown.cancelled() => None,
            result = &mut self.dns => Some(Error::Frontend(format!("DNS: {}", outcome(result)))),
            result = &mut self.http => Some(Error::Frontend(format!("HTTP: {}", outcome(result)))),
            result = &mut self.registry => Some(Error::Frontend(format!("registry: {}", outcome(result)))),
            task = self.tasks.dead() => Some(Error::TaskDied(task)),
        };
        if let Some(failure) = &failure {
            tracing::error!(%failure, "shutting down");
        }
        self.sources_stop.cancel();
        self.http_stop.cancel();
        let _ = tokio::time::timeout(STAGE_DEADLINE, self.tasks.wait()).await;
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
        failure.map_or(Ok(()), Err)
    }
}

/// The sources the registry waits for (not ready until each has synced once). With
/// etcd, the ECS source's instances are etcd's, synced with the store.
fn unsynced_sources(config: &Config) -> Vec<registry::SourceId> {
    let files = config.sources.file.iter().map(sources::file::source_id);
    let ecs = config.sources.ecs.iter().filter(|_| config.etcd.is_none());
    files
        .chain(ecs.flat_map(sources::ecs::source_ids))
        .collect()
}

/// What the DNS handler answers from, made before anything is spawned (building the
/// forwarder can fail).
type DnsParts = (
    dns::PublishedZone,
    dns::Transfers,
    Option<dns::Forwarder>,
    Arc<dns::DnsMetrics>,
);

/// The DNS frontend's answers: the published zone, transfers, forwarding, RRL, NSID,
/// DNS UPDATE and client zones as configured.
fn dns_handler(
    config: &Config,
    settings: &config::Settings,
    (zone, transfers, forwarder, dns_metrics): DnsParts,
    registry: registry::RegistryHandle,
    metrics: &mut prometheus_client::registry::Registry,
) -> dns::Handler {
    let update_metrics = sources::update::UpdateMetrics::default();
    update_metrics.register(metrics);
    let updates = sources::update::Updates::new(
        &config.update,
        &settings.update_grants,
        registry,
        update_metrics,
    );
    let rrl = dns::Rrl::new(&config.dns.rrl, settings.rrl_exempt.clone());
    let handler = dns::Handler::new(
        zone,
        config.dns.max_udp_payload,
        dns_metrics,
        forwarder,
        transfers,
    );
    handler
        .with_rrl(rrl)
        .with_nsid(config.dns.nsid.as_bytes())
        .with_updates(updates)
        .with_zones(dns::locality::ClientZones::new(settings.zones.clone()))
}

/// The metrics `start` hands to the frontends and sources, registered at zero.
struct Metrics {
    dns: Arc<dns::DnsMetrics>,
    tcp: Arc<dns::TcpMetrics>,
    registry: Arc<registry::RegistryMetrics>,
    ecs: Arc<sources::ecs::EcsMetrics>,
    http: Arc<api::HttpMetrics>,
}

impl Metrics {
    fn new(metrics: &mut prometheus_client::registry::Registry) -> Self {
        let parts = Self {
            dns: Arc::default(),
            tcp: Arc::default(),
            registry: Arc::default(),
            ecs: Arc::default(),
            http: Arc::default(),
        };
        parts.dns.register(metrics);
        parts.tcp.register(metrics);
        parts.registry.register(metrics);
        parts.ecs.register(metrics);
        parts.http.register(metrics);
        parts
    }
}

/// The replicas' member set, with `[etcd]`; without the feature there is none.
#[cfg(feature = "etcd")]
type Members = store::etcd::Members;
#[cfg(not(feature = "etcd"))]
type Members = std::convert::Infallible;

/// Sends NOTIFY to the secondaries after every change of the zone.
fn spawn_notify(
    tasks: &Supervisor,
    zone: &dns::PublishedZone,
    transfers: &dns::Transfers,
    metrics: &Arc<dns::DnsMetrics>,
    stop: &CancellationToken,
) {
    let (zone, targets) = (zone.clone(), transfers.notify.clone());
    let (key, metrics, stop) = (
        transfers.notify_key().cloned(),
        metrics.clone(),
        stop.clone(),
    );
    tasks.spawn("notify", move || {
        let (zone, targets, key) = (zone.clone(), targets.clone(), key.clone());
        dns::notify_secondaries(zone, targets, key, metrics.clone(), stop.clone())
    });
}

/// Starts every configured source under the supervisor. With `[etcd]` (`members`), an
/// ECS source runs only on the replica its election picks.
fn spawn_sources(
    tasks: &Supervisor,
    config: &Config,
    context: &sources::SourceContext,
    ecs_metrics: &Arc<sources::ecs::EcsMetrics>,
    members: Option<&Members>,
) {
    #[cfg(not(feature = "etcd"))]
    let _ = members;
    for file in config.sources.file.clone() {
        let context = context.clone();
        tasks.spawn(sources::file::source_id(&file).to_string(), move || {
            sources::file::run(file.clone(), context.clone())
        });
    }
    for ecs in config.sources.ecs.clone() {
        let (context, metrics) = (context.clone(), ecs_metrics.clone());
        let clusters = ecs.cluster_names().collect::<Vec<_>>().join(",");
        let name = format!("ecs:{clusters}");
        #[cfg(feature = "etcd")]
        if let Some(members) = members {
            let election = store::etcd::Election::new(members.clone(), &format!("ecs/{clusters}"));
            tasks.spawn(name, move || {
                let (ecs, context) = (ecs.clone(), context.clone());
                sources::ecs::run_elected(ecs, context, metrics.clone(), election.clone())
            });
            continue;
        }
        tasks.spawn(name, move || {
            sources::ecs::run(ecs.clone(), context.clone(), metrics.clone())
        });
    }
}

/// With `[etcd]`: joins the replicas' member set and shares the health task's work with
/// them (checks split by rendezvous hashing, heartbeats as etcd leases).
#[cfg(feature = "etcd")]
fn share_health(
    config: &Config,
    etcd_metrics: Option<Arc<store::etcd::EtcdMetrics>>,
    tasks: &Supervisor,
    stop: &CancellationToken,
    (health, health_task): (health::Health, health::HealthTask),
    registry: &registry::RegistryHandle,
) -> (
    Option<store::etcd::Members>,
    health::Health,
    health::HealthTask,
) {
    let Some((members, prefix)) = replicas(config, etcd_metrics, tasks, stop) else {
        return (None, health, health_task);
    };
    let local = config.sources.file.iter().map(sources::file::source_id);
    let share = health::Share {
        id: members.id.clone(),
        members: members.view.clone(),
        local: Arc::new(local.collect()),
        leases: store::etcd::HeartbeatLeases::new(members.connection.clone(), &prefix),
    };
    let health = health.shared(share.clone(), registry.clone());
    (Some(members), health, health_task.shared(share))
}

fn outcome(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> String {
    match result {
        Ok(Ok(())) => "stopped unexpectedly".to_owned(),
        Ok(Err(error)) => error.to_string(),
        Err(error) => error.to_string(),
    }
}

/// With `[etcd]`: keeps this replica a member (lease, key, member set) until shutdown,
/// and returns the membership the elected sources campaign with, and the prefix.
#[cfg(feature = "etcd")]
fn replicas(
    config: &Config,
    metrics: Option<Arc<store::etcd::EtcdMetrics>>,
    tasks: &Supervisor,
    stop: &CancellationToken,
) -> Option<(store::etcd::Members, String)> {
    let (etcd, metrics) = (config.etcd.clone()?, metrics?);
    let prefix = etcd.prefix.clone();
    let (members, view) = store::etcd::Members::new(etcd.replica_id());
    let (joined, stop) = (members.clone(), stop.clone());
    tasks.spawn("etcd members", move || {
        let (etcd, joined, view) = (etcd.clone(), joined.clone(), view.clone());
        store::etcd::keep_membership(etcd, joined, view, metrics.clone(), stop.clone())
    });
    Some((members, prefix))
}

/// The registry on its store: the local log (replayed), or etcd with `[etcd]` (a source
/// itself, with its status among the sources'). Returns it and how many logged changes
/// were replayed.
fn open_registry(
    config: &Config,
    namespaces: Vec<registry::NamespaceSettings>,
    (source_ids, statuses): (Vec<registry::SourceId>, &sources::SourceStatuses),
    admission: registry::Admission,
    metrics: &mut prometheus_client::registry::Registry,
) -> Result<(Registry, usize), Error> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = &config.etcd {
        let etcd_metrics = Arc::new(store::etcd::EtcdMetrics::default());
        etcd_metrics.register(metrics);
        let store = registry::SourceId::new(registry::STORE_SOURCE);
        let status = statuses.register(store.clone());
        let initial = registry::Snapshot::new(namespaces, source_ids.into_iter().chain([store]));
        let shared = registry::Shared {
            config: etcd.clone(),
            metrics: etcd_metrics,
            status,
        };
        return Ok((Registry::replicated(initial, shared, admission), 0));
    }
    #[cfg(not(feature = "etcd"))]
    let _ = statuses;
    // The API's registrations are back once the log is replayed: it needs no sync.
    let (wal, recovered) = store::Wal::open(&config.data_dir, metrics)?;
    let replayed = recovered.changes.len();
    let initial = registry::Snapshot::new(namespaces, source_ids);
    Ok((
        Registry::durable(initial, wal, recovered, admission),
        replayed,
    ))
}

/// Starts muster and runs it until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}
