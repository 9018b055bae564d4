//! Watching for changes: blocking queries on `GET /v1/namespaces/{ns}/services/{svc}`
//! (`?index=N&wait=30s`, Consul's) and the bounds every watcher is held to. The
//! `/v1/watch` stream is in [`sse`](super::sse).
//!
//! Owns: parsing `index` and `wait`, waiting for a service's index to move, and the
//! caps on blocked queries and open streams (`http.max_blocking_queries`,
//! `http.max_watch_streams`, read at each request so they follow a reload). A waiter
//! holds no lock and does not poll: it sleeps on the registry's change notification and,
//! woken, compares one service's index (a hash lookup), so a change wakes 1,000 waiters
//! for microseconds each and renders only for those whose service changed. Must not:
//! outlive shutdown (every waiter answers at once when the HTTP frontend stops).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::metrics::HttpMetrics;
use crate::registry::RegistryHandle;
use crate::reload::ConfigUpdates;

/// How long a blocking query waits when it does not say (Consul's default).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// The longest `wait` accepted (Consul's cap); 400 naming `wait` beyond.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// The header that carries a service's index (Consul's `X-Consul-Index`).
pub const INDEX_HEADER: &str = "x-muster-index";

/// What watchers share: the caps in force, their metrics, and the frontend's shutdown.
pub struct Watchers {
    updates: ConfigUpdates,
    metrics: Arc<HttpMetrics>,
    shutdown: CancellationToken,
    blocking: Slots,
    streams: Slots,
}

/// Which cap a watcher counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Blocking,
    Stream,
}

impl Kind {
    /// The metrics' `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Blocking => "blocking",
            Self::Stream => "stream",
        }
    }
}

impl Watchers {
    /// Watchers held to `updates`' caps, stopped by `shutdown` (the HTTP frontend's).
    pub fn new(
        updates: ConfigUpdates,
        metrics: Arc<HttpMetrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            blocking: Slots::new(metrics.watchers(Kind::Blocking)),
            streams: Slots::new(metrics.watchers(Kind::Stream)),
            updates,
            metrics,
            shutdown,
        }
    }

    /// A place for one more watcher of `kind`, or [`Busy`] when none is left.
    pub(super) fn admit(&self, kind: Kind) -> Result<Slot, Busy> {
        let (slots, cap, key) = {
            let config = self.updates.borrow();
            match kind {
                Kind::Blocking => (
                    &self.blocking,
                    config.http.max_blocking_queries,
                    "http.max_blocking_queries",
                ),
                Kind::Stream => (
                    &self.streams,
                    config.http.max_watch_streams,
                    "http.max_watch_streams",
                ),
            }
        };
        slots.take(cap as usize).ok_or_else(|| {
            self.metrics.watch_refused(kind);
            Busy { key, cap }
        })
    }

    /// Fires when the HTTP frontend stops: watchers answer (or end) at once.
    pub(super) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub(super) fn metrics(&self) -> &HttpMetrics {
        &self.metrics
    }

    /// The idle timeout in force: a stream must write more often than that.
    pub(super) fn idle_timeout(&self) -> Duration {
        self.updates.borrow().http.idle_timeout
    }

    /// Waits until `namespace/service`'s index is no longer `index`, `wait` (plus up to
    /// a sixteenth of it, so that waiters do not all come back at once) has passed, or
    /// the frontend stops. Answers at once when the index is 0 or already differs (the
    /// service changed, or muster restarted). 503 when the cap on blocked queries is
    /// reached.
    pub(super) async fn block(
        &self,
        registry: &RegistryHandle,
        (namespace, service): (&str, &str),
        query: Blocking,
    ) -> Result<(), Busy> {
        let current =
            |registry: &RegistryHandle| registry.recent_changes().service_index(namespace, service);
        if query.index == 0 || current(registry) != query.index || query.wait.is_zero() {
            return Ok(());
        }
        let _slot = self.admit(Kind::Blocking)?;
        let jitter = rand::random_range(Duration::ZERO..=query.wait / 16);
        let deadline = Instant::now() + query.wait + jitter;
        let mut changes = registry.watch_changes();
        // Subscribed before this look: a change after it wakes `changed`.
        while current(registry) == query.index {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = self.shutdown.cancelled() => break,
            }
        }
        Ok(())
    }
}

/// Every place of a watcher cap is taken: 503 with `Retry-After`, naming the cap.
#[derive(Debug)]
pub struct Busy {
    key: &'static str,
    cap: u32,
}

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        let message = format!(
            "too many watchers: {} ({}) are open; try again later",
            self.key, self.cap
        );
        let mut response =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, None, message).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// A blocking query's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    pub index: u64,
    pub wait: Duration,
}

impl Blocking {
    /// `?index=N&wait=30s` (no `index`: not a blocking query); 400 naming the field for
    /// a bad value, an unknown parameter or one given twice.
    pub fn parse(params: &Params) -> Result<Option<Self>, ApiError> {
        params.only(&["index", "wait"])?;
        let index = params.get("index").map(index).transpose()?;
        let wait = params.get("wait").map(wait).transpose()?;
        Ok(index.map(|index| Self {
            index,
            wait: wait.unwrap_or(DEFAULT_WAIT),
        }))
    }
}

/// An index given by a client (`index`, `Last-Event-ID`): a whole number.
pub fn parse_index(field: &str, text: &str) -> Result<u64, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Some(field),
            format!(
                "{text:?} is not an index (a whole number from 0 to {})",
                u64::MAX
            ),
        )
    })
}

fn index(text: &str) -> Result<u64, ApiError> {
    parse_index("index", text)
}

fn wait(text: &str) -> Result<Duration, ApiError> {
    let wait = super::rest::duration("wait", Some(text.to_owned()))?.unwrap_or(DEFAULT_WAIT);
    crate::registry::check::within("wait", wait, &(Duration::ZERO..=MAX_WAIT))?;
    Ok(wait)
}

/// A request's query parameters, decoded.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The parameters of a request (400 naming `query` when they do not decode).
    pub fn from_query(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Self, ApiError> {
        match query {
            Ok(Query(params)) => Ok(Self(params)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("query"),
                rejection.body_text(),
            )),
        }
    }

    /// 400 naming the first parameter not in `known`, or given twice.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        for (i, (name, _)) in self.0.iter().enumerate() {
            let problem = if !known.contains(&name.as_str()) {
                format!("unknown parameter {name:?} (known: {})", known.join(", "))
            } else if self.0[..i].iter().any(|(earlier, _)| earlier == name) {
                format!("{name} is given twice")
            } else {
                continue;
            };
            return Err(ApiError::new(StatusCode::BAD_REQUEST, Some(name), problem));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let mut found = self.0.iter().filter(|(n, _)| n == name);
        found.next().map(|(_, value)| value.as_str())
    }
}

/// Counts the watchers of one kind against a cap.
struct Slots {
    used: Arc<AtomicUsize>,
    gauge: Gauge,
}

/// One watcher's place under its cap, given back when dropped.
pub(super) struct Slot {
    used: Arc<AtomicUsize>,
    gauge: Gauge,
}

impl Slots {
    fn new(gauge: Gauge) -> Self {
        Self {
            used: Arc::default(),
            gauge,
        }
    }

    fn take(&self, cap: usize) -> Option<Slot> {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < cap).then_some(used + 1)
            });
        taken.ok()?;
        self.gauge.inc();
        Some(Slot {
            used: self.used.clone(),
            gauge: self.gauge.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn field_of(result: Result<Option<Blocking>, ApiError>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        error.field.unwrap()
    }

    #[test]
    fn index_and_wait_parse_and_are_bounded() {
        assert_eq!(Blocking::parse(&params(&[])).unwrap(), None);
        let query = Blocking::parse(&params(&[("index", "42"), ("wait", "30s")]));
        let expected = Blocking {
            index: 42,
            wait: Duration::from_secs(30),
        };
        assert_eq!(query.unwrap(), Some(expected));
        let default = Blocking::parse(&params(&[("index", "7")]))
            .unwrap()
            .unwrap();
        assert_eq!(default.wait, DEFAULT_WAIT);
        // A wait without an index blocks on nothing.
        assert_eq!(Blocking::parse(&params(&[("wait", "1s")])).unwrap(), None);
        for (bad, field) in [
            (&[("index", "-1")][..], "index"),
            (&[("index", "x")], "index"),
            (&[("index", "18446744073709551616")], "index"),
            (&[("index", "1"), ("wait", "soon")], "wait"),
            (&[("index", "1"), ("wait", "11m")], "wait"),
            (&[("index", "1"), ("index", "2")], "index"),
            (&[("index", "1"), ("stale", "")], "stale"),
        ] {
            assert_eq!(field_of(Blocking::parse(&params(bad))), field, "{bad:?}");
        }
    }

    #[test]
    fn slots_stop_at_the_cap_and_come_back_when_dropped() {
        let slots = Slots::new(Gauge::default());
        let first = slots.take(2).unwrap();
        let _second = slots.take(2).unwrap();
        assert!(slots.take(2).is_none());
        assert_eq!(slots.gauge.get(), 2);
        drop(first);
        assert!(slots.take(2).is_some());
        assert!(slots.take(0).is_none());
    }
}
