//! Names outside the namespaces, resolved through the upstreams (`[forward]`).

use hickory_proto::op::ResponseCode;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};

use super::Handler;
use super::send::refs;
use crate::dns::forward::{Busy, Forwarded, Forwarder};
use crate::dns::transfer::Signer;

impl Handler {
    /// Resolves a name outside the namespaces through the upstreams (RD is required, as
    /// a resolver answers RD=0 only from its cache).
    pub(super) async fn forward<R: ResponseHandler>(
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
            None,
        )
        .await
    }
}
