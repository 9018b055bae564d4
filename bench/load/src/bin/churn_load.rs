//! The churn load of `bench/dns/run --churn N`: REST changes at a fixed rate while dnsperf
//! measures muster. `bench/dns/churn.py` starts it, reads its JSON and checks the end state.
//!
//! `churn_load --http 127.0.0.1:PORT --dns 127.0.0.1:PORT --namespace internal
//! --services S --rate N --clients C --seconds D [--sample-every 20] [--batch B]`
//!
//! Each change is a PUT (new address) or DELETE of the instance `churn` of one service,
//! `/v1/namespaces/NS/services/svcN/instances/churn`. The churned services are min(S, N)
//! services spread evenly over the namespace, taken in turn, so each gets about one change
//! per second and sees PUTs and DELETEs. Client k of C (one thread, one keep-alive
//! connection) owns every C-th of them and sends change j at `start + (j + k / C) * C / N`
//! (the clients take turns, so the changes are spread evenly over time), and the last
//! write to every service is well defined. A service's third round is a DELETE when
//! the service has an address; the others are PUTs of 10.255.0.1 + ((j * C + k) % 65000).
//! The run starts with no churn instance registered (churn.py deletes them after a run).
//! With `--batch B` (at most the services a client owns), each request carries the client's
//! next B changes as one `POST /v1/namespaces/NS/batch`, sent every `B * C / N` seconds.
//!
//! Every `sample-every`-th write is followed at once by a UDP query `churn.svcN.NS A`,
//! which must already show it (muster answers a write only once DNS has it): the address
//! alone, or NXDOMAIN after a DELETE.
//!
//! It prints one JSON object: writes, puts, deletes, errors and stale reads (the first 20
//! of each), read checks, probe timeouts, `write_ms` (p50, p99 and max of the time from
//! sending a request to its answer, which muster sends once DNS answers with it),
//! `slowest` (the 10 slowest requests as [seconds after the start it was sent, ms it
//! took]: stalls that hit every client at once are one slow batch of the log), `requests`
//! (acknowledged), elapsed seconds, and `last`, each service's last acknowledged write (an
//! address, or null after a DELETE).
//!
//! Written in Rust, std only, because the load generator shares dnsperf's core: the Python
//! client it replaces took ~15% of that core at 1,000 changes/s and so cut the queries
//! dnsperf could offer, which the benchmark then reported as muster's QPS drop.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use load::summary::quantile_ms;
use load::{flags, http1};

/// The first address PUTs use; the generated namespace never uses 10.255.x.x.
const FIRST_CHURN_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
/// Examples of errors and stale reads kept in the output.
const EXAMPLES: usize = 20;
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The slowest requests listed in the output, with when they were sent.
const SLOWEST: usize = 10;

struct Options {
    http: String,
    dns: String,
    namespace: String,
    services: u64,
    rate: u64,
    clients: u64,
    seconds: f64,
    sample_every: u64,
    /// Changes per request: 1 sends PUT/DELETE, more send `POST .../batch`.
    batch: u64,
}

fn options() -> Options {
    let mut options = Options {
        http: String::new(),
        dns: String::new(),
        namespace: "internal".into(),
        services: 1000,
        rate: 1000,
        clients: 16,
        seconds: 10.0,
        sample_every: 20,
        batch: 1,
    };
    for (flag, value) in flags::pairs() {
        match flag.as_str() {
            "--http" => options.http = value.text(),
            "--dns" => options.dns = value.text(),
            "--namespace" => options.namespace = value.text(),
            "--services" => options.services = value.number(),
            "--rate" => options.rate = value.number(),
            "--clients" => options.clients = value.number(),
            "--seconds" => options.seconds = value.seconds(),
            "--sample-every" => options.sample_every = value.number().max(1),
            "--batch" => options.batch = value.number().max(1),
            other => flags::unknown(other),
        }
    }
    assert!(
        !options.http.is_empty() && !options.dns.is_empty(),
        "--http and --dns are required"
    );
    assert!(
        options.services > 0 && options.rate > 0,
        "--services and --rate must be positive"
    );
    options.clients = options.clients.clamp(1, options.services.min(options.rate));
    // A batch never holds one service twice: at most the services a client owns.
    options.batch = options
        .batch
        .min(options.services.min(options.rate) / options.clients);
    options
}

/// What the clients found, merged as they go.
#[derive(Default)]
struct Tally {
    writes: u64,
    puts: u64,
    deletes: u64,
    errors: Vec<String>,
    read_checks: u64,
    stale_reads: Vec<String>,
    probe_timeouts: u64,
    /// How long each acknowledged request took, sent to response read.
    write_times: Vec<Duration>,
    /// The slowest requests: (sent, seconds after the start; took).
    slowest: Vec<(Duration, Duration)>,
    /// Service index → its last acknowledged write (None: deleted).
    last: BTreeMap<u64, Option<Ipv4Addr>>,
}

fn main() {
    let options = options();
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(options.seconds);
    std::thread::scope(|scope| {
        for k in 0..options.clients {
            let (options, tally) = (&options, &tally);
            scope.spawn(move || client(options, k, started, deadline, tally));
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut tally = tally.into_inner().expect("no client panicked");
    tally.write_times.sort();
    print_json(&tally, elapsed);
}

/// Client `k`: its share of the services, paced to its due times until `deadline`.
fn client(options: &Options, k: u64, started: Instant, deadline: Instant, tally: &Mutex<Tally>) {
    let churned = options.services.min(options.rate);
    let owned: Vec<u64> = (0..churned)
        .map(|n| n * options.services / churned)
        .skip(k as usize)
        .step_by(options.clients as usize)
        .collect();
    let batch = options.batch;
    let interval = Duration::from_secs_f64((options.clients * batch) as f64 / options.rate as f64);
    let probe = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    probe
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .expect("a timeout");
    // Opened before the first change is due, so no write's time includes a handshake.
    let mut connection = http1::Connection::open(&options.http).ok();
    let mut present = BTreeMap::new();
    for j in 0u64.. {
        // Clients take turns, k/C of an interval apart: the rate is spread over time, as
        // independent clients' writes are, rather than C writes arriving at once.
        let due = started + interval.mul_f64(j as f64 + k as f64 / options.clients as f64);
        if due >= deadline {
            break;
        }
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // Change c of this client: service owned[c % len], in its round c / len.
        let changes: Vec<(u64, Option<Ipv4Addr>)> = (j * batch..(j + 1) * batch)
            .map(|c| {
                let service = owned[(c % owned.len() as u64) as usize];
                let round = c / owned.len() as u64;
                let address =
                    if present.get(&service).is_some_and(Option::is_some) && round % 3 == 2 {
                        None
                    } else {
                        let offset = ((c * options.clients + k) % 65_000) as u32;
                        Some(Ipv4Addr::from(u32::from(FIRST_CHURN_ADDRESS) + offset))
                    };
                (service, address)
            })
            .collect();
        let (method, path, body) = request(options, &changes);
        // A connection that failed is dropped; the next change opens a new one.
        let sent = Instant::now();
        let outcome = connection
            .take()
            .map_or_else(|| http1::Connection::open(&options.http), Ok)
            .and_then(|mut open| {
                let status = open.request(method, &path, body.as_deref())?;
                connection = Some(open);
                Ok(status)
            });
        let took = sent.elapsed();
        let acknowledged = matches!(outcome, Ok(200));
        if acknowledged {
            present.extend(changes.iter().copied());
        }
        let (service, address) = changes[0];
        let check = (acknowledged && j % options.sample_every == 0)
            .then(|| read_check(&probe, options, service, address));
        let mut tally = tally.lock().expect("no client panicked");
        tally.writes += changes.len() as u64;
        match outcome {
            Ok(200) => {
                for &(service, address) in &changes {
                    *if address.is_some() {
                        &mut tally.puts
                    } else {
                        &mut tally.deletes
                    } += 1;
                    tally.last.insert(service, address);
                }
                tally.write_times.push(took);
                tally.slowest.push((sent - started, took));
                tally
                    .slowest
                    .sort_by_key(|&(_, took)| std::cmp::Reverse(took));
                tally.slowest.truncate(SLOWEST);
            }
            Ok(status) => note(&mut tally.errors, format!("svc{service}: HTTP {status}")),
            Err(error) => note(&mut tally.errors, format!("svc{service}: {error}")),
        }
        match check {
            Some(Ok(None)) => tally.read_checks += 1,
            Some(Ok(Some(problem))) => {
                tally.read_checks += 1;
                note(&mut tally.stale_reads, problem);
            }
            Some(Err(_)) => tally.probe_timeouts += 1,
            None => {}
        }
    }
}

/// The request that makes `changes` ((service, address or None to delete)): a PUT or
/// DELETE of `churn` for one change, a `POST .../batch` of them all for more.
fn request(
    options: &Options,
    changes: &[(u64, Option<Ipv4Addr>)],
) -> (&'static str, String, Option<String>) {
    let ns = &options.namespace;
    if let [(service, address)] = changes {
        let path = format!("/v1/namespaces/{ns}/services/svc{service}/instances/churn");
        return match address {
            Some(a) => (
                "PUT",
                path,
                Some(format!(r#"{{"ipv4": "{a}", "port": 9000}}"#)),
            ),
            None => ("DELETE", path, None),
        };
    }
    let items: Vec<String> = changes
        .iter()
        .map(|(service, address)| match address {
            Some(a) => format!(
                r#"{{"op": "register", "service": "svc{service}", "id": "churn", "instance": {{"ipv4": "{a}", "port": 9000}}}}"#
            ),
            None => format!(r#"{{"op": "deregister", "service": "svc{service}", "id": "churn"}}"#),
        })
        .collect();
    let body = format!(r#"{{"changes": [{}]}}"#, items.join(", "));
    ("POST", format!("/v1/namespaces/{ns}/batch"), Some(body))
}

fn note(examples: &mut Vec<String>, example: String) {
    if examples.len() < EXAMPLES {
        examples.push(example);
    }
}

/// Asks muster for `churn.svcN.NS A` right after a write; `Some(problem)` when the answer
/// does not show `expected` (None: the instance was deleted, so NXDOMAIN).
fn read_check(
    probe: &UdpSocket,
    options: &Options,
    service: u64,
    expected: Option<Ipv4Addr>,
) -> std::io::Result<Option<String>> {
    let name = format!("churn.svc{service}.{}.", options.namespace);
    let id = (service as u16) ^ 0x5a5a;
    probe.send_to(&query(id, &name), &options.dns)?;
    let mut buffer = [0u8; 4096];
    let response = loop {
        let n = probe.recv(&mut buffer)?;
        // A late answer to an earlier, timed-out probe has another id.
        if n >= 12 && buffer[..2] == id.to_be_bytes() {
            break &buffer[..n];
        }
    };
    let Some((rcode, mut got)) = parse_a_answers(response) else {
        return Ok(Some(format!("{name}: unparsable response")));
    };
    got.sort();
    let problem = match expected {
        None if rcode != 3 => Some(format!(
            "expected NXDOMAIN after DELETE, got rcode {rcode} {got:?}"
        )),
        Some(address) if got != [address] => {
            Some(format!("expected [{address}], got rcode {rcode} {got:?}"))
        }
        _ => None,
    };
    Ok(problem.map(|p| format!("{name}: {p}")))
}

/// A standard query (RD clear, no EDNS) for `name` A.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    message
}

/// The RCODE and the A records of the answer section; None if the message is malformed.
fn parse_a_answers(message: &[u8]) -> Option<(u8, Vec<Ipv4Addr>)> {
    let rcode = message.get(3)? & 0x0f;
    let count = |at: usize| {
        Some(u16::from_be_bytes([
            *message.get(at)?,
            *message.get(at + 1)?,
        ]))
    };
    let (questions, answers) = (count(4)?, count(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(message, at)?;
        let rtype = count(at)?;
        let length = usize::from(count(at + 8)?);
        let data = message.get(at + 10..at + 10 + length)?;
        if rtype == 1 && length == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    Some((rcode, addresses))
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *message.get(at)?;
        match length {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

fn print_json(tally: &Tally, elapsed: f64) {
    let strings = |items: &[String]| {
        let quoted: Vec<String> = items.iter().map(|s| json_string(s)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let last: Vec<String> = tally
        .last
        .iter()
        .map(|(service, address)| match address {
            Some(address) => format!(r#""{service}": "{address}""#),
            None => format!(r#""{service}": null"#),
        })
        .collect();
    let ms = |q| quantile_ms(&tally.write_times, q);
    let slowest: Vec<String> = tally
        .slowest
        .iter()
        .map(|(sent, took)| {
            format!(
                "[{:.3}, {:.3}]",
                sent.as_secs_f64(),
                took.as_secs_f64() * 1000.0
            )
        })
        .collect();
    println!(
        r#"{{"writes": {}, "puts": {}, "deletes": {}, "errors": {}, "read_checks": {}, "stale_reads": {}, "probe_timeouts": {}, "write_ms": {{"p50": {:.3}, "p99": {:.3}, "max": {:.3}}}, "slowest": [{}], "requests": {}, "elapsed": {elapsed:.3}, "last": {{{}}}}}"#,
        tally.writes,
        tally.puts,
        tally.deletes,
        strings(&tally.errors),
        tally.read_checks,
        strings(&tally.stale_reads),
        tally.probe_timeouts,
        ms(0.5),
        ms(0.99),
        ms(1.0),
        slowest.join(", "),
        tally.write_times.len(),
        last.join(", "),
    );
}

fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
