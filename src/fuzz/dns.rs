//! Fuzz targets of the DNS frontend: the UDP fast path (query parser and responder) and
//! the full path (hickory's decoding, the handler, the encoding) on arbitrary datagrams.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use hickory_proto::op::{Message, MessageType};
use hickory_server::net::xfer::Protocol;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::{fuzz, outcome};
use crate::config::{Config, ForwardConfig};
use crate::dns::fast::{Handling, Scratch, Settings, full_path, respond};
use crate::dns::locality::ClientZones;
use crate::dns::{DnsMetrics, Forwarder, Handler, PublishedZone, Transfers};
use crate::registry::{Change, InstanceKey, InstanceSpec, Registry, Snapshot, SourceId};

/// No `[[zones]]`: no answer here depends on where the client is.
static NO_ZONES: LazyLock<ClientZones> = LazyLock::new(ClientZones::default);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const MAX_UDP_PAYLOAD: u16 = 1232;

/// Pieces of DNS messages: labels of the zone, a compression pointer, an OPT record, types.
const DNS_TOKENS: &[&[u8]] = &[
    b"\x03web",
    b"\x08internal",
    b"\x04_web\x04_tcp",
    b"\x03i-1",
    b"\x03big",
    b"\xc0\x0c",
    b"\xc0\xff",
    b"\x3f",
    b"\x00",
    b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00",
    b"\x00\x00\x29\x10\x00\x01\x00\x00\x00\x00\x04\x00\x0a\x00\x00",
    b"\x00\x01\x00\x01",
    b"\x00\x1c\x00\x01",
    b"\x00\x21\x00\x01",
    b"\x00\xff\x00\x01",
    b"\x00\xfc\x00\x01",
    b"\x00\x06\x00\x01",
];

/// A zone view of namespace `internal` holding services worth asking about: a few IPv4
/// instances, an IPv6 one, an id that is not a label, and one too big for a datagram.
fn zone(runtime: &tokio::runtime::Runtime) -> PublishedZone {
    let namespaces = Config::default().settings().unwrap().namespaces;
    let mut registry = Registry::new(Snapshot::new(namespaces, []));
    let view = PublishedZone::default();
    registry.on_publish(view.publish_hook());
    let handle = registry.handle();
    runtime.spawn(registry.run(tokio_util::sync::CancellationToken::new()));
    let mut instances = vec![
        ("web", "i-1".to_owned(), "10.0.0.1"),
        ("web", "i-2".to_owned(), "10.0.0.2"),
        ("web", "arn:aws:ecs:task/a@1.2".to_owned(), "10.0.0.3"),
        ("v6", "i-1".to_owned(), "2001:db8::1"),
    ];
    instances.extend((0..60).map(|n| ("big", format!("i-{n}"), "10.1.0.1")));
    for (service, id, ip) in instances {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let spec = InstanceSpec {
            ipv4: match ip {
                std::net::IpAddr::V4(v4) => Some(v4),
                _ => None,
            },
            ipv6: match ip {
                std::net::IpAddr::V6(v6) => Some(v6),
                _ => None,
            },
            port: Some(8080),
            healthy: true,
            ..InstanceSpec::default()
        };
        let key = InstanceKey {
            namespace: "internal".into(),
            service: service.into(),
            id,
        };
        let change = Change::Upsert {
            key,
            spec,
            source: SourceId::api(),
        };
        runtime.block_on(handle.apply(change)).unwrap();
    }
    view
}

/// A query for `name` (dotted) of `qtype`, with an OPT record of `payload` if given.
fn query(name: &str, qtype: u16, payload: Option<u16>) -> Vec<u8> {
    let mut packet = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0];
    packet.push(u8::from(payload.is_some()));
    for label in name.split('.').filter(|l| !l.is_empty()) {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    if let Some(payload) = payload {
        packet.extend_from_slice(&[0, 0, 41]);
        packet.extend_from_slice(&payload.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
    }
    packet
}

/// Valid queries for every kind of name and answer the zone has.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for name in [
        "web.internal",
        "WeB.InTeRnAl",
        "v6.internal",
        "i-1.web.internal",
        "big.internal",
        "_web._tcp.internal",
        "_big._udp.internal",
        "internal",
        "missing.internal",
        "a.b.c.d.internal",
        "example.com",
        "",
    ] {
        for qtype in [1, 28, 33, 6, 2, 255, 252, 251, 16] {
            for payload in [None, Some(512), Some(1232), Some(65535)] {
                seeds.push(query(name, qtype, payload));
            }
        }
    }
    let mut notify = query("internal", 6, None);
    notify[2] = 0x20; // opcode NOTIFY
    seeds.push(notify);
    let mut compressed = query("web.internal", 1, None);
    compressed.truncate(12);
    compressed.extend_from_slice(b"\x03web\xc0\x10\x00\x01\x00\x01");
    seeds.push(compressed);
    seeds
}

#[test]
fn fuzz_dns_fast_path() {
    let runtime = runtime();
    let view = zone(&runtime);
    let zone = view.load_full();
    let settings = Settings {
        max_udp_payload: MAX_UDP_PAYLOAD,
        recursion_available: false,
        over_tcp: false,
        nsid: b"",
        zones: &NO_ZONES,
    };
    let mut scratch = Scratch::new(SmallRng::seed_from_u64(7));
    let mut out = Vec::with_capacity(4096);
    fuzz("dns_fast_path", seeds(), DNS_TOKENS, |packet| {
        let Handling::Answered { qtype, rcode, .. } =
            respond(&zone, packet, LOCALHOST, settings, &mut scratch, &mut out)
        else {
            return Ok(outcome(0));
        };
        let message = Message::from_vec(&out).map_err(|e| format!("answer does not parse: {e}"))?;
        let metadata = &message.metadata;
        if metadata.id != u16::from_be_bytes([packet[0], packet[1]])
            || metadata.message_type != MessageType::Response
            || message.queries.len() != 1
        {
            return Err(format!("not an answer to the query: {message:?}"));
        }
        if out.len() > usize::from(MAX_UDP_PAYLOAD) {
            return Err(format!("{} bytes: over the payload size", out.len()));
        }
        Ok(outcome((
            u16::from(qtype),
            u16::from(rcode),
            message.answers.len(),
            message.additionals.len(),
        )))
    });
}

#[test]
fn fuzz_dns_full_path() {
    let runtime = runtime();
    let view = zone(&runtime);
    let handler = Handler::new(
        view,
        MAX_UDP_PAYLOAD,
        Arc::new(DnsMetrics::default()),
        Forwarder::new(&ForwardConfig::default()).unwrap(),
        Transfers::default(),
    );
    let source: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    fuzz("dns_full_path", seeds(), DNS_TOKENS, |packet| {
        let Some(response) =
            runtime.block_on(full_path(&handler, packet.to_vec(), source, Protocol::Udp))
        else {
            return Ok(outcome(1));
        };
        let message =
            Message::from_vec(&response).map_err(|e| format!("response does not parse: {e}"))?;
        if packet.len() >= 2 && message.metadata.id != u16::from_be_bytes([packet[0], packet[1]]) {
            return Err(format!("the response's id is not the query's: {message:?}"));
        }
        if message.metadata.message_type != MessageType::Response {
            return Err(format!("not a response: {message:?}"));
        }
        if response.len() > usize::from(MAX_UDP_PAYLOAD) {
            return Err(format!("{} bytes: over the payload size", response.len()));
        }
        Ok(outcome((
            u16::from(message.metadata.response_code),
            message.metadata.truncation,
            message.answers.len(),
            message.authorities.len(),
        )))
    });
}

/// A runtime for the registry's writer and the async targets, on this thread.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
