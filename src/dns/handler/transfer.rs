//! Answering AXFR and IXFR: the allow list, TCP only for AXFR, one message at a time,
//! each written from the zone's wire forms and signed when the request was.

use hickory_proto::op::{Header, HeaderCounts, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseInfo};

use super::send::send;
use super::{Handler, Responder};
use crate::dns::metrics::TRANSFER_REFUSED;
use crate::dns::transfer::{self, Messages, Signer};
use crate::dns::wire::HEADER_LEN;
use crate::dns::zone::NamespaceRecords;

/// Where ARCOUNT sits in the header.
const ADDITIONAL_COUNT_AT: usize = 10;

impl Handler {
    /// Answers an AXFR or IXFR for the namespace `zone`: over TCP in as many messages as
    /// needed, each signed when the request was; an IXFR over UDP gets the current SOA
    /// (RFC 1995 2), which makes the client come back over TCP.
    pub(super) async fn transfer<R: Responder>(
        &self,
        request: &Request,
        zone: &NamespaceRecords,
        mut signer: Option<Signer>,
        mut response_handle: R,
    ) -> ResponseInfo {
        let qtype = request.queries.queries()[0].query_type();
        let mut metadata = self.metadata(request);
        if !self.transfers.allowed(request.src().ip(), signer.is_some()) {
            self.metrics.transfer(TRANSFER_REFUSED);
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
        let header = Header {
            metadata,
            counts: HeaderCounts {
                queries: 1,
                ..HeaderCounts::default()
            },
        };
        let mut template = Vec::with_capacity(HEADER_LEN);
        let emitted = header.emit(&mut BinEncoder::new(&mut template));
        let template: [u8; HEADER_LEN] = match emitted.ok().and_then(|()| template.try_into().ok())
        {
            Some(template) => template,
            None => return failed(header),
        };
        let question = request.queries.as_bytes();
        let mut messages = Messages::new(parts);
        let mut message = Vec::with_capacity(transfer::MESSAGE_BUDGET);
        // Each message is handed over whole, not copied; over TCP the next is written once
        // the connection has taken this one.
        while messages.write_next(&template, question, &mut message) {
            if let Some(signer) = signer.as_mut()
                && sign(&mut message, signer, header.metadata.id).is_none()
            {
                return failed(header);
            }
            let full =
                std::mem::replace(&mut message, Vec::with_capacity(transfer::MESSAGE_BUDGET));
            if response_handle.send_encoded(full).await.is_err() {
                return failed(header);
            }
        }
        header.into()
    }
}

/// Appends the TSIG of `message` (one more additional record).
fn sign(message: &mut Vec<u8>, signer: &mut Signer, id: u16) -> Option<()> {
    let tsig = signer.sign(message, id);
    let end = u32::try_from(message.len()).ok()?;
    tsig.emit(&mut BinEncoder::with_offset(message, end)).ok()?;
    message[ADDITIONAL_COUNT_AT..ADDITIONAL_COUNT_AT + 2].copy_from_slice(&1u16.to_be_bytes());
    Some(())
}

/// What a transfer cut short reports: SERVFAIL.
fn failed(mut header: Header) -> ResponseInfo {
    header.metadata.response_code = ResponseCode::ServFail;
    header.into()
}
