//! What one instance change costs a service's instance map, by the service's size: the
//! registry's [`InstanceMap`] (a sorted slice up to a threshold, a persistent B-tree
//! above) against the `imbl::OrdMap<Arc<str>, Arc<Instance>>` it replaced.
//!
//!     cargo bench --bench instance_map
//!
//! For each size K, 2^18 instances (rounded down to whole services) in services of K;
//! each iteration takes the next service (a stride apart, so what it touches is out of
//! the CPU's cache, as in a registry of a million), copies its map as a new version
//! would, replaces one instance with a copy, and drops the old version: what a change
//! does to the map of the service it touches (the writer clones the service, the old
//! snapshot goes later). Instances come from a registry loaded by a sync, the way a
//! source fills it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use muster::config::Config;
use muster::registry::{
    Change, Instance, InstanceKey, InstanceMap, InstanceSpec, Registry, Snapshot, SourceId,
};
use tokio_util::sync::CancellationToken;

const TOTAL: usize = 1 << 18;
const SIZES: [usize; 7] = [10, 32, 64, 128, 256, 1_024, 4_096];

type Tree = imbl::OrdMap<Arc<str>, Arc<Instance>>;

/// The services of a registry loaded with `TOTAL` instances in services of `size`.
fn services(runtime: &tokio::runtime::Runtime, size: usize) -> Vec<InstanceMap> {
    let config = Config::parse("[[namespaces]]\nname = \"internal\"\n").expect("config");
    let namespaces = config.settings().expect("valid config").namespaces;
    let source = SourceId::new("bench");
    let registry = Registry::new(Snapshot::new(namespaces, [source.clone()]));
    let handle = registry.handle();
    let shutdown = CancellationToken::new();
    let _guard = runtime.enter();
    runtime.spawn(registry.run(shutdown.clone()));
    // Whole services only: each has every id `i0` .. `i{size - 1}`.
    let instances = (0..TOTAL / size * size)
        .map(|n| {
            let key = InstanceKey {
                namespace: "internal".to_owned(),
                service: format!("svc{}", n / size),
                id: format!("i{}", n % size),
            };
            let spec = InstanceSpec {
                ipv4: Some([10, (n >> 16) as u8, (n >> 8) as u8, n as u8].into()),
                port: Some(8080),
                healthy: true,
                ..InstanceSpec::default()
            };
            (key, spec)
        })
        .collect();
    let change = Change::Sync { source, instances };
    runtime
        .block_on(handle.apply(change))
        .expect("sync applies");
    let snapshot = handle.snapshot();
    let namespace = snapshot.namespace("internal").expect("namespace");
    let maps = namespace
        .services
        .values()
        .map(|s| s.instances.clone())
        .collect();
    shutdown.cancel();
    maps
}

/// One change to the map of service `at`: a new version with instance `id` replaced by
/// a copy, the old version dropped.
fn change<M: Clone>(maps: &mut [M], at: usize, replace: impl Fn(&mut M)) {
    let mut version = maps[at].clone();
    replace(&mut version);
    maps[at] = version;
}

fn instance_map(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("instance_map");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    for size in SIZES {
        let mut ours = services(&runtime, size);
        let mut trees: Vec<Tree> = ours
            .iter()
            .map(|m| {
                m.values()
                    .map(|i| (Arc::from(i.id.as_str()), i.clone()))
                    .collect()
            })
            .collect();
        let count = ours.len();
        // A stride coprime to the count of services, and the instance id turning.
        let stride = (count / 2 + 1) | 1;
        let mut next = 0usize;
        let mut step = move || {
            next += 1;
            (next * stride % count, format!("i{}", next * 7 % size))
        };
        let mut again = step;
        group.bench_function(BenchmarkId::new("InstanceMap", size), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    let (at, id) = step();
                    change(&mut ours, at, |m| {
                        let copy = Arc::new((**m.get(&id).expect("present")).clone());
                        m.insert(copy);
                    });
                }
                started.elapsed()
            })
        });
        group.bench_function(BenchmarkId::new("imbl::OrdMap", size), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    let (at, id) = again();
                    change(&mut trees, at, |m| {
                        let copy = Arc::new((**m.get(id.as_str()).expect("present")).clone());
                        m.insert(id.as_str().into(), copy);
                    });
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, instance_map);
criterion_main!(benches);
