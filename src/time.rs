//! Time as the core sees it: always handed in by the caller, never read.
//!
//! [`Now`] pairs a monotonic instant ([`MonoTime`], for delays within one
//! process) with UTC wall time ([`UtcTime`], for deadlines that must survive a
//! restart). A [`Stamp`] is a point in both clocks at once: timers compare the
//! monotonic half, records persist the UTC half, and [`Stamp::restore`] turns a
//! persisted UTC instant back into a monotonic one for the new process. So
//! wall-clock jumps change nothing while the process runs and count only across
//! a restart, as in BITS.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A monotonic instant: time elapsed since an origin the shell chose (for
/// example the moment the engine started). Only differences mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoTime(Duration);

impl MonoTime {
    /// The instant `elapsed` after the shell's origin.
    pub const fn from_elapsed(elapsed: Duration) -> Self {
        Self(elapsed)
    }

    /// Time since the shell's origin.
    pub const fn elapsed(self) -> Duration {
        self.0
    }

    /// `self + d`, saturating instead of overflowing.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// UTC wall time in milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct UtcTime(i64);

impl UtcTime {
    /// The instant `millis` milliseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_millis(d)))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        let millis = self.0.saturating_sub(earlier.0);
        Duration::from_millis(u64::try_from(millis).unwrap_or(0))
    }
}

/// Whole milliseconds of `d`, saturating at `i64::MAX`.
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The current time, as handed to every `handle_*` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time: drives every delay within the process.
    pub mono: MonoTime,
    /// UTC wall time: stamped on records and persisted deadlines.
    pub wall: UtcTime,
}

impl Now {
    /// A `Now` from its two halves.
    pub const fn new(mono: MonoTime, wall: UtcTime) -> Self {
        Self { mono, wall }
    }

    /// Both clocks moved forward by `d` (virtual clocks in tests use this).
    #[must_use]
    pub fn advanced(self, d: Duration) -> Self {
        Self {
            mono: self.mono.saturating_add(d),
            wall: self.wall.saturating_add(d),
        }
    }

    /// The stamp `d` from now.
    pub fn after(self, d: Duration) -> Stamp {
        Stamp {
            mono: self.mono.saturating_add(d),
            wall: self.wall.saturating_add(d),
        }
    }
}

/// A point in time on both clocks: a deadline or a start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Compared against [`Now::mono`] within the process.
    pub mono: MonoTime,
    /// Persisted, and compared against [`Now::wall`] after a restart.
    pub wall: UtcTime,
}

impl Stamp {
    /// The stamp of `now`.
    pub const fn at(now: Now) -> Self {
        Self {
            mono: now.mono,
            wall: now.wall,
        }
    }

    /// A persisted UTC instant brought into this process: the monotonic half
    /// lies as far after `now.mono` as `wall` lies after `now.wall` (never
    /// before `now.mono`: a deadline that passed while the process was down
    /// expires at once).
    pub fn restore(wall: UtcTime, now: Now) -> Self {
        Self {
            mono: now.mono.saturating_add(wall.saturating_since(now.wall)),
            wall,
        }
    }

    /// Whether this deadline has passed at `now`.
    pub fn reached(self, now: Now) -> bool {
        self.mono <= now.mono
    }

    /// Time left until this deadline, zero once it passed.
    pub fn remaining(self, now: Now) -> Duration {
        self.mono.saturating_since(now.mono)
    }

    /// The same point moved `later` forward and `earlier` back, on both clocks.
    #[must_use]
    pub fn shifted(self, later: Duration, earlier: Duration) -> Self {
        Self {
            mono: MonoTime(self.mono.0.saturating_add(later).saturating_sub(earlier)),
            wall: UtcTime(
                self.wall
                    .0
                    .saturating_add(duration_millis(later))
                    .saturating_sub(duration_millis(earlier)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_maps_future_and_past_deadlines() {
        let now = Now::new(
            MonoTime::from_elapsed(Duration::from_secs(5)),
            UtcTime::from_unix_millis(1_000_000),
        );
        let later = Stamp::restore(UtcTime::from_unix_millis(1_060_000), now);
        assert_eq!(later.remaining(now), Duration::from_secs(60));
        let past = Stamp::restore(UtcTime::from_unix_millis(10), now);
        assert!(past.reached(now));
        assert_eq!(past.wall, UtcTime::from_unix_millis(10));
    }

    #[test]
    fn arithmetic_saturates() {
        let t = UtcTime::from_unix_millis(i64::MAX - 1);
        assert_eq!(
            t.saturating_add(Duration::from_secs(10)).unix_millis(),
            i64::MAX
        );
        assert_eq!(
            UtcTime::from_unix_millis(0).saturating_since(UtcTime::from_unix_millis(5)),
            Duration::ZERO
        );
    }
}
