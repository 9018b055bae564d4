//! `GET /v1/watch?namespace=ns[&service=svc][&index=N]`: the registry's changes as a
//! server-sent-events stream (docs/rest.md, "Watching for changes").
//!
//! One event per change: `id:` its index, `event:` what happened, `data:` the entry's
//! JSON. A comment every `min(15 s, http.idle_timeout / 2)` keeps proxies and the idle
//! clock from closing a quiet stream. `Last-Event-ID` (or `?index=`) resumes from the
//! registry's ring when it still holds what followed; otherwise a `missed` event tells
//! the client to read again. Each stream has one task that sleeps on the registry's
//! notification and queues at most [`BUFFER`] frames for the connection: a reader that
//! lets them pile up is disconnected (counted), never buffered without limit. Only the
//! changes of services the caller may `read` are sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::ApiState;
use super::auth::{Principal, ScopeKind};
use super::error::ApiError;
use super::watch::{INDEX_HEADER, Kind, Params, Slot, Watchers, parse_index};
use crate::registry::{ChangeEntry, Missed, RegistryHandle};

/// Frames queued for one stream at most; a reader this far behind is disconnected.
pub const BUFFER: usize = 64;
/// The longest pause between two writes on a quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// What one stream sends: a namespace (or all), a service (or all), as `principal` may.
struct Filter {
    namespace: Option<String>,
    service: Option<String>,
    principal: Principal,
}

impl Filter {
    fn passes(&self, entry: &ChangeEntry) -> bool {
        let namespace = &entry.namespace;
        if self.namespace.as_ref().is_some_and(|ns| ns != namespace) {
            return false;
        }
        if self.service.is_some() && self.service != entry.service {
            return false;
        }
        match &entry.service {
            Some(service) => self.principal.may(ScopeKind::Read, namespace, service),
            None => self.principal.may_in(ScopeKind::Read, namespace),
        }
    }
}

/// The handler of `GET /v1/watch`.
pub async fn watch(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let (filter, resume) = match filter(&state, principal, query, &headers) {
        Ok(asked) => asked,
        Err(error) => return error.into_response(),
    };
    match state.watch.admit(Kind::Stream) {
        Ok(slot) => start(&state, filter, resume, slot),
        Err(busy) => busy.into_response(),
    }
}

/// Starts the stream's producer and answers with its body.
fn start(state: &ApiState, filter: Filter, resume: Option<u64>, slot: Slot) -> Response {
    let changes = state.registry.watch_changes();
    let recent = state.registry.recent_changes();
    let (sender, receiver) = mpsc::channel(BUFFER);
    let slow = Arc::new(AtomicBool::new(false));
    let stream = Stream {
        registry: state.registry.clone(),
        watchers: state.watch.clone(),
        filter,
        cursor: recent.index(),
        sender,
        slow: slow.clone(),
        _slot: slot,
    };
    let heartbeat = HEARTBEAT.min(state.watch.idle_timeout() / 2);
    tokio::spawn(stream.run(changes, resume, heartbeat));
    let mut response = Body::new(Frames { receiver, slow }).into_response();
    let headers = response.headers_mut();
    let event_stream = HeaderValue::from_static("text/event-stream");
    headers.insert(header::CONTENT_TYPE, event_stream);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx would otherwise buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(INDEX_HEADER, HeaderValue::from(recent.index()));
    response
}

/// The stream's filter and the index to resume after, from the query and headers; 400
/// naming the field, 403, or 404 for an unknown namespace.
fn filter(
    state: &ApiState,
    principal: Principal,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<(Filter, Option<u64>), ApiError> {
    let params = Params::from_query(query)?;
    params.only(&["namespace", "service", "index"])?;
    let mut resume = params
        .get("index")
        .map(|text| parse_index("index", text))
        .transpose()?;
    // A reconnecting EventSource sends the last id it saw; it wins over the URL's index.
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().unwrap_or("(not ASCII)");
        resume = Some(parse_index("Last-Event-ID", text)?);
    }
    let snapshot = state.registry.snapshot();
    let namespace = match params.get("namespace") {
        Some(ns) => {
            let name = ns.trim_end_matches('.').to_ascii_lowercase();
            if snapshot.namespace(&name).is_none() {
                let message = format!("namespace {ns:?} does not exist");
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    Some("namespace"),
                    message,
                ));
            }
            Some(name)
        }
        None => None,
    };
    let service = params.get("service").map(str::to_ascii_lowercase);
    let allowed = match (&namespace, &service) {
        (Some(ns), Some(svc)) => principal.may(ScopeKind::Read, ns, svc),
        (Some(ns), None) => principal.may_in(ScopeKind::Read, ns),
        (None, None) => true,
        (None, Some(_)) => {
            let message = "service needs namespace";
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("service"),
                message,
            ));
        }
    };
    if !allowed {
        let message = format!("{principal} has no scope for read on what it asked to watch");
        return Err(ApiError::new(StatusCode::FORBIDDEN, None, message));
    }
    let filter = Filter {
        namespace,
        service,
        principal,
    };
    Ok((filter, resume))
}

/// One stream's producer: it turns the registry's changes into frames.
struct Stream {
    registry: RegistryHandle,
    watchers: Arc<Watchers>,
    filter: Filter,
    /// The index of the last change looked at.
    cursor: u64,
    sender: mpsc::Sender<Bytes>,
    slow: Arc<AtomicBool>,
    _slot: Slot,
}

impl Stream {
    /// Sends until the client leaves, falls too far behind, or the frontend stops.
    async fn run(
        mut self,
        mut changes: tokio::sync::watch::Receiver<u64>,
        resume: Option<u64>,
        heartbeat: Duration,
    ) {
        let mut sent = self.send(format!(": watching from index {}\n\n", self.cursor));
        if let Some(after) = resume {
            self.cursor = after;
            sent = sent && self.catch_up();
        }
        let mut tick = tokio::time::interval(heartbeat);
        tick.reset();
        while sent {
            sent = tokio::select! {
                changed = changes.changed() => changed.is_ok() && self.catch_up(),
                _ = tick.tick() => self.send(": ping\n\n".to_owned()),
                _ = self.sender.closed() => false,
                _ = self.watchers.shutdown().cancelled() => false,
            };
        }
    }

    /// Sends what changed after the cursor; false when the stream must end.
    fn catch_up(&mut self) -> bool {
        let recent = self.registry.recent_changes();
        let frames: Vec<String> = match recent.since(self.cursor) {
            Ok(entries) => entries
                .filter(|entry| self.filter.passes(entry))
                .map(|entry| event(entry))
                .collect(),
            Err(missed) => vec![missed_event(missed, self.cursor)],
        };
        self.cursor = recent.index();
        frames.into_iter().all(|frame| self.send(frame))
    }

    /// Queues one frame; false when the client left or lags [`BUFFER`] frames behind.
    fn send(&self, frame: String) -> bool {
        match self.sender.try_send(Bytes::from(frame)) {
            Ok(()) => true,
            Err(TrySendError::Closed(_)) => false,
            Err(TrySendError::Full(_)) => {
                self.slow.store(true, Ordering::Relaxed);
                self.watchers.metrics().watch_slow_reader();
                false
            }
        }
    }
}

/// One change as an SSE event.
fn event(entry: &ChangeEntry) -> String {
    let data = serde_json::to_string(entry).expect("a change entry serializes");
    format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        entry.index,
        entry.event.as_str()
    )
}

/// The event that says changes after `after` are gone: read again, then follow on.
fn missed_event(missed: Missed, after: u64) -> String {
    let data = serde_json::json!({
        "index": missed.last,
        "after": after,
        "oldest": missed.oldest,
        "message": "changes after this index are no longer held (or the index is another process's): read the current state again",
    });
    format!("id: {}\nevent: missed\ndata: {data}\n\n", missed.last)
}

/// The response body: the frames the producer queues, cut short (an error, which drops
/// the connection) when the reader fell behind.
struct Frames {
    receiver: mpsc::Receiver<Bytes>,
    slow: Arc<AtomicBool>,
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(None) if self.slow.load(Ordering::Relaxed) => Poll::Ready(Some(Err(
                std::io::Error::other("the watcher fell too far behind"),
            ))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use hyper::body::Body as _;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::Config;
    use crate::registry::{Event, Registry, Snapshot, SourceId};
    use crate::reload::Reloader;

    #[tokio::test]
    async fn a_reader_a_buffer_behind_is_cut_off_and_its_place_given_back() {
        let registry = Registry::new(Snapshot::new([], []));
        let updates = Reloader::new(Config::default()).subscribe();
        let watchers = Watchers::new(updates, Arc::default(), CancellationToken::new());
        let watchers = Arc::new(watchers);
        let (sender, receiver) = mpsc::channel(BUFFER);
        let slow = Arc::new(AtomicBool::new(false));
        let stream = Stream {
            registry: registry.handle(),
            watchers: watchers.clone(),
            filter: Filter {
                namespace: None,
                service: None,
                principal: Principal::Anonymous,
            },
            cursor: 0,
            sender,
            slow: slow.clone(),
            _slot: watchers.admit(Kind::Stream).unwrap(),
        };
        for _ in 0..BUFFER {
            assert!(stream.send(": ping\n\n".to_owned()));
        }
        assert!(!stream.send(": ping\n\n".to_owned()));
        drop(stream);
        // The place is free again (a cap of 256 by default, so take them all).
        let cap = Config::default().http.max_watch_streams as usize;
        let slots: Vec<_> = (0..cap).map(|_| watchers.admit(Kind::Stream)).collect();
        assert!(slots.iter().all(Result::is_ok));
        assert!(watchers.admit(Kind::Stream).is_err());
        // The body gives what was queued, then an error: hyper drops the connection.
        let mut frames = Frames { receiver, slow };
        let mut data = 0;
        let last = loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut frames).poll_frame(cx)).await;
            match frame {
                Some(Ok(_)) => data += 1,
                other => break other,
            }
        };
        assert_eq!(data, BUFFER);
        assert!(matches!(last, Some(Err(_))), "{last:?}");
    }

    #[test]
    fn an_event_is_one_sse_frame_with_its_index_and_name() {
        let entry = ChangeEntry {
            index: 9,
            time: SystemTime::UNIX_EPOCH,
            event: Event::Registered,
            namespace: "internal".into(),
            service: Some("web".into()),
            instance: Some("i-1".into()),
            source: Some(SourceId::api()),
            reason: None,
        };
        let frame = event(&entry);
        assert!(frame.starts_with("id: 9\nevent: registered\ndata: {\"index\":9,"));
        assert!(frame.ends_with("}\n\n"));
        assert_eq!(frame.matches('\n').count(), 4);
        let missed = missed_event(
            Missed {
                oldest: 5,
                last: 20,
            },
            2,
        );
        assert!(missed.starts_with("id: 20\nevent: missed\ndata: {"));
    }

    #[test]
    fn the_filter_keeps_the_namespace_and_service_asked_for() {
        let entry = |namespace: &str, service: Option<&str>| ChangeEntry {
            index: 1,
            time: SystemTime::UNIX_EPOCH,
            event: Event::Healthy,
            namespace: namespace.into(),
            service: service.map(Into::into),
            instance: None,
            source: None,
            reason: None,
        };
        let filter = Filter {
            namespace: Some("internal".into()),
            service: Some("web".into()),
            principal: Principal::Anonymous,
        };
        assert!(filter.passes(&entry("internal", Some("web"))));
        assert!(!filter.passes(&entry("internal", Some("db"))));
        assert!(!filter.passes(&entry("internal", None)));
        assert!(!filter.passes(&entry("other", Some("web"))));
        let all = Filter {
            namespace: None,
            service: None,
            principal: Principal::Anonymous,
        };
        assert!(all.passes(&entry("other", None)));
    }
}
