//! HTTP counters, named `muster_http_*`.
//!
//! - `muster_http_connections{listener}`: connections open now (`api`, `ops`);
//! - `muster_http_connections_refused_total{listener, reason}`: connections closed at
//!   accept because of `max_connections` or `max_connections_per_source`;
//! - `muster_http_accept_errors_total{listener}`: failed accepts (EMFILE, ENFILE,
//!   ECONNABORTED...);
//! - `muster_http_timeouts_total{listener, kind}`: connections closed by `header`
//!   (header_timeout) or `idle` (idle_timeout);
//! - `muster_http_tls_handshake_failures_total`: TLS handshakes that failed;
//! - `muster_http_tls_reloads_total{result}`: certificate reloads, `ok` or `error`;
//! - `muster_http_requests_refused_total{reason}`: requests refused before they reached
//!   an API: `host` (DNS rebinding check), `body_too_large`, `media_type`;
//! - `muster_http_watchers{kind}`: blocking queries waiting (`blocking`) and `/v1/watch`
//!   streams open (`stream`) now;
//! - `muster_http_watchers_refused_total{kind}`: watchers refused (503) at
//!   `max_blocking_queries` or `max_watch_streams`;
//! - `muster_http_watch_slow_readers_total`: streams cut because their reader fell a
//!   buffer behind.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::admission::Refused;
use super::connection::Timeout;
use super::watch::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabels {
    listener: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedRequestLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The HTTP frontend's metrics, shared by its listeners (each passes its own name).
#[derive(Default)]
pub struct HttpMetrics {
    connections: Family<ListenerLabels, Gauge>,
    refused: Family<ReasonLabels, Counter>,
    accept_errors: Family<ListenerLabels, Counter>,
    timeouts: Family<TimeoutLabels, Counter>,
    tls_handshake_failures: Counter,
    tls_reloads: Family<ResultLabels, Counter>,
    requests_refused: Family<RefusedRequestLabels, Counter>,
    watchers: Family<KindLabels, Gauge>,
    watchers_refused: Family<KindLabels, Counter>,
    watch_slow_readers: Counter,
}

impl HttpMetrics {
    /// Adds every HTTP metric to the process's registry, under `muster_http_`.
    pub fn register(&self, registry: &mut Registry) {
        let http = registry.sub_registry_with_prefix("muster_http");
        http.register(
            "connections",
            "HTTP connections open, by listener",
            self.connections.clone(),
        );
        http.register(
            "connections_refused",
            "HTTP connections closed at accept: over max_connections or max_connections_per_source",
            self.refused.clone(),
        );
        http.register(
            "accept_errors",
            "Failed accepts (EMFILE, ENFILE, ECONNABORTED...), by listener",
            self.accept_errors.clone(),
        );
        http.register(
            "timeouts",
            "HTTP connections closed by header_timeout (header) or idle_timeout (idle)",
            self.timeouts.clone(),
        );
        http.register(
            "tls_handshake_failures",
            "TLS handshakes that failed",
            self.tls_handshake_failures.clone(),
        );
        http.register(
            "tls_reloads",
            "Certificate reloads, by result (ok, error: the previous one stays)",
            self.tls_reloads.clone(),
        );
        http.register(
            "requests_refused",
            "Requests refused before an API saw them: host, body_too_large, media_type",
            self.requests_refused.clone(),
        );
        http.register(
            "watchers",
            "Blocking queries waiting (blocking) and /v1/watch streams open (stream)",
            self.watchers.clone(),
        );
        http.register(
            "watchers_refused",
            "Watchers refused at max_blocking_queries (blocking) or max_watch_streams (stream)",
            self.watchers_refused.clone(),
        );
        http.register(
            "watch_slow_readers",
            "/v1/watch streams cut because their reader fell a buffer behind",
            self.watch_slow_readers.clone(),
        );
        for kind in [Kind::Blocking, Kind::Stream].map(Kind::label) {
            let _ = self.watchers_refused.get_or_create(&KindLabels { kind });
        }
        for result in ["ok", "error"] {
            let _ = self.tls_reloads.get_or_create(&ResultLabels { result });
        }
        for reason in ["host", "body_too_large", "media_type"] {
            let _ = self
                .requests_refused
                .get_or_create(&RefusedRequestLabels { reason });
        }
    }

    /// Creates `listener`'s series (at zero, so rates work from the start) and returns
    /// the gauge of its open connections.
    pub(super) fn listener(&self, listener: &'static str) -> Gauge {
        for reason in [Refused::Total, Refused::PerSource].map(Refused::reason) {
            let _ = self
                .refused
                .get_or_create(&ReasonLabels { listener, reason });
        }
        for kind in [Timeout::Header, Timeout::Idle].map(Timeout::kind) {
            let _ = self
                .timeouts
                .get_or_create(&TimeoutLabels { listener, kind });
        }
        let _ = self
            .accept_errors
            .get_or_create(&ListenerLabels { listener });
        self.connections
            .get_or_create(&ListenerLabels { listener })
            .clone()
    }

    pub(super) fn refused(&self, listener: &'static str, reason: &'static str) {
        self.refused
            .get_or_create(&ReasonLabels { listener, reason })
            .inc();
    }

    pub(super) fn accept_error(&self, listener: &'static str) {
        self.accept_errors
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    pub(super) fn timeout(&self, listener: &'static str, kind: &'static str) {
        self.timeouts
            .get_or_create(&TimeoutLabels { listener, kind })
            .inc();
    }

    pub(super) fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    pub(super) fn tls_reloaded(&self, result: &'static str) {
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub(super) fn request_refused(&self, reason: &'static str) {
        self.requests_refused
            .get_or_create(&RefusedRequestLabels { reason })
            .inc();
    }

    /// The gauge of the watchers of `kind` (created at zero).
    pub(super) fn watchers(&self, kind: Kind) -> Gauge {
        let kind = kind.label();
        self.watchers.get_or_create(&KindLabels { kind }).clone()
    }

    pub(super) fn watch_refused(&self, kind: Kind) {
        let kind = kind.label();
        self.watchers_refused
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub(super) fn watch_slow_reader(&self) {
        self.watch_slow_readers.inc();
    }
}
