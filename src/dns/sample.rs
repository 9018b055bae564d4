//! Random picks of a service's candidates: which instances an answer holds, in what order.
//!
//! Owns: the two samplers an answer chooses between, uniform (every candidate weighs the
//! same: the common case, kept as cheap as it was) and weighted (the `weight` attributes
//! differ). Both fill a caller's buffer, so the fast path allocates nothing per query;
//! both are O(wanted²), and `wanted` is small because responses must fit.

use rand::Rng;

/// Fills `chosen` with `wanted` distinct indexes below `available`, a uniformly random
/// subset in random order (Floyd's sampling, then a shuffle).
pub fn uniform(rng: &mut impl Rng, available: usize, wanted: usize, chosen: &mut Vec<usize>) {
    chosen.clear();
    let wanted = wanted.min(available);
    for upper in available - wanted..available {
        let candidate = rng.random_range(0..=upper);
        chosen.push(if chosen.contains(&candidate) {
            upper
        } else {
            candidate
        });
    }
    for i in (1..chosen.len()).rev() {
        chosen.swap(i, rng.random_range(0..=i));
    }
}

/// Fills `chosen` with up to `wanted` distinct indexes into `cumulative`, drawn one at a
/// time, each with a probability proportional to its weight among those not drawn yet
/// (successive sampling without replacement, as a resolver picks SRV targets by weight,
/// RFC 2782). `cumulative[i]` is the sum of the weights of candidates `0..=i`; a
/// candidate of weight 0 is never drawn. `sorted` is scratch (the drawn indexes in
/// order).
///
/// Each draw takes a number below the weight not drawn yet, maps it past the drawn
/// candidates' intervals and binary-searches `cumulative`: no per-candidate work.
pub fn weighted(
    rng: &mut impl Rng,
    cumulative: &[u64],
    wanted: usize,
    chosen: &mut Vec<usize>,
    sorted: &mut Vec<usize>,
) {
    chosen.clear();
    sorted.clear();
    let start = |i: usize| i.checked_sub(1).map_or(0, |before| cumulative[before]);
    let weight = |i: usize| cumulative[i] - start(i);
    let mut left = cumulative.last().copied().unwrap_or(0);
    while chosen.len() < wanted && left > 0 {
        let mut point = rng.random_range(0..left);
        for &drawn in sorted.iter() {
            if start(drawn) > point {
                break;
            }
            point += weight(drawn);
        }
        let i = cumulative.partition_point(|&end| end <= point);
        left -= weight(i);
        let at = sorted.partition_point(|&drawn| drawn < i);
        sorted.insert(at, i);
        chosen.push(i);
    }
}

#[cfg(test)]
#[path = "sample_tests.rs"]
mod tests;
