//! The hickory request handler: checks the message, asks [`answer`], encodes.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};

use super::answer::{Answer, answer};
use super::fast;
use super::forward::{Busy, Forwarded, Forwarder};
use super::metrics::DnsMetrics;
use super::qname::QueryName;
use super::rrl::Rrl;
use super::transfer::{self, Rejection, Signer, Transfers};
use super::wire::{HEADER_LEN, MIN_UDP_PAYLOAD, OPT_LEN, record_len_bound};
use super::zone::{NamespaceZone, ZoneView};
use crate::logging::Throttle;
use crate::sources::update::Updates;

/// Answers every query: from the current [`ZoneView`], by zone transfer, or through the
/// upstreams for names outside the namespaces.
#[derive(Clone)]
pub struct Handler {
    zone: ZoneView,
    max_udp_payload: u16,
    metrics: Arc<DnsMetrics>,
    forwarder: Option<Arc<Forwarder>>,
    transfers: Arc<Transfers>,
    /// The OPT records of responses to EDNS queries, by [`Handler::response_edns`]'s
    /// index: DO copied from the query (RFC 3225), NSID when asked for and configured.
    response_edns: Arc<[Edns; 4]>,
    /// The identifier NSID answers with (RFC 5001); empty: NSID is not answered.
    nsid: Arc<[u8]>,
    /// Rate limiting of UDP responses, if configured.
    rrl: Option<Arc<Rrl>>,
    /// Where UPDATE messages go (`None`: every UPDATE is REFUSED).
    updates: Option<Arc<Updates>>,
}

impl Handler {
    pub fn new(
        zone: ZoneView,
        max_udp_payload: u16,
        metrics: Arc<DnsMetrics>,
        forwarder: Option<Forwarder>,
        transfers: Transfers,
    ) -> Self {
        let max_udp_payload = max_udp_payload.max(MIN_UDP_PAYLOAD);
        Self {
            zone,
            max_udp_payload,
            response_edns: Arc::new(response_opts(max_udp_payload, &[])),
            nsid: Arc::from([]),
            metrics,
            forwarder: forwarder.map(Arc::new),
            transfers: Arc::new(transfers),
            rrl: None,
            updates: None,
        }
    }

    /// The same handler, whose UDP responses `rrl` limits (`None`: not limited).
    pub fn with_rrl(self, rrl: Option<Rrl>) -> Self {
        Self {
            rrl: rrl.map(Arc::new),
            ..self
        }
    }

    /// The same handler, sending UPDATE messages (RFC 2136) to `updates`.
    pub fn with_updates(self, updates: Updates) -> Self {
        Self {
            updates: Some(Arc::new(updates)),
            ..self
        }
    }

    /// The same handler, answering NSID queries with `nsid` (empty: NSID is ignored).
    /// `[dns] nsid` is at most 128 bytes, which an OPT record holds.
    pub fn with_nsid(self, nsid: &[u8]) -> Self {
        Self {
            response_edns: Arc::new(response_opts(self.max_udp_payload, nsid)),
            nsid: Arc::from(nsid),
            ..self
        }
    }

    /// The limiter of UDP responses, if any (the UDP listeners apply it).
    pub(super) fn rrl(&self) -> Option<&Rrl> {
        self.rrl.as_deref()
    }

    /// The zone this handler answers from (the fast path answers from the same one).
    pub(super) fn zone(&self) -> &ZoneView {
        &self.zone
    }

    /// What the fast path must answer like: the largest UDP response (also the payload
    /// size an OPT record advertises), and whether RA is set.
    pub(super) fn fast_settings(&self) -> fast::Settings<'_> {
        fast::Settings {
            max_udp_payload: self.max_udp_payload,
            recursion_available: self.recursion_available(),
            over_tcp: false,
            nsid: &self.nsid,
        }
    }

    /// RA: set when muster forwards, as a resolver sets it.
    fn recursion_available(&self) -> bool {
        self.forwarder.is_some()
    }

    pub(super) fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let qtype = request.queries.queries().first().map(|q| q.query_type());
        let op_code = request.metadata.op_code;
        let rejection = if op_code != OpCode::Query && op_code != OpCode::Update {
            Some(ResponseCode::NotImp)
        } else if request.queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.edns.as_ref().is_some_and(malformed_cookie) {
            Some(ResponseCode::FormErr)
        } else {
            None
        };
        // A signed request gets a signed answer, or NOTAUTH with the TSIG error (FORMERR
        // for a malformed MAC) when its TSIG does not verify.
        let (rejection, mut signer, unsigned_tsig) = match self
            .transfers
            .signature(request.as_slice(), &request.additionals)
        {
            Ok(signer) => (rejection, signer, None),
            Err(rejected) => {
                self.tsig_rejected(request, &rejected);
                match rejected {
                    Rejection::Malformed => (Some(ResponseCode::FormErr), None, None),
                    Rejection::Unsigned(tsig) => (Some(ResponseCode::NotAuth), None, Some(tsig)),
                    Rejection::BadTime(signer) => {
                        (Some(ResponseCode::NotAuth), Some(*signer), None)
                    }
                }
            }
        };
        if let Some(rcode) = rejection {
            self.metrics.count(qtype, rcode);
            let mut metadata = response_metadata(&request.metadata);
            metadata.response_code = rcode;
            let build = || self.builder(request).build_no_records(metadata);
            let Some(tsig) = unsigned_tsig else {
                return send_signed(&mut response_handle, build, signer.as_mut(), request).await;
            };
            let mut response = build();
            response.set_signature(tsig);
            return send(&mut response_handle, response, &request.metadata).await;
        }

        if op_code == OpCode::Update {
            return self.update(request, signer, response_handle).await;
        }
        let query = &request.queries.queries()[0];
        let zone = self.zone.load_full();
        let found = if query.query_class() == DNSClass::IN {
            // hickory reads names of at most 255 bytes, which always fit.
            let name = QueryName::from_labels(query.name().iter()).unwrap_or_default();
            match zone.namespace_of(&name) {
                Some(namespace)
                    if transfer::is_transfer(query.query_type())
                        && namespace.origin == *query.name()
                        && zone.synced
                        && self.transfers.enabled() =>
                {
                    return self
                        .transfer(request, namespace, signer, response_handle)
                        .await;
                }
                None => {
                    if let Some(forwarder) = &self.forwarder {
                        return self
                            .forward(request, forwarder, signer, response_handle)
                            .await;
                    }
                }
                Some(_) => {}
            }
            answer(&zone, &name, query.query_type(), &mut rand::rng())
        } else {
            Answer {
                rcode: ResponseCode::Refused,
                ..Answer::default()
            }
        };
        self.metrics.count(qtype, found.rcode);
        let mut metadata = self.metadata(request);
        metadata.authoritative = found.authoritative;
        metadata.response_code = found.rcode;
        self.respond(
            request,
            response_handle,
            metadata,
            [
                &refs(&found.answers),
                &refs(&found.authorities),
                &refs(&found.additionals),
            ],
            signer,
        )
        .await
    }
}

impl Handler {
    /// Counts a request whose TSIG was rejected, and logs it at most once a minute.
    fn tsig_rejected(&self, request: &Request, rejected: &Rejection) {
        static LOG: Throttle = Throttle::new(Duration::from_secs(60));
        let error = rejected.label();
        self.metrics.tsig_rejected(error);
        if let Some(count) = LOG.hit() {
            tracing::warn!(
                count,
                last_source = %request.src(),
                last_error = error,
                "requests rejected for their TSIG (count: since the last such line; at most one line a minute)"
            );
        }
    }

    /// A response to `request`, with an OPT when the request had one.
    fn builder<'q>(&'q self, request: &'q Request) -> MessageResponseBuilder<'q> {
        MessageResponseBuilder::new(
            &request.queries,
            request.edns.as_ref().map(|e| self.response_edns(e)),
        )
    }

    /// The OPT record answering a query's `edns`.
    fn response_edns(&self, edns: &Edns) -> &Edns {
        let nsid = !self.nsid.is_empty() && edns.option(EdnsCode::NSID).is_some();
        &self.response_edns[usize::from(edns.flags().dnssec_ok) | usize::from(nsid) << 1]
    }

    /// Bytes of the OPT record answering `request` (an OPT's size when it has none, as
    /// the size bound has always counted one).
    fn response_opt_len(&self, request: &Request) -> usize {
        let options = request.edns.as_ref().map_or(0, |edns| {
            let options = &self.response_edns(edns).options().options;
            options.iter().map(|(_, o)| 4 + usize::from(o.len())).sum()
        });
        OPT_LEN + options
    }

    /// The response header, with RA as [`Handler::recursion_available`] says.
    fn metadata(&self, request: &Request) -> Metadata {
        let mut metadata = response_metadata(&request.metadata);
        metadata.recursion_available = self.recursion_available();
        metadata
    }

    /// Sends one response; over UDP, one that does not fit the client's payload size goes
    /// out empty with TC set.
    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
        mut metadata: Metadata,
        [answers, authorities, additionals]: [&Vec<&Record>; 3],
        mut signer: Option<Signer>,
    ) -> ResponseInfo {
        let build = |metadata| {
            self.builder(request).build(
                metadata,
                answers.iter().copied(),
                authorities.iter().copied(),
                [],
                additionals.iter().copied(),
            )
        };
        if request.protocol() == Protocol::Udp {
            let limit = match &request.edns {
                Some(edns) => edns
                    .max_payload()
                    .clamp(MIN_UDP_PAYLOAD, self.max_udp_payload),
                None => MIN_UDP_PAYLOAD,
            };
            let limit = usize::from(limit);
            let records = answers.iter().chain(authorities).chain(additionals);
            if size_bound(records, request) + self.response_opt_len(request) > limit
                && encoded(build(metadata)).map_or(usize::MAX, |bytes| bytes.len()) > limit
            {
                // Clients retry over TCP; an empty truncated message keeps its OPT, which a
                // partly filled one could lose.
                self.metrics.truncated.inc();
                metadata.truncation = true;
                let truncated = || self.builder(request).build_no_records(metadata);
                return send_signed(&mut response_handle, truncated, signer.as_mut(), request)
                    .await;
            }
        }
        let response = || build(metadata);
        send_signed(&mut response_handle, response, signer.as_mut(), request).await
    }

    /// Resolves a name outside the namespaces through the upstreams (RD is required, as
    /// a resolver answers RD=0 only from its cache).
    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        forwarder: &Forwarder,
        signer: Option<Signer>,
        response_handle: R,
    ) -> ResponseInfo {
        let query = &request.queries.queries()[0];
        let mut metadata = self.metadata(request);
        let forwarded = if request.metadata.recursion_desired {
            self.metrics.forwarded.inc();
            let resolved = forwarder
                .resolve(&query.name().into(), query.query_type())
                .await;
            resolved.unwrap_or_else(|Busy| {
                self.metrics.forward_rejected.inc();
                Forwarded::servfail()
            })
        } else {
            Forwarded {
                rcode: ResponseCode::Refused,
                ..Forwarded::default()
            }
        };
        self.metrics
            .count(Some(query.query_type()), forwarded.rcode);
        metadata.response_code = forwarded.rcode;
        self.respond(
            request,
            response_handle,
            metadata,
            [
                &refs(&forwarded.answers),
                &refs(&forwarded.authorities),
                &refs(&forwarded.additionals),
            ],
            signer,
        )
        .await
    }

    /// Answers an UPDATE (RFC 2136) with the rcode [`Updates::update`] gives, signed
    /// like any answer to a signed request.
    async fn update<R: ResponseHandler>(
        &self,
        request: &Request,
        mut signer: Option<Signer>,
        mut response_handle: R,
    ) -> ResponseInfo {
        let zone = &request.queries.queries()[0];
        let rcode = match &self.updates {
            Some(updates) => {
                let key = signer.as_ref().map(Signer::key_name);
                updates
                    .update(key, zone.original(), &request.answers, &request.authorities)
                    .await
            }
            None => ResponseCode::Refused,
        };
        self.metrics.count(Some(zone.query_type()), rcode);
        let mut metadata = response_metadata(&request.metadata);
        metadata.response_code = rcode;
        let build = || self.builder(request).build_no_records(metadata);
        send_signed(&mut response_handle, build, signer.as_mut(), request).await
    }

    /// Answers an AXFR or IXFR for the namespace `zone`: over TCP in as many messages as
    /// needed, each signed when the request was; an IXFR over UDP gets the current SOA
    /// (RFC 1995 2), which makes the client come back over TCP.
    async fn transfer<R: ResponseHandler>(
        &self,
        request: &Request,
        zone: &NamespaceZone,
        mut signer: Option<Signer>,
        mut response_handle: R,
    ) -> ResponseInfo {
        let qtype = request.queries.queries()[0].query_type();
        let mut metadata = self.metadata(request);
        if !self.transfers.allowed(request.src().ip(), signer.is_some()) {
            self.metrics.transfer("refused");
            self.metrics.count(Some(qtype), ResponseCode::Refused);
            let response = self
                .builder(request)
                .error_msg(&request.metadata, ResponseCode::Refused);
            return send(&mut response_handle, response, &request.metadata).await;
        }
        let client_serial = match qtype {
            RecordType::IXFR => Some(transfer::client_serial(&request.authorities).unwrap_or(0)),
            _ => None,
        };
        let over_udp = request.protocol() == Protocol::Udp;
        if over_udp && client_serial.is_none() {
            // AXFR is TCP only (RFC 5936 4.2).
            self.metrics.count(Some(qtype), ResponseCode::Refused);
            let response = self
                .builder(request)
                .error_msg(&request.metadata, ResponseCode::Refused);
            return send(&mut response_handle, response, &request.metadata).await;
        }
        let (kind, parts) = match over_udp {
            true => (transfer::Kind::IxfrCurrent, transfer::current_soa(zone)),
            false => transfer::answer_records(zone, client_serial),
        };
        self.metrics.transfer(kind.label());
        self.metrics.count(Some(qtype), ResponseCode::NoError);
        tracing::debug!(source = %request.src(), zone = %zone.name, kind = kind.label(), "zone transfer");
        metadata.authoritative = true;
        let mut info = None;
        for message in transfer::split(parts, |part| part.len_bound()) {
            // Decoded one message at a time: over TCP the next is built once the client
            // has taken this one.
            let records: Vec<Record> = message.into_iter().map(transfer::Part::record).collect();
            let build = || {
                MessageResponseBuilder::new(&request.queries, None).build(
                    metadata,
                    records.iter(),
                    [],
                    [],
                    [],
                )
            };
            let sent = send_signed(&mut response_handle, build, signer.as_mut(), request).await;
            if sent.response_code == ResponseCode::ServFail {
                return sent;
            }
            info = Some(sent);
        }
        info.expect("a transfer has at least the SOA")
    }
}

/// The header of a response to `request`: its ID, opcode, RD and CD, but CD only for a
/// QUERY (RFC 4035 3.2.2 defines it for queries alone).
pub(super) fn response_metadata(request: &Metadata) -> Metadata {
    let mut metadata = Metadata::response_from_request(request);
    metadata.checking_disabled &= request.op_code == OpCode::Query;
    metadata
}

fn refs(records: &[Record]) -> Vec<&Record> {
    records.iter().collect()
}

/// A cheap upper bound of the response's size without name compression, but for its OPT
/// record.
fn size_bound<'r>(records: impl Iterator<Item = &'r &'r Record>, request: &Request) -> usize {
    HEADER_LEN
        + request.queries.as_bytes().len()
        + records.map(|r| record_len_bound(r)).sum::<usize>()
}

/// The four OPT records [`Handler::response_edns`] picks from: without and with DO,
/// without and with an NSID option holding `nsid` (when it is not empty).
fn response_opts(max_payload: u16, nsid: &[u8]) -> [Edns; 4] {
    std::array::from_fn(|n| {
        let mut edns = Edns::new();
        edns.set_max_payload(max_payload);
        edns.set_dnssec_ok(n & 1 == 1);
        if n & 2 == 2 && !nsid.is_empty() {
            let payload = NSIDPayload::new(nsid).expect("[dns] nsid is at most 128 bytes");
            edns.options_mut().insert(EdnsOption::NSID(payload));
        }
        edns
    })
}

/// A COOKIE option of a length RFC 7873 does not allow: FORMERR (§5.2.2). muster
/// otherwise ignores cookies, as a server without cookie support does (docs/dns.md).
fn malformed_cookie(edns: &Edns) -> bool {
    match edns.option(EdnsCode::Cookie) {
        Some(EdnsOption::Unknown(_, data)) => !fast::cookie_length_ok(data.len()),
        _ => false,
    }
}

/// A response as encoded for the wire, without a size cap (the exact size, compression
/// included, or the bytes a TSIG signs); `None` when hickory cannot encode it.
fn encoded<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(4096);
    response
        .destructive_emit(&mut BinEncoder::new(&mut bytes))
        .ok()?;
    Some(bytes)
}

/// Sends the response `build` makes, with a TSIG when there is a `signer`: the MAC covers
/// the message as encoded without it, so it is built twice.
async fn send_signed<'q, 'a, R, A, B, C, D>(
    response_handle: &mut R,
    build: impl Fn() -> MessageResponse<'q, 'a, A, B, C, D>,
    signer: Option<&mut Signer>,
    request: &Request,
) -> ResponseInfo
where
    R: ResponseHandler,
    A: Iterator<Item = &'a Record> + Send + 'a,
    B: Iterator<Item = &'a Record> + Send + 'a,
    C: Iterator<Item = &'a Record> + Send + 'a,
    D: Iterator<Item = &'a Record> + Send + 'a,
{
    let mut response = build();
    if let Some(signer) = signer {
        // Encoding fails only past 64 KiB, which answers and transfer messages stay under.
        let unsigned = encoded(build()).unwrap_or_default();
        response.set_signature(signer.sign(&unsigned, request.metadata.id));
    }
    send(response_handle, response, &request.metadata).await
}

async fn send<'a, R: ResponseHandler>(
    response_handle: &mut R,
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Metadata,
) -> ResponseInfo {
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "could not send a DNS response");
            let mut metadata = Metadata::response_from_request(request);
            metadata.response_code = ResponseCode::ServFail;
            Header {
                metadata,
                counts: HeaderCounts::default(),
            }
            .into()
        }
    }
}
