//! Starting muster on ephemeral ports, and a minimal DNS client for the tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use muster::config::Config;
use muster::dns::PublishedZone;
use muster::registry::{Change, InstanceKey, InstanceSpec, Registry, Snapshot, SourceId};
use tokio_util::sync::CancellationToken;

/// A muster running in this process; stops when dropped.
pub struct Muster {
    pub dns: SocketAddr,
    pub http: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Muster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts muster from `config_text` with every listener on 127.0.0.1 port 0 and data in
/// `data_dir`, and waits until every source has synced.
pub async fn start(config_text: &str, data_dir: &Path) -> Muster {
    let mut config = Config::parse(config_text).expect("test config parses");
    config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.to_owned();
    let shutdown = CancellationToken::new();
    let running = muster::start(config, shutdown.clone())
        .await
        .expect("muster starts");
    let muster = Muster {
        dns: running.dns_addrs[0],
        http: running.http_addr,
        shutdown,
    };
    tokio::spawn(running.wait());
    for _ in 0..200 {
        if ready(muster.http).await {
            return muster;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("muster did not become ready");
}

async fn ready(http: SocketAddr) -> bool {
    tokio::task::spawn_blocking(move || {
        let Ok(mut stream) = TcpStream::connect(http) else {
            return false;
        };
        let _ = write!(stream, "GET /readyz HTTP/1.0\r\n\r\n");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
    })
    .await
    .unwrap()
}

/// The DNS zone of `config_text` once `instances` came in from its one (file) source.
pub async fn zone(config_text: &str, instances: Vec<(InstanceKey, InstanceSpec)>) -> PublishedZone {
    zone_with(config_text, Vec::new(), instances).await
}

/// The DNS zone of `config_text` after `changes` (services declared through the API, say)
/// and then `instances` from its one (file) source.
pub async fn zone_with(
    config_text: &str,
    changes: Vec<Change>,
    instances: Vec<(InstanceKey, InstanceSpec)>,
) -> PublishedZone {
    let namespaces = Config::parse(config_text)
        .unwrap()
        .settings()
        .unwrap()
        .namespaces;
    let source = SourceId::new("file:fixture");
    let mut registry = Registry::new(Snapshot::new(namespaces, [source.clone()]));
    let handle = registry.handle();
    let view = PublishedZone::default();
    registry.on_publish(view.publish_hook());
    let shutdown = CancellationToken::new();
    tokio::spawn(registry.run(shutdown.clone()));
    for change in changes {
        handle.apply(change).await.unwrap();
    }
    handle
        .apply(Change::Sync { source, instances })
        .await
        .unwrap();
    shutdown.cancel();
    view
}

/// A query for `name` `qtype`, as a client would send it (RD set, no EDNS).
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

/// Sends `message` over UDP and returns the parsed response.
pub fn ask_udp(server: SocketAddr, message: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(&message.to_vec().unwrap(), server).unwrap();
    let mut buffer = [0u8; 65535];
    let (len, _) = socket.recv_from(&mut buffer).expect("a UDP response");
    Message::from_vec(&buffer[..len]).expect("a valid response")
}

/// Sends `message` over TCP (length-prefixed) and returns the parsed response.
pub fn ask_tcp(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let bytes = message.to_vec().unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .unwrap();
    stream.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buffer = vec![0u8; u16::from_be_bytes(len).into()];
    stream.read_exact(&mut buffer).unwrap();
    Message::from_vec(&buffer).expect("a valid response")
}
