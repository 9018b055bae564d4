//! What the load clients print: latency quantiles of the acknowledged writes, and the one
//! JSON line of the write-rate clients (`durability_load`, `examples/cloudmap_load.rs`),
//! which the bench/ scripts parse.

use std::time::Duration;

/// The `q` quantile (0 to 1) of `sorted`, in milliseconds: the element at `len * q`, the
/// last one at 1; 0 when there is none.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Prints the JSON line of a write load: `writers`, the writes acknowledged (one latency
/// each) and refused (`errors`) in `seconds`, the rate, and p50/p90/p99/max latency.
pub fn print_writes(writers: u64, mut latencies: Vec<Duration>, errors: u64, seconds: f64) {
    latencies.sort();
    let quantile = |q| quantile_ms(&latencies, q);
    println!(
        r#"{{"writers": {}, "acknowledged": {}, "errors": {}, "seconds": {seconds:.3}, "per_second": {:.0}, "p50_ms": {:.3}, "p90_ms": {:.3}, "p99_ms": {:.3}, "max_ms": {:.3}}}"#,
        writers,
        latencies.len(),
        errors,
        latencies.len() as f64 / seconds,
        quantile(0.5),
        quantile(0.9),
        quantile(0.99),
        quantile(1.0),
    );
}
