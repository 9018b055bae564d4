//! `muster dig NAME [TYPE]`: one real query to muster's DNS port (UDP, again over TCP when
//! the answer is truncated), the answer printed, then the REST view of the service that
//! explains it (`explain.rs`). With `--subnet CIDR` the query carries an EDNS Client
//! Subnet option (RFC 7871), so muster answers as it would a client in that subnet (a
//! resolver forwarding for it) and the explanation is that client's.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ipnet::IpNet;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::explain::{self, Answered, Kind, Scope, Verdict};
use super::http::{Api, service_path};
use super::read::{items, policy_line};
use super::settings::{Common, DEFAULT_DNS, Output};
use super::table::Table;
use super::{Failure, print_json};

/// How long one UDP try waits; two tries, then TCP's own wait.
const TRY_TIMEOUT: Duration = Duration::from_secs(2);
/// The EDNS payload size asked for, as resolvers send it (DNS flag day 2020).
const PAYLOAD: u16 = 1232;

/// `muster dig`'s arguments.
#[derive(clap::Args)]
pub struct Dig {
    /// The name to ask for: svc.ns, id.svc.ns, _svc._tcp.ns, _port._tcp.svc.ns.
    name: String,
    /// The record type: A, AAAA, SRV, ...
    #[arg(default_value = "A", value_name = "TYPE")]
    qtype: String,
    /// muster's DNS address [default: `dns` in the client config, else 127.0.0.1:8053].
    #[arg(long, env = "MUSTER_DNS_ADDR", value_name = "HOST:PORT")]
    dns: Option<String>,
    /// Ask as a client in this subnet (EDNS Client Subnet): a zone-aware service answers
    /// from that client's zone, and the explanation is that client's.
    #[arg(long, value_name = "CIDR")]
    subnet: Option<IpNet>,
    #[command(flatten)]
    common: Common,
}

/// One exchange: the response and how it travelled.
struct Exchange {
    response: Message,
    transport: &'static str,
    elapsed: Duration,
}

pub async fn dig(args: Dig) -> Result<(), Failure> {
    let qtype = RecordType::from_str(&args.qtype.to_ascii_uppercase())
        .map_err(|_| Failure::Usage(format!("{:?} is not a record type", args.qtype)))?;
    let mut name = Name::from_ascii(&args.name)
        .map_err(|e| Failure::Usage(format!("{:?} is not a domain name: {e}", args.name)))?;
    name.set_fqdn(true);
    let api = args.common.connect()?;
    let server = args
        .dns
        .clone()
        .or_else(|| api.dns.clone())
        .unwrap_or_else(|| DEFAULT_DNS.to_owned());
    let server = resolve(&server).await?;
    let subnet = args.subnet.map(|net| ClientSubnet::from(net.trunc()));
    let exchange = ask(server, &name, qtype, subnet).await?;
    let records = |section: &[Record]| section.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    let response = &exchange.response;
    let rcode = mnemonic(u16::from(response.metadata.response_code));
    let answered = answered(&response.answers);
    let kind = match qtype {
        RecordType::A => Kind::A,
        RecordType::AAAA => Kind::Aaaa,
        RecordType::SRV => Kind::Srv,
        _ => Kind::Other,
    };
    let summary = format!(
        "{name} {qtype}: {rcode}{}, {} answer record{}, over {} from {server} in {:.1} ms",
        if response.metadata.authoritative {
            ", aa"
        } else {
            ""
        },
        response.answers.len(),
        if response.answers.len() == 1 { "" } else { "s" },
        exchange.transport,
        exchange.elapsed.as_secs_f64() * 1000.0,
    );
    let mut report = json!({
        "name": args.name, "type": qtype.to_string(), "rcode": rcode,
        "transport": exchange.transport, "server": server.to_string(),
        "answer": records(&response.answers), "authority": records(&response.authorities),
    });
    let asked_as = args.subnet.map(|net| {
        report["subnet"] = json!(net.trunc().to_string());
        subnet_note(net.trunc(), response)
    });
    if api.output == Output::Table {
        println!(";; {summary}");
        for record in response.answers.iter().chain(&response.authorities) {
            println!("{record}");
        }
    }
    let explained = explanation(&api, &args.name, kind, &answered, &mut report).await;
    if let Some(note) = asked_as {
        let notes = report["notes"].as_array_mut();
        match notes {
            Some(notes) => notes.insert(0, json!(note)),
            None => report["notes"] = json!([note]),
        }
    }
    if api.output == Output::Json {
        print_json(&report);
    } else {
        print_explanation(&report);
    }
    explained
}

/// Looks the name up through the REST API and adds `namespace`, `service`, `instances`
/// and `notes` to the report. An unreachable API is an error after the answer printed.
async fn explanation(
    api: &Api,
    name: &str,
    kind: Kind,
    answered: &[Answered],
    report: &mut Value,
) -> Result<(), Failure> {
    let mut notes = Vec::new();
    let namespaces = api.get("/v1/namespaces").await?;
    let names: Vec<String> = items(&namespaces, "namespaces")
        .iter()
        .filter_map(|ns| ns["name"].as_str().map(str::to_owned))
        .collect();
    let Some((namespace, labels)) = explain::locate(name, &names) else {
        notes.push(
            "outside every namespace: REFUSED, unless [forward] has upstreams (then the \
             upstream's answer)"
                .to_owned(),
        );
        report["notes"] = json!(notes);
        return Ok(());
    };
    report["namespace"] = json!(namespace);
    let scope = match explain::scope(&labels) {
        Ok(scope) => scope,
        Err(why) => {
            notes.push(format!("{why}: NXDOMAIN"));
            report["notes"] = json!(notes);
            return Ok(());
        }
    };
    let Some(service_name) = scope.service() else {
        notes.push("the namespace apex: SOA and NS".to_owned());
        report["notes"] = json!(notes);
        return Ok(());
    };
    report["service"] = json!(service_name);
    let service = match api.get(&service_path(namespace, service_name)).await {
        Ok(service) => service,
        Err(Failure::Rejected(404, _)) => {
            notes.push(format!(
                "the API has no service {service_name:?} in {namespace}: NXDOMAIN"
            ));
            report["notes"] = json!(notes);
            return Ok(());
        }
        Err(other) => return Err(other),
    };
    report["policy"] = service["policy"].clone();
    if let Scope::Service {
        protocol: Some(protocol),
        ..
    } = &scope
        && service["policy"]["protocol"].as_str() != Some(protocol.as_str())
    {
        notes.push(format!(
            "the service's protocol is {}, not {protocol}: no SRV records at this name",
            service["policy"]["protocol"]
        ));
    }
    let verdicts = explain::explain(&service, &scope, kind, answered);
    if let Scope::Instance { label, .. } = &scope
        && verdicts.is_empty()
    {
        notes.push(format!(
            "no instance of {service_name} has the DNS label {label:?}"
        ));
    }
    if !verdicts.is_empty() && verdicts.iter().all(|v| !v.served) {
        notes.push(
            "no instance is served here: an empty service is NXDOMAIN, a name without the \
             type NODATA (docs/dns.md)"
                .to_owned(),
        );
    }
    report["instances"] = json!(verdicts);
    report["notes"] = json!(notes);
    Ok(())
}

fn print_explanation(report: &Value) {
    if let (Some(service), Some(namespace)) =
        (report["service"].as_str(), report["namespace"].as_str())
    {
        let policy = policy_line(&report["policy"]);
        println!("\nservice {service} in {namespace}: {policy}");
    }
    let verdicts: Vec<Verdict> = items(report, "instances")
        .iter()
        .map(|v| Verdict {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            address: v["address"].as_str().unwrap_or_default().to_owned(),
            served: v["served"] == true,
            reason: v["reason"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    if !verdicts.is_empty() {
        let mut table = Table::new(&["INSTANCE", "ADDRESS", "VERDICT", "WHY"]);
        for v in verdicts {
            let verdict = if v.served { "served" } else { "left out" };
            table.row(vec![v.id, v.address, verdict.to_owned(), v.reason]);
        }
        print!("\n{}", table.render());
    }
    for note in items(report, "notes") {
        println!(";; {}", note.as_str().unwrap_or_default());
    }
}

/// What the answer says about the subnet asked as: the prefix muster's answer holds for
/// (the SCOPE it echoed), or that it did not tailor the answer to it.
fn subnet_note(subnet: IpNet, response: &Message) -> String {
    let echoed = response
        .edns
        .as_ref()
        .and_then(|edns| edns.option(EdnsCode::Subnet));
    match echoed {
        // The address comes back as sent; SCOPE says how much of it the answer is for.
        Some(EdnsOption::Subnet(echo)) => {
            let scope = IpNet::new(echo.addr(), echo.scope_prefix()).map_or_else(
                |_| format!("/{}", echo.scope_prefix()),
                |n| n.trunc().to_string(),
            );
            format!(
                "asked as a client in {subnet} (EDNS Client Subnet); the answer holds for {scope}"
            )
        }
        _ => format!(
            "asked as a client in {subnet} (EDNS Client Subnet); the answer does not depend \
             on it (not echoed: the service is not zone-aware)"
        ),
    }
}

/// What the answer section says about instances (the additional section's glue is not
/// an answer).
fn answered(answers: &[Record]) -> Vec<Answered> {
    let label = |name: &Name| {
        let text = name.to_ascii().to_ascii_lowercase();
        text.split('.').next().unwrap_or_default().to_owned()
    };
    answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(Answered::Address(a.0.into())),
            RData::AAAA(aaaa) => Some(Answered::Address(aaaa.0.into())),
            RData::SRV(srv) => Some(Answered::Target(label(&srv.target))),
            RData::CNAME(cname) => Some(Answered::Alias(
                cname
                    .0
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            )),
            _ => None,
        })
        .collect()
}

/// The rcode as dig and the RFCs write it (hickory's Display is prose: "No Error").
fn mnemonic(rcode: u16) -> String {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        other => return format!("RCODE{other}"),
    };
    name.to_owned()
}

async fn resolve(server: &str) -> Result<SocketAddr, Failure> {
    let usage = || Failure::Usage(format!("--dns {server:?}: expected HOST:PORT"));
    let mut addresses = tokio::net::lookup_host(server).await.map_err(|_| usage())?;
    addresses.next().ok_or_else(usage)
}

/// Asks over UDP (two tries), then over TCP if the answer came truncated; for a client
/// in `subnet` when given.
async fn ask(
    server: SocketAddr,
    name: &Name,
    qtype: RecordType,
    subnet: Option<ClientSubnet>,
) -> Result<Exchange, Failure> {
    let started = Instant::now();
    let mut query = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(PAYLOAD);
    if let Some(subnet) = subnet {
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
    }
    query.set_edns(edns);
    let wire = query
        .to_vec()
        .map_err(|e| Failure::Usage(format!("{name}: cannot be asked: {e}")))?;
    let unreachable = |what: String| {
        Failure::Unreachable(format!(
            "no DNS answer from {server}: {what}. Is muster's DNS there? The address comes \
             from --dns, MUSTER_DNS_ADDR or `dns` in the client config"
        ))
    };
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    socket
        .connect(server)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut buffer = vec![0u8; 65535];
    for _ in 0..2 {
        socket
            .send(&wire)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + TRY_TIMEOUT;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await;
            let length = match received {
                Err(_) => break,
                Ok(Err(error)) => return Err(unreachable(error.to_string())),
                Ok(Ok(length)) => length,
            };
            let Some(response) = reply_to(&query, &buffer[..length]) else {
                continue;
            };
            if response.metadata.truncation {
                return ask_tcp(server, &query, &wire, started).await;
            }
            return Ok(Exchange {
                response,
                transport: "UDP",
                elapsed: started.elapsed(),
            });
        }
    }
    Err(unreachable(format!(
        "two tries over UDP, each waited {}",
        humantime::format_duration(TRY_TIMEOUT)
    )))
}

/// The reply to `query` in `bytes`, or None for a stray datagram.
fn reply_to(query: &Message, bytes: &[u8]) -> Option<Message> {
    let response = Message::from_vec(bytes).ok()?;
    let ours = response.metadata.id == query.metadata.id
        && response.metadata.message_type == MessageType::Response;
    ours.then_some(response)
}

async fn ask_tcp(
    server: SocketAddr,
    query: &Message,
    wire: &[u8],
    started: Instant,
) -> Result<Exchange, Failure> {
    let failed = |what: String| {
        Failure::Unreachable(format!(
            "the UDP answer from {server} was truncated, and over TCP: {what}"
        ))
    };
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        let length = u16::try_from(wire.len()).unwrap_or(u16::MAX);
        stream.write_all(&length.to_be_bytes()).await?;
        stream.write_all(wire).await?;
        let length = stream.read_u16().await?;
        let mut buffer = vec![0u8; usize::from(length)];
        stream.read_exact(&mut buffer).await?;
        Ok::<_, std::io::Error>(buffer)
    };
    let bytes = tokio::time::timeout(TRY_TIMEOUT, exchange)
        .await
        .map_err(|_| failed("no answer in time".to_owned()))?
        .map_err(|e| failed(e.to_string()))?;
    let response = reply_to(query, &bytes)
        .ok_or_else(|| failed("the reply is not a DNS answer to the query".to_owned()))?;
    Ok(Exchange {
        response,
        transport: "TCP (UDP was truncated)",
        elapsed: started.elapsed(),
    })
}
