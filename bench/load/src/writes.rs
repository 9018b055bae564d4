//! The durable-write load the write clients share (`durability_load`,
//! `examples/cloudmap_load.rs`): `writers` threads, each with one keep-alive connection,
//! take write numbers 0, 1, ... in turn until `count` are sent; then the summary line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http1::Connection;
use crate::summary;

/// One write, as a client makes it from its number.
pub struct Request {
    /// What an error message calls it (`PUT /v1/...`, `RegisterInstance i-7`).
    pub name: String,
    /// The request line's method and path.
    pub method: &'static str,
    pub path: String,
    /// Headers besides `Host` and `Content-Length`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Sends writes `request(0)` to `request(count - 1)` to `addr` from `writers` threads and
/// prints the JSON line of `summary::print_writes`. A write's latency runs from sending it
/// to reading its answer (making it is not timed). Another status than 200 counts as an
/// error, the first one printed on stderr; a connection that fails stops the client.
pub fn run(addr: &str, writers: u64, count: u64, request: impl Fn(u64) -> Request + Sync) {
    let next = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|_| {
                scope.spawn(|| {
                    let mut connection = Connection::open(addr).expect("connect to muster");
                    let mut latencies = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= count {
                            break;
                        }
                        let write = request(n);
                        let headers: Vec<(&str, &str)> = write
                            .headers
                            .iter()
                            .map(|(name, value)| (name.as_str(), value.as_str()))
                            .collect();
                        let sent = Instant::now();
                        match connection.request_with(
                            write.method,
                            &write.path,
                            &headers,
                            &write.body,
                        ) {
                            Ok(200) => latencies.push(sent.elapsed()),
                            Ok(status) => {
                                if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                    eprintln!("{}: HTTP {status}", write.name);
                                }
                            }
                            Err(e) => panic!("{}: {e}", write.name),
                        }
                    }
                    latencies
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("writer thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    summary::print_writes(writers, latencies, errors.load(Ordering::Relaxed), seconds);
}
