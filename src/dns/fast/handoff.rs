//! The full path for a UDP datagram the fast path does not answer: the same steps
//! hickory's `Server` takes for a datagram it received (its `handle_request` is
//! private), then the same [`Handler`], then hickory's UDP encoding.
//!
//! Owns: turning raw bytes into a hickory `Request` and the handler's response back into
//! bytes. Must not: answer anything itself.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};

use crate::dns::handler::{Handler, MIN_UDP_PAYLOAD};

/// The full path's response to the datagram `packet` from `src`, or `None` when hickory
/// would send nothing (no header, or the packet is itself a response).
pub async fn full_path(handler: &Handler, packet: Vec<u8>, src: SocketAddr) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(&packet)).ok()?;
    let request = match Request::from_bytes(packet, src, Protocol::Udp) {
        Ok(request) => request,
        Err(_) => {
            // As hickory does: no question in a FORMERR (reading none cannot fail).
            let queries = Queries::read(&mut BinDecoder::new(&[]), 0).ok()?;
            let response = MessageResponseBuilder::new(&queries, None)
                .error_msg(&header.metadata, ResponseCode::FormErr);
            let mut capture = Capture::default();
            let _ = capture.send_response(response).await;
            return capture.0.get().cloned();
        }
    };
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let capture = Capture::default();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    capture.0.get().cloned()
}

/// A response handler that keeps the encoded response instead of sending it.
#[derive(Clone, Default)]
struct Capture(Arc<OnceLock<Vec<u8>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // hickory's UDP encoding (`MessageResponse::encode`, crate-private): at most the
        // response's EDNS payload size (512 without EDNS); a message that cannot be
        // encoded becomes a bare SERVFAIL.
        let id = response.metadata().id;
        let max_size = response.edns().map_or(MIN_UDP_PAYLOAD, |e| e.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(error) => {
                tracing::error!(%error, "error encoding a DNS response");
                bytes.clear();
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                header.emit(&mut BinEncoder::new(&mut bytes))?;
                header.into()
            }
        };
        let _ = self.0.set(bytes);
        Ok(info)
    }
}
