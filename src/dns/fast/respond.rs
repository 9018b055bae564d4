//! Writing a response from pre-encoded records, or saying the full path must answer.
//!
//! The response is the request's header (ID kept; QR and AA set; RD and CD copied; RCODE
//! patched; counts set), the request's question bytes as they came (the client's case),
//! then records copied from the zone: answer owners are the pointer `C0 0C` to the
//! question, glue owners point at their SRV target, the SOA of negative answers is
//! written in full. An OPT record follows when the query had one, advertising the
//! configured payload size with DO copied and NSID when asked for, as the full path does.
//!
//! Sizes follow the full path's rule: a response is answered here only if its
//! uncompressed size bound fits the client's payload (over TCP, a whole message), or for
//! A and AAAA records its exact size as the full path encodes it. A UDP
//! pick that cannot fit even at its smallest encoding gets the full path's truncated
//! response here (no records, TC set), without building it; one that might fit goes to
//! the full path, which encodes it to find out.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use rand::rngs::SmallRng;

use std::net::IpAddr;

use super::batch::BATCH;
use super::query::{Edns, OPTION_CLIENT_SUBNET, OPTION_NSID, parse};
use crate::dns::answer::{Pick, Plan, plan};
use crate::dns::locality::{ClientZones, Subnet};
use crate::dns::qname::QueryName;
use crate::dns::service_index::prefetch;
use crate::dns::service_records::{PickKind, ServiceRecords};
use crate::dns::wire::{
    HEADER_LEN, MAX_POINTER_OFFSET, MIN_UDP_PAYLOAD, OPT_LEN, QUESTION_POINTER,
};
use crate::dns::zone::{NamespaceRecords, ZoneSnapshot};

const FLAG_QR: u8 = 0x80;
const FLAG_RA: u8 = 0x80;
const FLAG_AA: u8 = 0x04;
const FLAG_TC: u8 = 0x02;
const FLAG_RD: u8 = 0x01;
const FLAG_CD: u8 = 0x10;

/// How the full path answers, which the fast path must match.
#[derive(Clone, Copy, Debug)]
pub struct Settings<'a> {
    /// The largest UDP response (at least 512), and the payload size our OPT advertises.
    pub max_udp_payload: u16,
    /// Whether responses set RA (muster forwards names outside its namespaces).
    pub recursion_available: bool,
    /// Over TCP: a response may take a whole message (65,535 bytes), whatever the
    /// client's payload size, as the full path sends it untruncated over TCP.
    pub over_tcp: bool,
    /// What NSID queries are answered with (`[dns] nsid`); empty: NSID is ignored.
    pub nsid: &'a [u8],
    /// `[[zones]]`, where zone-aware services' clients are.
    pub zones: &'a ClientZones,
}

impl Settings<'_> {
    /// The NSID option's data answering `edns`, if it gets one.
    fn nsid(&self, edns: Edns) -> Option<&[u8]> {
        (edns.nsid && !self.nsid.is_empty()).then_some(self.nsid)
    }
}

/// What the fast path did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Handling {
    /// The response is in the output buffer.
    Answered {
        qtype: RecordType,
        rcode: ResponseCode,
        /// Sent empty with TC set: the answer cannot fit the client's payload size.
        truncated: bool,
    },
    /// Not something the fast path answers: the full path must.
    HandOff,
}

/// Per-thread working memory, allocated once so answering allocates nothing.
pub struct Scratch {
    pub rng: SmallRng,
    name: QueryName,
    chosen: Vec<usize>,
    /// The weighted sampler's scratch.
    sorted: Vec<usize>,
    /// Where each picked SRV record's target name starts in the response.
    targets: Vec<usize>,
}

impl Scratch {
    /// Buffers for one thread; `rng` draws its random picks.
    pub fn new(rng: SmallRng) -> Self {
        Self {
            rng,
            name: QueryName::default(),
            chosen: Vec::with_capacity(64),
            sorted: Vec::with_capacity(64),
            targets: Vec::with_capacity(64),
        }
    }
}

/// Below this many services in the zone a batch is not warmed: the index and the
/// records' first lines stay in a core's cache (2 MiB of L2 here), and warming would only
/// parse and look up each query once more (1-2% of the CPU at 1,000 services x 4).
const WARM_MIN_SERVICES: usize = 2048;

/// Before a batch of `packets` is answered: starts loading what answering them reads
/// from the zone, one dependent step at a time for all of them (the index slot of each
/// query's service, then its records, then what a pick reads first), so the batch
/// waits for its cache misses together instead of one after another. With 100,000
/// services these are misses at every step; answering then finds them cached.
pub fn warm<'p>(
    zone: &ZoneSnapshot,
    packets: impl Iterator<Item = &'p [u8]>,
    scratch: &mut Scratch,
) {
    if zone.services() < WARM_MIN_SERVICES {
        return;
    }
    let mut wanted: [Option<Wanted>; BATCH] = [None; BATCH];
    for (packet, wanted) in packets.zip(&mut wanted) {
        if let Some((namespace, label)) = service_named(zone, packet, &mut scratch.name) {
            let hash = namespace.services.hash(label);
            namespace.services.prefetch(hash);
            *wanted = Wanted::new(namespace, label, hash);
        }
    }
    let mut found: [Option<&ServiceRecords>; BATCH] = [None; BATCH];
    for (wanted, found) in wanted.iter().flatten().zip(&mut found) {
        *found = wanted
            .namespace
            .services
            .get_hashed(wanted.label(), wanted.hash)
            .map(|records| &**records);
        if let Some(records) = found {
            prefetch(*records, 4);
        }
    }
    for records in found.into_iter().flatten() {
        records.prefetch_picks();
    }
}

/// The service a query of the batch names, kept between [`warm`]'s steps so each query
/// is parsed and hashed there once.
#[derive(Clone, Copy)]
struct Wanted<'z> {
    namespace: &'z NamespaceRecords,
    hash: u64,
    len: u8,
    label: [u8; 63],
}

impl<'z> Wanted<'z> {
    /// `None` for a label longer than a DNS label can be (parsing refuses those).
    fn new(namespace: &'z NamespaceRecords, label: &[u8], hash: u64) -> Option<Self> {
        let mut wanted = Wanted {
            namespace,
            hash,
            len: u8::try_from(label.len()).ok()?,
            label: [0; 63],
        };
        wanted.label.get_mut(..label.len())?.copy_from_slice(label);
        Some(wanted)
    }

    fn label(&self) -> &[u8] {
        &self.label[..usize::from(self.len)]
    }
}

/// The namespace `packet` asks about and the label of the service its answer comes
/// from, for the shapes [`plan`] looks a service up for: `svc.ns`, `iid.svc.ns`,
/// `_svc._tcp.ns` and the three-label names below a service.
fn service_named<'z, 'n>(
    zone: &'z ZoneSnapshot,
    packet: &[u8],
    name: &'n mut QueryName,
) -> Option<(&'z NamespaceRecords, &'n [u8])> {
    parse(packet, name)?;
    let namespace = zone.namespace_of(name)?;
    let label = match name.label_count() - namespace.origin_depth() {
        1 => name.label(0),
        2 => match name.label(0).strip_prefix(b"_") {
            Some(alias) if namespace.protocol_in_use(name.label(1)) => alias,
            _ => name.label(1),
        },
        3 => name.label(2),
        _ => return None,
    };
    Some((namespace, label))
}

/// Answers `packet`, from `source`, from `zone` into `out` if it can.
pub fn respond(
    zone: &ZoneSnapshot,
    packet: &[u8],
    source: IpAddr,
    settings: Settings<'_>,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Handling {
    let Some(query) = parse(packet, &mut scratch.name) else {
        return Handling::HandOff;
    };
    let qtype = RecordType::from(query.qtype);
    let subnet = query.edns.and_then(|edns| edns.subnet);
    let plan = plan(
        zone,
        &scratch.name,
        qtype,
        &settings.zones.client(source, subnet),
    );
    let max_payload = settings.max_udp_payload;
    let limit = usize::from(match query.edns {
        _ if settings.over_tcp => u16::MAX,
        Some(edns) => edns.payload.clamp(MIN_UDP_PAYLOAD, max_payload),
        None => MIN_UDP_PAYLOAD,
    });
    let nsid = query.edns.and_then(|edns| settings.nsid(edns));
    let nsid_option_len = nsid.map_or(0, |id| 4 + id.len());
    // The full path's bound: header, question, our OPT record (with the options it may
    // carry), records uncompressed.
    let options_bound = nsid_option_len + subnet.map_or(0, client_subnet_len);
    let budget = limit.saturating_sub(query.question_end + OPT_LEN + options_bound);

    // A Client Subnet is echoed when it chose the answer (RFC 7871 §7.2.1).
    let echo = match &plan {
        Plan::Pick(pick) => subnet.zip(pick.scope),
        _ => None,
    };
    let echo_len = echo.map_or(0, |(subnet, _)| client_subnet_len(subnet));
    // The OPT record as written below, which the full path's response has too.
    let opt_len = query
        .edns
        .map_or(0, |_| OPT_LEN + nsid_option_len + echo_len);
    // Room for A and AAAA records as the full path writes them (see `put_pick`): it
    // writes the first answer's owner name in full, then points at it; ours all point at
    // the question.
    let first_owner = (query.question_end - HEADER_LEN - 4).saturating_sub(2);
    let room = limit.saturating_sub(query.question_end + opt_len + first_owner);
    out.clear();
    out.extend_from_slice(&packet[..query.question_end]);
    let (rcode, counts, truncated) = match plan {
        Plan::Refused | Plan::ServFail => return Handling::HandOff,
        Plan::Negative(rcode, namespace) => {
            let soa = namespace.soa.view();
            if soa.len() > budget {
                return Handling::HandOff;
            }
            soa.put_full(out);
            (rcode, [0, 1, 0], false)
        }
        Plan::Single(rr) => {
            if rr.len() > budget {
                return Handling::HandOff;
            }
            rr.put_with_owner_at(out, QUESTION_POINTER);
            (ResponseCode::NoError, [1, 0, 0], false)
        }
        Plan::Pick(pick) => match put_pick(&pick, [budget, room], scratch, out) {
            Some(counts) => (ResponseCode::NoError, counts, false),
            // What the full path would encode only to find it too large: a client asking
            // for a large service whole must not cost as much as building its answer.
            // Asked only of what does not fit here, so answers that do pay nothing more.
            None if !settings.over_tcp
                && pick
                    .least_len()
                    .saturating_add(query.question_end + opt_len)
                    > limit =>
            {
                out.truncate(query.question_end);
                (ResponseCode::NoError, [0, 0, 0], true)
            }
            None => return Handling::HandOff,
        },
    };

    let mut additionals = counts[2];
    if let Some(edns) = query.edns {
        // Root owner, type OPT, our payload size, extended RCODE and version 0, DO as the
        // query's, then the options' length and NSID if it is answered. `[dns] nsid` is at
        // most 128 bytes.
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&max_payload.to_be_bytes());
        out.extend_from_slice(&[0, 0, if edns.dnssec_ok { 0x80 } else { 0 }, 0]);
        out.extend_from_slice(&((nsid_option_len + echo_len) as u16).to_be_bytes());
        if let Some(id) = nsid {
            out.extend_from_slice(&OPTION_NSID.to_be_bytes());
            out.extend_from_slice(&(id.len() as u16).to_be_bytes());
            out.extend_from_slice(id);
        }
        if let Some((subnet, scope)) = echo {
            put_client_subnet(subnet, scope, out);
        }
        additionals += 1;
    }
    let tc = if truncated { FLAG_TC } else { 0 };
    out[2] = FLAG_QR | FLAG_AA | tc | (packet[2] & FLAG_RD);
    let ra = if settings.recursion_available {
        FLAG_RA
    } else {
        0
    };
    out[3] = ra | (packet[3] & FLAG_CD) | (u16::from(rcode) & 0x0F) as u8;
    for (at, count) in [(6, counts[0]), (8, counts[1]), (10, additionals)] {
        out[at..at + 2].copy_from_slice(&count.to_be_bytes());
    }
    Handling::Answered {
        qtype,
        rcode,
        truncated,
    }
}

/// The bytes of a Client Subnet option echoing `subnet`: code, length, family, the two
/// prefix lengths, then the address bytes the source prefix covers.
fn client_subnet_len(subnet: Subnet) -> usize {
    8 + usize::from(subnet.source_prefix.div_ceil(8))
}

/// Writes the Client Subnet option answering `subnet`, with SCOPE PREFIX-LENGTH `scope`.
fn put_client_subnet(subnet: Subnet, scope: u8, out: &mut Vec<u8>) {
    let covered = usize::from(subnet.source_prefix.div_ceil(8));
    out.extend_from_slice(&OPTION_CLIENT_SUBNET.to_be_bytes());
    out.extend_from_slice(&((4 + covered) as u16).to_be_bytes());
    let (family, octets) = match subnet.address {
        IpAddr::V4(ip) => (1u8, ip.to_ipv6_mapped().octets()),
        IpAddr::V6(ip) => (2, ip.octets()),
    };
    out.extend_from_slice(&[0, family, subnet.source_prefix, scope]);
    let start = if family == 1 { 12 } else { 0 };
    out.extend_from_slice(&octets[start..start + covered]);
}

/// Writes a random pick's answers (and glue) if they fit; returns the answer, authority
/// and additional counts. A and AAAA records have one size each (16 and 28 bytes with
/// the owner a pointer), so their exact size must fit `room`, which counts the full
/// path's one longer owner; other records, which the full path may lay out otherwise,
/// go by their size bound, which must fit `budget`.
fn put_pick(
    pick: &Pick<'_>,
    [budget, room]: [usize; 2],
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Option<[u16; 3]> {
    let exact = matches!(pick.kind, PickKind::A | PickKind::Aaaa);
    // A and AAAA records all have one size, which `least_len` counts; every other
    // record's bound is at least 16 bytes. Hopeless picks go before sampling.
    if exact && pick.least_len() > room || !exact && pick.wanted.saturating_mul(16) > budget {
        return None;
    }
    let records = pick.records;
    pick.choose(&mut scratch.rng, &mut scratch.chosen, &mut scratch.sorted);
    if !exact {
        let size: usize = scratch
            .chosen
            .iter()
            .map(|&n| pick.candidates[n].bound())
            .sum();
        if size > budget {
            return None;
        }
    }
    scratch.targets.clear();
    for &n in &scratch.chosen {
        // SRV: owner pointer, type, class, TTL, length, priority, weight, port, target.
        scratch.targets.push(out.len() + 18);
        out.extend_from_slice(records.packed_answer(&pick.candidates[n]));
    }
    let mut additionals = 0u16;
    if pick.has_glue() {
        for (&n, &target) in scratch.chosen.iter().zip(&scratch.targets) {
            if target > MAX_POINTER_OFFSET {
                return None;
            }
            let pointer = (0xC000 | target as u16).to_be_bytes();
            for glue in records.packed_glue(&pick.candidates[n]) {
                out.extend_from_slice(&pointer);
                out.extend_from_slice(&glue[2..]);
                additionals += 1;
            }
        }
    }
    Some([scratch.chosen.len() as u16, 0, additionals])
}
