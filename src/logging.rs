//! Logging that clients cannot flood: the default filter, and a throttle for what a
//! client can cause once per packet or request. Also how text a client chose goes into a
//! metric's labels ([`LabelText`]).
//!
//! Owns: [`DEFAULT_FILTER`], [`Throttle`] and [`LabelText`]. Must not: allocate, lock or
//! format anything per event that is not logged.
//!
//! The rule: nothing a client sends is logged per packet at the default level. What a
//! client can cause is counted in metrics, and logged at most once per interval with
//! how many happened since the last line:
//!
//! ```
//! use std::time::Duration;
//! use muster::logging::Throttle;
//!
//! static BAD_INPUT: Throttle = Throttle::new(Duration::from_secs(60));
//!
//! # let source = "192.0.2.1";
//! if let Some(count) = BAD_INPUT.hit() {
//!     tracing::warn!(count, %source, "bad input (count: since the last such line)");
//! }
//! ```

use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// The log filter when `MUSTER_LOG` is not set: muster's own events at `info` (none of
/// them per packet or request), hickory's crates at `error` only, because they log per
/// packet below it (hickory-proto warns of every malformed EDNS option it reads,
/// hickory-server logs requests at `info`, hickory-net warns of every stray UDP answer
/// to a forwarded query).
pub const DEFAULT_FILTER: &str =
    "info,hickory_proto=error,hickory_net=error,hickory_server=error,hickory_resolver=error";

/// Says when an event that may come once per packet should be logged: the first time,
/// then at most once per interval, with the number of events since the last line. Two
/// relaxed atomic operations per event; usable as a `static`.
pub struct Throttle {
    interval: Duration,
    /// When the next line may be written, in nanoseconds of [`elapsed`].
    next: AtomicU64,
    /// Events since the last line.
    count: AtomicU64,
}

impl Throttle {
    /// A throttle that lets one line through per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one event; `Some(count)` when a line should be written now, `count` being
    /// the events since the last line (this one included).
    pub fn hit(&self) -> Option<u64> {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = elapsed();
        let next = self.next.load(Ordering::Relaxed);
        if now < next {
            return None;
        }
        let after = now.saturating_add(u64::try_from(self.interval.as_nanos()).unwrap_or(u64::MAX));
        self.next
            .compare_exchange(next, after, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.count.swap(0, Ordering::Relaxed))
    }
}

/// Nanoseconds since the first throttle looked at the clock (never 0 afterwards, so a
/// new throttle's first event is always logged).
fn elapsed() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A metric label value that is text someone chose (a namespace a client created, a
/// configured cluster or source), written with the exposition format's escapes (`\\`,
/// `\"`, `\n`), which prometheus-client leaves out. Without them a Cloud Map namespace
/// named `a"b` made the whole scrape unparseable, and one named `x",evil="1` added a
/// label to its series.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct LabelText(pub String);

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_then_one_line_per_interval_with_a_count() {
        let throttle = Throttle::new(Duration::from_millis(200));
        assert_eq!(throttle.hit(), Some(1));
        let logged: Vec<u64> = (0..10_000).filter_map(|_| throttle.hit()).collect();
        assert!(logged.is_empty(), "{logged:?}");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(throttle.hit(), Some(10_001));
        assert_eq!(throttle.hit(), None);
    }

    #[test]
    fn label_text_is_escaped_so_it_cannot_end_its_value() {
        use prometheus_client::encoding::EncodeLabelSet;
        use prometheus_client::metrics::{family::Family, gauge::Gauge};

        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Labels {
            namespace: LabelText,
        }
        let family = Family::<Labels, Gauge>::default();
        for name in ["plain", "q\"x\\y", "x\",evil=\"1", "two\nlines"] {
            family
                .get_or_create(&Labels {
                    namespace: LabelText(name.to_owned()),
                })
                .set(1);
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("namespaces", "", family);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"namespaces{namespace="plain"} 1"#,
            r#"namespaces{namespace="q\"x\\y"} 1"#,
            r#"namespaces{namespace="x\",evil=\"1"} 1"#,
            r#"namespaces{namespace="two\nlines"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
