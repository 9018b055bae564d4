//! What every request must pass before it reaches an API, and the JSON shape of every
//! error it gets back (through [`shape::json_errors`]).
//!
//! - **Host** (DNS rebinding): while the APIs are open (`[auth]` has no credentials), a
//!   browser page on an attacker's domain could rebind that domain to muster's address
//!   and read and write through the victim's browser. Such requests carry the attacker's
//!   name in Host, so a Host that is not an IP literal (`10.0.0.1`, `[::1]`, with or
//!   without a port), `localhost`, a name in `http.hosts` or `data-<that name>` is
//!   refused with 403. A request without Host (HTTP/1.0) cannot come from a browser and
//!   passes. Refusals are counted (`muster_http_requests_refused_total{reason="host"}`)
//!   and logged at most once per interval, with the last Host refused.
//! - **Body size**: a Content-Length over [`MAX_BODY_BYTES`] gets 413 before the body is
//!   read (a chunked body is cut at the same size by the extractors).
//! - **Content-Type**: the Cloud Map API takes `application/x-amz-json-1.1`; REST bodies
//!   are JSON, sent as `application/json` (or `+json`), or with curl's default
//!   `application/x-www-form-urlencoded`. A body declared as anything else gets 415. No
//!   Content-Type is accepted (the body is parsed as JSON).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use super::MAX_BODY_BYTES;
use super::log_limit::LogLimit;
use super::metrics::HttpMetrics;
use super::shape::{self, Api};
use crate::reload::ConfigUpdates;

/// The longest part of a refused Host header quoted back or logged.
const MAX_QUOTED_HOST: usize = 256;

/// The guard's state: the configuration in force (credentials and `http.hosts` follow
/// reloads) and where refusals are counted.
#[derive(Clone)]
pub struct Guard {
    updates: ConfigUpdates,
    metrics: Arc<HttpMetrics>,
    host_log: Arc<LogLimit>,
}

impl Guard {
    pub fn new(updates: ConfigUpdates, metrics: Arc<HttpMetrics>) -> Self {
        Self {
            updates,
            metrics,
            host_log: Arc::new(LogLimit::default()),
        }
    }

    /// The answer to a request that must not reach the API, if it is one.
    fn refusal(&self, api: Api, request: &Request) -> Option<Response> {
        let headers = request.headers();
        if let Some(host) = self.refused_host(request) {
            self.metrics.request_refused("host");
            let quoted = quote(&host);
            if let Some(count) = self.host_log.hit(Instant::now()) {
                tracing::warn!(host = %quoted, count, "requests refused: Host is not an IP literal, localhost or in http.hosts");
            }
            let message = format!(
                "Host {quoted} is not an IP address, localhost or a name in http.hosts; \
                 muster refuses other names while its APIs are open (DNS rebinding)"
            );
            return Some(api.error(StatusCode::FORBIDDEN, Some("Host"), message));
        }
        if content_length(headers).is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            self.metrics.request_refused("body_too_large");
            return Some(shape::body_too_large(api));
        }
        if let Some(media_type) = refused_media_type(api, request.method(), headers) {
            self.metrics.request_refused("media_type");
            let message = format!("Content-Type {media_type} is not accepted here");
            return Some(api.error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some("Content-Type"),
                message,
            ));
        }
        None
    }

    /// The Host refused (as logged and answered), when the rebinding check applies and
    /// fails.
    fn refused_host(&self, request: &Request) -> Option<String> {
        let config = self.updates.borrow();
        if config.auth.has_credentials() {
            return None;
        }
        let mut hosts = request.headers().get_all(header::HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return Some("(several Host headers)".to_owned());
        }
        let header = match header.map(|h| h.to_str()) {
            Some(Ok(host)) => Some(host),
            Some(Err(_)) => return Some("(not ASCII)".to_owned()),
            None => None,
        };
        let authority = request.uri().authority().map(|a| a.as_str());
        header
            .into_iter()
            .chain(authority)
            .find(|host| !host_allowed(host, &config.http.hosts))
            .map(str::to_owned)
    }
}

/// A listener's router behind the guard: what its connections serve. Called directly
/// per request (not as an axum layer, which would box and clone per route).
#[derive(Clone)]
pub struct Guarded {
    router: Router,
    guard: Guard,
}

impl Guarded {
    pub fn new(router: Router, guard: Guard) -> Self {
        Self { router, guard }
    }

    /// Answers one request: [`Guard`]'s checks, then the router, then its errors in the
    /// API's shape.
    pub async fn call(&self, request: Request) -> Response {
        let api = Api::of(request.uri(), request.headers());
        if let Some(mut refusal) = self.guard.refusal(api, &request) {
            // The body was not read, so hyper closes the connection after this answer
            // (RFC 9112 9.6); saying so keeps the client from sending its next request
            // on a connection that is about to close.
            let close = HeaderValue::from_static("close");
            refusal.headers_mut().insert(header::CONNECTION, close);
            return refusal;
        }
        let method = request.method().clone();
        let uri = request.uri().clone();
        let mut router = self.router.clone();
        let response = match tower_service::Service::call(&mut router, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        shape::json_errors(api, &method, uri.path(), response).await
    }
}

/// Whether `host` (a Host header or URI authority) is an IP literal, `localhost`, or a
/// name in `allowed` (or `data-` and such a name), with or without a port.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match parse_host(host) {
        Some(Host::Ip) => return true,
        Some(Host::Name(name)) => name,
        None => return false,
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let data = name
        .get(..5)
        .filter(|prefix| prefix.eq_ignore_ascii_case("data-"))
        .map(|_| &name[5..]);
    allowed
        .iter()
        .map(|a| a.strip_suffix('.').unwrap_or(a))
        .any(|a| a.eq_ignore_ascii_case(name) || data.is_some_and(|d| a.eq_ignore_ascii_case(d)))
}

/// What a Host names, its port set aside.
#[derive(Debug, PartialEq, Eq)]
enum Host<'a> {
    /// An IPv4 address or a bracketed IPv6 address.
    Ip,
    /// A name, without its trailing dot.
    Name(&'a str),
}

/// Parses `host[:port]`; `None` when it is not one.
fn parse_host(host: &str) -> Option<Host<'_>> {
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<Ipv6Addr>().ok()?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then_some(Host::Ip);
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if port.is_some_and(|p| !is_port(p)) || name.contains([':', '@']) {
        return None;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        None
    } else if name.parse::<Ipv4Addr>().is_ok() {
        Some(Host::Ip)
    } else {
        Some(Host::Name(name))
    }
}

fn is_port(port: &str) -> bool {
    port.is_empty()
        || (port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The declared media type when the API does not take it for this request.
fn refused_media_type(api: Api, method: &Method, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?;
    let Ok(value) = value.to_str() else {
        return Some("(not ASCII)".to_owned());
    };
    let media = value.split(';').next().unwrap_or("").trim();
    let accepted = match api {
        Api::CloudMap => {
            method != Method::POST || media.eq_ignore_ascii_case("application/x-amz-json-1.1")
        }
        Api::Rest => {
            !matches!(*method, Method::PUT | Method::POST | Method::PATCH)
                || media.eq_ignore_ascii_case("application/json")
                || media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
                || is_json_suffix(media)
        }
    };
    (!accepted).then(|| quote(media))
}

/// `application/<anything>+json` (RFC 6839).
fn is_json_suffix(media: &str) -> bool {
    let lower = media.to_ascii_lowercase();
    lower.starts_with("application/") && lower.ends_with("+json")
}

fn quote(text: &str) -> String {
    let cut = text
        .char_indices()
        .nth(MAX_QUOTED_HOST)
        .map_or(text, |(i, _)| &text[..i]);
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(host: &str) -> bool {
        host_allowed(
            host,
            &["muster.internal".to_owned(), "api.example.".to_owned()],
        )
    }

    #[test]
    fn ip_literals_and_localhost_pass_with_or_without_a_port() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8054",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:8054",
            "[2001:db8::5]:443",
            "localhost",
            "LOCALHOST:8054",
            "localhost.:8054",
            "127.0.0.1.",
        ] {
            assert!(allowed(host), "{host} refused");
        }
    }

    #[test]
    fn listed_names_and_their_data_prefix_pass() {
        for host in [
            "muster.internal",
            "MUSTER.internal:8054",
            "muster.internal.",
            "data-muster.internal:8054",
            "api.example",
            "Data-api.example.",
        ] {
            assert!(allowed(host), "{host} refused");
        }
    }

    #[test]
    fn other_names_and_malformed_hosts_are_refused() {
        for host in [
            "evil.example",
            "evil.example:8054",
            "muster.internal.evil.example",
            "data-evil.example",
            "data-",
            "localhost.evil.example",
            "",
            ":8054",
            "::1",
            "[::1",
            "[::1]x",
            "[not-an-ip]",
            "127.0.0.1:99999",
            "127.0.0.1:80a",
            "user@127.0.0.1",
            "2130706433.evil.example",
        ] {
            assert!(!allowed(host), "{host} allowed");
        }
    }

    #[test]
    fn media_types_per_api() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            headers
        };
        let cloudmap = |v: &str| refused_media_type(Api::CloudMap, &Method::POST, &with(v));
        assert_eq!(cloudmap("application/x-amz-json-1.1"), None);
        assert_eq!(cloudmap("application/x-amz-json-1.1; charset=utf-8"), None);
        assert!(cloudmap("text/plain").is_some());
        let rest = |v: &str| refused_media_type(Api::Rest, &Method::PUT, &with(v));
        assert_eq!(rest("application/json"), None);
        assert_eq!(rest("application/json; charset=UTF-8"), None);
        assert_eq!(rest("application/merge-patch+json"), None);
        assert_eq!(rest("application/x-www-form-urlencoded"), None);
        assert!(rest("text/xml").is_some());
        assert!(rest("multipart/form-data; boundary=x").is_some());
        assert_eq!(
            refused_media_type(Api::Rest, &Method::GET, &with("text/xml")),
            None
        );
        assert_eq!(
            refused_media_type(Api::Rest, &Method::PUT, &HeaderMap::new()),
            None
        );
    }
}
