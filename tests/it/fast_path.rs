//! The differential test of the UDP fast path: a large randomized set of queries goes to
//! both the fast path (`dns::fast::respond`) and the full path (`dns::fast::full_path`,
//! hickory and the handler), and every answer the fast path gives must be equivalent to
//! the full path's: same header flags and rcode, the question bytes as sent, the same
//! OPT, the same authority records, and the same answer and glue records (as sets; where
//! the policy picks a random subset, the same count of records from the same set).
//! Over UDP and over TCP (where the limit is a whole message and nothing is truncated).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_server::net::xfer::Protocol;
use muster::config::ForwardConfig;
use muster::dns::fast::{Handling, Scratch, Settings, full_path, respond};
use muster::dns::locality::ClientZones;
use muster::dns::{DnsMetrics, Forwarder, Handler, PublishedZone, Transfers, ZoneSnapshot};
use muster::registry::{
    Change, DnsConfig, InstanceKey, InstanceSpec, RecordTtls, Routing, ServiceDef, SpecExtras,
};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// No `[[zones]]`: no answer here depends on where the client is.
static NO_ZONES: LazyLock<ClientZones> = LazyLock::new(ClientZones::default);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const CONFIG: &str = include_str!("../fixtures/config.toml");
const INSTANCES: &str = include_str!("../fixtures/instances.toml");
/// Sub.Example's `big` answers every instance: large responses, near every size limit.
const BIG_RULE: &str = "\n[[namespaces.services]]\nmatch = \"big\"\nmax_answers = 0\n";
const QUERIES: usize = 20_000;
/// The server identifier NSID queries get (`[dns] nsid`).
const NSID: &[u8] = b"muster-test-1";
/// What the server advertises and caps responses at.
const MAX_UDP_PAYLOAD: u16 = 1232;

/// The fixture zone plus `big` (40 instances with long hashed labels) and `wide`
/// (30 instances, 8 answered at random) in `internal`, and `cn`, a Cloud Map CNAME
/// service with three targets (one inside the namespace), one answered at random.
async fn zone() -> PublishedZone {
    let mut instances = muster::sources::file::parse(INSTANCES, false).unwrap();
    for n in 0..40 {
        instances.push(instance(
            "sub.example",
            "big",
            &format!("Task/Big:{n:04}"),
            n,
        ));
    }
    for n in 0..30 {
        instances.push(instance("internal", "wide", &format!("w-{n}"), n));
    }
    for (n, target) in ["example.org", "web.internal", "mixed.example.net."]
        .into_iter()
        .enumerate()
    {
        let (key, _) = instance("internal", "cn", &format!("c-{n}"), n as u8);
        let spec = InstanceSpec {
            healthy: true,
            extras: SpecExtras {
                cname: Some(target.to_owned()),
                ..SpecExtras::default()
            }
            .into(),
            ..InstanceSpec::default()
        };
        instances.push((key, spec));
    }
    let cname_service = Change::CreateService {
        namespace: "internal".to_owned(),
        name: "cn".to_owned(),
        def: ServiceDef {
            id: "srv-cn".to_owned(),
            description: None,
            dns: Some(DnsConfig {
                routing: Routing::Weighted,
                records: RecordTtls {
                    cname: Some(30),
                    ..RecordTtls::default()
                },
            }),
            http_only: false,
            custom_health: false,
            creator_request_id: None,
            tags: Default::default(),
        },
    };
    let config = format!("{CONFIG}{BIG_RULE}");
    super::support::zone_with(&config, vec![cname_service], instances).await
}

fn instance(namespace: &str, service: &str, id: &str, n: u8) -> (InstanceKey, InstanceSpec) {
    let key = InstanceKey {
        namespace: namespace.to_owned(),
        service: service.to_owned(),
        id: id.to_owned(),
    };
    let spec = InstanceSpec {
        ipv4: Some([10, 9, 0, n].into()),
        ipv6: n
            .is_multiple_of(2)
            .then(|| [0xfd00, 0, 0, 0, 0, 0, 9, u16::from(n)].into()),
        port: Some(8000 + u16::from(n)),
        healthy: true,
        ..InstanceSpec::default()
    };
    (key, spec)
}

/// Every name worth asking about, from the zone itself, plus names that do not exist.
fn names(zone: &ZoneSnapshot) -> Vec<String> {
    let mut names = vec![
        "example.com.".to_owned(),
        ".".to_owned(),
        "internal.com.".to_owned(),
    ];
    for namespace in zone.namespaces() {
        let origin = namespace.origin.to_string();
        names.push(origin.clone());
        for label in ["nope", "_tcp", "_udp", "a.b.c", "_nope._tcp", "x.y"] {
            names.push(format!("{label}.{origin}"));
        }
        for (service, records) in namespace.services.iter() {
            names.push(format!("{service}.{origin}"));
            names.push(format!("_{service}._tcp.{origin}"));
            names.push(format!("_{service}._udp.{origin}"));
            names.push(format!("missing.{service}.{origin}"));
            names.push(format!("a.b.{service}.{origin}"));
            for instance in records.labelled() {
                let label = String::from_utf8_lossy(instance.label());
                names.push(format!("{label}.{service}.{origin}"));
            }
        }
    }
    names
}

/// A query's bytes, built by hand so every field can vary.
struct Ask {
    name: String,
    qtype: u16,
    class: u16,
    edns: Option<(u16, bool)>,
    /// EDNS options (code, data), sent when `edns` is set.
    options: Vec<(u16, Vec<u8>)>,
    flags: [u8; 2],
}

/// The options resolvers send, and malformed ones: NSID, Client Subnet, COOKIE,
/// keepalive, padding, an unknown code.
fn option_pool() -> Vec<(u16, Vec<u8>)> {
    vec![
        (3, vec![]),
        (3, b"x".to_vec()),
        (8, vec![0, 1, 24, 0, 192, 0, 2]),
        (8, vec![0, 2, 48, 0, 0x20, 1, 0xd, 0xb8, 0, 1]),
        (8, vec![0, 1, 0, 0]),
        (8, vec![0, 1, 24, 8, 192, 0, 2]),
        (10, vec![1; 8]),
        (10, vec![1; 24]),
        (10, vec![1; 5]),
        (11, vec![]),
        (12, vec![0; 37]),
        (65001, b"whatever".to_vec()),
    ]
}

impl Ask {
    fn random(rng: &mut SmallRng, names: &[String]) -> Self {
        let name: String = names
            .choose(rng)
            .unwrap()
            .chars()
            .map(|c| {
                if rng.random_bool(0.3) {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        let qtypes = [1, 28, 33, 255, 6, 2, 16, 5, 15, 0, 252, 251, 65];
        let payloads = [0, 100, 512, 513, 600, 800, 1232, 1400, 4096, 65535];
        Self {
            name,
            qtype: *qtypes.choose(rng).unwrap(),
            class: if rng.random_bool(0.97) { 1 } else { 3 },
            edns: rng
                .random_bool(0.6)
                .then(|| (*payloads.choose(rng).unwrap(), rng.random_bool(0.3))),
            options: (0..rng.random_range(0..=3))
                .map(|_| option_pool().choose(rng).unwrap().clone())
                .collect(),
            // RD and CD at random; now and then other bits a client should not set.
            flags: [
                u8::from(rng.random_bool(0.5)) | if rng.random_bool(0.02) { 0x20 } else { 0 },
                if rng.random_bool(0.3) { 0x10 } else { 0 }
                    | if rng.random_bool(0.05) { 0x60 } else { 0 },
            ],
        }
    }

    fn bytes(&self, id: u16) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&self.flags);
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        for label in self.name.split('.').filter(|l| !l.is_empty()) {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&self.qtype.to_be_bytes());
        p.extend_from_slice(&self.class.to_be_bytes());
        if let Some((payload, dnssec_ok)) = self.edns {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
            let rdlength: usize = self.options.iter().map(|(_, data)| 4 + data.len()).sum();
            p.extend_from_slice(&(rdlength as u16).to_be_bytes());
            for (code, data) in &self.options {
                p.extend_from_slice(&code.to_be_bytes());
                p.extend_from_slice(&(data.len() as u16).to_be_bytes());
                p.extend_from_slice(data);
            }
        }
        p
    }
}

/// Every record the zone could answer with, by lowercase owner and type: the set a
/// random pick draws from.
fn universe(zone: &ZoneSnapshot) -> HashMap<(String, RecordType), BTreeSet<String>> {
    let mut all: HashMap<(String, RecordType), BTreeSet<String>> = HashMap::new();
    let mut add = |record: &Record| {
        all.entry((record.name.to_lowercase().to_string(), record.record_type()))
            .or_default()
            .insert(text(record));
    };
    for namespace in zone.namespaces() {
        add(&namespace.soa.view().record());
        add(&namespace.ns.view().record());
        for records in namespace.services.values() {
            for rr in records.instances.iter().flat_map(|i| i.records()) {
                add(&rr.record());
            }
        }
    }
    all
}

/// A record as text with its owner lowercased (fast-path answers carry the client's
/// case in their owners, which point at the question).
fn text(record: &Record) -> String {
    let mut record = record.clone();
    record.name = record.name.to_lowercase();
    record.to_string()
}

fn texts(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(text)
        .collect()
}

/// Checks that `fast` is equivalent to `full` for the query `packet`.
fn compare(
    packet: &[u8],
    fast: &[u8],
    full: &[u8],
    universe: &HashMap<(String, RecordType), BTreeSet<String>>,
) -> Result<(), String> {
    let question_end = 12 + packet[12..].iter().position(|&b| b == 0).unwrap() + 1 + 4;
    if fast[12..question_end] != packet[12..question_end] {
        return Err("the question is not echoed byte for byte".into());
    }
    if fast[12..question_end] != full[12..question_end] {
        return Err("the paths echo different questions".into());
    }
    let fast = Message::from_vec(fast).map_err(|e| format!("fast: {e}"))?;
    let full = Message::from_vec(full).map_err(|e| format!("full: {e}"))?;
    if fast.metadata != full.metadata {
        return Err(format!(
            "headers: {:?} vs {:?}",
            fast.metadata, full.metadata
        ));
    }
    if fast.edns != full.edns {
        return Err(format!("OPT: {:?} vs {:?}", fast.edns, full.edns));
    }
    if texts(&fast.authorities) != texts(&full.authorities) {
        return Err("authority sections differ".into());
    }
    let (answers, full_answers) = (texts(&fast.answers), texts(&full.answers));
    let (glue, full_glue) = (texts(&fast.additionals), texts(&full.additionals));
    if answers == full_answers && glue == full_glue {
        return Ok(());
    }
    // A random pick: as many records, each one the zone has at that name and type.
    if fast.answers.len() != full.answers.len() || answers.len() != fast.answers.len() {
        return Err(format!("answer counts: {answers:?} vs {full_answers:?}"));
    }
    for record in fast.answers.iter().chain(&fast.additionals) {
        let key = (record.name.to_lowercase().to_string(), record.record_type());
        if !universe
            .get(&key)
            .is_some_and(|set| set.contains(&text(record)))
        {
            return Err(format!("{record} is not in the zone"));
        }
    }
    // Glue: exactly the addresses of the picked SRV targets.
    let targets: BTreeSet<String> = fast
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.target.to_lowercase().to_string()),
            _ => None,
        })
        .collect();
    let expected: BTreeSet<String> = targets
        .iter()
        .flat_map(|t| [RecordType::A, RecordType::AAAA].map(|k| (t.clone(), k)))
        .flat_map(|key| universe.get(&key).into_iter().flatten().cloned())
        .collect();
    if glue != expected {
        return Err(format!("glue {glue:?}, want {expected:?}"));
    }
    Ok(())
}

/// Sends `queries` random queries to both paths and checks every fast-path answer;
/// queries the fast path hands off go to the full path only when `hand_offs` is set.
/// Returns how many queries ended each way.
async fn differ(
    view: &PublishedZone,
    handler: &Handler,
    settings: Settings<'_>,
    queries: usize,
    hand_offs: bool,
) -> HashMap<String, usize> {
    let zone = view.load();
    let names = names(&zone);
    let universe = universe(&zone);
    let mut rng = SmallRng::seed_from_u64(6);
    let mut scratch = Scratch::new(SmallRng::seed_from_u64(7));
    let mut out = Vec::new();
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for n in 0..queries {
        let ask = Ask::random(&mut rng, &names);
        let packet = ask.bytes(n as u16);
        let outcome = respond(&zone, &packet, src.ip(), settings, &mut scratch, &mut out);
        if outcome == Handling::HandOff && !hand_offs {
            *outcomes.entry("handed off".to_owned()).or_default() += 1;
            continue;
        }
        let protocol = match settings.over_tcp {
            true => Protocol::Tcp,
            false => Protocol::Udp,
        };
        let full = full_path(handler, packet.clone(), src, protocol)
            .await
            .expect("the full path answers every query");
        let label = match &outcome {
            Handling::Answered {
                rcode, truncated, ..
            } => format!("answered {rcode}{}", if *truncated { " TC" } else { "" }),
            Handling::HandOff => {
                let metadata = Message::from_vec(&full).unwrap().metadata;
                let tc = if metadata.truncation { " TC" } else { "" };
                format!("handed off, full path {}{tc}", metadata.response_code)
            }
        };
        *outcomes.entry(label).or_default() += 1;
        if let Handling::Answered { rcode, qtype, .. } = outcome {
            assert_eq!(qtype, RecordType::from(ask.qtype));
            if let Err(why) = compare(&packet, &out, &full, &universe) {
                panic!(
                    "{} {} {:?} {:?} ({rcode}): {why}",
                    ask.name, ask.qtype, ask.edns, ask.options
                );
            }
        }
    }
    println!("{outcomes:#?}");
    outcomes
}

fn answered(outcomes: &HashMap<String, usize>) -> usize {
    outcomes
        .iter()
        .filter(|(k, _)| k.starts_with("answered"))
        .map(|(_, v)| v)
        .sum()
}

/// The fast path's settings over UDP, as [`handler`]'s are, answering NSID with `nsid`.
fn udp_settings(nsid: &[u8]) -> Settings<'_> {
    Settings {
        max_udp_payload: MAX_UDP_PAYLOAD,
        recursion_available: false,
        over_tcp: false,
        nsid,
        zones: &NO_ZONES,
    }
}

/// A handler on `view` without transfers.
fn handler(
    view: &PublishedZone,
    metrics: Arc<DnsMetrics>,
    forwarder: Option<Forwarder>,
) -> Handler {
    Handler::new(
        view.clone(),
        MAX_UDP_PAYLOAD,
        metrics,
        forwarder,
        Transfers::default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_and_full_paths_answer_alike() {
    let view = zone().await;
    let metrics = Arc::new(DnsMetrics::default());
    let handler = handler(&view, metrics, None).with_nsid(NSID);
    let settings = udp_settings(NSID);
    let outcomes = differ(&view, &handler, settings, QUERIES, true).await;
    assert!(
        answered(&outcomes) > QUERIES / 2,
        "the fast path answered too little"
    );
    for rcode in [ResponseCode::NoError, ResponseCode::NXDomain] {
        assert!(outcomes.contains_key(&format!("answered {rcode}")));
    }
    // `big` answered whole cannot fit 512 bytes: the fast path truncates it itself.
    assert!(outcomes.contains_key(&format!("answered {} TC", ResponseCode::NoError)));
    // The full path still refuses what is not ours, and truncates what does not fit; a
    // malformed COOKIE is FORMERR.
    for rcode in [
        ResponseCode::Refused,
        ResponseCode::NotImp,
        ResponseCode::FormErr,
    ] {
        assert!(outcomes.contains_key(&format!("handed off, full path {rcode}")));
    }
}

/// A and AAAA answers are sized exactly on the fast path: at every payload size from 512
/// to 1,232 bytes it answers `big` whole or truncated exactly where the full path cuts,
/// with and without an NSID option in the OPT, and hands off only the few sizes where
/// the full path's longer first owner alone makes the difference.
#[tokio::test(flavor = "multi_thread")]
async fn address_answers_are_cut_at_the_same_byte_on_both_paths() {
    let view = zone().await;
    let handler = handler(&view, Arc::new(DnsMetrics::default()), None).with_nsid(NSID);
    let settings = udp_settings(NSID);
    let zone = view.load();
    let universe = universe(&zone);
    let mut scratch = Scratch::new(SmallRng::seed_from_u64(7));
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let (mut out, mut whole, mut truncated, mut handed_off) = (Vec::new(), 0, 0, 0);
    for payload in 512..=MAX_UDP_PAYLOAD {
        for (qtype, options) in [(1, vec![]), (28, vec![]), (1, vec![(3, vec![])])] {
            let ask = Ask {
                name: "big.sub.example".to_owned(),
                qtype,
                class: 1,
                edns: Some((payload, false)),
                options,
                flags: [1, 0],
            };
            let packet = ask.bytes(payload);
            let outcome = respond(&zone, &packet, src.ip(), settings, &mut scratch, &mut out);
            let full = full_path(&handler, packet.clone(), src, Protocol::Udp)
                .await
                .expect("the full path answers");
            let Handling::Answered { truncated: cut, .. } = outcome else {
                // Only where the full path's one longer owner tips the answer over.
                let metadata = Message::from_vec(&full).unwrap().metadata;
                assert!(
                    metadata.truncation,
                    "type {qtype} at {payload} bytes: handed off"
                );
                handed_off += 1;
                continue;
            };
            if let Err(why) = compare(&packet, &out, &full, &universe) {
                panic!("type {qtype} at {payload} bytes: {why}");
            }
            if cut {
                truncated += 1;
            } else {
                whole += 1;
            }
        }
    }
    assert!(whole > 0 && truncated > 0, "{whole} whole, {truncated} cut");
    // `big.sub.example` is 17 bytes: 15 more than a pointer, in each of three shapes.
    assert!(handed_off <= 3 * 15, "{handed_off} handed off");
}

/// Over TCP both paths answer in full whatever the client's payload size: the fast path
/// answers what does not fit a UDP payload, exactly as the full path does over TCP.
#[tokio::test(flavor = "multi_thread")]
async fn fast_and_full_paths_answer_alike_over_tcp() {
    let view = zone().await;
    let metrics = Arc::new(DnsMetrics::default());
    let handler = handler(&view, metrics, None);
    let udp = udp_settings(b"");
    let tcp = Settings {
        over_tcp: true,
        ..udp
    };
    let over_udp = differ(&view, &handler, udp, QUERIES / 2, false).await;
    let over_tcp = differ(&view, &handler, tcp, QUERIES / 2, true).await;
    assert!(
        answered(&over_tcp) > answered(&over_udp),
        "over TCP the fast path answers what UDP payloads cannot hold"
    );
    let truncated = |outcomes: &HashMap<String, usize>| outcomes.keys().any(|k| k.ends_with("TC"));
    let full_over_udp = differ(&view, &handler, udp, QUERIES / 2, true).await;
    assert!(
        truncated(&full_over_udp),
        "the queries have answers too large for UDP"
    );
    assert!(!truncated(&over_tcp), "nothing is truncated over TCP");
}

/// As a sidecar that forwards, the full path sets RA; so must the fast path. (Handed-off
/// queries are not sent: they would go to the upstream.)
#[tokio::test(flavor = "multi_thread")]
async fn a_forwarding_server_sets_ra_on_both_paths() {
    let view = zone().await;
    let forward = ForwardConfig {
        upstreams: vec!["127.0.0.1:9".parse().unwrap()],
        ..ForwardConfig::default()
    };
    let forwarder = Forwarder::new(&forward).unwrap();
    assert!(forwarder.is_some());
    let metrics = Arc::new(DnsMetrics::default());
    let handler = handler(&view, metrics, forwarder);
    let settings = Settings {
        recursion_available: true,
        ..udp_settings(b"")
    };
    let outcomes = differ(&view, &handler, settings, QUERIES / 4, false).await;
    assert!(answered(&outcomes) > QUERIES / 8);
}

/// A CNAME service answers every type at its name with one CNAME, on both paths alike,
/// and the fast path answers it itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_cname_service_answers_one_cname_for_every_type() {
    let view = zone().await;
    let zone = view.load();
    let metrics = Arc::new(DnsMetrics::default());
    let handler = handler(&view, metrics, None);
    let mut scratch = Scratch::new(SmallRng::seed_from_u64(3));
    let mut out = Vec::new();
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let mut targets = BTreeSet::new();
    for (n, qtype) in [1u16, 28, 5, 255, 33]
        .into_iter()
        .cycle()
        .take(100)
        .enumerate()
    {
        let ask = Ask {
            name: "Cn.internal".to_owned(),
            qtype,
            class: 1,
            edns: None,
            options: Vec::new(),
            flags: [1, 0],
        };
        let packet = ask.bytes(n as u16);
        for over_tcp in [false, true] {
            let settings = Settings {
                over_tcp,
                ..udp_settings(b"")
            };
            let outcome = respond(&zone, &packet, LOCALHOST, settings, &mut scratch, &mut out);
            assert!(
                matches!(outcome, Handling::Answered { .. }),
                "{qtype}: {outcome:?}"
            );
            let protocol = if over_tcp {
                Protocol::Tcp
            } else {
                Protocol::Udp
            };
            let full = full_path(&handler, packet.clone(), src, protocol)
                .await
                .unwrap();
            for bytes in [&out, &full] {
                let message = Message::from_vec(bytes).unwrap();
                assert_eq!(message.metadata.response_code, ResponseCode::NoError);
                assert!(message.metadata.authoritative);
                let [answer] = &message.answers[..] else {
                    panic!("{qtype}: not one answer: {:?}", message.answers);
                };
                assert_eq!(answer.ttl, 30);
                let RData::CNAME(target) = &answer.data else {
                    panic!("{qtype}: {answer}");
                };
                targets.insert(target.0.to_string());
                assert!(message.additionals.is_empty() && message.authorities.is_empty());
            }
        }
    }
    let expected = ["example.org.", "mixed.example.net.", "web.internal."];
    assert_eq!(
        targets,
        BTreeSet::from(expected.map(str::to_owned)),
        "each target, at random"
    );
}
