//! The full path for a query the fast path does not answer: the same steps hickory's
//! `Server` takes for a message it received (its `handle_request` is private), then the
//! same [`Handler`], then hickory's encoding for the transport. The UDP threads use it
//! for the datagrams they hand off, the TCP server for every query it does not answer
//! from the fast path.
//!
//! Owns: turning raw bytes into a hickory `Request` and the handler's responses back into
//! bytes. Must not: answer anything itself.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::ProtoError;
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};

use crate::dns::handler::{Handler, Responder, response_metadata};
use crate::dns::wire::MIN_UDP_PAYLOAD;
use crate::logging::Throttle;

/// Datagrams the full path answers at once, at most, over every UDP thread. A forwarded
/// query may wait on its upstream for `[forward] timeout`, so under a flood this bounds
/// the tasks, buffers and sockets muster holds (each task keeps its datagram, at most
/// 4 KiB, and its response).
pub const MAX_HANDOFFS: usize = 2048;

/// The full path's first response to `packet` from `src` over `protocol`, or `None` when
/// hickory would send nothing (no header, or the packet is itself a response).
pub async fn full_path(
    handler: &Handler,
    packet: Vec<u8>,
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    let capture = Capture {
        protocol,
        response: Arc::default(),
    };
    handle(handler, packet, src, protocol, capture.clone()).await;
    capture.response.get().cloned()
}

/// Runs the full path for `packet` from `src` over `protocol`: every response message
/// (several for a zone transfer) goes to `response_handle`. Sends nothing for a packet
/// without a header or one that is itself a response, FORMERR for one that does not parse.
pub async fn handle<R: Responder>(
    handler: &Handler,
    packet: Vec<u8>,
    src: SocketAddr,
    protocol: Protocol,
    mut response_handle: R,
) {
    let Ok(header) = Header::read(&mut BinDecoder::new(&packet)) else {
        return;
    };
    let unechoable = question_points_into_header(&packet);
    let request = match Request::from_bytes(packet, src, protocol) {
        Ok(request) if !unechoable => request,
        _ => {
            // As hickory does: no question in a FORMERR (reading none cannot fail).
            let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                return;
            };
            let mut metadata = response_metadata(&header.metadata);
            metadata.response_code = ResponseCode::FormErr;
            let response = MessageResponseBuilder::new(&queries, None).build_no_records(metadata);
            let _ = response_handle.send_response(response).await;
            return;
        }
    };
    if request.metadata.message_type == MessageType::Response {
        return;
    }
    handler.handle_request(&request, response_handle).await;
}

/// Whether a question's name points into the header. hickory echoes the question
/// section's bytes as they came, at the same offsets, so a compression pointer to an
/// earlier question stays valid in the response; one into the header (where the
/// response's bytes differ) makes a response whose question does not decode (found by
/// fuzzing). Such a query gets a FORMERR without a question, like any query hickory
/// cannot read.
fn question_points_into_header(packet: &[u8]) -> bool {
    let questions = packet
        .get(4..6)
        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
    let mut at = 12;
    for _ in 0..questions {
        loop {
            let Some(&len) = packet.get(at) else {
                return false;
            };
            match len & 0xC0 {
                0 if len == 0 => {
                    at += 1;
                    break;
                }
                0 => at += 1 + usize::from(len),
                0xC0 => match packet.get(at + 1) {
                    Some(&low) if usize::from(len & 0x3F) << 8 | usize::from(low) < 12 => {
                        return true;
                    }
                    _ => {
                        at += 2;
                        break;
                    }
                },
                // Extended label types: hickory cannot read them either.
                _ => return true,
            }
        }
        at += 4; // type and class
    }
    false
}

/// hickory's encoding of a response (`MessageResponse::encode`, crate-private): over UDP
/// at most the response's EDNS payload size (512 without EDNS), over TCP at most a
/// message's 65,535 bytes; a message that cannot be encoded becomes a bare SERVFAIL.
pub fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    protocol: Protocol,
) -> Result<(ResponseInfo, Vec<u8>), ProtoError> {
    let id = response.metadata().id;
    let max_size = match protocol {
        Protocol::Udp => response.edns().map_or(MIN_UDP_PAYLOAD, |e| e.max_payload()),
        _ => u16::MAX,
    };
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max_size);
    match response.destructive_emit(&mut encoder) {
        Ok(info) => Ok((info, bytes)),
        Err(error) => {
            static LOG: Throttle = Throttle::new(Duration::from_secs(60));
            if let Some(count) = LOG.hit() {
                tracing::error!(%error, count, "DNS responses that could not be encoded (count: since the last such line)");
            }
            bytes.clear();
            let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
            metadata.response_code = ResponseCode::ServFail;
            let header = Header {
                metadata,
                counts: HeaderCounts::default(),
            };
            header.emit(&mut BinEncoder::new(&mut bytes))?;
            Ok((header.into(), bytes))
        }
    }
}

/// A response handler that keeps the first encoded response instead of sending it.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    response: Arc<OnceLock<Vec<u8>>>,
}

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
        let (info, bytes) = encode(response, self.protocol)?;
        let _ = self.response.set(bytes);
        Ok(info)
    }
}

#[async_trait::async_trait]
impl Responder for Capture {
    async fn send_encoded(&mut self, message: Vec<u8>) -> Result<(), NetError> {
        let _ = self.response.set(message);
        Ok(())
    }
}
