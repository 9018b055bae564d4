//! The status pages: server-rendered HTML under `/ui/`, read-only, for a browser or a
//! terminal browser (docs/status.md).
//!
//! Owns: one page per file — [`namespaces`] (`/ui/`), [`service`]
//! (`/ui/namespaces/{ns}/services/{svc}`), [`sources`], [`changes`], [`dns`] — the
//! escaping writer and frame they share ([`html`]), the counters they read back from the
//! metrics registry ([`samples`]), a stylesheet and a small script (`assets/`, no build
//! step, served from the binary). Must not: change anything, show a secret (tokens, TSIG
//! keys, a check's query string), or hold a lock while rendering.
//!
//! Everything shown comes from what muster already keeps: the registry's snapshot (health,
//! heartbeats, checks' verdicts and reasons, drain), the published DNS zone (the exact
//! records an instance contributes, built by the code DNS answers with), the supervisor's
//! task states, the store's status line, and the metrics registry.
//!
//! Live updates: `?fragment` answers only the part inside `<main>`, with an `ETag` (a
//! hash of it) and 304 when `If-None-Match` matches; `assets/live.js` polls it every
//! 500 ms and swaps it in when it changed. Without JavaScript a reload does the same.
//!
//! Access: on the `[http]` listener behind the guard, as `GET /metrics` (unrestricted
//! `read` once credentials are configured: the pages show every namespace); on the
//! `[ops]` listener without credentials, as `/metrics` there (docs/security.md).

mod changes;
mod dns;
mod html;
mod namespaces;
mod samples;
mod service;
mod sources;

use std::time::Instant;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiState;
use super::shape::OwnShape;
use crate::dns::PublishedZone;
use crate::fnv::fnv1a64;
use crate::sources::SourceStatuses;
use html::Html;

/// The most rows a table shows: a page is re-rendered every half second while it is
/// open, so its size must not grow with a 100,000-service namespace.
pub(super) const MAX_ROWS: usize = 1_000;

/// Says how many of `total` rows a table left out, if it left some out.
fn more(html: &mut Html, total: usize, what: &'static str) {
    if let Some(hidden) = total.checked_sub(MAX_ROWS).filter(|&n| n > 0) {
        html.tag("<p class=\"muted\">")
            .text(format_args!(
                "and {hidden} more {what}, not shown (the REST API lists them all)"
            ))
            .tag("</p>");
    }
}
use samples::{Rate, Samples};

/// What the status pages keep beyond the API's state: the DNS zone as published (for
/// the records of each instance and the zones' serials), the query counter's samples
/// (for queries per second), and the sources' sync states.
pub struct StatusState {
    zone: PublishedZone,
    queries: Rate,
    sources: SourceStatuses,
}

impl StatusState {
    pub fn new(zone: PublishedZone, sources: SourceStatuses) -> Self {
        Self {
            zone,
            queries: Rate::default(),
            sources,
        }
    }
}

/// The pages and their assets.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/ui", get(namespaces_page))
        .route("/ui/", get(namespaces_page))
        .route("/ui/namespaces/{ns}/services/{svc}", get(service_page))
        .route("/ui/sources", get(sources_page))
        .route("/ui/changes", get(changes_page))
        .route("/ui/dns", get(dns_page))
        .route("/ui/assets/style.css", get(style))
        .route("/ui/assets/live.js", get(script))
}

/// A rendered page: its title, which navigation entry it is, and the live part.
pub struct Rendered {
    title: String,
    current: &'static str,
    status: StatusCode,
    body: Html,
}

impl Rendered {
    fn new(title: impl Into<String>, current: &'static str, body: Html) -> Self {
        Self {
            title: title.into(),
            current,
            status: StatusCode::OK,
            body,
        }
    }
}

async fn namespaces_page(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let zone = state.status.zone.load();
    let rendered = namespaces::render(&state.registry.snapshot(), &zone, &state.registry);
    respond(rendered, query, &headers)
}

async fn service_page(
    State(state): State<ApiState>,
    Path((ns, svc)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let zone = state.status.zone.load();
    let rendered = service::render(&state.registry.snapshot(), &zone, &ns, &svc);
    respond(rendered, query, &headers)
}

async fn sources_page(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let samples = Samples::read(&state.metrics);
    let view = sources::View {
        snapshot: &state.registry.snapshot(),
        tasks: state.tasks.list(),
        statuses: state.status.sources.list(),
        now: std::time::SystemTime::now(),
        store: state.registry.store_status(),
        read_only: state.registry.read_only(),
        samples: &samples,
    };
    respond(sources::render(&view), query, &headers)
}

async fn changes_page(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let recent = state.registry.recent_changes();
    respond(changes::render(&recent), query, &headers)
}

async fn dns_page(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let samples = Samples::read(&state.metrics);
    let queries = samples.sum(dns::QUERIES);
    let rate = state.status.queries.observe(Instant::now(), queries);
    let zone = state.status.zone.load();
    respond(dns::render(&samples, rate, &zone), query, &headers)
}

/// The headers every page and fragment carries: never cached without asking, never
/// framed, and a policy that runs only muster's own script and stylesheet, so even
/// markup that slipped through escaping could not run.
fn page_headers(response: &mut Response) {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The whole page, or with `?fragment` only its live part (304 when the client has it).
fn respond(rendered: Rendered, query: Option<String>, headers: &HeaderMap) -> Response {
    let fragment = rendered.body.into_string();
    let etag = format!("\"{:016x}\"", fnv1a64(fragment.as_bytes()));
    let wants_fragment = query
        .unwrap_or_default()
        .split('&')
        .any(|p| p == "fragment" || p.starts_with("fragment="));
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == etag.as_bytes());
    let mut response = if wants_fragment && unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else if wants_fragment {
        (rendered.status, fragment).into_response()
    } else {
        let page = html::page(&rendered.title, rendered.current, &fragment, &etag);
        (rendered.status, page).into_response()
    };
    page_headers(&mut response);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    response.extensions_mut().insert(OwnShape);
    response
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/style.css"))
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/live.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    page_headers(&mut response);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `text` with the query string of every URL in it left out (`http://a/p?…`): a check's
/// reason names the URL it asked, and a query can carry a credential. Check paths are
/// printable ASCII without spaces, so a URL ends at white space; a `:` that ends it (the
/// reason's own `URL: what failed`) is kept.
fn without_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let end = rest[start..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |n| start + n);
        let url = &rest[..end];
        match url[start..].find('?') {
            Some(at) => {
                out.push_str(&url[..start + at]);
                out.push_str("?…");
                if url.ends_with(':') {
                    out.push(':');
                }
            }
            None => out.push_str(url),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
