//! UPDATE messages (RFC 2136), answered with what `[update]` decides.

use hickory_proto::op::ResponseCode;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};

use super::Handler;
use super::send::{response_metadata, send_signed};
use crate::dns::transfer::Signer;

impl Handler {
    /// Answers an UPDATE (RFC 2136) with the rcode [`Updates::update`](crate::sources::update::Updates::update) gives, signed
    /// like any answer to a signed request.
    pub(super) async fn update<R: ResponseHandler>(
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
}
