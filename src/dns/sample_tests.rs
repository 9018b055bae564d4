use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{uniform, weighted};

#[test]
fn uniform_gives_distinct_indexes_in_range() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut chosen = Vec::new();
    for (available, wanted) in [(1, 1), (4, 8), (8, 8), (100, 8), (20_000, 8), (5, 0)] {
        uniform(&mut rng, available, wanted, &mut chosen);
        assert_eq!(chosen.len(), wanted.min(available));
        let mut sorted = chosen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), chosen.len(), "distinct: {chosen:?}");
        assert!(chosen.iter().all(|&i| i < available));
    }
}

#[test]
fn uniform_is_uniform_in_membership_and_order() {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut chosen = Vec::new();
    let mut first = [0usize; 6];
    let mut member = [0usize; 6];
    let rounds = 60_000;
    for _ in 0..rounds {
        uniform(&mut rng, 6, 3, &mut chosen);
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

/// Pearson's chi-squared statistic of `observed` counts against `expected` shares.
fn chi_squared(observed: &[usize], expected: &[f64]) -> f64 {
    let total: usize = observed.iter().sum();
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &share)| {
            let e = share * total as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

/// Cumulative sums of `weights`, as `ServiceRecords` keeps them.
fn cumulative(weights: &[u64]) -> Vec<u64> {
    weights
        .iter()
        .scan(0, |sum, w| {
            *sum += w;
            Some(*sum)
        })
        .collect()
}

#[test]
fn weighted_gives_distinct_indexes_and_never_a_weight_of_zero() {
    let mut rng = SmallRng::seed_from_u64(3);
    let (mut chosen, mut sorted) = (Vec::new(), Vec::new());
    let weights = cumulative(&[5, 0, 1, 65_535, 0, 7]);
    for wanted in [0, 1, 2, 4, 6, 9] {
        for _ in 0..1_000 {
            weighted(&mut rng, &weights, wanted, &mut chosen, &mut sorted);
            assert_eq!(chosen.len(), wanted.min(4), "{chosen:?}");
            assert!(!chosen.contains(&1) && !chosen.contains(&4), "{chosen:?}");
            let mut distinct = chosen.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), chosen.len(), "{chosen:?}");
        }
    }
    weighted(&mut rng, &[], 3, &mut chosen, &mut sorted);
    assert!(chosen.is_empty());
}

#[test]
fn weighted_first_draws_follow_the_weights() {
    // 10,000 single draws over weights 1:2:3:4; chi-squared with 3 degrees of freedom
    // stays below 16.27 (p = 0.001) when the draws follow the weights.
    let mut rng = SmallRng::seed_from_u64(5);
    let (mut chosen, mut sorted) = (Vec::new(), Vec::new());
    let weights = cumulative(&[1, 2, 3, 4]);
    let mut first = [0usize; 4];
    for _ in 0..10_000 {
        weighted(&mut rng, &weights, 1, &mut chosen, &mut sorted);
        first[chosen[0]] += 1;
    }
    let statistic = chi_squared(&first, &[0.1, 0.2, 0.3, 0.4]);
    assert!(statistic < 16.27, "chi² {statistic:.2} for {first:?}");
    // The same counts against uniform shares are far off: the test can fail.
    assert!(chi_squared(&first, &[0.25; 4]) > 100.0);
}

#[test]
fn weighted_later_draws_follow_the_weights_left() {
    // Two of four: each index's membership share is P(first) + P(second), the second
    // drawn from the weights left after the first.
    let w = [1.0, 2.0, 3.0, 4.0];
    let total: f64 = w.iter().sum();
    let member: Vec<f64> = (0..4)
        .map(|i| {
            let second: f64 = (0..4)
                .filter(|&j| j != i)
                .map(|j| w[j] / total * w[i] / (total - w[j]))
                .sum();
            w[i] / total + second
        })
        .collect();
    let mut rng = SmallRng::seed_from_u64(9);
    let (mut chosen, mut sorted) = (Vec::new(), Vec::new());
    let weights = cumulative(&[1, 2, 3, 4]);
    let mut counts = [0usize; 4];
    let rounds = 10_000;
    for _ in 0..rounds {
        weighted(&mut rng, &weights, 2, &mut chosen, &mut sorted);
        for &i in &chosen {
            counts[i] += 1;
        }
    }
    for i in 0..4 {
        let share = counts[i] as f64 / rounds as f64;
        assert!((share - member[i]).abs() < 0.02, "{counts:?} vs {member:?}");
    }
}
