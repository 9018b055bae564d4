//! The journal and the transfer answers, on zones built by the real registry and hook.

use std::net::Ipv4Addr;

use hickory_proto::rr::{RData, Record};

use super::*;
use crate::dns::test_registry::Running;
use crate::dns::zone::PublishedZone;
use crate::registry::{Change, InstanceKey, InstanceSpec, SourceId};

/// A registry publishing into a view that keeps `journal_limit` records, and a way to
/// register (`Some(last octet)`) or remove (`None`) instance `id` of `web`.
struct Fixture {
    view: PublishedZone,
    registry: Running,
}

impl Fixture {
    fn new(journal_limit: usize) -> Self {
        let view = PublishedZone::with_journal(journal_limit);
        let registry = Running::new(&view);
        Self { view, registry }
    }

    async fn set(&self, id: &str, octet: Option<u8>) {
        let key = InstanceKey {
            namespace: "internal".into(),
            service: "web".into(),
            id: id.into(),
        };
        let source = SourceId::api();
        let change = match octet {
            Some(octet) => Change::Upsert {
                key,
                spec: InstanceSpec {
                    ipv4: Some(Ipv4Addr::new(10, 0, 0, octet)),
                    port: Some(80),
                    healthy: true,
                    ..InstanceSpec::default()
                },
                source,
            },
            None => Change::Remove { key, source },
        };
        self.registry.handle.apply(change).await.unwrap();
    }

    fn serial(&self) -> u32 {
        self.view
            .load()
            .namespace("internal")
            .unwrap()
            .soa
            .soa_serial()
    }

    fn answer(&self, client: Option<u32>) -> (Kind, Vec<String>) {
        let zone = self.view.load_full();
        let (kind, records) = answer_records(zone.namespace("internal").unwrap(), client);
        (kind, records.map(|rr| text(&rr.record())).collect())
    }
}

fn text(record: &Record) -> String {
    match &record.data {
        RData::SOA(soa) => format!("SOA {}", soa.serial),
        data => format!("{} {} {data}", record.name, record.record_type()),
    }
}

#[tokio::test]
async fn ixfr_lists_each_change_between_the_soas() {
    let fixture = Fixture::new(1000);
    fixture.set("a", Some(1)).await;
    let start = fixture.serial();
    fixture.set("b", Some(2)).await;
    let middle = fixture.serial();
    fixture.set("a", None).await;
    let end = fixture.serial();

    let (kind, records) = fixture.answer(Some(start));
    assert_eq!(kind, Kind::Ixfr);
    let soa = |serial: u32| format!("SOA {serial}");
    assert_eq!(records[0], soa(end));
    assert_eq!(records[1], soa(start));
    // Adding b: nothing removed, then b's A, SRV, _web._tcp SRV and target A.
    assert_eq!(records[2], soa(middle));
    assert_eq!(
        records[3..7]
            .iter()
            .filter(|r| r.contains("10.0.0.2") || r.contains("b.web"))
            .count(),
        4
    );
    // Removing a: a's four records between the middle and the end SOA, nothing added.
    assert_eq!(records[7], soa(middle));
    assert!(
        records[8..12]
            .iter()
            .all(|r| r.contains("10.0.0.1") || r.contains("a.web"))
    );
    assert_eq!(records[12..], [soa(end), soa(end)]);

    assert_eq!(
        fixture.answer(Some(end)),
        (Kind::IxfrCurrent, vec![soa(end)])
    );
    let (kind, records) = fixture.answer(Some(end + 7));
    assert_eq!(kind, Kind::IxfrFull);
    assert_eq!(
        fixture.answer(None).1,
        records,
        "the whole zone, as AXFR sends it"
    );
    assert!(records.iter().any(|r| r.contains("NS")));
}

#[tokio::test]
async fn the_journal_drops_its_oldest_changes_beyond_its_limit() {
    // Each registration after the first is a delta of 6 records (two SOAs and four
    // records): a limit of 7 keeps one.
    let fixture = Fixture::new(7);
    fixture.set("a", Some(1)).await;
    let first = fixture.serial();
    fixture.set("b", Some(2)).await;
    let second = fixture.serial();
    fixture.set("c", Some(3)).await;
    assert_eq!(
        fixture.answer(Some(first)).0,
        Kind::IxfrFull,
        "first change dropped"
    );
    assert_eq!(fixture.answer(Some(second)).0, Kind::Ixfr);
}

/// Named ports' SRV records are part of the zone: AXFR carries them and IXFR lists a
/// change of one.
#[tokio::test]
async fn transfers_carry_named_ports() {
    let fixture = Fixture::new(1000);
    let upsert = |grpc: u16| Change::Upsert {
        key: InstanceKey {
            namespace: "internal".into(),
            service: "web".into(),
            id: "a".into(),
        },
        spec: InstanceSpec {
            ipv4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            port: Some(80),
            healthy: true,
            extras: crate::registry::SpecExtras {
                ports: [(
                    "grpc".to_owned(),
                    crate::registry::NamedPort {
                        port: grpc,
                        protocol: crate::registry::Protocol::Tcp,
                    },
                )]
                .into(),
                ..Default::default()
            }
            .into(),
            ..InstanceSpec::default()
        },
        source: SourceId::api(),
    };
    fixture.registry.handle.apply(upsert(9090)).await.unwrap();
    let start = fixture.serial();
    let (kind, records) = fixture.answer(None);
    assert_eq!(kind, Kind::Axfr);
    let grpc = |port: u16| format!("_grpc._tcp.web.internal. SRV 1 1 {port} a.web.internal.");
    assert!(records.contains(&grpc(9090)), "{records:#?}");
    assert!(records.contains(&"web.internal. SRV 1 1 80 a.web.internal.".to_owned()));

    fixture.registry.handle.apply(upsert(9091)).await.unwrap();
    let (kind, records) = fixture.answer(Some(start));
    assert_eq!(kind, Kind::Ixfr);
    let at = |text: String| records.iter().position(|r| *r == text);
    let (removed, added) = (at(grpc(9090)).unwrap(), at(grpc(9091)).unwrap());
    assert!(removed < added, "{records:#?}");
    assert_eq!(
        records.len(),
        6,
        "SOA, SOA, the old SRV, SOA, the new SRV, SOA: {records:#?}"
    );
}
