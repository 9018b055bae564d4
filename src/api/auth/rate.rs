//! Per-principal write limits: a token bucket per principal, so one client cannot keep
//! the registry's single writer busy for everyone.
//!
//! Authenticated principals are keyed by name; anonymous clients and requests that fail
//! authentication by source address (IPv6 by its /64, what one host usually gets). The
//! table is bounded ([`MAX_BUCKETS`]): when it is full, buckets that have refilled (idle
//! ones, indistinguishable from new) are swept out, at most once a second; if none has,
//! the newcomer shares one overflow bucket with every other newcomer, so a client with
//! many addresses gains nothing by using them. A bucket also counts the writes it refused
//! since it last reported, so the audit log gets one line per principal per
//! [`REPORT_EVERY`] instead of one per refused write.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::AuthMetrics;

/// Buckets kept at most (besides the overflow bucket).
pub const MAX_BUCKETS: usize = 10_000;
/// How often a sweep for idle buckets may run when the table is full.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often a throttled principal is reported in the audit log.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Whose bucket a write draws from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BucketKey {
    /// An authenticated principal (`token:NAME`, `key:ID`).
    Principal(Arc<str>),
    /// A source address (IPv6 masked to /64).
    Source(IpAddr),
    /// Every source that found the table full.
    Overflow,
}

impl BucketKey {
    /// The key for a source address.
    pub fn source(ip: IpAddr) -> Self {
        let ip = match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
            v4 => v4,
        };
        Self::Source(ip)
    }
}

/// A refused write: when to try again, and the refusals to report now (if it is time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throttled {
    pub retry_after: Duration,
    /// Writes refused since the last report, including this one; `None` until
    /// [`REPORT_EVERY`] has passed since the last.
    pub report: Option<u64>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    refused: u64,
    reported: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }
}

/// The buckets of every principal seen recently.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    capacity: usize,
    /// `muster_auth_rate_buckets`.
    buckets: Gauge,
    /// `muster_auth_rate_overflow_total`.
    overflowed: Counter,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<BucketKey, Bucket>,
    last_sweep: Option<Instant>,
}

impl Limiter {
    /// A table of at most `capacity` buckets, counted in `metrics`.
    pub fn new(capacity: usize, metrics: &AuthMetrics) -> Self {
        Self {
            state: Mutex::new(State {
                buckets: HashMap::new(),
                last_sweep: None,
            }),
            capacity,
            buckets: metrics.rate_buckets.clone(),
            overflowed: metrics.rate_overflow.clone(),
        }
    }

    /// Takes one write from `key`'s bucket (`rate` per second, at most `burst` at once).
    #[cfg(test)]
    fn take(&self, key: BucketKey, rate: f64, burst: f64, now: Instant) -> Result<(), Throttled> {
        self.take_many(key, 1, rate, burst, now)
    }

    /// Takes `count` writes from `key`'s bucket at once (a REST batch, one per change),
    /// or none. A count above `burst` is admitted once the bucket is full and leaves it
    /// in debt, refusing writes until the rate has paid for the whole count: over time
    /// a principal still writes at most `rate` per second plus one burst.
    pub fn take_many(
        &self,
        key: BucketKey,
        count: u32,
        rate: f64,
        burst: f64,
        now: Instant,
    ) -> Result<(), Throttled> {
        let cost = f64::from(count);
        let needed = cost.min(burst);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = state.admit(key, self.capacity, rate, burst, now);
        if key == BucketKey::Overflow {
            self.overflowed.inc();
        }
        let tracked = state.buckets.len() + usize::from(!state.buckets.contains_key(&key));
        let bucket = state.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
            refused: 0,
            reported: None,
        });
        self.buckets.set(tracked as i64);
        bucket.refill(now, rate, burst);
        if bucket.tokens >= needed {
            bucket.tokens -= cost;
            return Ok(());
        }
        bucket.refused = bucket.refused.saturating_add(1);
        let due = bucket
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        let report = due.then(|| {
            bucket.reported = Some(now);
            std::mem::take(&mut bucket.refused)
        });
        let missing = needed - bucket.tokens;
        Err(Throttled {
            retry_after: Duration::from_secs_f64((missing / rate).clamp(0.001, 3600.0)),
            report,
        })
    }

    /// Buckets tracked now, and how many writes found the table full since start.
    #[cfg(test)]
    fn usage(&self) -> (usize, u64) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.buckets.len(), self.overflowed.get())
    }
}

impl State {
    /// `key` if it has a bucket or there is room for one (after sweeping idle buckets,
    /// at most once per [`SWEEP_EVERY`]), else the overflow bucket.
    fn admit(
        &mut self,
        key: BucketKey,
        capacity: usize,
        rate: f64,
        burst: f64,
        now: Instant,
    ) -> BucketKey {
        if self.buckets.contains_key(&key) || self.buckets.len() < capacity {
            return key;
        }
        let may_sweep = self
            .last_sweep
            .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
        if may_sweep {
            self.last_sweep = Some(now);
            self.buckets.retain(|key, bucket| {
                let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
                *key == BucketKey::Overflow || bucket.tokens + elapsed * rate < burst
            });
            if self.buckets.len() < capacity {
                return key;
            }
        }
        BucketKey::Overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Limiter {
        fn with_capacity(capacity: usize) -> Self {
            Self::new(capacity, &AuthMetrics::default())
        }
    }

    impl Default for Limiter {
        fn default() -> Self {
            Self::with_capacity(MAX_BUCKETS)
        }
    }

    fn ip(text: &str) -> BucketKey {
        BucketKey::source(text.parse().unwrap())
    }

    #[test]
    fn a_batch_takes_one_write_per_change_and_a_large_one_leaves_a_debt() {
        let limiter = Limiter::default();
        let start = Instant::now();
        assert!(
            limiter
                .take_many(ip("10.0.0.1"), 3, 2.0, 5.0, start)
                .is_ok()
        );
        let short = limiter.take_many(ip("10.0.0.1"), 3, 2.0, 5.0, start);
        assert_eq!(short.unwrap_err().retry_after, Duration::from_millis(500));
        assert!(limiter.take(ip("10.0.0.1"), 2.0, 5.0, start).is_ok());
        // 8 > burst: admitted only when the bucket is full, then 3 in debt: 4 s before
        // the next single write (1 token), at 2 per second.
        let full = start + Duration::from_secs(2);
        assert!(limiter.take_many(ip("10.0.0.2"), 8, 2.0, 5.0, full).is_ok());
        let refused = limiter.take(ip("10.0.0.2"), 2.0, 5.0, full).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        assert!(
            limiter
                .take(ip("10.0.0.2"), 2.0, 5.0, full + Duration::from_secs(2))
                .is_ok()
        );
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = Limiter::default();
        let start = Instant::now();
        for _ in 0..5 {
            assert!(limiter.take(ip("10.0.0.1"), 2.0, 5.0, start).is_ok());
        }
        let refused = limiter.take(ip("10.0.0.1"), 2.0, 5.0, start).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert_eq!(
            refused.report,
            Some(1),
            "the first refusal is reported at once"
        );
        let again = limiter.take(ip("10.0.0.1"), 2.0, 5.0, start).unwrap_err();
        assert_eq!(again.report, None, "then at most once per interval");
        // Another principal has its own bucket.
        assert!(limiter.take(ip("10.0.0.2"), 2.0, 5.0, start).is_ok());
        // Half a second later one write is allowed again.
        let later = start + Duration::from_millis(500);
        assert!(limiter.take(ip("10.0.0.1"), 2.0, 5.0, later).is_ok());
        assert!(limiter.take(ip("10.0.0.1"), 2.0, 5.0, later).is_err());
        let report = start + REPORT_EVERY;
        let refused = limiter
            .take(ip("10.0.0.1"), 0.0001, 5.0, report)
            .unwrap_err();
        assert_eq!(refused.report, Some(3), "refusals since the last report");
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        assert_eq!(ip("2001:db8::1"), ip("2001:db8::ffff:1"));
        assert_ne!(ip("2001:db8::1"), ip("2001:db8:0:1::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
    }

    #[test]
    fn the_table_is_bounded_and_idle_buckets_make_room() {
        let limiter = Limiter::with_capacity(3);
        let start = Instant::now();
        for i in 0..3 {
            limiter
                .take(ip(&format!("10.0.0.{i}")), 1.0, 2.0, start)
                .unwrap();
        }
        // Full, nothing idle yet: a newcomer gets the overflow bucket, shared.
        limiter.take(ip("10.0.1.1"), 1.0, 2.0, start).unwrap();
        limiter.take(ip("10.0.1.2"), 1.0, 2.0, start).unwrap();
        assert!(limiter.take(ip("10.0.1.3"), 1.0, 2.0, start).is_err());
        assert_eq!(limiter.usage(), (4, 3));
        // Two seconds on, the first three have refilled: swept, and the newcomer fits.
        let later = start + Duration::from_secs(2);
        limiter.take(ip("10.0.1.4"), 1.0, 2.0, later).unwrap();
        let (buckets, _) = limiter.usage();
        assert!(buckets <= 3, "{buckets} buckets");
    }

    #[test]
    fn many_sources_never_grow_the_table() {
        let limiter = Limiter::with_capacity(100);
        let start = Instant::now();
        for i in 0..10_000u32 {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.take(BucketKey::source(source), 1.0, 1.0, start);
        }
        assert!(limiter.usage().0 <= 101);
    }
}
