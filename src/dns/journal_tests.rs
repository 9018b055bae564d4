use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{changed, delta, difference, service_records};
use crate::dns::PublishedZone;
use crate::dns::service_records::tests::{apply_random_batch, zone_aware};
use crate::dns::test_registry::Running;
use crate::dns::wire::Rr;

/// The wire forms of `records`, sorted.
fn sorted(records: &[Rr]) -> Vec<Vec<u8>> {
    let mut wires: Vec<_> = records.iter().map(|r| r.view().wire().to_vec()).collect();
    wires.sort();
    wires
}

/// The delta of the changed services, compared instance by instance where a service
/// allows it (svc0 here; svc1 and svc2 have subsets), lists in order what the difference
/// of each service's every record lists, and as a set what the whole namespace's does,
/// through random batches of changes (duplicate addresses, named ports, weights, health
/// flips, removals).
#[tokio::test]
async fn a_delta_by_instance_is_the_difference_of_every_record() {
    let view = PublishedZone::default();
    let registry = Running::with_config(&view, zone_aware());
    let handle = &registry.handle;
    let mut rng = SmallRng::seed_from_u64(17);
    let names = ["svc0", "svc1", "svc2"];
    let mut by_instance = 0;
    for _ in 0..400 {
        let before = view.load_full();
        apply_random_batch(handle, &mut rng, 4).await;
        let after = view.load_full();
        let (old, new) = (
            before.namespace("internal").unwrap(),
            after.namespace("internal").unwrap(),
        );
        let (touched, whole) = (delta(old, new, Some(&names)), delta(old, new, None));
        let (Some(touched), Some(whole)) = (touched, whole) else {
            assert_eq!(old.soa.soa_serial(), new.soa.soa_serial());
            continue;
        };
        let (mut removed, mut added) = (Vec::new(), Vec::new());
        for name in names {
            let (o, n) = (old.services.get(name), new.services.get(name));
            let (o_records, n_records) = (
                o.map(|s| service_records(s)).unwrap_or_default(),
                n.map(|s| service_records(s)).unwrap_or_default(),
            );
            difference(&o_records, &n_records, &mut removed, &mut added);
            if let (Some(o), Some(n)) = (o, n)
                && o.comparable_by_instance()
                && n.comparable_by_instance()
                && changed(&o.instances, &n.instances)
                    .is_some_and(|(gone, came)| !gone.is_empty() || !came.is_empty())
            {
                by_instance += 1;
            }
        }
        let wires = |records: &[Rr]| -> Vec<Vec<u8>> {
            records.iter().map(|r| r.view().wire().to_vec()).collect()
        };
        assert_eq!(wires(&touched.removed), wires(&removed));
        assert_eq!(wires(&touched.added), wires(&added));
        assert_eq!(sorted(&touched.removed), sorted(&whole.removed));
        assert_eq!(sorted(&touched.added), sorted(&whole.added));
    }
    assert!(by_instance > 100, "{by_instance} deltas by instance");
}
