//! Sidecar forwarding: names outside the namespaces are resolved through upstream
//! resolvers (`[forward]`), with hickory-resolver's cache and upstream selection.
//!
//! The client gets the upstream's rcode and records (NXDOMAIN and NODATA with the
//! upstream's SOA, so negative caching works downstream too) and SERVFAIL when the
//! upstreams fail or take longer than the configured timeout: never a hang.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};

use crate::config::ForwardConfig;

/// Resolves names muster is not authoritative for.
pub struct Forwarder {
    resolver: TokioResolver,
    timeout: Duration,
}

/// What the upstreams said, as the sections of a response.
#[derive(Debug, Default)]
pub struct Forwarded {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Forwarder {
    /// A forwarder for `config`, or `None` when no upstream is configured.
    pub fn new(config: &ForwardConfig) -> Result<Option<Self>, String> {
        if config.upstreams.is_empty() {
            return Ok(None);
        }
        let name_servers = config
            .upstreams
            .iter()
            .map(|upstream| {
                let mut udp = ConnectionConfig::udp();
                udp.port = upstream.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = upstream.port();
                NameServerConfig::new(upstream.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut options = ResolverOpts::default();
        // Two tries inside the overall timeout, so one lost packet is retried.
        options.timeout = config.timeout / 2;
        options.attempts = 2;
        options.cache_size = config.cache_size;
        options.use_hosts_file = ResolveHosts::Never;
        options.ndots = 0;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], name_servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(|e| format!("forward: cannot build the resolver: {e}"))?;
        Ok(Some(Self {
            resolver,
            timeout: config.timeout,
        }))
    }

    /// Resolves `qtype` at `name` upstream; SERVFAIL on any failure or at the timeout.
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Forwarded {
        let mut name = name.clone();
        name.set_fqdn(true);
        match tokio::time::timeout(self.timeout, self.resolver.lookup(name, qtype)).await {
            Ok(Ok(lookup)) => Forwarded {
                rcode: ResponseCode::NoError,
                answers: lookup.answers().to_vec(),
                authorities: lookup.authorities().to_vec(),
                additionals: lookup.additionals().to_vec(),
            },
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(no_records)))) => Forwarded {
                rcode: no_records.response_code,
                authorities: no_records
                    .soa
                    .map(|soa| vec![soa.into_record_of_rdata()])
                    .unwrap_or_default(),
                ..Forwarded::default()
            },
            Ok(Err(NetError::Dns(DnsError::ResponseCode(rcode)))) => Forwarded {
                rcode,
                ..Forwarded::default()
            },
            Ok(Err(error)) => {
                tracing::debug!(%error, "forwarding failed");
                Forwarded::servfail()
            }
            Err(_) => Forwarded::servfail(),
        }
    }
}

impl Forwarded {
    fn servfail() -> Self {
        Self {
            rcode: ResponseCode::ServFail,
            ..Self::default()
        }
    }
}
