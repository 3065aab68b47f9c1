//! A token bucket for bandwidth caps. Time comes in as [`MonoTime`] (the
//! core reads no clock): the shell asks, for each chunk it received, how
//! long to pause before reading the next one. A pause is a timer, never a
//! busy wait, and pausing the reads holds the sender back through TCP.
//!
//! The bucket holds up to `burst` bytes and fills at `rate` bytes per
//! second. A chunk takes its bytes even when that leaves the bucket in debt;
//! the pause is the time the debt takes to be paid. So the bytes taken by
//! any time `t` are at most `burst + rate * t` plus the one chunk that was
//! taken last.

use std::time::Duration;

use crate::time::MonoTime;

/// A cap of `rate` bytes per second with bursts of up to `burst` bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Bytes that may go without a pause; negative: owed.
    tokens: f64,
    last: MonoTime,
}

impl TokenBucket {
    /// A full bucket at `now`. `rate` and `burst` are at least 1.
    pub fn new(rate: u64, burst: u64, now: MonoTime) -> Self {
        let burst = burst.max(1);
        Self {
            rate: rate.max(1),
            burst,
            tokens: burst as f64,
            last: now,
        }
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// A new cap from `now` on; what was earned at the old rate is kept
    /// (up to the new burst).
    pub fn set(&mut self, rate: u64, burst: u64, now: MonoTime) {
        self.refill(now);
        self.rate = rate.max(1);
        self.burst = burst.max(1);
        self.tokens = self.tokens.min(self.burst as f64);
    }

    /// Takes `bytes` at `now`; the pause before the next read.
    pub fn take(&mut self, bytes: u64, now: MonoTime) -> Duration {
        self.refill(now);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }

    fn refill(&mut self, now: MonoTime) {
        let earned = now.saturating_since(self.last).as_secs_f64() * self.rate as f64;
        self.tokens = (self.tokens + earned).min(self.burst as f64);
        if now > self.last {
            self.last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> MonoTime {
        MonoTime::from_elapsed(Duration::from_secs_f64(secs))
    }

    /// A reader that takes 16 KiB chunks as fast as the bucket lets it, for
    /// a simulated 10 s, gets the cap within 5% (the burst aside).
    #[test]
    fn a_greedy_reader_gets_the_cap_over_ten_simulated_seconds() {
        for rate in [64 * 1024, 1 << 20, 50 << 20] {
            let burst = rate / 4;
            let mut bucket = TokenBucket::new(rate, burst, at(0.0));
            let (mut now, mut bytes) = (0.0, 0u64);
            while now < 10.0 {
                let pause = bucket.take(16 * 1024, at(now));
                bytes += 16 * 1024;
                // Reading a chunk takes a little time of its own.
                now += pause.as_secs_f64() + 0.000_01;
            }
            let per_second = (bytes - burst) as f64 / now;
            let error = (per_second - rate as f64).abs() / rate as f64;
            assert!(error < 0.05, "rate {rate}: got {per_second:.0} B/s");
        }
    }

    /// Bytes taken by any time never exceed burst + rate * t + one chunk.
    #[test]
    fn bytes_never_exceed_the_cap_times_the_time_plus_the_burst() {
        let (rate, burst, chunk) = (100_000u64, 20_000u64, 7_000u64);
        let mut bucket = TokenBucket::new(rate, burst, at(0.0));
        let (mut now, mut bytes) = (0.0f64, 0u64);
        for i in 0..2_000 {
            let pause = bucket.take(chunk, at(now));
            bytes += chunk;
            let bound = burst as f64 + rate as f64 * now + chunk as f64;
            assert!(bytes as f64 <= bound + 1.0, "step {i}: {bytes} > {bound}");
            // Irregular reads: sometimes late, sometimes at once.
            now += pause.as_secs_f64() + if i % 7 == 0 { 0.05 } else { 0.0 };
        }
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_the_burst_and_a_new_rate_applies_at_once() {
        let mut bucket = TokenBucket::new(1_000, 500, at(0.0));
        assert_eq!(bucket.take(500, at(0.0)), Duration::ZERO);
        // An hour idle earns no more than the burst.
        assert_eq!(bucket.take(500, at(3600.0)), Duration::ZERO);
        assert_eq!(bucket.take(1_000, at(3600.0)), Duration::from_secs(1));
        // Debt of 1,000 bytes at a new rate of 10,000 B/s: paid in 0.1 s.
        bucket.set(10_000, 500, at(3600.0));
        let pause = bucket.take(0, at(3600.0));
        assert!((pause.as_secs_f64() - 0.1).abs() < 1e-9, "{pause:?}");
        assert_eq!(bucket.rate(), 10_000);
    }
}
