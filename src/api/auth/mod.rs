//! Who may use the HTTP APIs: authentication, authorization, write limits, audit.
//!
//! Owns: the credentials of `[auth]` as the APIs check them (they follow SIGHUP reloads),
//! the principals requests authenticate as, the per-principal write buckets and the
//! audit log. The REST guard (`api::access`) and the Cloud Map handler call in here;
//! must not: know any route or operation beyond the names it is given.
//!
//! - **Open or closed.** With no credential configured the APIs are open: every request
//!   is [`Principal::Anonymous`] (config validation allows that only on a loopback
//!   listener, or with `allow_anonymous`). Once any token or access key is configured,
//!   every request to either API must authenticate.
//! - **REST**: `Authorization: Bearer TOKEN`, looked up by its SHA-256 (the config holds
//!   only hashes; tokens are 256-bit random, so a plain hash is enough).
//! - **Cloud Map**: AWS Signature Version 4 ([`sigv4`]) against `[[auth.access_keys]]`.
//! - **Writes** draw from the principal's token bucket ([`rate`]); anonymous clients and
//!   requests that fail authentication draw from their source address's.
//! - **Audit** ([`audit`]): one line per write, accepted or refused, under the tracing
//!   target `muster::audit`.
//!
//! Metrics: `muster_auth_denied_total{api,reason}` (requests refused by authentication
//! or authorization; reason `missing`, `malformed`, `unknown_credential`, `signature`,
//! `expired`, `forbidden`), `muster_auth_throttled_total{api}` (writes refused by the
//! rate limit), `muster_auth_rate_buckets` (buckets tracked) and
//! `muster_auth_rate_overflow_total` (writes that found the bucket table full).

pub mod audit;
mod credentials;
#[cfg(test)]
mod credentials_tests;
mod metrics;
mod rate;
pub mod sigv4;
#[cfg(test)]
mod sigv4_tests;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::http::HeaderMap;
use tokio_util::sync::CancellationToken;

use crate::config::AuthConfig;
use crate::reload::ConfigUpdates;

pub(crate) use credentials::glob;
pub use credentials::{
    AccessKey, Credentials, MAX_TOKEN, ScopeKind, Token, hash_token, issue_token, new_token,
};
pub use metrics::AuthMetrics;
pub use rate::{BucketKey, Throttled};

/// Who a request authenticated as.
#[derive(Clone, Debug)]
pub enum Principal {
    /// No credentials are configured: anyone who reaches the listener.
    Anonymous,
    Token(Arc<Token>),
    AccessKey(Arc<AccessKey>),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Token(token) => write!(f, "token:{}", token.name),
            Principal::AccessKey(key) => write!(f, "key:{}", key.id),
        }
    }
}

impl Principal {
    /// The bucket this principal's writes draw from (`source` for anonymous ones).
    pub fn bucket(&self, source: IpAddr) -> BucketKey {
        match self {
            Principal::Anonymous => BucketKey::source(source),
            named => BucketKey::Principal(named.to_string().into()),
        }
    }

    /// REST: whether the principal may do `kind` to `namespace`/`service`.
    pub fn may(&self, kind: ScopeKind, namespace: &str, service: &str) -> bool {
        match self {
            Principal::Anonymous => true,
            Principal::Token(token) => token.allows(kind, namespace, service),
            Principal::AccessKey(_) => false,
        }
    }

    /// REST: whether the principal may do `kind` to some service of `namespace`.
    pub fn may_in(&self, kind: ScopeKind, namespace: &str) -> bool {
        match self {
            Principal::Anonymous => true,
            Principal::Token(token) => token.allows_in(kind, namespace),
            Principal::AccessKey(_) => false,
        }
    }

    /// Cloud Map: whether the principal may call `operation` on `namespace` (on some
    /// namespace when none is named).
    pub fn may_call(&self, operation: &str, namespace: Option<&str>) -> bool {
        match (self, namespace) {
            (Principal::Anonymous, _) => true,
            (Principal::AccessKey(key), Some(namespace)) => key.allows(operation, namespace),
            (Principal::AccessKey(key), None) => key.allows_somewhere(operation),
            (Principal::Token(_), _) => false,
        }
    }
}

/// Why a bearer token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not configured (or not a bearer header at all).
    Unknown,
}

/// The APIs' shared authentication state.
pub struct Auth {
    credentials: ArcSwap<Credentials>,
    limiter: rate::Limiter,
    pub metrics: AuthMetrics,
}

impl Auth {
    /// The credentials of `config`, with metrics registered in `registry`.
    pub fn new(
        config: &AuthConfig,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, Vec<String>> {
        let credentials = Credentials::from_config(config)?;
        let metrics = AuthMetrics::default();
        metrics.register(registry);
        Ok(Self {
            credentials: ArcSwap::from_pointee(credentials),
            limiter: rate::Limiter::new(rate::MAX_BUCKETS, &metrics),
            metrics,
        })
    }

    /// The credentials now: load once per request and check everything against them.
    pub fn credentials(&self) -> Arc<Credentials> {
        self.credentials.load_full()
    }

    /// Follows reloaded configurations until `stop`: new tokens, keys, secrets and
    /// write limits apply to the next request. A table that does not build (a secret
    /// file gone since validation) keeps the credentials in force.
    pub async fn follow(self: Arc<Self>, mut updates: ConfigUpdates, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = updates.changed() => if changed.is_err() { return },
            }
            let config = updates.borrow_and_update().clone();
            match Credentials::from_config(&config.auth) {
                Ok(credentials) => {
                    self.credentials.store(Arc::new(credentials));
                    tracing::info!("auth: credentials reloaded");
                }
                Err(problems) => tracing::error!(
                    problems = problems.join("; "),
                    "auth: the reloaded credentials do not build; the previous ones stay"
                ),
            }
        }
    }

    /// REST: the principal of `Authorization: Bearer TOKEN`.
    pub fn bearer(
        credentials: &Credentials,
        headers: &HeaderMap,
    ) -> Result<Principal, BearerError> {
        if credentials.is_open() {
            return Ok(Principal::Anonymous);
        }
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(BearerError::Missing)?;
        let value = value.to_str().map_err(|_| BearerError::Unknown)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(BearerError::Unknown)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN {
            return Err(BearerError::Unknown);
        }
        credentials
            .token(token)
            .map(|token| Principal::Token(token.clone()))
            .ok_or(BearerError::Unknown)
    }

    /// Cloud Map: the principal whose access key signed `request` (SigV4).
    pub fn sigv4(
        credentials: &Credentials,
        request: &sigv4::SignedRequest<'_>,
        expected: &sigv4::Expected<'_>,
    ) -> Result<Principal, sigv4::SigError> {
        if credentials.is_open() {
            return Ok(Principal::Anonymous);
        }
        let id = sigv4::verify(request, expected, |id| {
            credentials.access_key(id).map(|key| key.secret())
        })?;
        let key = credentials
            .access_key(id)
            .ok_or(sigv4::SigError::UnknownKey)?;
        Ok(Principal::AccessKey(key.clone()))
    }

    /// Takes one write from `key`'s bucket, under the limits of `credentials`.
    pub fn take_write(
        &self,
        credentials: &Credentials,
        key: BucketKey,
        api: &'static str,
    ) -> Result<(), Throttled> {
        self.take_writes(credentials, key, api, 1)
    }

    /// Takes `count` writes at once (a REST batch: one per change), or none.
    pub fn take_writes(
        &self,
        credentials: &Credentials,
        key: BucketKey,
        api: &'static str,
        count: u32,
    ) -> Result<(), Throttled> {
        let Some((rate, burst)) = credentials.rate else {
            return Ok(());
        };
        let taken = self
            .limiter
            .take_many(key, count, rate, burst, Instant::now());
        if taken.is_err() {
            self.metrics.throttled(api);
        }
        taken
    }
}
