//! The engine's limits that change at runtime: the transfer budgets (kept
//! by the `Manager`, which alone grants slots) and the global bandwidth cap,
//! a token bucket ([`ferry_core::rate::TokenBucket`]) that every transfer
//! draws from chunk by chunk.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ferry_core::{UtcTime, rate::TokenBucket, window::Window};

use crate::clock::Clock;

/// Limits an application or an admin may change while the engine runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Transfers at once across background jobs (at least 1).
    pub max_transfers: usize,
    /// Transfers at once to one host, across all jobs (at least 1).
    pub max_transfers_per_host: usize,
    /// Bytes per second over all transfers; `None`: no cap.
    pub max_bytes_per_second: Option<u64>,
    /// How long a background job keeps a global slot while jobs of its
    /// priority wait (round robin); lower priorities give way at once.
    pub time_slice: Duration,
    /// Bandwidth by time of day and weekday (local time): the first window
    /// in force gives the cap, no cap, or a pause of background transfers;
    /// outside every window `max_bytes_per_second` applies.
    pub bandwidth_schedule: Vec<Window>,
}

/// What the bandwidth schedule applies now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BandwidthNow {
    /// The window in force (its index in the schedule), if any.
    pub window: Option<usize>,
    /// The cap in force over all transfers.
    pub max_bytes_per_second: Option<u64>,
    /// Background jobs get no transfer slot (a `pause` window).
    pub background_paused: bool,
    /// When what applies changes next (`None`: never).
    pub until: Option<UtcTime>,
}

/// The smallest burst of the bandwidth cap: one chunk of a body may always
/// pass without a pause.
const MIN_BURST: u64 = 64 * 1024;

/// A cap's burst: a tenth of a second's worth, so the rate is smooth
/// within a second.
fn burst_of(rate: u64) -> u64 {
    (rate / 10).max(MIN_BURST)
}

/// The caps one transfer draws from: the engine's and its job's. Each
/// chunk is taken from both; the transfer pauses for the longer wait.
#[derive(Clone, Debug)]
pub(crate) struct Caps {
    pub(crate) engine: Arc<Throttle>,
    pub(crate) job: Arc<Throttle>,
}

impl Caps {
    /// `bytes` arrived: how long the transfer pauses before reading on.
    pub(crate) fn take(&self, bytes: u64) -> Duration {
        self.engine.take(bytes).max(self.job.take(bytes))
    }
}

/// A bandwidth cap: the engine's, shared by every transfer, or one job's.
#[derive(Debug)]
pub(crate) struct Throttle {
    clock: Clock,
    bucket: Mutex<Option<TokenBucket>>,
    /// When the last pause it imposed ends (milliseconds of the clock's
    /// monotonic time; 0: never paused), for "why is my job slow".
    paused_until_ms: AtomicU64,
}

/// How long after a pause a cap still counts as holding transfers back.
const HOLDING_FOR: Duration = Duration::from_secs(1);

impl Throttle {
    pub(crate) fn new(clock: Clock, rate: Option<u64>) -> Self {
        let now = clock.now().mono;
        Self {
            clock,
            bucket: Mutex::new(rate.map(|r| TokenBucket::new(r, burst_of(r), now))),
            paused_until_ms: AtomicU64::new(0),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Option<TokenBucket>> {
        // Nothing panics while holding it; a poisoned lock still holds a
        // usable bucket.
        self.bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cap, if any.
    pub(crate) fn rate(&self) -> Option<u64> {
        self.bucket().as_ref().map(TokenBucket::rate)
    }

    /// A new cap (or none) from now on.
    pub(crate) fn set(&self, rate: Option<u64>) {
        let now = self.clock.now().mono;
        let mut bucket = self.bucket();
        *bucket = match (bucket.take(), rate) {
            (_, None) => None,
            (Some(mut b), Some(r)) => {
                b.set(r, burst_of(r), now);
                Some(b)
            }
            (None, Some(r)) => Some(TokenBucket::new(r, burst_of(r), now)),
        };
    }

    /// `bytes` arrived: how long the transfer pauses before reading on
    /// (the clock is read only when there is a cap).
    pub(crate) fn take(&self, bytes: u64) -> Duration {
        let mut bucket = self.bucket();
        let Some(b) = bucket.as_mut() else {
            return Duration::ZERO;
        };
        let now = self.clock.now().mono;
        let pause = b.take(bytes, now);
        if !pause.is_zero() {
            let until = now.saturating_add(pause).elapsed().as_millis();
            self.paused_until_ms
                .fetch_max(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        pause
    }

    /// The cap, if it held a transfer back within the last second.
    pub(crate) fn holding(&self) -> Option<u64> {
        let rate = self.rate()?;
        let until = Duration::from_millis(self.paused_until_ms.load(Ordering::Relaxed));
        let now = self.clock.now().mono.elapsed();
        (until > Duration::ZERO && now < until.saturating_add(HOLDING_FOR)).then_some(rate)
    }
}
