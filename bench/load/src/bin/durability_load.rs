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

use load::{flags, writes};

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
    let options = options();
    let authorization = options.token.as_ref().map(|t| format!("Bearer {t}"));
    writes::run(&options.addr, options.writers, options.count, |n| {
        let n = options.first + n;
        let key = if options.keys == 0 {
            n
        } else {
            n % options.keys
        };
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
        let mut headers = vec![("Content-Type".into(), "application/json".into())];
        if let Some(authorization) = &authorization {
            headers.push(("Authorization".into(), authorization.clone()));
        }
        writes::Request {
            name: format!("PUT {path}"),
            method: "PUT",
            path,
            headers,
            body,
        }
    });
}
