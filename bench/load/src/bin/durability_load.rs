//! Load client for bench/durability.py: `--writers` threads, each with one keep-alive
//! HTTP/1.1 connection, send `PUT /v1/namespaces/internal/services/sS/instances/i-K` until
//! `--count` writes are answered, and print one JSON line with the rate and latencies.
//!
//! `durability_load --addr 127.0.0.1:PORT --writers 32 --count 30000 [--first N]
//! [--keys K] [--services S] [--pass P] [--token T]` (`--token`: sent as
//! `Authorization: Bearer T`)
//!
//! Standard library only (the HTTP client is `src/http1.rs`, shared with `churn_load`), so
//! the client costs little of the CPU muster shares with it; the Python drivers build it
//! with `cargo build --release -p muster-load`. Write number `n` (counted from `--first`) goes to key
//! `K = n % keys` (every write a new instance when `--keys` is 0) in service
//! `S = K % services`; its port changes with each pass over the keys, so a repeated key is
//! a real replacement, never a no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use load::{flags, http1, summary};

struct Options {
    addr: String,
    writers: u64,
    first: u64,
    count: u64,
    keys: u64,
    services: u64,
    pass: u64,
    token: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        addr: "127.0.0.1:8054".into(),
        writers: 1,
        first: 0,
        count: 1000,
        keys: 0,
        services: 100,
        pass: 0,
        token: None,
    };
    for (flag, value) in flags::pairs() {
        match flag.as_str() {
            "--addr" => options.addr = value.text(),
            "--writers" => options.writers = value.number(),
            "--first" => options.first = value.number(),
            "--count" => options.count = value.number(),
            "--keys" => options.keys = value.number(),
            "--services" => options.services = value.number(),
            "--pass" => options.pass = value.number(),
            "--token" => options.token = Some(value.text()),
            other => flags::unknown(other),
        }
    }
    options
}

fn main() {
    let options = Arc::new(options());
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..options.writers)
        .map(|_| {
            let (options, next, errors) = (options.clone(), next.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut connection =
                    http1::Connection::open(&options.addr).expect("connect to muster");
                let mut latencies = Vec::new();
                let authorization = options.token.as_ref().map(|t| format!("Bearer {t}"));
                let mut headers = vec![("Content-Type", "application/json")];
                if let Some(authorization) = &authorization {
                    headers.push(("Authorization", authorization));
                }
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= options.count {
                        break;
                    }
                    let n = options.first + n;
                    let key = if options.keys == 0 { n } else { n % options.keys };
                    let pass = options.pass + n.checked_div(options.keys).unwrap_or(0);
                    let path = format!(
                        "/v1/namespaces/internal/services/s{}/instances/i-{key}",
                        key % options.services
                    );
                    let body = format!(
                        r#"{{"ipv4": "10.{}.{}.{}", "port": {}, "attributes": {{"bench": "durability"}}}}"#,
                        (key >> 16) & 255,
                        (key >> 8) & 255,
                        key & 255,
                        1 + pass % 65535
                    );
                    let sent = Instant::now();
                    match connection.request_with("PUT", &path, &headers, &body) {
                        Ok(200) => latencies.push(sent.elapsed()),
                        Ok(status) => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("PUT {path}: HTTP {status}");
                            }
                        }
                        Err(e) => panic!("PUT {path}: {e}"),
                    }
                }
                latencies
            })
        })
        .collect();
    let latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer thread"))
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    summary::print_writes(
        options.writers,
        latencies,
        errors.load(Ordering::Relaxed),
        seconds,
    );
}
