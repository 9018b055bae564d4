use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::registry::Change;

/// Changes as the release before the rare fields were boxed logged them (its binary's
/// log, `Upsert`s through REST and Cloud Map): every field set, none, a CNAME and a
/// `CreatorRequestId`.
const OLD_LOG: [&str; 3] = [
    r#"{"Upsert":{"key":{"namespace":"internal","service":"web","id":"i-1"},"spec":{"ipv4":"10.0.0.1","ipv6":"2001:db8::1","port":8080,"ports":{"dns":{"port":53,"protocol":"udp"},"grpc":{"port":9090,"protocol":"tcp"}},"attributes":{"zone":"a"},"healthy":true,"heartbeat_ttl":"30s","check":{"http":"/healthz","interval":"2s","healthy_threshold":2,"unhealthy_threshold":2},"deregister_after":"10m"},"source":"api"}}"#,
    r#"{"Upsert":{"key":{"namespace":"internal","service":"web","id":"i-2"},"spec":{"ipv4":"10.0.0.2","ipv6":null,"port":null,"attributes":{},"healthy":true},"source":"api"}}"#,
    r#"{"Upsert":{"key":{"namespace":"internal","service":"alias","id":"c-1"},"spec":{"ipv4":null,"ipv6":null,"port":null,"cname":"example.org","attributes":{"AWS_INSTANCE_CNAME":"example.org"},"healthy":true,"creator_request_id":"req-1"},"source":"api"}}"#,
];

fn spec_of(line: &str) -> InstanceSpec {
    match serde_json::from_str(line).unwrap() {
        Change::Upsert { spec, .. } => spec,
        other => panic!("not an upsert: {other:?}"),
    }
}

#[test]
fn an_old_log_loads_and_is_written_back_the_same() {
    let full = spec_of(OLD_LOG[0]);
    assert_eq!(full.port, Some(8080));
    assert_eq!(full.ports()["dns"].protocol, Protocol::Udp);
    assert_eq!(full.ports()["grpc"].port, 9090);
    assert_eq!(full.heartbeat_ttl(), Some(Duration::from_secs(30)));
    assert_eq!(full.deregister_after(), Some(Duration::from_secs(600)));
    assert_eq!(
        full.check().and_then(|c| c.http.as_deref()),
        Some("/healthz")
    );
    assert_eq!((full.cname(), full.creator_request_id()), (None, None));

    let plain = spec_of(OLD_LOG[1]);
    assert_eq!(plain.extras, Extras::default(), "nothing boxed");
    assert_eq!(plain.ports(), &BTreeMap::new());

    let alias = spec_of(OLD_LOG[2]);
    assert_eq!(alias.cname(), Some("example.org"));
    assert_eq!(alias.creator_request_id(), Some("req-1"));
    assert_eq!(alias.heartbeat_ttl(), None);

    for line in OLD_LOG {
        let change: Change = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&change).unwrap(), line);
    }
}

/// In an `Arc` (two counts, 16 bytes), an instance fits mimalloc's 160-byte size class:
/// at a million instances, each byte here is a MiB.
#[test]
fn an_instance_fits_the_160_byte_class() {
    assert!(
        size_of::<Instance>() <= 144,
        "Instance is {} bytes",
        size_of::<Instance>()
    );
}

#[test]
fn extras_emptied_by_an_edit_are_unboxed_and_compare_equal() {
    let mut spec = InstanceSpec::default();
    spec.extras
        .edit(|extras| extras.heartbeat_ttl = Some(Duration::from_secs(3)));
    assert_eq!(spec.heartbeat_ttl(), Some(Duration::from_secs(3)));
    assert_ne!(spec, InstanceSpec::default());
    spec.extras.edit(|extras| extras.heartbeat_ttl = None);
    assert_eq!(spec.extras, Extras(None));
    assert_eq!(spec, InstanceSpec::default());
    assert_eq!(Extras::from(SpecExtras::default()), Extras(None));
}

#[test]
fn a_timestamp_keeps_a_system_time_to_the_nanosecond() {
    let now = SystemTime::now();
    assert_eq!(SystemTime::from(Timestamp::from(now)), now);
    let before = UNIX_EPOCH - Duration::from_secs(1);
    assert_eq!(SystemTime::from(Timestamp::from(before)), UNIX_EPOCH);
    let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
    assert_eq!(Timestamp::from(far), Timestamp(u64::MAX));
}
