//! DNS counters, named `muster_dns_*`.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Counters the DNS frontend keeps; registered once in the process's metrics registry.
#[derive(Default)]
pub struct DnsMetrics {
    queries: Family<QueryLabels, Counter>,
    /// UDP answers sent truncated (TC) because they did not fit the client's payload size.
    pub truncated: Counter,
    transfers: Family<KindLabels, Counter>,
    notifies: Family<ResultLabels, Counter>,
    /// Queries sent to the `[forward]` upstreams.
    pub forwarded: Counter,
}

impl DnsMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let dns = registry.sub_registry_with_prefix("muster_dns");
        dns.register(
            "queries",
            "DNS queries answered, by query type and response code",
            self.queries.clone(),
        );
        dns.register(
            "truncated",
            "UDP answers sent with TC set",
            self.truncated.clone(),
        );
        dns.register(
            "transfers",
            "Zone transfers answered: axfr, ixfr (from the journal), ixfr_current, ixfr_full (journal too short), refused",
            self.transfers.clone(),
        );
        dns.register(
            "notify",
            "NOTIFYs sent to secondaries: acknowledged, or retried after no answer",
            self.notifies.clone(),
        );
        dns.register(
            "forwarded",
            "Queries for names outside the namespaces sent to the upstreams",
            self.forwarded.clone(),
        );
    }

    pub fn transfer(&self, kind: &'static str) {
        self.transfers.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn notify(&self, result: &'static str) {
        self.notifies.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn count(&self, qtype: Option<RecordType>, rcode: ResponseCode) {
        let labels = QueryLabels {
            qtype: qtype_label(qtype),
            rcode: rcode_label(rcode),
        };
        self.queries.get_or_create(&labels).inc();
    }
}

/// A bounded label set: the types muster answers, and "other".
fn qtype_label(qtype: Option<RecordType>) -> &'static str {
    match qtype {
        Some(RecordType::A) => "A",
        Some(RecordType::AAAA) => "AAAA",
        Some(RecordType::SRV) => "SRV",
        Some(RecordType::SOA) => "SOA",
        Some(RecordType::NS) => "NS",
        Some(RecordType::ANY) => "ANY",
        Some(RecordType::AXFR) => "AXFR",
        Some(RecordType::IXFR) => "IXFR",
        _ => "other",
    }
}

fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        ResponseCode::NotAuth => "NOTAUTH",
        _ => "other",
    }
}
