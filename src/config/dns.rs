//! `[dns]`, `[forward]` and `[transfer]`: how DNS is served, forwarded and transferred.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::dns_tcp::DnsTcpConfig;
use super::rrl::RrlConfig;

/// `[dns]`: the DNS listeners.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsServerConfig {
    /// Addresses to serve on, UDP and TCP on each.
    pub listen: Vec<SocketAddr>,
    /// Largest UDP response sent to EDNS clients (1232 avoids IP fragmentation).
    pub max_udp_payload: u16,
    /// The server's identifier sent to clients that ask for it with the NSID option
    /// (RFC 5001), to tell replicas behind one address apart; empty (the default): NSID
    /// is ignored. Printable ASCII, at most 128 bytes.
    pub nsid: String,
    pub tcp: DnsTcpConfig,
    pub rrl: RrlConfig,
}

impl Default for DnsServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8053))],
            max_udp_payload: 1232,
            nsid: String::new(),
            tcp: DnsTcpConfig::default(),
            rrl: RrlConfig::default(),
        }
    }
}

impl DnsServerConfig {
    /// The RRL's exempt networks, with every problem of `[dns]` pushed to `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) -> Vec<IpNet> {
        if self.listen.is_empty() {
            problems.push("dns.listen: at least one address is needed".to_owned());
        }
        if self.max_udp_payload < 512 {
            problems.push(format!(
                "dns.max_udp_payload: {} is below 512",
                self.max_udp_payload
            ));
        }
        if self.nsid.len() > 128 || !self.nsid.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            problems.push("dns.nsid: must be at most 128 printable ASCII characters".to_owned());
        }
        problems.extend(self.tcp.problems());
        self.rrl.validate(problems)
    }
}

/// `[forward]`: sidecar mode, where muster answers every name and sends the ones outside
/// its namespaces to upstream resolvers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Upstream resolvers, tried in order of their recent speed. Empty: names outside the
    /// namespaces are REFUSED, as an authoritative-only server does.
    pub upstreams: Vec<SocketAddr>,
    /// How long one forwarded query may take in all before the client gets SERVFAIL.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Forwarded answers cached (0 turns the cache off); the upstream's TTLs apply.
    pub cache_size: u64,
    /// Forwarded queries waiting on the upstreams at once; a query beyond it gets
    /// SERVFAIL at once, so a silent upstream cannot make muster hold queries (and their
    /// memory and sockets) without bound.
    pub max_in_flight: u32,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            timeout: Duration::from_secs(2),
            cache_size: 8192,
            max_in_flight: 1024,
        }
    }
}

impl ForwardConfig {
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(30) {
            problems.push(format!(
                "forward.timeout: {} is outside 100ms..30s",
                humantime::format_duration(self.timeout)
            ));
        }
        if !(1..=65_536).contains(&self.max_in_flight) {
            problems.push(format!(
                "forward.max_in_flight: {} is outside 1..65536",
                self.max_in_flight
            ));
        }
        problems
    }
}

/// `[transfer]`: zone transfers (AXFR/IXFR) of every DNS namespace to secondaries, and the
/// NOTIFYs that tell them to come.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Networks (CIDR, e.g. `10.0.0.0/8`, or single addresses) allowed to transfer. Empty:
    /// every AXFR/IXFR is REFUSED.
    pub allow: Vec<String>,
    /// Secondaries to NOTIFY after a change (coalesced per zone, retried until answered).
    pub notify: Vec<SocketAddr>,
    /// How far a signed request's time may be from muster's clock (RFC 8945's fudge,
    /// 300 s recommended). A request's own, larger fudge does not widen it; it is also
    /// the fudge muster's signatures carry.
    #[serde(with = "humantime_serde")]
    pub tsig_fudge: Duration,
    /// TSIG keys; when any is set, a transfer must be signed with one of them as well as
    /// come from an allowed network, and NOTIFYs are signed with the first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tsig_keys: Vec<TsigKeyConfig>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            notify: Vec::new(),
            tsig_keys: Vec::new(),
            tsig_fudge: Duration::from_secs(300),
        }
    }
}

/// `[[transfer.tsig_keys]]`: a shared secret for TSIG (RFC 8945).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TsigKeyConfig {
    /// The key's name, as the secondary names it (`transfer-key.`).
    pub name: String,
    /// Only `hmac-sha256` is supported.
    #[serde(default = "default_tsig_algorithm")]
    pub algorithm: String,
    /// The secret, base64 as `tsig-keygen` / `keymgr` print it.
    pub secret: String,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".to_owned()
}

impl TransferConfig {
    /// The typed `[transfer]`, with every problem pushed to `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) -> TransferSettings {
        let allow = networks("transfer.allow", &self.allow, problems);
        let fudge = self.tsig_fudge.as_secs();
        if !(1..=u64::from(u16::MAX)).contains(&fudge) || self.tsig_fudge.subsec_nanos() != 0 {
            problems.push(format!(
                "transfer.tsig_fudge: {} is not a whole number of seconds in 1s..65535s",
                humantime::format_duration(self.tsig_fudge)
            ));
        }
        let mut keys = Vec::new();
        for (i, key) in self.tsig_keys.iter().enumerate() {
            let secret = key.secret_bytes();
            if secret.is_none() {
                problems.push(format!(
                    "transfer.tsig_keys[{i}].secret: not base64 of at least one byte"
                ));
            }
            let name = Name::from_str(&key.name)
                .ok()
                .filter(|_| !key.name.is_empty());
            if name.is_none() {
                problems.push(format!(
                    "transfer.tsig_keys[{i}].name: {:?} is not a DNS name",
                    key.name
                ));
            }
            if !key.algorithm.eq_ignore_ascii_case("hmac-sha256") {
                problems.push(format!(
                    "transfer.tsig_keys[{i}].algorithm: {:?} is not supported (hmac-sha256 is)",
                    key.algorithm
                ));
            }
            if let (Some(mut name), Some(secret)) = (name, secret) {
                name.set_fqdn(true);
                keys.push(TsigSecret { name, secret });
            }
        }
        TransferSettings {
            allow,
            keys,
            notify: self.notify.clone(),
            fudge: u16::try_from(fudge).unwrap_or(u16::MAX),
        }
    }
}

/// `[transfer]`, validated: what `dns::Transfers` is built from, so building it cannot
/// fail.
#[derive(Clone, Debug, Default)]
pub struct TransferSettings {
    /// The networks allowed to transfer.
    pub allow: Vec<IpNet>,
    pub keys: Vec<TsigSecret>,
    pub notify: Vec<SocketAddr>,
    /// `tsig_fudge` in whole seconds, as TSIG records carry it.
    pub fudge: u16,
}

/// A `[[transfer.tsig_keys]]` key, validated: its name as an absolute DNS name and its
/// secret decoded.
#[derive(Clone)]
pub struct TsigSecret {
    pub name: Name,
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigSecret {
    /// The name only: a secret does not belong in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigSecret")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The networks in `list` (CIDR, or bare addresses as /32 or /128); each entry that is
/// neither is a problem named `key[i]`.
pub(super) fn networks(key: &str, list: &[String], problems: &mut Vec<String>) -> Vec<IpNet> {
    let mut networks = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        {
            Ok(network) => networks.push(network),
            Err(_) => problems.push(format!(
                "{key}[{i}]: {text:?} is not an address or CIDR network"
            )),
        }
    }
    networks
}

impl TsigKeyConfig {
    /// The decoded secret, if it is base64 of at least one byte.
    fn secret_bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(self.secret.trim())
            .ok()
            .filter(|bytes| !bytes.is_empty())
    }
}
