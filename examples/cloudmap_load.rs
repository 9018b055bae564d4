//! Load client for `bench/auth_throughput.py`: durable Cloud Map writes, SigV4-signed.
//!
//! `--writers` threads, each with one keep-alive HTTP/1.1 connection, send
//! `RegisterInstance` calls (a new instance each, write `n` to service `n % services`)
//! signed by `aws-sigv4`, the SDKs' own signer, until `--count` are answered, and print one JSON line with the rate and
//! latencies (the same fields as `bench/load`'s `durability_load`). Every request is signed,
//! whether or not the server checks signatures, so the client does the same work in
//! both modes and the difference is the server's.
//!
//!     cargo build --release --example cloudmap_load
//!     target/release/examples/cloudmap_load --addr 127.0.0.1:8054 \
//!         --service-ids srv-a,srv-b,... --writers 32 --count 20000 --key AKID \
//!         --secret SECRET [--first N]

// The modules of the std-only load clients (bench/load/), included by path: the example
// needs the SDK's signer, a dev-dependency of muster, so it stays here rather than there.
// It uses only part of the first two, hence `dead_code`.
#[allow(dead_code)]
#[path = "../bench/load/src/flags.rs"]
mod flags;
#[allow(dead_code)]
#[path = "../bench/load/src/http1.rs"]
mod http1;
#[path = "../bench/load/src/summary.rs"]
mod summary;
#[path = "../bench/load/src/writes.rs"]
mod writes;

use std::time::SystemTime;

use aws_sdk_servicediscovery::config::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

struct Options {
    addr: String,
    service_ids: Vec<String>,
    writers: u64,
    count: u64,
    first: u64,
    key: String,
    secret: String,
    region: String,
}

fn options() -> Options {
    let mut options = Options {
        addr: "127.0.0.1:8054".into(),
        service_ids: Vec::new(),
        writers: 1,
        count: 1000,
        first: 0,
        key: "AKIDBENCH".into(),
        secret: "bench".into(),
        region: "us-east-1".into(),
    };
    for (flag, value) in flags::pairs() {
        match flag.as_str() {
            "--addr" => options.addr = value.text(),
            "--service-ids" => {
                options.service_ids = value.text().split(',').map(ToOwned::to_owned).collect()
            }
            "--writers" => options.writers = value.number(),
            "--count" => options.count = value.number(),
            "--first" => options.first = value.number(),
            "--key" => options.key = value.text(),
            "--secret" => options.secret = value.text(),
            "--region" => options.region = value.text(),
            other => flags::unknown(other),
        }
    }
    assert!(!options.service_ids.is_empty(), "--service-ids is required");
    options
}

/// The headers of a signed `RegisterInstance` of `body`.
fn signed_headers(options: &Options, body: &str) -> Vec<(String, String)> {
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        (
            "x-amz-target",
            "Route53AutoNaming_v20170314.RegisterInstance",
        ),
    ];
    let identity = Credentials::new(&options.key, &options.secret, None, None, "bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&options.region)
        .name("servicediscovery")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing parameters")
        .into();
    // The host signed is the one http1.rs sends: the address.
    let url = format!("http://{}/", options.addr);
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .expect("a signable request");
    let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
    headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .chain(
            instructions
                .headers()
                .map(|(n, v)| (n.to_owned(), v.to_owned())),
        )
        .collect()
}

fn main() {
    let options = options();
    writes::run(&options.addr, options.writers, options.count, |n| {
        let key = options.first + n;
        let body = format!(
            r#"{{"ServiceId": "{}", "InstanceId": "i-{key}", "Attributes": {{"AWS_INSTANCE_IPV4": "10.{}.{}.{}"}}}}"#,
            options.service_ids[(key % options.service_ids.len() as u64) as usize],
            (key >> 16) & 255,
            (key >> 8) & 255,
            key & 255
        );
        writes::Request {
            name: format!("RegisterInstance i-{key}"),
            method: "POST",
            path: "/".into(),
            headers: signed_headers(&options, &body),
            body,
        }
    });
}
