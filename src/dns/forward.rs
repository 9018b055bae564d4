//! Sidecar forwarding: names outside the namespaces are resolved through upstream
//! resolvers (`[forward]`), with hickory-resolver's cache and upstream selection.
//!
//! The client gets the upstream's rcode and records (NXDOMAIN and NODATA with the
//! upstream's SOA, so negative caching works downstream too) and SERVFAIL when the
//! upstreams fail or take longer than the configured timeout: never a hang. At most
//! `max_in_flight` queries wait on the upstreams at once; the next one is [`Busy`] (the
//! handler answers SERVFAIL at once), so a silent upstream under a flood costs a bounded
//! number of tasks and sockets.

use std::time::Duration;

use tokio::sync::Semaphore;

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
    /// One permit per query that may wait on the upstreams.
    in_flight: Semaphore,
}

/// `max_in_flight` queries are already waiting on the upstreams.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

/// hickory-resolver could not build the resolver for `[forward]`.
#[derive(Debug, thiserror::Error)]
#[error("forward: cannot build the resolver: {0}")]
pub struct BuildError(NetError);

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
    pub fn new(config: &ForwardConfig) -> Result<Option<Self>, BuildError> {
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
        .map_err(BuildError)?;
        Ok(Some(Self {
            resolver,
            timeout: config.timeout,
            in_flight: Semaphore::new(config.max_in_flight as usize),
        }))
    }

    /// Resolves `qtype` at `name` upstream; SERVFAIL on any failure or at the timeout,
    /// [`Busy`] at once when `max_in_flight` queries are waiting.
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Forwarded, Busy> {
        let _permit = self.in_flight.try_acquire().map_err(|_| Busy)?;
        let mut name = name.clone();
        name.set_fqdn(true);
        let lookup = tokio::time::timeout(self.timeout, self.resolver.lookup(name, qtype)).await;
        Ok(match lookup {
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
        })
    }
}

impl Forwarded {
    /// SERVFAIL, with no records.
    pub fn servfail() -> Self {
        Self {
            rcode: ResponseCode::ServFail,
            ..Self::default()
        }
    }
}
