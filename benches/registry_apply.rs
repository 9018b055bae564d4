//! Registry apply throughput: `Change::Upsert`s per second through the public
//! [`muster::registry::Registry`], the way sources and the API reach it.
//!
//!     cargo bench --bench registry_apply
//!
//! The namespace holds 1,000 services x 4 instances; every change moves one instance to
//! a new address, so each one really changes the snapshot. Three shapes:
//!
//! - `sequential`: one task, each apply awaited before the next (one change per batch);
//! - `concurrent_64`: 64 tasks at once, as many API requests or sources would, so the
//!   single writer batches them (up to its batch limit per published snapshot);
//! - `concurrent_64+dns_zone`: the same with the DNS zone's publish hook attached, which
//!   rebuilds every touched service's records before writers are answered — what muster
//!   runs in production.
//!
//! Target (issue 6): at least 100,000 changes/s. Criterion reports it as `thrpt`
//! (elements/s, one element per change).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use muster::config::Config;
use muster::registry::{
    Change, InstanceKey, InstanceSpec, Registry, RegistryHandle, Snapshot, SourceId,
};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 1_000;
const INSTANCES: usize = 4;
const TASKS: usize = 64;

/// Two versions of every instance (addresses `10.0.x.y` and `10.1.x.y`), so alternating
/// between them always changes something. Built with the file source's parser, the
/// public way to get validated instances from text.
fn instance_versions() -> [Vec<(InstanceKey, InstanceSpec)>; 2] {
    [0, 1].map(|version| {
        let entries: Vec<String> = (0..SERVICES * INSTANCES)
            .map(|n| {
                format!(
                    r#"{{"namespace": "internal", "service": "svc{}", "id": "i{}", "ipv4": "10.{version}.{}.{}", "port": 8080}}"#,
                    n / INSTANCES,
                    n % INSTANCES,
                    n / 256,
                    n % 256
                )
            })
            .collect();
        let text = format!(r#"{{"instances": [{}]}}"#, entries.join(","));
        muster::sources::file::parse(&text, true).expect("generated instances are valid")
    })
}

fn upsert((key, spec): &(InstanceKey, InstanceSpec)) -> Change {
    Change::Upsert {
        key: key.clone(),
        spec: spec.clone(),
        source: SourceId::api(),
    }
}

/// A running registry (namespace `internal`, loaded with version 0 of every instance).
fn start(
    runtime: &Runtime,
    versions: &[Vec<(InstanceKey, InstanceSpec)>; 2],
    dns_zone: bool,
) -> (RegistryHandle, CancellationToken) {
    let config = Config::parse("[[namespaces]]\nname = \"internal\"\n").expect("config");
    let namespaces = config.validate().expect("valid config");
    let mut registry = Registry::new(Snapshot::new(namespaces, Vec::<SourceId>::new()));
    if dns_zone {
        registry.on_publish(muster::dns::ZoneView::default().publish_hook());
    }
    let handle = registry.handle();
    let shutdown = CancellationToken::new();
    let _guard = runtime.enter();
    runtime.spawn(registry.run(shutdown.clone()));
    runtime.block_on(apply_all(
        &handle,
        versions[0].iter().map(upsert).collect(),
        TASKS,
    ));
    (handle, shutdown)
}

/// Applies `changes` from `tasks` concurrent tasks and returns how long that took.
async fn apply_all(handle: &RegistryHandle, changes: Vec<Change>, tasks: usize) -> Duration {
    let per_task = changes.len().div_ceil(tasks).max(1);
    let mut chunks = Vec::new();
    let mut changes = changes.into_iter().peekable();
    while changes.peek().is_some() {
        chunks.push(changes.by_ref().take(per_task).collect::<Vec<_>>());
    }
    let started = Instant::now();
    let workers: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let handle = handle.clone();
            tokio::spawn(async move {
                for change in chunk {
                    handle.apply(change).await.expect("upsert applies");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    started.elapsed()
}

fn registry_apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let versions = instance_versions();
    let mut group = c.benchmark_group("registry_apply");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (name, tasks, dns_zone) in [
        ("sequential", 1, false),
        ("concurrent_64", TASKS, false),
        ("concurrent_64+dns_zone", TASKS, true),
    ] {
        let (handle, shutdown) = start(&runtime, &versions, dns_zone);
        let mut next = 0usize;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Built before the clock starts: cloning keys and specs is the caller's cost.
                let changes: Vec<Change> = (0..iters as usize)
                    .map(|_| {
                        let n = next;
                        next += 1;
                        // Round 0 moves every instance to version 1, round 1 back to 0, ...
                        let version = (n / (SERVICES * INSTANCES) + 1) % 2;
                        upsert(&versions[version][n % (SERVICES * INSTANCES)])
                    })
                    .collect();
                runtime.block_on(apply_all(&handle, changes, tasks))
            })
        });
        shutdown.cancel();
    }
    group.finish();
}

criterion_group!(benches, registry_apply);
criterion_main!(benches);
