//! DNS counters, named `muster_dns_*`.
//!
//! Query counts, and the responses rate limiting dropped or slipped, are kept per
//! answering thread (each fast-path thread has its own slot, the full path shares one)
//! and summed when `/metrics` is scraped, so counting costs an uncontended relaxed add on
//! the fast path.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::rrl::{Class, Verdict};
use super::transfer;

/// The `kind` of `muster_dns_transfers_total` for a transfer the allow list or TSIG
/// refused.
pub const TRANSFER_REFUSED: &str = "refused";
/// The `result` of `muster_dns_notify_total` for a NOTIFY a secondary answered.
pub const NOTIFY_ACKNOWLEDGED: &str = "acknowledged";
/// The `result` of `muster_dns_notify_total` for a NOTIFY sent again after no answer.
pub const NOTIFY_RETRIED: &str = "retried";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The `qtype` label values: the types muster answers, and "other" (a bounded set).
const QTYPES: [&str; 9] = [
    "A", "AAAA", "SRV", "SOA", "NS", "ANY", "AXFR", "IXFR", "other",
];
/// The `rcode` label values.
const RCODES: [&str; 9] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "NOTAUTH",
    "other",
];

/// Counters the DNS frontend keeps; registered once in the process's metrics registry.
#[derive(Default)]
pub struct DnsMetrics {
    queries: QueryCounts,
    /// Answers sent empty with TC set: over UDP larger than the client's payload size,
    /// over TCP not one record of them fitting a message.
    pub truncated: Counter,
    transfers: Family<KindLabels, Counter>,
    notifies: Family<ResultLabels, Counter>,
    tsig_rejected: Family<ErrorLabels, Counter>,
    /// Queries sent to the `[forward]` upstreams.
    pub forwarded: Counter,
    /// Queries for the upstreams answered SERVFAIL at once: `max_in_flight` were waiting.
    pub forward_rejected: Counter,
    /// Datagrams the fast path dropped instead of handing them to the full path, because
    /// as many as it allows were being answered there.
    pub handoff_dropped: Counter,
}

impl DnsMetrics {
    /// Adds every DNS metric to the process's registry, under `muster_dns_`, every
    /// labelled series at zero.
    pub fn register(&self, registry: &mut Registry) {
        let kinds = transfer::Kind::ALL.map(transfer::Kind::label);
        for kind in kinds.into_iter().chain([TRANSFER_REFUSED]) {
            drop(self.transfers.get_or_create(&KindLabels { kind }));
        }
        for result in [NOTIFY_ACKNOWLEDGED, NOTIFY_RETRIED] {
            drop(self.notifies.get_or_create(&ResultLabels { result }));
        }
        for error in transfer::Rejection::LABELS {
            drop(self.tsig_rejected.get_or_create(&ErrorLabels { error }));
        }
        let dns = registry.sub_registry_with_prefix("muster_dns");
        dns.register_collector(Box::new(self.queries.clone()));
        dns.register(
            "truncated",
            "Answers sent with TC set (over UDP: larger than the client's payload size)",
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
            "tsig_rejected",
            "Signed requests rejected: badkey, badsig, badtrunc, badtime (NOTAUTH), formerr (a MAC longer than the hash)",
            self.tsig_rejected.clone(),
        );
        dns.register(
            "forwarded",
            "Queries for names outside the namespaces sent to the upstreams",
            self.forwarded.clone(),
        );
        dns.register(
            "forward_rejected",
            "Queries for the upstreams answered SERVFAIL at once because [forward] max_in_flight were waiting",
            self.forward_rejected.clone(),
        );
        dns.register(
            "handoff_dropped",
            "UDP queries dropped because the full path was already answering as many as it may",
            self.handoff_dropped.clone(),
        );
    }

    pub fn transfer(&self, kind: &'static str) {
        self.transfers.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts a signed request rejected with `error` (a [`Rejection`] label).
    ///
    /// [`Rejection`]: super::transfer::Rejection
    pub fn tsig_rejected(&self, error: &'static str) {
        self.tsig_rejected
            .get_or_create(&ErrorLabels { error })
            .inc();
    }

    pub fn notify(&self, result: &'static str) {
        self.notifies.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one query answered by the full path.
    pub fn count(&self, qtype: Option<RecordType>, rcode: ResponseCode) {
        self.queries.shared.count(qtype, rcode);
    }

    /// The full path's slot (the fast path's threads have their own).
    pub fn shared_slot(&self) -> &QuerySlot {
        &self.queries.shared
    }

    /// A slot of query counters for one fast-path thread, summed with the others on scrape.
    pub fn thread_slot(&self) -> Arc<QuerySlot> {
        let slot = Arc::new(QuerySlot::default());
        self.queries.threads.rcu(|slots| {
            slots
                .iter()
                .cloned()
                .chain([slot.clone()])
                .collect::<Vec<_>>()
        });
        slot
    }
}

/// `muster_dns_queries_total{qtype,rcode}`: the full path's slot plus every thread's.
#[derive(Clone, Default)]
struct QueryCounts {
    shared: Arc<QuerySlot>,
    threads: Arc<ArcSwap<Vec<Arc<QuerySlot>>>>,
}

impl fmt::Debug for QueryCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryCounts").finish_non_exhaustive()
    }
}

impl Collector for QueryCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let threads = self.threads.load();
        let mut family = encoder.encode_descriptor(
            "queries",
            "DNS queries answered, by query type and response code",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        let slots = || [&self.shared].into_iter().chain(threads.iter());
        for (q, qtype) in QTYPES.iter().enumerate() {
            for (r, rcode) in RCODES.iter().enumerate() {
                let index = q * RCODES.len() + r;
                let total: u64 = slots()
                    .map(|slot| slot.counts[index].load(Ordering::Relaxed))
                    .sum();
                if total > 0 {
                    let labels = QueryLabels { qtype, rcode };
                    ConstCounter::new(total).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for (verdict, name, help) in [
            (
                Verdict::Drop,
                "rrl_dropped",
                "UDP responses response rate limiting dropped, by class",
            ),
            (
                Verdict::Slip,
                "rrl_slipped",
                "UDP responses response rate limiting sent empty with TC set, by class",
            ),
        ] {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for class in Class::ALL {
                let total: u64 = slots().map(|slot| slot.limited(verdict, class)).sum();
                let labels = ClassLabels {
                    class: class.label(),
                };
                ConstCounter::new(total).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Query counts by (qtype, rcode), and responses rate limiting dropped and slipped by
/// class, for one thread, on cache lines of its own.
#[repr(align(64))]
pub struct QuerySlot {
    counts: [AtomicU64; QTYPES.len() * RCODES.len()],
    /// Dropped by class, then slipped by class.
    limited: [AtomicU64; 2 * Class::ALL.len()],
}

impl Default for QuerySlot {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            limited: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl QuerySlot {
    /// Counts one query.
    pub fn count(&self, qtype: Option<RecordType>, rcode: ResponseCode) {
        let index = qtype_index(qtype) * RCODES.len() + rcode_index(rcode);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one response rate limiting dropped or slipped.
    pub fn count_limited(&self, verdict: Verdict, class: Class) {
        if let Some(counter) = self.limited.get(limited_index(verdict, class)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Responses of `class` rate limiting dropped or slipped (as `verdict` says).
    pub fn limited(&self, verdict: Verdict, class: Class) -> u64 {
        self.limited
            .get(limited_index(verdict, class))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }
}

/// Where a limited response's count is: dropped then slipped, by class (a sent one has
/// no count here, and no index within the array).
fn limited_index(verdict: Verdict, class: Class) -> usize {
    let row = match verdict {
        Verdict::Drop => 0,
        Verdict::Slip => 1,
        Verdict::Send => 2,
    };
    row * Class::ALL.len() + class as usize
}

fn qtype_index(qtype: Option<RecordType>) -> usize {
    match qtype {
        Some(RecordType::A) => 0,
        Some(RecordType::AAAA) => 1,
        Some(RecordType::SRV) => 2,
        Some(RecordType::SOA) => 3,
        Some(RecordType::NS) => 4,
        Some(RecordType::ANY) => 5,
        Some(RecordType::AXFR) => 6,
        Some(RecordType::IXFR) => 7,
        _ => 8,
    }
}

fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        ResponseCode::NotAuth => 7,
        _ => 8,
    }
}
