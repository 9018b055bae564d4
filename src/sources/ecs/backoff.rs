//! Capped exponential backoff with jitter, so many replicas that lost AWS at the same
//! moment do not retry in step (and do not add to a throttling storm).

use std::time::Duration;

use rand::Rng;

/// Retry delays for one failing activity: doubling from `base` up to `cap`, each drawn
/// at random from the upper half of its step ("equal jitter": never near zero).
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// The delay before the next attempt after one more failure.
    pub fn failed(&mut self) -> Duration {
        let step = self
            .base
            .saturating_mul(1 << self.failures.min(20))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// Success: the next failure starts from `base` again. Returns whether it had been
    /// failing, so the caller can log the recovery once.
    pub fn succeeded(&mut self) -> bool {
        std::mem::take(&mut self.failures) > 0
    }

    /// True after the first failure, until a success: log only the first.
    pub fn is_failing(&self) -> bool {
        self.failures > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_then_resets() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        let mut backoff = Backoff::new(base, cap);
        assert!(!backoff.is_failing());
        let mut step = base;
        for _ in 0..10 {
            let delay = backoff.failed();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside {step:?}"
            );
            step = (step * 2).min(cap);
        }
        assert!(backoff.is_failing());
        assert!(backoff.succeeded());
        assert!(!backoff.succeeded());
        assert!(backoff.failed() <= base);
    }
}
