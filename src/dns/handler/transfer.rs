//! Answering AXFR and IXFR: the allow list, TCP only for AXFR, one message at a time.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::Handler;
use super::send::{send, send_signed};
use crate::dns::metrics::TRANSFER_REFUSED;
use crate::dns::transfer::{self, Signer};
use crate::dns::zone::NamespaceRecords;

impl Handler {
    /// Answers an AXFR or IXFR for the namespace `zone`: over TCP in as many messages as
    /// needed, each signed when the request was; an IXFR over UDP gets the current SOA
    /// (RFC 1995 2), which makes the client come back over TCP.
    pub(super) async fn transfer<R: ResponseHandler>(
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
