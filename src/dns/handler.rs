//! The hickory request handler: checks the message, asks [`answer`], encodes.

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};

use super::answer::{Answer, answer};
use super::metrics::DnsMetrics;
use super::zone::ZoneView;

/// The smallest UDP payload every client accepts (RFC 1035), and what non-EDNS clients get.
const MIN_UDP_PAYLOAD: u16 = 512;
/// Bytes of an OPT RR without options.
const OPT_LEN: usize = 11;
const HEADER_LEN: usize = 12;

/// Answers every query from the current [`ZoneView`].
#[derive(Clone)]
pub struct Handler {
    zone: ZoneView,
    max_udp_payload: u16,
    metrics: Arc<DnsMetrics>,
}

impl Handler {
    pub fn new(zone: ZoneView, max_udp_payload: u16, metrics: Arc<DnsMetrics>) -> Self {
        Self {
            zone,
            max_udp_payload: max_udp_payload.max(MIN_UDP_PAYLOAD),
            metrics,
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let response_edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(self.max_udp_payload);
            edns
        });
        let builder = || MessageResponseBuilder::new(&request.queries, response_edns.as_ref());
        let qtype = request.queries.queries().first().map(|q| q.query_type());

        let rejection = if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else {
            None
        };
        if let Some(rcode) = rejection {
            self.metrics.count(qtype, rcode);
            let response = builder().error_msg(&request.metadata, rcode);
            return send(&mut response_handle, response, &request.metadata).await;
        }

        let query = &request.queries.queries()[0];
        let zone = self.zone.load();
        let found = if query.query_class() == DNSClass::IN {
            answer(&zone, query.name(), query.query_type(), &mut rand::rng())
        } else {
            Answer {
                rcode: ResponseCode::Refused,
                ..Answer::default()
            }
        };
        self.metrics.count(qtype, found.rcode);

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = found.authoritative;
        metadata.response_code = found.rcode;
        let build = |metadata| {
            builder().build(
                metadata,
                found.answers.iter().copied(),
                found.authorities.iter().copied(),
                [],
                found.additionals.iter().copied(),
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
            if size_bound(&found, request) > limit && encoded_len(build(metadata)) > limit {
                // Clients retry over TCP; an empty truncated message keeps its OPT, which a
                // partly filled one could lose.
                self.metrics.truncated.inc();
                metadata.truncation = true;
                let response = builder().build_no_records(metadata);
                return send(&mut response_handle, response, &request.metadata).await;
            }
        }
        send(&mut response_handle, build(metadata), &request.metadata).await
    }
}

/// A cheap upper bound of the response's size, without name compression.
fn size_bound(found: &Answer<'_>, request: &Request) -> usize {
    let records = found
        .answers
        .iter()
        .chain(&found.authorities)
        .chain(&found.additionals);
    HEADER_LEN
        + request.queries.as_bytes().len()
        + OPT_LEN
        + records.map(|r| record_len_bound(r)).sum::<usize>()
}

/// The exact encoded size of a response (compression shrinks large answers).
fn encoded_len<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> usize {
    let mut bytes = Vec::with_capacity(4096);
    match response.destructive_emit(&mut BinEncoder::new(&mut bytes)) {
        Ok(_) => bytes.len(),
        Err(_) => usize::MAX,
    }
}

/// An upper bound of a record's wire size, without compression.
fn record_len_bound(record: &Record) -> usize {
    let name_len = |n: &hickory_proto::rr::Name| n.len() + 1;
    let rdata = match &record.data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(srv) => 6 + name_len(&srv.target),
        RData::NS(ns) => name_len(&ns.0),
        RData::SOA(soa) => 20 + name_len(&soa.mname) + name_len(&soa.rname),
        _ => usize::from(u16::MAX),
    };
    name_len(&record.name) + 10 + rdata
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
