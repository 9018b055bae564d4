//! The DNS case table (`tests/fixtures/dns_cases.txt`), run three ways: against the pure
//! answer function, over UDP and over TCP.

use std::net::SocketAddr;
use std::str::FromStr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use muster::dns::locality::{Client, ClientZones};
use muster::dns::{QueryName, ZoneSnapshot, answer};

use super::support::{self, ask_tcp, ask_udp, query};

const CASES: &str = include_str!("../fixtures/dns_cases.txt");
const CONFIG: &str = include_str!("../fixtures/config.toml");
const INSTANCES: &str = include_str!("../fixtures/instances.toml");

#[derive(Debug, Default)]
struct Case {
    line: usize,
    name: String,
    qtype: String,
    rcode: String,
    aa: Option<bool>,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
    answers: Option<usize>,
}

/// What a response says, in the table's terms.
#[derive(Debug, PartialEq)]
struct Seen {
    rcode: String,
    aa: bool,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut case: Option<Case> = None;
    for (number, line) in CASES.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            cases.extend(case.take());
            continue;
        }
        let current = case.get_or_insert_with(|| Case {
            line: number + 1,
            ..Case::default()
        });
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "query" => {
                let (name, qtype) = rest.split_once(' ').expect("query NAME TYPE");
                current.name = name.to_owned();
                current.qtype = qtype.to_owned();
            }
            "rcode" => current.rcode = rest.to_owned(),
            "aa" => current.aa = Some(true),
            "noaa" => current.aa = Some(false),
            "answer" => current.answer.push(normalize(rest)),
            "authority" => current.authority.push(normalize(rest)),
            "additional" => current.additional.push(normalize(rest)),
            "answers" => current.answers = Some(rest.parse().unwrap()),
            other => panic!("line {}: unknown keyword {other:?}", number + 1),
        }
    }
    cases.extend(case);
    cases
}

/// Record text with single spaces and the SOA serial replaced by `SERIAL` (it moves).
fn normalize(record: &str) -> String {
    let mut fields: Vec<&str> = record.split_whitespace().collect();
    if fields.get(3) == Some(&"SOA") && fields.len() > 6 {
        fields[6] = "SERIAL";
    }
    fields.join(" ")
}

/// Record texts, sorted, with owner names lowercased: names compare case-insensitively,
/// and UDP answers' owners point at the question, so they carry the client's case (as
/// Knot's and NSD's do) where TCP answers spell them as the zone does.
fn texts<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<String> {
    let mut texts: Vec<String> = records
        .into_iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| {
            let mut r = r.clone();
            r.name = r.name.to_lowercase();
            normalize(&r.to_string())
        })
        .collect();
    texts.sort();
    texts
}

fn check(case: &Case, seen: Seen, how: &str) {
    let context = format!(
        "{how}: {} {} (dns_cases.txt line {})",
        case.name, case.qtype, case.line
    );
    assert_eq!(seen.rcode, case.rcode, "{context}: rcode");
    if let Some(aa) = case.aa {
        assert_eq!(seen.aa, aa, "{context}: AA");
    }
    match case.answers {
        Some(count) => assert_eq!(seen.answer.len(), count, "{context}: answer count"),
        None => {
            let mut expected = case.answer.clone();
            expected.sort();
            assert_eq!(seen.answer, expected, "{context}: answer");
            let mut expected = case.additional.clone();
            expected.sort();
            assert_eq!(seen.additional, expected, "{context}: additional");
        }
    }
    let mut expected = case.authority.clone();
    expected.sort();
    assert_eq!(seen.authority, expected, "{context}: authority");
}

fn rcode_text(rcode: ResponseCode) -> String {
    rcode
        .to_str()
        .to_ascii_uppercase()
        .replace("NO ERROR", "NOERROR")
}

fn seen_on_wire(response: &Message, case: &Case) -> Seen {
    assert_eq!(
        response.queries[0].name().to_string(),
        case.name,
        "the question is echoed in the client's case"
    );
    Seen {
        rcode: wire_rcode(response),
        aa: response.metadata.authoritative,
        answer: texts(&response.answers),
        authority: texts(&response.authorities),
        additional: texts(&response.additionals),
    }
}

fn wire_rcode(response: &Message) -> String {
    match response.metadata.response_code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::NotImp => "NOTIMP",
        other => return rcode_text(other),
    }
    .to_owned()
}

#[tokio::test]
async fn the_answer_function() {
    let instances = muster::sources::file::parse(INSTANCES, false).unwrap();
    let view = support::zone(CONFIG, instances).await;
    let zone: &ZoneSnapshot = &view.load();
    let zones = ClientZones::default();
    for case in cases() {
        let name = LowerName::new(&Name::from_str(&case.name).unwrap());
        let name = QueryName::from_labels(name.iter()).unwrap();
        let qtype = RecordType::from_str(&case.qtype).unwrap();
        let found = answer(
            zone,
            &name,
            qtype,
            &Client::unknown(&zones),
            &mut rand::rng(),
        );
        let seen = Seen {
            rcode: wire_rcode_of(found.rcode),
            aa: found.authoritative,
            answer: texts(found.answers.iter()),
            authority: texts(found.authorities.iter()),
            additional: texts(found.additionals.iter()),
        };
        check(&case, seen, "answer()");
    }
}

fn wire_rcode_of(rcode: ResponseCode) -> String {
    let mut message = Message::new(
        0,
        hickory_proto::op::MessageType::Response,
        hickory_proto::op::OpCode::Query,
    );
    message.metadata.response_code = rcode;
    wire_rcode(&message)
}

async fn serve_fixture() -> (support::Muster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let instances = dir.path().join("instances.toml");
    std::fs::write(&instances, INSTANCES).unwrap();
    let config = format!(
        "{CONFIG}\n[[sources.file]]\npath = {:?}\n",
        instances.display().to_string()
    );
    (support::start(&config, &dir.path().join("data")).await, dir)
}

fn run_on_wire(server: SocketAddr, ask: fn(SocketAddr, &Message) -> Message, how: &str) {
    for case in cases() {
        let qtype = RecordType::from_str(&case.qtype).unwrap();
        let response = ask(server, &query(&case.name, qtype));
        check(&case, seen_on_wire(&response, &case), how);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_udp_and_tcp() {
    let (muster, _dir) = serve_fixture().await;
    let server = muster.dns;
    tokio::task::spawn_blocking(move || {
        run_on_wire(server, ask_udp, "UDP");
        run_on_wire(server, ask_tcp, "TCP");
    })
    .await
    .unwrap();
}
