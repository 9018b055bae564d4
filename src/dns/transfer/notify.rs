//! NOTIFY (RFC 1996): tells each secondary that a namespace's serial moved, so it asks
//! for an IXFR now instead of at its next refresh.
//!
//! One NOTIFY per zone and secondary at most every [`COALESCE`]: changes in between are
//! covered by the next one, which carries the newest serial. Each is retried with
//! backoff until the secondary answers, or until a newer one for the same zone replaces it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::tsig::{Signer, TsigKey};
use crate::dns::metrics::{DnsMetrics, NOTIFY_ACKNOWLEDGED, NOTIFY_RETRIED};
use crate::dns::zone::PublishedZone;

/// The shortest time between two NOTIFYs for one zone.
const COALESCE: Duration = Duration::from_millis(100);
/// The first wait for an answer; it doubles per retry up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(500);
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Sends NOTIFYs for every serial change of every namespace in `zone` to `targets`
/// until `shutdown`. Namespaces are notified once at start, as a restarted primary does.
pub async fn run(
    zone: PublishedZone,
    targets: Vec<SocketAddr>,
    key: Option<TsigKey>,
    metrics: Arc<DnsMetrics>,
    shutdown: CancellationToken,
) {
    let mut published = zone.subscribe();
    let mut notified: HashMap<String, u32> = HashMap::new();
    let mut in_flight: HashMap<(String, SocketAddr), JoinHandle<()>> = HashMap::new();
    loop {
        let current = zone.load_full();
        for namespace in current.namespaces() {
            let serial = namespace.soa.soa_serial();
            if notified.insert(namespace.name.clone(), serial) == Some(serial) {
                continue;
            }
            for target in &targets {
                let task = tokio::spawn(notify_until_answered(
                    *target,
                    namespace.soa.view().record(),
                    key.clone(),
                    metrics.clone(),
                ));
                if let Some(older) = in_flight.insert((namespace.name.clone(), *target), task) {
                    older.abort();
                }
            }
        }
        in_flight.retain(|_, task| !task.is_finished());
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(COALESCE) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = published.changed() => if changed.is_err() { break },
        }
    }
    for task in in_flight.values() {
        task.abort();
    }
}

/// Sends one NOTIFY for `soa`'s zone to `target` until it answers.
async fn notify_until_answered(
    target: SocketAddr,
    soa: Record,
    key: Option<TsigKey>,
    metrics: Arc<DnsMetrics>,
) {
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let mut wait = FIRST_WAIT;
    loop {
        let id: u16 = rand::random();
        let answered = async {
            let socket = UdpSocket::bind(bind).await.ok()?;
            socket
                .send_to(&notify_message(id, &soa, key.as_ref())?, target)
                .await
                .ok()?;
            let mut buffer = [0u8; 4096];
            loop {
                let (len, from) = socket.recv_from(&mut buffer).await.ok()?;
                if from == target && len >= 12 && buffer[..2] == id.to_be_bytes() {
                    return Some(());
                }
            }
        };
        if let Ok(Some(())) = tokio::time::timeout(wait, answered).await {
            metrics.notify(NOTIFY_ACKNOWLEDGED);
            return;
        }
        metrics.notify(NOTIFY_RETRIED);
        tracing::debug!(%target, zone = %soa.name, "NOTIFY not answered; retrying");
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// A NOTIFY for the zone of `soa`, carrying it (RFC 1996 3.7), signed with `key`.
fn notify_message(id: u16, soa: &Record, key: Option<&TsigKey>) -> Option<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    let mut query = Query::query(soa.name.clone(), RecordType::SOA);
    query.set_query_class(DNSClass::IN);
    message.add_query(query);
    message.add_answer(soa.clone());
    let unsigned = message.to_bytes().ok()?;
    match key {
        None => Some(unsigned),
        Some(key) => {
            message.signature = Some(Signer::request(key).sign(&unsigned, id));
            message.to_bytes().ok()
        }
    }
}
