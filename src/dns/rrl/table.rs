//! The buckets of response rate limiting: a fixed table of atomic words that every UDP
//! thread charges with a compare-and-swap, no lock and no allocation.
//!
//! Each bucket is one `u64`: a slip counter (4 bits) and a theoretical arrival time (60
//! bits of nanoseconds since the limiter started; 36 years), the state of the generic
//! cell rate algorithm. Charging a response moves the time one interval (1 s / rate)
//! past the later of itself and now; the response is within the rate when that stays
//! within a second of now (a second's worth of responses may come at once, as BIND's
//! and Knot's buckets allow). A limited response is charged too, up to `window` past
//! that second, which is BIND's debt: a flood that goes on gets nothing but slips, and
//! after it the source stays limited until its rate has been low for a while. With no
//! window, limited responses cost nothing and a flood gets the rate, as in Knot and NSD.
//!
//! Keys that hash to the same bucket share it; nothing tells them apart. A bucket no
//! key has used for a second is as good as new, so sharing costs a key something only
//! while another key in its bucket is over the rate.

use std::sync::atomic::{AtomicU64, Ordering};

const SLIP_SHIFT: u32 = 60;
const TIME_MASK: u64 = (1 << SLIP_SHIFT) - 1;
const MAX_SLIP_COUNT: u64 = 15;
const SECOND: u64 = 1_000_000_000;

/// What to do with one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: send it.
    Send,
    /// Over the rate, and its turn to slip: send it empty with TC set.
    Slip,
    /// Over the rate: send nothing.
    Drop,
}

/// The rate a table enforces, in the units of its buckets.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Nanoseconds one response costs (1 s / responses per second).
    interval: u64,
    /// How far ahead of now a bucket may run and still send: one second.
    burst: u64,
    /// How far ahead of now limited responses may charge a bucket (one second plus the
    /// window); `None` (no window): limited responses are not charged.
    cap: Option<u64>,
    /// Every `slip`th limited response slips; 0: none does.
    slip: u64,
}

impl Rate {
    /// `per_second` responses (at least 1) with a debt of up to `window_ns` (0: limited
    /// responses cost nothing, as in Knot and NSD), slipping every `slip`th limited one.
    pub fn new(per_second: u32, window_ns: u64, slip: u8) -> Self {
        Self {
            interval: SECOND / u64::from(per_second.max(1)),
            burst: SECOND,
            cap: (window_ns > 0).then(|| SECOND.saturating_add(window_ns)),
            slip: u64::from(slip).min(MAX_SLIP_COUNT),
        }
    }
}

/// The buckets, allocated once.
pub struct Table {
    buckets: Box<[AtomicU64]>,
}

impl Table {
    /// `size` (at least one) buckets, all as new.
    pub fn new(size: usize) -> Self {
        Self {
            buckets: (0..size.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The bucket of a key whose hash is `hash` (spread over the table by
    /// multiplication, so any size works).
    pub fn index(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    /// Charges one response to bucket `index` at `now` (nanoseconds since the limiter
    /// started, below 2^60).
    pub fn charge(&self, index: usize, now: u64, rate: &Rate) -> Verdict {
        let bucket = &self.buckets[index];
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (verdict, next) = step(current, now, rate);
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return verdict,
                Err(seen) => current = seen,
            }
        }
    }
}

/// The verdict for one response to a bucket in state `bucket`, and its next state.
fn step(bucket: u64, now: u64, rate: &Rate) -> (Verdict, u64) {
    let time = bucket & TIME_MASK;
    let slips = bucket >> SLIP_SHIFT;
    let charged = time.max(now).saturating_add(rate.interval);
    if charged <= now.saturating_add(rate.burst) {
        return (Verdict::Send, (slips << SLIP_SHIFT) | charged);
    }
    // Charged too, but never past the cap (nor moved back to it): the debt of a flood.
    let time = match rate.cap {
        Some(cap) => charged.min(now.saturating_add(cap).max(time)),
        None => time,
    } & TIME_MASK;
    let slips = (slips + 1).min(MAX_SLIP_COUNT);
    if rate.slip > 0 && slips >= rate.slip {
        (Verdict::Slip, time)
    } else {
        (Verdict::Drop, (slips << SLIP_SHIFT) | time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// The verdicts of `count` responses at `now` to one fresh bucket.
    fn verdicts(table: &Table, count: usize, now: u64, rate: &Rate) -> [usize; 3] {
        let mut seen = [0; 3];
        for _ in 0..count {
            seen[table.charge(0, now, rate) as usize] += 1;
        }
        seen
    }

    #[test]
    fn a_second_of_responses_then_every_other_one_slips() {
        let table = Table::new(1);
        let rate = Rate::new(100, 15 * SECOND, 2);
        let [sent, slipped, dropped] = verdicts(&table, 1000, 5 * SECOND, &rate);
        assert_eq!((sent, slipped, dropped), (100, 450, 450));
        // A flood that goes on gets nothing more: its debt is at the window's cap.
        let [sent, ..] = verdicts(&table, 1000, 6 * SECOND, &rate);
        assert_eq!(sent, 0);
        // Once quiet for the window, the source has its full second back.
        let [sent, ..] = verdicts(&table, 1000, 6 * SECOND + 16 * SECOND, &rate);
        assert_eq!(sent, 100);
    }

    #[test]
    fn without_a_window_a_flood_gets_the_rate() {
        let table = Table::new(1);
        let rate = Rate::new(100, 0, 0);
        let mut sent = 0;
        for ms in 0..3000 {
            sent += verdicts(&table, 10, SECOND + ms * MS, &rate)[0];
        }
        // One second's burst, then 100 per second for the 3 s.
        assert!((390..=402).contains(&sent), "{sent}");
    }

    #[test]
    fn slip_one_slips_every_limited_response_and_zero_none() {
        for (slip, slipped) in [(1, 900), (0, 0), (3, 300)] {
            let table = Table::new(1);
            let rate = Rate::new(100, SECOND, slip);
            let [sent, got, _] = verdicts(&table, 1000, SECOND, &rate);
            assert_eq!((sent, got), (100, slipped), "slip {slip}");
        }
    }

    #[test]
    fn buckets_are_spread_over_the_table() {
        let table = Table::new(1000);
        assert_eq!(table.index(0), 0);
        assert_eq!(table.index(u64::MAX), 999);
        assert_eq!(table.index(u64::MAX / 2), 499);
    }
}
