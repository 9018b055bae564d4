//! Registry apply throughput: `Change::Upsert`s per second through the public
//! [`muster::registry::Registry`], the way sources and the API reach it.
//!
//!     cargo bench --bench registry_apply
//!
//! The namespace holds 1,000 services x 4 instances; every change moves one instance to
//! a new address, so each one really changes the snapshot. Four shapes:
//!
//! - `sequential`: one task, each apply awaited before the next (one change per batch);
//! - `concurrent_64`: 64 tasks at once, as many API requests or sources would, so the
//!   single writer batches them (up to its batch limit per published snapshot);
//! - `concurrent_64+dns_zone`: the same with the DNS zone's publish hook attached, which
//!   rebuilds every touched service's records before writers are answered — what muster
//!   runs in production;
//! - `sequential+dns_zone/10000x10`: one change per batch, with the hook, in a namespace
//!   of 10,000 services x 10 instances, where nothing a change touches is in the CPU's
//!   cache: what one REST write costs the writer in issue 6's large namespace.
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

const TASKS: usize = 64;

/// Services x instances per service in the namespace.
#[derive(Clone, Copy)]
struct Scale(usize, usize);

const DEFAULT: Scale = Scale(1_000, 4);
const LARGE: Scale = Scale(10_000, 10);

/// Two versions of every instance (addresses `10.0.x.y` and `10.1.x.y`), so alternating
/// between them always changes something. Built with the file source's parser, the
/// public way to get validated instances from text.
fn instance_versions(Scale(services, instances): Scale) -> [Vec<(InstanceKey, InstanceSpec)>; 2] {
    [0, 1].map(|version| {
        let entries: Vec<String> = (0..services * instances)
            .map(|n| {
                format!(
                    r#"{{"namespace": "internal", "service": "svc{}", "id": "i{}", "ipv4": "10.{}.{}.{}", "port": 8080}}"#,
                    n / instances,
                    n % instances,
                    version * 128 + n / 65536,
                    n / 256 % 256,
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
    let namespaces = config.settings().expect("valid config").namespaces;
    let mut registry = Registry::new(Snapshot::new(namespaces, Vec::<SourceId>::new()));
    if dns_zone {
        registry.on_publish(muster::dns::PublishedZone::default().publish_hook());
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
    let versions = [DEFAULT, LARGE].map(instance_versions);
    let mut group = c.benchmark_group("registry_apply");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    // The large case visits instances in a stride coprime to their count, so consecutive
    // changes land in services far apart, as REST writes from many tasks would.
    for (name, tasks, dns_zone, scale, stride) in [
        ("sequential", 1, false, 0, 1),
        ("concurrent_64", TASKS, false, 0, 1),
        ("concurrent_64+dns_zone", TASKS, true, 0, 1),
        ("sequential+dns_zone/10000x10", 1, true, 1, 7_919),
    ] {
        let versions = &versions[scale];
        let size = versions[0].len();
        let (handle, shutdown) = start(&runtime, versions, dns_zone);
        let mut next = 0usize;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Built before the clock starts: cloning keys and specs is the caller's cost.
                let changes: Vec<Change> = (0..iters as usize)
                    .map(|_| {
                        let n = next;
                        next += 1;
                        // Round 0 moves every instance to version 1, round 1 back to 0, ...
                        let version = (n / size + 1) % 2;
                        upsert(&versions[version][n * stride % size])
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
