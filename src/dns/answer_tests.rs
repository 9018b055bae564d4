use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::sample;

#[test]
fn sample_gives_distinct_indexes_in_range() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut chosen = Vec::new();
    for (available, wanted) in [(1, 1), (4, 8), (8, 8), (100, 8), (20_000, 8), (5, 0)] {
        sample(&mut rng, available, wanted, &mut chosen);
        assert_eq!(chosen.len(), wanted.min(available));
        let mut sorted = chosen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), chosen.len(), "distinct: {chosen:?}");
        assert!(chosen.iter().all(|&i| i < available));
    }
}

#[test]
fn sample_is_uniform_in_membership_and_order() {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut chosen = Vec::new();
    let mut first = [0usize; 6];
    let mut member = [0usize; 6];
    let rounds = 60_000;
    for _ in 0..rounds {
        sample(&mut rng, 6, 3, &mut chosen);
        first[chosen[0]] += 1;
        for &i in &chosen {
            member[i] += 1;
        }
    }
    // Each index leads 1/6 of the time and is a member half of the time (within 1 and 2.5 points).
    for i in 0..6 {
        let lead = first[i] as f64 / rounds as f64;
        let share = member[i] as f64 / rounds as f64;
        assert!((lead - 1.0 / 6.0).abs() < 0.01, "{first:?}");
        assert!((share - 0.5).abs() < 0.025, "{member:?}");
    }
}
