use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::*;

fn zone() -> Name {
    Name::from_ascii("internal.").unwrap()
}

fn record(name: &str, class: DNSClass, ttl: u32, data: RData) -> Record {
    let mut record = Record::from_rdata(Name::from_ascii(name).unwrap(), ttl, data);
    record.dns_class = class;
    record
}

fn a(last: u8) -> RData {
    RData::A(A::new(10, 0, 0, last))
}

fn empty(rtype: RecordType) -> RData {
    RData::Update0(rtype)
}

fn rel(labels: &[&str]) -> Relative {
    labels.iter().map(|l| l.to_string()).collect()
}

#[test]
fn prerequisites_read_as_rfc_2136_2_4_says() {
    let prerequisites = [
        record("Web.internal.", DNSClass::ANY, 0, empty(RecordType::ANY)),
        record("a.web.internal.", DNSClass::NONE, 0, empty(RecordType::ANY)),
        record("web.internal.", DNSClass::ANY, 0, empty(RecordType::A)),
        record("web.internal.", DNSClass::NONE, 0, empty(RecordType::AAAA)),
        record("b.web.internal.", DNSClass::IN, 0, a(1)),
        record("b.web.internal.", DNSClass::IN, 0, a(2)),
    ];
    let parsed = parse(&zone(), &prerequisites, &[]).unwrap();
    assert_eq!(
        parsed.prerequisites,
        [
            Prerequisite::NameInUse(rel(&["web"])),
            Prerequisite::NameNotInUse(rel(&["a", "web"])),
            Prerequisite::RrsetExists(rel(&["web"]), RecordType::A),
            Prerequisite::RrsetAbsent(rel(&["web"]), RecordType::AAAA),
            Prerequisite::RrsetEquals(rel(&["b", "web"]), RecordType::A, vec![a(1), a(2)]),
        ]
    );
}

#[test]
fn updates_read_as_rfc_2136_2_5_says() {
    let updates = [
        record("a.web.internal.", DNSClass::IN, 60, a(1)),
        record("a.web.internal.", DNSClass::ANY, 0, empty(RecordType::A)),
        record("a.web.internal.", DNSClass::ANY, 0, empty(RecordType::ANY)),
        record("a.web.internal.", DNSClass::NONE, 0, a(1)),
    ];
    let parsed = parse(&zone(), &[], &updates).unwrap();
    let name = rel(&["a", "web"]);
    assert_eq!(
        parsed.updates,
        [
            Update::Add(name.clone(), a(1)),
            Update::DeleteRrset(name.clone(), RecordType::A),
            Update::DeleteName(name.clone()),
            Update::DeleteRecord(name, a(1)),
        ]
    );
}

#[test]
fn malformed_sections_are_formerr_and_foreign_names_notzone() {
    let formerr = [
        // Prerequisites: a TTL, data where none belongs, a class of its own.
        (
            vec![record(
                "web.internal.",
                DNSClass::ANY,
                5,
                empty(RecordType::ANY),
            )],
            vec![],
        ),
        (
            vec![record("web.internal.", DNSClass::NONE, 0, a(1))],
            vec![],
        ),
        (vec![record("web.internal.", DNSClass::CH, 0, a(1))], vec![]),
        // Updates: deletes with a TTL or data, adds of meta types.
        (
            vec![],
            vec![record(
                "web.internal.",
                DNSClass::ANY,
                5,
                empty(RecordType::A),
            )],
        ),
        (
            vec![],
            vec![record("web.internal.", DNSClass::ANY, 0, a(1))],
        ),
        (
            vec![],
            vec![record(
                "web.internal.",
                DNSClass::IN,
                0,
                empty(RecordType::AXFR),
            )],
        ),
        (
            vec![],
            vec![record("web.internal.", DNSClass::NONE, 5, a(1))],
        ),
    ];
    for (prerequisites, updates) in formerr {
        let result = parse(&zone(), &prerequisites, &updates);
        assert_eq!(
            result,
            Err(ResponseCode::FormErr),
            "{prerequisites:?} {updates:?}"
        );
    }
    let outside = [record("web.example.", DNSClass::IN, 60, a(1))];
    assert_eq!(parse(&zone(), &[], &outside), Err(ResponseCode::NotZone));
    assert_eq!(parse(&zone(), &outside[..0], &[]), Ok(Parsed::default()));
    let prerequisite = [record(
        "internal.example.",
        DNSClass::ANY,
        0,
        empty(RecordType::ANY),
    )];
    assert_eq!(
        parse(&zone(), &prerequisite, &[]),
        Err(ResponseCode::NotZone)
    );
}
