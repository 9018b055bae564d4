//! Fuzz tests on stable Rust: a small mutation fuzzer run by `cargo test`.
//!
//! Each target (the fast path's query parser and responder and the full DNS handler in
//! [`dns`], the REST and Cloud Map inputs through the HTTP router in [`api`], the log
//! reader and its replay in [`store`], the ECS event parser in `sources::ecs`) is a
//! `#[test]` that calls [`fuzz`] with valid seed inputs. [`fuzz`] first runs every
//! regression case kept in `tests/fuzz/<target>/`, then mutates the seeds (bit flips,
//! interesting bytes and integers, insertions and deletions, truncations, splices of two
//! inputs, tokens of the input's language) and runs the target on each result, catching
//! panics. An input whose outcome was not seen before joins the corpus, so mutations build
//! on inputs that reached further (a cheap stand-in for coverage feedback). A panic, or a
//! broken property the target checks, saves the input as
//! `tests/fuzz/<target>/crash-<hash>` (commit it: it is then a regression case) and fails
//! the test.
//!
//! Why not cargo-fuzz or proptest: cargo-fuzz needs nightly (not available here), and
//! proptest's strategies generate values from a grammar we would have to write for every
//! input, whereas mutating real, valid inputs reaches deep code with no grammar at all;
//! the loop needs only `rand`, already a dependency.
//!
//! Budget: `MUSTER_FUZZ_SECONDS` per target (default 3) and at most
//! `MUSTER_FUZZ_ITERATIONS` inputs (default unlimited); `MUSTER_FUZZ_SEED` fixes the
//! random seed (default: a fixed one, so `cargo test` runs are repeatable). A longer run:
//!
//! ```text
//! MUSTER_FUZZ_SECONDS=600 MUSTER_FUZZ_SEED=$RANDOM cargo test --release --lib fuzz -- --nocapture
//! ```

mod api;
mod dns;
mod mutate;
mod store;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Inputs longer than this are cut: no target needs more to reach its code.
const MAX_INPUT: usize = 64 << 10;
/// Inputs kept for mutation at most.
const MAX_CORPUS: usize = 2048;

/// What a target says about one input: `Ok` with a value that sums up what it did (used
/// to keep inputs that did something new), or `Err` with a broken property.
pub type Verdict = Result<u64, String>;

/// Hashes anything into an outcome summary for [`Verdict`].
pub fn outcome(value: impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// A text's shape without its numbers (`line 1 column 23` and `line 4 column 2` are the
/// same error), for outcome summaries of error messages.
pub fn shape(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_ascii_digit())
        .take(200)
        .collect()
}

/// Runs the regression cases of `name`, then its seeds, then mutations of them until the
/// budget is spent. Panics (failing the test) on the first input that panics the target
/// or breaks a property, after saving it.
pub fn fuzz(
    name: &str,
    seeds: Vec<Vec<u8>>,
    dictionary: &[&[u8]],
    mut target: impl FnMut(&[u8]) -> Verdict,
) {
    let seconds = env_number("MUSTER_FUZZ_SECONDS").unwrap_or(3);
    let budget = Duration::from_secs(seconds);
    let iterations = env_number("MUSTER_FUZZ_ITERATIONS").unwrap_or(u64::MAX);
    let seed = env_number("MUSTER_FUZZ_SEED").unwrap_or(0x6d75_7374_6572);
    let mut rng = SmallRng::seed_from_u64(seed);
    let regressions = regression_cases(name);
    let mut seen = HashSet::new();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for input in regressions.iter().chain(&seeds) {
        let verdict = run_one(name, &mut target, input);
        if seen.insert(verdict) {
            corpus.push(input.clone());
        }
    }
    assert!(!corpus.is_empty(), "{name}: no seed");
    let started = Instant::now();
    let mut runs = 0u64;
    while runs < iterations && started.elapsed() < budget {
        let mut input = corpus[rng.random_range(0..corpus.len())].clone();
        let other = &corpus[rng.random_range(0..corpus.len())];
        mutate::mutate(&mut rng, &mut input, other, dictionary);
        input.truncate(MAX_INPUT);
        let verdict = run_one(name, &mut target, &input);
        if seen.insert(verdict) && corpus.len() < MAX_CORPUS {
            corpus.push(input);
        }
        runs += 1;
    }
    println!(
        "fuzz {name}: {runs} inputs in {:.1?} (seed {seed}), {} regression cases, corpus {}",
        started.elapsed(),
        regressions.len(),
        corpus.len()
    );
}

/// Runs `target` on `input`; on a panic or a broken property, saves the input and fails.
fn run_one(name: &str, target: &mut impl FnMut(&[u8]) -> Verdict, input: &[u8]) -> u64 {
    let failure = match catch_unwind(AssertUnwindSafe(|| target(input))) {
        Ok(Ok(outcome)) => return outcome,
        Ok(Err(property)) => property,
        Err(panic) => panic
            .downcast_ref::<&str>()
            .map(|s| format!("panic: {s}"))
            .or_else(|| {
                panic
                    .downcast_ref::<String>()
                    .map(|s| format!("panic: {s}"))
            })
            .unwrap_or_else(|| "panic".to_owned()),
    };
    let path = directory(name).join(format!("crash-{:016x}", crate::fnv::fnv1a64(input)));
    let saved =
        std::fs::create_dir_all(directory(name)).and_then(|()| std::fs::write(&path, input));
    panic!(
        "fuzz {name}: {failure}\ninput ({} bytes) {}: {:?}",
        input.len(),
        match saved {
            Ok(()) => format!("saved as {}", path.display()),
            Err(e) => format!("not saved ({e})"),
        },
        String::from_utf8_lossy(&input[..input.len().min(2000)])
    );
}

/// `tests/fuzz/<name>/`.
fn directory(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(name)
}

/// Every file in `tests/fuzz/<name>/`, sorted by name.
fn regression_cases(name: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(directory(name)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Tokens of JSON worth splicing into JSON inputs: structure, extreme numbers, durations
/// that overflow, strings with escapes.
pub const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1e999",
    b"-0.0",
    b"4294967296",
    b"18446744073709551616",
    b"9223372036854775807",
    b"\"100y\"",
    b"\"150000000000y\"",
    b"\"0s\"",
    b"\"1ns\"",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"::ffff:127.0.0.1\"",
    b"\"127.0.0.1\"",
    b"\"\"",
    b"{}",
    b"[]",
];
