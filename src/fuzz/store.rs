//! Fuzz target of the log reader: arbitrary bytes, and mutations and truncations of real
//! log segments, opened as muster opens its data directory at start ([`Wal::open`]) and
//! replayed into a registry as muster does ([`Registry::durable`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::dns::runtime;
use super::{JSON_TOKENS, fuzz, outcome, shape};
use crate::config::Config;
use crate::registry::{
    Change, CheckSpec, InstanceKey, InstanceSpec, NamespaceDef, NamespaceKind, Registry, Snapshot,
    SourceId, SpecExtras, Tagged,
};
use crate::store::Wal;

/// A directory for one input: in memory where the system has one, so fsyncs are cheap.
fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// The segment muster writes for a few API changes of every kind it logs.
fn real_segment() -> Vec<u8> {
    let dir = scratch_dir();
    let runtime = runtime();
    let config = Config::default();
    let settings = config.settings().unwrap();
    let admission = config.admission(&settings);
    let (wal, recovered) = Wal::open(dir.path(), &mut Default::default()).unwrap();
    let snapshot = Snapshot::new(settings.namespaces, []);
    let registry = Registry::durable(snapshot, wal, recovered, admission);
    let handle = registry.handle();
    let stop = CancellationToken::new();
    let writer = runtime.spawn(registry.run(stop.clone()));
    let key = |id: &str| InstanceKey {
        namespace: "internal".into(),
        service: "web".into(),
        id: id.into(),
    };
    let check: CheckSpec =
        serde_json::from_str(r#"{"http": "/healthz", "interval": "200ms", "host": "h"}"#).unwrap();
    let spec = InstanceSpec {
        ipv4: Some("10.0.0.1".parse().unwrap()),
        ipv6: Some("2001:db8::1".parse().unwrap()),
        port: Some(80),
        attributes: [("zone".to_owned(), "a".to_owned())].into(),
        healthy: true,
        extras: SpecExtras {
            heartbeat_ttl: Some(Duration::from_secs(3)),
            check: Some(Arc::new(check)),
            creator_request_id: Some("r-1".into()),
            ..SpecExtras::default()
        }
        .into(),
    };
    let changes = vec![
        Change::Upsert {
            key: key("i-1"),
            spec: spec.clone(),
            source: SourceId::api(),
        },
        Change::Upsert {
            key: key("i-2"),
            spec,
            source: SourceId::api(),
        },
        Change::SetHealth {
            key: key("i-2"),
            healthy: false,
        },
        Change::Remove {
            key: key("i-1"),
            source: SourceId::api(),
        },
        Change::CreateNamespace(NamespaceDef {
            name: "prod.example".into(),
            id: "ns-0123456789abcdef".into(),
            kind: NamespaceKind::DnsPrivate,
            description: Some("d".into()),
            negative_ttl: Some(30),
            creator_request_id: None,
            tags: Default::default(),
        }),
        Change::Tag {
            target: Tagged::Namespace("prod.example".into()),
            set: [("k".to_owned(), "v".to_owned())].into(),
            remove: Vec::new(),
        },
    ];
    runtime.block_on(async {
        for change in changes {
            handle.apply_durable(change).await.unwrap();
        }
    });
    stop.cancel();
    runtime.block_on(writer).unwrap();
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .unwrap();
    std::fs::read(segment).unwrap()
}

/// Opens a data directory whose one segment holds `bytes`, and replays it.
fn open(bytes: &[u8], dir: &Path) -> String {
    std::fs::write(dir.join("wal-0000000001.log"), bytes).unwrap();
    let config = Config::default();
    let settings = config.settings().unwrap();
    match Wal::open(dir, &mut Default::default()) {
        Err(error) => shape(&error.to_string()),
        Ok((wal, recovered)) => {
            let summary = format!(
                "{} changes, {} truncated",
                recovered.changes.len().min(16),
                recovered.truncated_bytes.min(1)
            );
            let admission = config.admission(&settings);
            let snapshot = Snapshot::new(settings.namespaces, []);
            let registry = Registry::durable(snapshot, wal, recovered, admission);
            drop(registry);
            summary
        }
    }
}

/// `bytes` with every record's length cut to what follows and its checksum made right, so
/// that mutations inside a record reach the decoder and the replay instead of failing
/// the checksum (records: `length u32 LE | crc32 u32 LE | payload` after `MUSTER01`).
fn reframe(bytes: &[u8]) -> Vec<u8> {
    let Some(mut rest) = bytes.strip_prefix(b"MUSTER01") else {
        return bytes.to_vec();
    };
    let mut framed = b"MUSTER01".to_vec();
    while rest.len() >= 8 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let payload = &rest[8..8 + len.min(rest.len() - 8)];
        framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        framed.extend_from_slice(payload);
        rest = &rest[8 + payload.len()..];
    }
    framed.extend_from_slice(rest);
    framed
}

#[test]
fn fuzz_log_reader() {
    let segment = real_segment();
    let mut seeds = vec![segment.clone(), b"MUSTER01".to_vec(), Vec::new()];
    // Every truncation of the real segment: a crash can stop a write anywhere.
    seeds.extend((0..segment.len()).step_by(7).map(|n| segment[..n].to_vec()));
    let mut tokens = JSON_TOKENS.to_vec();
    tokens.extend([
        &b"MUSTER01"[..],
        b"\"change\"",
        b"\"revision\"",
        b"\"Upsert\"",
    ]);
    fuzz("log_reader", seeds, &tokens, |bytes| {
        let raw = open(bytes, scratch_dir().path());
        let framed = open(&reframe(bytes), scratch_dir().path());
        Ok(outcome((raw, framed)))
    });
}
