//! What verifying one Cloud Map request's signature costs muster: `sigv4::verify` of a
//! `RegisterInstance` signed by `aws-sigv4` (the SDKs' signer), body of 130 bytes, the
//! headers the SDK sends. Everything a request pays for SigV4 is in it: parsing the
//! header, the canonical request, two SHA-256 and five HMAC-SHA256.
//!
//!     cargo bench --bench sigv4_verify
//!
//! `bench/auth_throughput.py` measures the same cost end to end, in durable writes.

use std::time::{Duration, SystemTime};

use aws_sdk_servicediscovery::config::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use muster::api::auth::sigv4::{Expected, SignedRequest, verify};

const BODY: &str = r#"{"ServiceId": "srv-a1b2c3d4e5f6g7h8", "InstanceId": "i-42", "Attributes": {"AWS_INSTANCE_IPV4": "10.0.0.42", "AWS_INSTANCE_PORT": "8080"}}"#;

fn signed(time: SystemTime) -> HeaderMap {
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        (
            "x-amz-target",
            "Route53AutoNaming_v20170314.RegisterInstance",
        ),
        ("user-agent", "aws-sdk-rust/1.3 os/linux lang/rust/1.89"),
    ];
    let identity = Credentials::new("AKIDBENCH", "bench/secret+key", None, None, "bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("servicediscovery")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        "http://127.0.0.1:8054/",
        headers.iter().copied(),
        SignableBody::Bytes(BODY.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut map = HeaderMap::new();
    map.insert("host", HeaderValue::from_static("127.0.0.1:8054"));
    for (name, value) in headers.into_iter().chain(instructions.headers()) {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn verify_one(c: &mut Criterion) {
    let now = SystemTime::now();
    let headers = signed(now);
    let request = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: BODY.as_bytes(),
    };
    let expected = Expected {
        region: "us-east-1",
        service: "servicediscovery",
        signed: &["x-amz-target"],
        now: now + Duration::from_secs(1),
    };
    let secret = b"bench/secret+key".as_slice();
    let mut group = c.benchmark_group("sigv4");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_register_instance", |b| {
        b.iter(|| {
            let id = verify(&request, &expected, |_| Some(secret)).unwrap();
            std::hint::black_box(id);
        })
    });
    group.finish();
}

criterion_group!(benches, verify_one);
criterion_main!(benches);
