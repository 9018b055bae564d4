//! The connection's clocks over real sockets, with a handler slower than the idle
//! timeout (what the API's long polls will be).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

const TIMEOUTS: Timeouts = Timeouts {
    header: Duration::from_millis(300),
    idle: Duration::from_millis(300),
};

/// How long the slow handler takes: over three idle timeouts.
const SLOW: Duration = Duration::from_millis(1000);

/// Serves a router with `/slow` on 127.0.0.1; every connection's end goes to the receiver.
async fn server(
    shutdown: CancellationToken,
) -> (SocketAddr, mpsc::UnboundedReceiver<&'static str>) {
    let router = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(SLOW).await;
            "done"
        }),
    );
    let updates = crate::reload::Reloader::new(crate::config::Config::default()).subscribe();
    let guard = super::super::guard::Guard::new(updates, Default::default());
    let api = Guarded::new(router, guard);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (ends, ended) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let (api, stop, ends) = (api.clone(), shutdown.clone(), ends.clone());
            tokio::spawn(async move {
                let end = match serve(stream, peer, None, api, TIMEOUTS, stop).await {
                    Ended::Closed => "closed",
                    Ended::TimedOut(timeout) => timeout.kind(),
                    Ended::TlsFailed => "tls",
                };
                let _ = ends.send(end);
            });
        }
    });
    (address, ended)
}

/// Reads until the server closes, or `until` shows up; what was read, and when.
async fn read(stream: &mut TcpStream, until: &str) -> (String, Instant) {
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("the server neither answered nor closed")
            .unwrap_or(0);
        text.extend_from_slice(&buf[..n]);
        let done = String::from_utf8_lossy(&text).contains(until) && !until.is_empty();
        if n == 0 || done {
            return (String::from_utf8_lossy(&text).into_owned(), Instant::now());
        }
    }
}

#[tokio::test]
async fn a_long_request_outlives_the_idle_timeout_then_idle_closes() {
    let (address, mut ended) = server(CancellationToken::new()).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    let sent = Instant::now();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (answer, answered) = read(&mut client, "done").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answered - sent >= SLOW);
    let (rest, closed) = read(&mut client, "").await;
    assert!(rest.is_empty(), "{rest}");
    let idle = closed - answered;
    assert!(
        idle >= TIMEOUTS.idle && idle < TIMEOUTS.idle * 4,
        "closed after {idle:?} idle"
    );
    assert_eq!(ended.recv().await, Some("idle"));
}

#[tokio::test]
async fn a_half_sent_head_is_dropped_even_when_it_trickles() {
    let (address, mut ended) = server(CancellationToken::new()).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    let start = Instant::now();
    for line in [
        "GET /slow HTTP/1.1\r\n",
        "Host: 127.0.0.1\r\n",
        "X-A: 1\r\n",
    ] {
        if client.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        tokio::time::sleep(TIMEOUTS.header / 3).await;
    }
    let (answer, closed) = read(&mut client, "").await;
    assert!(answer.is_empty(), "{answer}");
    let held = closed - start;
    assert!(
        held >= TIMEOUTS.header && held < TIMEOUTS.header * 4,
        "held {held:?}"
    );
    assert_eq!(ended.recv().await, Some("header"));
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let shutdown = CancellationToken::new();
    let (address, mut ended) = server(shutdown.clone()).await;
    let mut client = TcpStream::connect(address).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(SLOW / 4).await;
    shutdown.cancel();
    let (answer, _) = read(&mut client, "done").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (rest, _) = read(&mut client, "").await;
    assert!(rest.is_empty(), "{rest}");
    assert_eq!(ended.recv().await, Some("closed"));
}
