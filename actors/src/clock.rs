//! The shell's clocks, turned into the core's [`Now`].

use std::time::{Instant, SystemTime};

use ferry_core::{MonoTime, Now, UtcTime};

/// The engine's monotonic origin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// The current time for the core.
    pub(crate) fn now(self) -> Now {
        Now::new(MonoTime::from_elapsed(self.epoch.elapsed()), wall_now())
    }

    /// The std instant of a core deadline.
    pub(crate) fn instant(self, at: MonoTime) -> Instant {
        self.epoch + at.elapsed()
    }
}

/// UTC now.
pub(crate) fn wall_now() -> UtcTime {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    UtcTime::from_unix_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}
