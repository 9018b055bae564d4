//! The full path's request handler: checks the message, then answers it from the zone
//! ([`answer`]) or hands it to what serves the rest: [`forward`]ing names outside the
//! namespaces, zone [`transfer`]s, DNS [`update`]s. How a response is sized, truncated,
//! signed and sent is [`send`].

mod forward;
mod send;
mod transfer;
mod update;

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};

use super::answer::{Answer, answer};
use super::fast;
use super::forward::Forwarder;
use super::locality::{ClientZones, Subnet};
use super::metrics::DnsMetrics;
use super::qname::QueryName;
use super::rrl::Rrl;
use super::transfer::{self as zone_transfer, Rejection, Transfers};
use super::wire::MIN_UDP_PAYLOAD;
use super::zone::PublishedZone;
use crate::logging::Throttle;
use crate::sources::update::Updates;
pub(super) use send::response_metadata;
use send::{refs, response_opts, send, send_signed};

/// Answers every query: from the current [`PublishedZone`], by zone transfer, or through the
/// upstreams for names outside the namespaces.
#[derive(Clone)]
pub struct Handler {
    zone: PublishedZone,
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
    /// `[[zones]]`: where zone-aware services' clients are.
    zones: Arc<ClientZones>,
}

impl Handler {
    pub fn new(
        zone: PublishedZone,
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
            zones: Arc::default(),
        }
    }

    /// The same handler, locating clients of zone-aware services by `zones`.
    pub fn with_zones(self, zones: ClientZones) -> Self {
        Self {
            zones: Arc::new(zones),
            ..self
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
    pub(super) fn zone(&self) -> &PublishedZone {
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
            zones: &self.zones,
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

/// Where the full path's responses go: hickory's `ResponseHandler`, which takes only
/// hickory's message type, and messages muster encoded itself (a zone transfer's,
/// written from the zone's wire forms).
#[async_trait::async_trait]
pub trait Responder: ResponseHandler {
    /// Sends one encoded DNS message.
    async fn send_encoded(&mut self, message: Vec<u8>) -> Result<(), NetError>;
}

impl Handler {
    /// Answers `request` through `response_handle`, as hickory's `RequestHandler` would
    /// (muster's servers call it; hickory's do not run).
    pub async fn handle_request<R: Responder>(
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
                    if zone_transfer::is_transfer(query.query_type())
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
            let client = self
                .zones
                .client(request.src().ip(), client_subnet(request));
            answer(&zone, &name, query.query_type(), &client, &mut rand::rng())
        } else {
            Answer {
                rcode: ResponseCode::Refused,
                ..Answer::default()
            }
        };
        self.metrics.count(qtype, found.rcode);
        let mut metadata = self.metadata(request);
        metadata.authoritative = found.authoritative;
        let echo = found
            .client_subnet_scope
            .and_then(|scope| self.client_subnet_opt(request, scope));
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
            echo.as_ref(),
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
}

/// The Client Subnet `request` carries (RFC 7871), which hickory has parsed.
fn client_subnet(request: &Request) -> Option<Subnet> {
    match request.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(subnet) => Some(Subnet {
            address: subnet.addr(),
            source_prefix: subnet.source_prefix(),
        }),
        _ => None,
    }
}

/// A COOKIE option of a length RFC 7873 does not allow: FORMERR (§5.2.2). muster
/// otherwise ignores cookies, as a server without cookie support does (docs/dns.md).
fn malformed_cookie(edns: &Edns) -> bool {
    match edns.option(EdnsCode::Cookie) {
        Some(EdnsOption::Unknown(_, data)) => !fast::cookie_length_ok(data.len()),
        _ => false,
    }
}
