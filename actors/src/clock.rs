//! The shell's clocks, turned into the core's [`Now`].

use std::time::{Duration, Instant, SystemTime};

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

    /// How long until a core deadline, capped at a day: a far deadline
    /// (a job may set one years ahead) is re-armed when the day is over.
    pub(crate) fn delay_until(self, at: MonoTime) -> Duration {
        const CAP: Duration = Duration::from_secs(24 * 3600);
        match self.epoch.checked_add(at.elapsed()) {
            Some(when) => when.saturating_duration_since(Instant::now()).min(CAP),
            None => CAP,
        }
    }
}

/// UTC now.
pub(crate) fn wall_now() -> UtcTime {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    UtcTime::from_unix_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// The local weekday and minute for the bandwidth schedule (the system's
/// time zone: `TZ`, else `/etc/localtime`; UTC if neither says), and when
/// that minute began (UTC), from one reading of the clock.
pub(crate) fn civil_now() -> (ferry_core::window::CivilTime, UtcTime) {
    let now = jiff::Zoned::now();
    let civil = ferry_core::window::CivilTime {
        weekday: u8::try_from(now.weekday().to_monday_zero_offset()).unwrap_or(0),
        minute: u16::try_from(i32::from(now.hour()) * 60 + i32::from(now.minute())).unwrap_or(0),
    };
    let into_minute =
        i64::from(now.second()) * 1000 + i64::from(now.subsec_nanosecond()) / 1_000_000;
    let minute_start = now.timestamp().as_millisecond() - into_minute;
    (civil, UtcTime::from_unix_millis(minute_start))
}
