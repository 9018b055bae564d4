//! What the number of namespaces costs a DNS query and a registry change (issue 14, A5:
//! 50,000 namespaces made every query ~10x dearer).
//!
//!     cargo bench --bench namespace_lookup
//!
//! The namespace `internal` holds 1,000 services x 4 instances; the second zone also has
//! 50,000 empty namespaces `nsN.example` beside it (depth 2, so a lookup of
//! `svcN.internal` must not find them). For each zone:
//!
//! - `query/<namespaces>`: the UDP fast path's `respond` answering `svcN.internal A` from
//!   the published zone (no sockets: the per-query work that depends on the zone);
//! - `change/<namespaces>`: one instance moved to a new address through the registry,
//!   with the DNS zone's publish hook attached, one change per batch.
//!
//! With a lookup that is O(labels) and namespaces in persistent maps, both figures should
//! be about the same with 1 and with 50,001 namespaces.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use muster::config::{Config, NamespaceConfig};
use muster::dns::PublishedZone;
use muster::dns::fast::{Handling, Scratch, Settings, respond};
use muster::dns::locality::ClientZones;
use muster::registry::{
    Change, InstanceKey, InstanceSpec, Registry, RegistryHandle, Snapshot, SourceId,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 1_000;
const INSTANCES: usize = 4;
const EXTRA_NAMESPACES: usize = 50_000;

fn instance(n: usize, version: usize) -> Change {
    Change::Upsert {
        key: InstanceKey {
            namespace: "internal".to_owned(),
            service: format!("svc{}", n / INSTANCES),
            id: format!("i{}", n % INSTANCES),
        },
        spec: InstanceSpec {
            ipv4: Some([10, version as u8, (n / 256) as u8, (n % 256) as u8].into()),
            port: Some(8080),
            healthy: true,
            ..InstanceSpec::default()
        },
        source: SourceId::api(),
    }
}

/// A registry with `internal` loaded and `extra` more namespaces, publishing into a zone.
fn start(runtime: &Runtime, extra: usize) -> (RegistryHandle, PublishedZone, CancellationToken) {
    let mut config = Config::parse("[[namespaces]]\nname = \"internal\"\n").expect("config");
    config
        .namespaces
        .extend((0..extra).map(|n| NamespaceConfig::named(&format!("ns{n}.example"))));
    let namespaces = config.settings().expect("valid config").namespaces;
    let mut registry = Registry::new(Snapshot::new(namespaces, Vec::<SourceId>::new()));
    let view = PublishedZone::default();
    registry.on_publish(view.publish_hook());
    let handle = registry.handle();
    let shutdown = CancellationToken::new();
    let _guard = runtime.enter();
    runtime.spawn(registry.run(shutdown.clone()));
    runtime.block_on(async {
        for n in 0..SERVICES * INSTANCES {
            handle.apply(instance(n, 0)).await.expect("upsert applies");
        }
    });
    (handle, view, shutdown)
}

/// `svcN.internal A` with an OPT record, as dnsperf -e sends it.
fn query(service: usize) -> Vec<u8> {
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    let label = format!("svc{service}");
    packet.push(label.len() as u8);
    packet.extend_from_slice(label.as_bytes());
    packet.extend_from_slice(b"\x08internal\x00\x00\x01\x00\x01");
    packet.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    packet
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn namespace_lookup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let queries: Vec<Vec<u8>> = (0..SERVICES).map(query).collect();
    let zones = ClientZones::default();
    let settings = Settings {
        max_udp_payload: 1232,
        recursion_available: false,
        over_tcp: false,
        nsid: b"",
        zones: &zones,
    };
    let mut group = c.benchmark_group("namespace_lookup");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for extra in [0, EXTRA_NAMESPACES] {
        let namespaces = extra + 1;
        let (handle, view, shutdown) = start(&runtime, extra);
        let mut scratch = Scratch::new(SmallRng::seed_from_u64(1));
        let mut out = Vec::with_capacity(4096);
        let mut next = 0usize;
        group.bench_function(format!("query/{namespaces}"), |b| {
            let zone = view.load();
            b.iter(|| {
                next = (next + 1) % queries.len();
                let outcome = respond(
                    &zone,
                    &queries[next],
                    LOCALHOST,
                    settings,
                    &mut scratch,
                    &mut out,
                );
                assert!(matches!(outcome, Handling::Answered { .. }), "{outcome:?}");
            })
        });
        let mut changed = 0usize;
        group.bench_function(format!("change/{namespaces}"), |b| {
            b.iter_custom(|iters| {
                let changes: Vec<Change> = (0..iters as usize)
                    .map(|_| {
                        changed += 1;
                        let n = changed * 7_919 % (SERVICES * INSTANCES);
                        instance(n, changed / (SERVICES * INSTANCES) % 2 + 1)
                    })
                    .collect();
                runtime.block_on(async {
                    let started = Instant::now();
                    for change in changes {
                        handle.apply(change).await.expect("upsert applies");
                    }
                    started.elapsed()
                })
            })
        });
        shutdown.cancel();
    }
    group.finish();
}

criterion_group!(benches, namespace_lookup);
criterion_main!(benches);
