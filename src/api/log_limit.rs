//! At most one log line per interval for events a client can cause at will (refused
//! connections, accept errors, refused Host headers): the count goes in metrics, the log
//! says it happened and how often.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often each kind of event may be logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts events and lets one through to the log per [`LOG_INTERVAL`].
#[derive(Default)]
pub struct LogLimit {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    /// Events since the last one logged.
    count: u64,
}

impl LogLimit {
    /// Records an event at `now`; returns how many happened since the last line logged
    /// (this one included) when this one may be logged, `None` when it may not.
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.count = state.count.saturating_add(1);
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        if !due {
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count() {
        let limit = LogLimit::default();
        let start = Instant::now();
        assert_eq!(limit.hit(start), Some(1));
        for i in 1..100 {
            assert_eq!(limit.hit(start + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.hit(start + LOG_INTERVAL), Some(100));
        assert_eq!(limit.hit(start + LOG_INTERVAL), None);
    }
}
