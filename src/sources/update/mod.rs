//! The `update` source: instances registered and deregistered by signed DNS UPDATE
//! messages (RFC 2136), as `nsupdate`, external-dns's rfc2136 provider and DHCP servers
//! send them. See README.md in this folder and docs/update.md.
//!
//! - **Watches:** UPDATE messages the DNS handler routes here (over UDP and TCP), after
//!   their TSIG has been verified with the `[[transfer.tsig_keys]]` keys.
//! - **Emits:** one `Change::Batch` per UPDATE that changes something, logged (durable)
//!   like API writes, so admission ceilings and owner rules apply; the source id is
//!   `update:<key name>`. The answer (NOERROR) goes out once the change is on disk and
//!   served.
//! - **Config:** `[update]` (`crate::config::UpdateConfig`).
//! - **Readiness:** nothing to sync: what UPDATEs registered is in the log, replayed at
//!   start.
//! - **Metrics:** `muster_update_messages_total{result}` (the rcode answered, lower case).
//!
//! [`parse`] reads the sections (pure), [`plan`] checks prerequisites and folds the
//! updates into one change (pure); [`Updates::update`] runs them in order. UPDATEs are
//! applied one at a time (a lock held from the prerequisites to the commit), so one
//! UPDATE's prerequisites cannot be invalidated by another UPDATE before it commits.

mod parse;
mod plan;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::config::{UpdateConfig, UpdateGrant};
use crate::registry::{ChangeError, RegistryHandle, Snapshot, SourceId};

pub use parse::{Parsed, Prerequisite, Update, parse};
pub use plan::{Grant, changes, check};

/// One key's permission, from `[[update.keys]]`, and the source its changes carry.
struct KeyGrant {
    grant: UpdateGrant,
    source: SourceId,
}

/// Applies the UPDATE messages the DNS handler receives.
pub struct Updates {
    registry: RegistryHandle,
    keys: Vec<KeyGrant>,
    max_records: usize,
    /// Held from reading the prerequisites to the commit of one UPDATE.
    serial: tokio::sync::Mutex<()>,
    metrics: UpdateMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `muster_update_*` metrics.
#[derive(Clone, Debug, Default)]
pub struct UpdateMetrics {
    messages: Family<ResultLabels, Counter>,
}

/// The rcodes an UPDATE is answered with, each its own `result` label.
const RCODES: [ResponseCode; 10] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NXDomain,
    ResponseCode::Refused,
    ResponseCode::YXDomain,
    ResponseCode::YXRRSet,
    ResponseCode::NXRRSet,
    ResponseCode::NotAuth,
    ResponseCode::NotZone,
];

/// The `result` label of `rcode`: its name in lower case, `other` beyond [`RCODES`].
fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "noerror",
        ResponseCode::FormErr => "formerr",
        ResponseCode::ServFail => "servfail",
        ResponseCode::NXDomain => "nxdomain",
        ResponseCode::Refused => "refused",
        ResponseCode::YXDomain => "yxdomain",
        ResponseCode::YXRRSet => "yxrrset",
        ResponseCode::NXRRSet => "nxrrset",
        ResponseCode::NotAuth => "notauth",
        ResponseCode::NotZone => "notzone",
        _ => "other",
    }
}

impl UpdateMetrics {
    /// Adds the metrics to the process's registry, under `muster_update_`, a series at
    /// zero for each rcode an UPDATE is answered with.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        for rcode in RCODES {
            let result = rcode_label(rcode);
            drop(self.messages.get_or_create(&ResultLabels { result }));
        }
        registry.sub_registry_with_prefix("muster_update").register(
            "messages",
            "UPDATE messages answered, by rcode (noerror: applied or nothing to do)",
            self.messages.clone(),
        );
    }
}

impl Updates {
    /// From `[update]` and its validated keys (`config::Settings::update_grants`).
    pub fn new(
        config: &UpdateConfig,
        grants: &[UpdateGrant],
        registry: RegistryHandle,
        metrics: UpdateMetrics,
    ) -> Self {
        let keys = grants
            .iter()
            .map(|grant| KeyGrant {
                source: SourceId::new(format!(
                    "update:{}",
                    grant.name.to_ascii().trim_end_matches('.')
                )),
                grant: grant.clone(),
            })
            .collect();
        Self {
            registry,
            keys,
            max_records: config.max_records,
            serial: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    /// Answers one UPDATE whose zone section is `zone`, signed with the key `key`
    /// (verified; `None`: unsigned): the rcode of the answer. Returns once a change is
    /// committed and served, or refused.
    pub async fn update(
        &self,
        key: Option<&Name>,
        zone: &Query,
        prerequisites: &[Record],
        updates: &[Record],
    ) -> ResponseCode {
        let rcode = match self.apply(key, zone, prerequisites, updates).await {
            Ok(()) => ResponseCode::NoError,
            Err(rcode) => rcode,
        };
        let result = rcode_label(rcode);
        self.metrics
            .messages
            .get_or_create(&ResultLabels { result })
            .inc();
        rcode
    }

    async fn apply(
        &self,
        key: Option<&Name>,
        zone: &Query,
        prerequisites: &[Record],
        updates: &[Record],
    ) -> Result<(), ResponseCode> {
        let key = key.ok_or(ResponseCode::Refused)?;
        let KeyGrant { grant, source } = self
            .keys
            .iter()
            .find(|k| k.grant.name == *key)
            .ok_or(ResponseCode::Refused)?;
        if zone.query_type() != RecordType::SOA {
            return Err(ResponseCode::FormErr);
        }
        let namespace_name = zone.name().to_lowercase().to_ascii();
        let namespace_name = namespace_name.trim_end_matches('.');
        if zone.query_class() != DNSClass::IN {
            return Err(ResponseCode::NotAuth);
        }
        if prerequisites.len().saturating_add(updates.len()) > self.max_records {
            return Err(ResponseCode::Refused);
        }
        let in_dns = |snapshot: &Snapshot| {
            let namespace = snapshot.namespace(namespace_name).filter(|n| n.in_dns());
            namespace.cloned().ok_or(ResponseCode::NotAuth)
        };
        in_dns(&self.registry.snapshot())?;
        if !grant.namespaces.iter().any(|g| g.is_match(namespace_name)) {
            return Err(ResponseCode::Refused);
        }
        let origin = zone.name().to_lowercase();
        let parsed = parse(&origin, prerequisites, updates)?;
        let _serial = self.serial.lock().await;
        // Read under the lock: no other UPDATE commits between this and ours.
        let namespace = in_dns(&self.registry.snapshot())?;
        let namespace = &*namespace;
        check(namespace, &origin, &parsed.prerequisites)?;
        let may_touch = |service: &str| grant.services.iter().any(|g| g.is_match(service));
        let by = Grant {
            source,
            may_touch: &may_touch,
        };
        let change = changes(namespace, namespace_name, &origin, &parsed.updates, &by)?;
        let Some(change) = change else {
            return Ok(());
        };
        match self.registry.apply_durable(change).await {
            Ok(_) => Ok(()),
            Err(ChangeError::Storage(_) | ChangeError::ShuttingDown) => Err(ResponseCode::ServFail),
            Err(_) => Err(ResponseCode::Refused),
        }
    }
}
