use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::dns::test_registry::Running;
use crate::dns::{PublishedZone, ZoneSnapshot};
use crate::registry::{
    Change, InstanceKey, InstanceSpec, Locality, NamedPort, Protocol, RegistryHandle, SourceId,
    SpecExtras, ZONE_ATTRIBUTE,
};

fn key(service: u8, id: u8) -> InstanceKey {
    InstanceKey {
        namespace: "internal".to_owned(),
        service: format!("svc{service}"),
        id: format!("i-{id:02}"),
    }
}

/// A random change to one of 3 services x 12 instances: new addresses (each family, the
/// port and each named port present or not, a weight or not), a removal, or a health
/// flip.
fn random_change(rng: &mut SmallRng) -> Change {
    let key = key(rng.random_range(0..3), rng.random_range(0..12));
    match rng.random_range(0..6) {
        0 => Change::Remove {
            key,
            source: SourceId::api(),
        },
        1 => Change::SetHealth {
            key,
            healthy: rng.random_bool(0.5),
        },
        _ => {
            let n: u8 = rng.random();
            Change::Upsert {
                key,
                spec: InstanceSpec {
                    ipv4: rng.random_bool(0.8).then(|| [10, 0, 0, n].into()),
                    ipv6: rng
                        .random_bool(0.5)
                        .then(|| [0xfd00, 0, 0, 0, 0, 0, 0, u16::from(n)].into()),
                    port: rng.random_bool(0.7).then_some(8000 + u16::from(n)),
                    // A weight now and then (0 included: out of answers while others
                    // have one), so a weight change alone must rebuild the instance.
                    attributes: random_attributes(rng, n),
                    healthy: true,
                    extras: SpecExtras {
                        ports: random_ports(rng, n),
                        ..SpecExtras::default()
                    }
                    .into(),
                },
                source: SourceId::api(),
            }
        }
    }
}

/// A weight now and then (0 included: out of answers while others have one), so a
/// weight change alone must rebuild the instance; a zone or none, and subset values, so
/// instances move between zone and subset views.
fn random_attributes(rng: &mut SmallRng, n: u8) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    if rng.random_bool(0.3) {
        attributes.insert("weight".to_owned(), (n % 3).to_string());
    }
    if let Some(zone) = ["a", "b", "c"].get(rng.random_range(0..4)) {
        attributes.insert(ZONE_ATTRIBUTE.to_owned(), (*zone).to_owned());
    }
    // Subset values: `Blue` and `blue` are one subset, `not_a_label` none.
    if let Some(track) = ["blue", "Blue", "green", "not_a_label"].get(rng.random_range(0..5)) {
        attributes.insert("track".to_owned(), (*track).to_owned());
    }
    if rng.random_bool(0.3) {
        attributes.insert("zone".to_owned(), "x".to_owned());
    }
    attributes
}

/// Some of three named ports (one of them UDP), on ports that vary with `n`.
fn random_ports(rng: &mut SmallRng, n: u8) -> BTreeMap<String, NamedPort> {
    [
        ("http", Protocol::Tcp),
        ("grpc", Protocol::Tcp),
        ("dns", Protocol::Udp),
    ]
    .into_iter()
    .filter(|_| rng.random_bool(0.4))
    .map(|(name, protocol)| {
        let port = 9000 + u16::from(n);
        (name.to_owned(), NamedPort { port, protocol })
    })
    .collect()
}

/// Applies 1 to `most` random changes at once (one writer batch, some of which may fail).
pub(in crate::dns) async fn apply_random_batch(
    handle: &RegistryHandle,
    rng: &mut SmallRng,
    most: usize,
) {
    let batch: Vec<_> = (0..rng.random_range(1..=most))
        .map(|_| {
            let handle = handle.clone();
            let change = random_change(rng);
            tokio::spawn(async move { handle.apply(change).await })
        })
        .collect();
    for change in batch {
        let _ = change.await.unwrap();
    }
}

/// The default config, with svc1 and svc2 answered by zone and subset by `track` and
/// `zone`.
pub(in crate::dns) fn zone_aware() -> Config {
    let text = r#"
        [[namespaces]]
        name = "internal"
        [[namespaces.services]]
        match = "svc[12]"
        locality = "prefer_zone"
        subsets = ["track", "zone"]
    "#;
    let config = Config::parse(text).unwrap();
    assert_eq!(
        config.namespaces[0].services[0].locality,
        Some(Locality::PreferZone)
    );
    config
}

/// Records updated change by change (batches of up to 8, some of which fail) pack
/// exactly as records built from scratch: the copies of kept instances' bytes line up,
/// in each zone view too.
#[tokio::test]
async fn updated_records_pack_as_built_from_scratch() {
    let view = PublishedZone::default();
    let registry = Running::with_config(&view, zone_aware());
    let handle = &registry.handle;
    let mut rng = SmallRng::seed_from_u64(6);
    let mut compared = 0;
    let mut zone_views = 0;
    let mut subset_views = 0;
    for _ in 0..300 {
        apply_random_batch(handle, &mut rng, 8).await;
        let updated = view.load();
        let fresh = ZoneSnapshot::from_snapshot(&handle.snapshot());
        // The count that decides whether UDP batches are warmed follows the changes.
        assert_eq!(updated.services(), fresh.services());
        assert_eq!(
            fresh.services(),
            fresh.namespace("internal").unwrap().services.len()
        );
        let (updated, fresh) = (
            &updated.namespace("internal").unwrap(),
            &fresh.namespace("internal").unwrap(),
        );
        assert_eq!(updated.services.len(), fresh.services.len());
        for (name, records) in fresh.services.iter() {
            let kept = updated.services.get(name).unwrap();
            assert_eq!(kept.named, records.named, "{name}");
            assert_eq!(kept.packed, records.packed, "{name}");
            exact_size(&kept.packed);
            exact_size(&records.packed);
            // The label order merged from the previous one is the one sorted afresh.
            assert_eq!(kept.labels, records.labels, "{name}");
            let ids = |r: &super::ServiceRecords| {
                r.instances
                    .iter()
                    .map(|i| i.source.id.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(kept), ids(records), "{name}");
            compared += records.packed.candidates.len();
            assert_eq!(kept.zones.len(), records.zones.len(), "{name}");
            for (kept, fresh) in kept.zones.iter().zip(&records.zones) {
                assert_eq!(kept.zone, fresh.zone, "{name}");
                assert_eq!(kept.healthy, fresh.healthy, "{name} {}", fresh.zone);
                assert_eq!(kept.records.named, fresh.records.named, "{name}");
                assert_eq!(kept.records.packed, fresh.records.packed, "{name}");
                exact_size(&kept.records.packed);
                assert_eq!(ids(&kept.records), ids(&fresh.records), "{name}");
            }
            zone_views += records.zones.len();
            assert_eq!(kept.subsets.len(), records.subsets.len(), "{name}");
            for (kept, fresh) in kept.subsets.iter().zip(&records.subsets) {
                assert_eq!(
                    (&kept.key, &kept.value),
                    (&fresh.key, &fresh.value),
                    "{name}"
                );
                assert_eq!(kept.records.packed, fresh.records.packed, "{name}");
                exact_size(&kept.records.packed);
                assert_eq!(ids(&kept.records), ids(&fresh.records), "{name}");
            }
            subset_views += records.subsets.len();
        }
    }
    assert!(compared > 1000, "{compared} candidates compared");
    assert!(zone_views > 500, "{zone_views} zone views compared");
    assert!(subset_views > 500, "{subset_views} subset views compared");
}

/// `packed` was allocated at its size (`Packed::build` sizes before it writes): a size
/// off by a byte would grow the buffer, or leave it larger, for good.
fn exact_size(packed: &super::Packed) {
    assert_eq!(packed.bytes.capacity(), packed.bytes.len());
    assert_eq!(packed.candidates.capacity(), packed.candidates.len());
}
