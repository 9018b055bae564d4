//! Sending a response: its header and OPT record, the size limits (over UDP an answer
//! that does not fit goes out empty with TC set; over TCP one larger than a message
//! carries the records that fit), and the TSIG of a signed request's answer.

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{RData, Record};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};

use super::Handler;
use crate::dns::transfer::Signer;
use crate::dns::wire::{HEADER_LEN, MIN_UDP_PAYLOAD, OPT_LEN, record_len_bound};

impl Handler {
    /// A response to `request`, with an OPT when the request had one.
    pub(super) fn builder<'q>(&'q self, request: &'q Request) -> MessageResponseBuilder<'q> {
        self.builder_with(request, None)
    }

    /// A response to `request`, with `opt` (or the usual OPT) when the request had one.
    fn builder_with<'q>(
        &'q self,
        request: &'q Request,
        opt: Option<&'q Edns>,
    ) -> MessageResponseBuilder<'q> {
        let edns = request.edns.as_ref();
        MessageResponseBuilder::new(
            &request.queries,
            edns.map(|e| opt.unwrap_or_else(|| self.response_edns(e))),
        )
    }

    /// The OPT record answering a query whose Client Subnet chose the answer: the usual
    /// one plus the option echoed with SCOPE PREFIX-LENGTH `scope` (RFC 7871 §7.2.1).
    pub(super) fn client_subnet_opt(&self, request: &Request, scope: u8) -> Option<Edns> {
        let edns = request.edns.as_ref()?;
        let Some(EdnsOption::Subnet(subnet)) = edns.option(EdnsCode::Subnet) else {
            return None;
        };
        let echo = ClientSubnet::new(subnet.addr(), subnet.source_prefix(), scope);
        let mut opt = self.response_edns(edns).clone();
        opt.options_mut().insert(EdnsOption::Subnet(echo));
        Some(opt)
    }

    /// The OPT record answering a query's `edns`.
    fn response_edns(&self, edns: &Edns) -> &Edns {
        let nsid = !self.nsid.is_empty() && edns.option(EdnsCode::NSID).is_some();
        &self.response_edns[usize::from(edns.flags().dnssec_ok) | usize::from(nsid) << 1]
    }

    /// Bytes of the OPT record answering `request` (an OPT's size when it has none, as
    /// the size bound has always counted one).
    fn response_opt_len(&self, request: &Request, opt: Option<&Edns>) -> usize {
        let options = request.edns.as_ref().map_or(0, |edns| {
            let options = &opt
                .unwrap_or_else(|| self.response_edns(edns))
                .options()
                .options;
            options.iter().map(|(_, o)| 4 + usize::from(o.len())).sum()
        });
        OPT_LEN + options
    }

    /// The response header, with RA as [`Handler::recursion_available`] says.
    pub(super) fn metadata(&self, request: &Request) -> Metadata {
        let mut metadata = response_metadata(&request.metadata);
        metadata.recursion_available = self.recursion_available();
        metadata
    }

    /// Sends one response, with `opt` as its OPT record if given; over UDP, one that does
    /// not fit the client's payload size goes out empty with TC set; over TCP, one that
    /// does not fit a message carries the answers that fit ([`fitting`]), or if none
    /// does, goes out empty with TC set.
    pub(super) async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
        mut metadata: Metadata,
        [answers, authorities, additionals]: [&Vec<&Record>; 3],
        mut signer: Option<Signer>,
        opt: Option<&Edns>,
    ) -> ResponseInfo {
        let opt_len = self.response_opt_len(request, opt);
        let whole = |answers: &Vec<&Record>, additionals: &Vec<&Record>| {
            let records = answers.iter().chain(authorities).chain(additionals);
            size_bound(records, request) + opt_len
        };
        let mut truncate = false;
        let trimmed;
        let (answers, additionals) = if request.protocol() != Protocol::Udp
            && whole(answers, additionals) > MAX_MESSAGE
            && encoded(with_records(
                self.builder_with(request, opt),
                metadata,
                [answers, authorities, additionals],
            ))
            .is_none_or(|message| overflowed(&message))
        {
            let budget =
                MAX_MESSAGE.saturating_sub(HEADER_LEN + request.queries.as_bytes().len() + opt_len);
            trimmed = fitting(answers, additionals, budget);
            // Not one record fits (a forwarded answer of a type muster does not size): an
            // empty answer would be a false NODATA, so it goes out empty with TC set.
            truncate = trimmed.0.is_empty();
            (&trimmed.0, &trimmed.1)
        } else {
            (answers, additionals)
        };
        if request.protocol() == Protocol::Udp {
            let limit = match &request.edns {
                Some(edns) => edns
                    .max_payload()
                    .clamp(MIN_UDP_PAYLOAD, self.max_udp_payload),
                None => MIN_UDP_PAYLOAD,
            };
            let limit = usize::from(limit);
            truncate = whole(answers, additionals) > limit
                && encoded(with_records(
                    self.builder_with(request, opt),
                    metadata,
                    [answers, authorities, additionals],
                ))
                .map_or(usize::MAX, |bytes| bytes.len())
                    > limit;
        }
        if truncate {
            // Clients retry over TCP; an empty truncated message keeps its OPT, which a
            // partly filled one could lose.
            self.metrics.truncated.inc();
            metadata.truncation = true;
            let truncated = || self.builder_with(request, opt).build_no_records(metadata);
            return send_signed(&mut response_handle, truncated, signer.as_mut(), request).await;
        }
        let response = || {
            let builder = self.builder_with(request, opt);
            with_records(builder, metadata, [answers, authorities, additionals])
        };
        send_signed(&mut response_handle, response, signer.as_mut(), request).await
    }
}

/// The header of a response to `request`: its ID, opcode, RD and CD, but CD only for a
/// QUERY (RFC 4035 3.2.2 defines it for queries alone).
pub(in crate::dns) fn response_metadata(request: &Metadata) -> Metadata {
    let mut metadata = Metadata::response_from_request(request);
    metadata.checking_disabled &= request.op_code == OpCode::Query;
    metadata
}

pub(super) fn refs(records: &[Record]) -> Vec<&Record> {
    records.iter().collect()
}

/// The response `builder` makes with these answers, authorities and additionals.
fn with_records<'q, 'a>(
    builder: MessageResponseBuilder<'q>,
    metadata: Metadata,
    [answers, authorities, additionals]: [&'a [&'a Record]; 3],
) -> MessageResponse<
    'q,
    'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
    impl Iterator<Item = &'a Record> + Send + 'a,
> {
    builder.build(
        metadata,
        answers.iter().copied(),
        authorities.iter().copied(),
        [],
        additionals.iter().copied(),
    )
}

/// The largest DNS message (over TCP, RFC 1035 4.2.2).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// Whether hickory gave up on encoding a message whole: past [`MAX_MESSAGE`] it stops at
/// the record that overflows and sets TC (only it sets TC on what it encodes here).
fn overflowed(message: &[u8]) -> bool {
    message.len() > MAX_MESSAGE || message.get(2).is_none_or(|flags| flags & 0x02 != 0)
}

/// "All that fit" (`max_answers = 0`) over TCP, for an answer no message can hold (a
/// service of a few thousand instances answered whole): the answers in their random
/// order, each with its glue, while their uncompressed size fits `budget` (a bound: the
/// message hickory then encodes, compressing owner names, surely fits). hickory, asked
/// to encode more than a message holds, sent a malformed one. The glue follows its SRV
/// record in `additionals`, as [`answer`](crate::dns::answer::answer) puts it.
fn fitting<'r>(
    answers: &[&'r Record],
    additionals: &[&'r Record],
    budget: usize,
) -> (Vec<&'r Record>, Vec<&'r Record>) {
    let (mut kept, mut glue) = (Vec::new(), Vec::new());
    let mut left = budget;
    let mut rest = additionals;
    for answer in answers {
        let own = match &answer.data {
            RData::SRV(srv) => rest.iter().take_while(|g| g.name == srv.target).count(),
            _ => 0,
        };
        let (own, after) = rest.split_at(own);
        rest = after;
        let size =
            record_len_bound(answer) + own.iter().map(|g| record_len_bound(g)).sum::<usize>();
        let Some(remaining) = left.checked_sub(size) else {
            break;
        };
        left = remaining;
        kept.push(*answer);
        glue.extend_from_slice(own);
    }
    (kept, glue)
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
pub(super) fn response_opts(max_payload: u16, nsid: &[u8]) -> [Edns; 4] {
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
pub(super) async fn send_signed<'q, 'a, R, A, B, C, D>(
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

pub(super) async fn send<'a, R: ResponseHandler>(
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

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, AAAA, SRV, TXT};

    use super::*;

    fn record(owner: &str, data: RData) -> Record {
        Record::from_rdata(Name::from_str(owner).unwrap(), 5, data)
    }

    fn srv(target: &str) -> Record {
        let target = Name::from_str(target).unwrap();
        record("svc.ns.", RData::SRV(SRV::new(1, 1, 80, target)))
    }

    #[test]
    fn each_answer_kept_keeps_its_glue_within_the_budget() {
        let answers = [srv("a.svc.ns."), srv("b.svc.ns."), srv("c.svc.ns.")];
        let glue = [
            record("a.svc.ns.", RData::A(A::new(10, 0, 0, 1))),
            record(
                "a.svc.ns.",
                RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            ),
            // b has no address: its SRV goes alone.
            record("c.svc.ns.", RData::A(A::new(10, 0, 0, 3))),
        ];
        let [answers, glue] = [&answers[..], &glue[..]].map(|r| r.iter().collect::<Vec<_>>());
        let size = |records: &[&Record]| records.iter().map(|r| record_len_bound(r)).sum::<usize>();
        let all = size(&answers) + size(&glue);
        assert_eq!(
            fitting(&answers, &glue, all),
            (answers.clone(), glue.clone())
        );
        // One byte short of c and its glue: a and b, with a's glue.
        let (kept, kept_glue) = fitting(&answers, &glue, all - 1);
        assert_eq!(
            (kept, kept_glue),
            (answers[..2].to_vec(), glue[..2].to_vec())
        );
        // Short of a's glue: nothing (an answer never goes without its glue).
        let first = size(&answers[..1]) + size(&glue[..2]);
        assert_eq!(fitting(&answers, &glue, first - 1), (vec![], vec![]));
    }

    #[test]
    fn a_record_muster_does_not_size_is_not_kept() {
        let txt = record("t.example.", RData::TXT(TXT::new(vec!["x".into()])));
        assert_eq!(fitting(&[&txt], &[], 60_000), (vec![], vec![]));
    }
}
