//! Bandwidth by time of day and weekday (BITS group policy's throttling
//! windows): a schedule of windows, each giving the engine a bandwidth cap,
//! or no cap, or a pause of background transfers, while it is in force.
//! Pure: the shell turns the clock into a [`CivilTime`] (local weekday and
//! minute) and asks [`Schedule::at`] what applies and until when.
//!
//! A window is written `DAYS HH:MM-HH:MM WHAT`:
//! - `DAYS`: `mon-fri`, `sat,sun`, `mon,wed-fri`, or `all`;
//! - `HH:MM-HH:MM`: from (inclusive) to (exclusive), `24:00` for the end of
//!   the day; a window whose end is before its start runs past midnight
//!   into the next day (`mon 22:00-06:00` is Monday 22:00 to Tuesday 06:00);
//! - `WHAT`: a cap in bytes per second (`1000000`), `none` (no cap), or
//!   `pause` (background jobs get no transfer slot; foreground jobs go on).
//!
//! The first window that covers a moment applies; outside every window the
//! engine's own cap does.

use std::fmt;

/// Days of the week, bit 0 = Monday.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Days(u8);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;
const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY as u32;

impl Days {
    /// Every day.
    pub const ALL: Self = Self(0x7f);

    /// Whether `weekday` (0 = Monday) is one of these days.
    pub fn contains(self, weekday: u8) -> bool {
        weekday < 7 && self.0 & (1 << weekday) != 0
    }
}

/// What a window does while it is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowCap {
    /// At most this many bytes per second over all transfers (at least 1).
    Bytes(u64),
    /// No cap.
    Unlimited,
    /// Background jobs get no transfer slot (running ones give theirs
    /// back); foreground jobs go on, under the engine's own cap.
    Pause,
}

/// One window of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The days it starts on.
    pub days: Days,
    /// Its first minute of the day (0 to 1439).
    pub start: u16,
    /// The minute it ends at (1 to 1440), exclusive; before `start`: the
    /// next day's.
    pub end: u16,
    /// What it does.
    pub cap: WindowCap,
}

/// A local moment, as the schedule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    /// 0 = Monday ... 6 = Sunday.
    pub weekday: u8,
    /// Minute of the day, 0 to 1439.
    pub minute: u16,
}

impl CivilTime {
    fn of_week(self) -> u32 {
        u32::from(self.weekday % 7) * u32::from(MINUTES_PER_DAY)
            + u32::from(self.minute.min(MINUTES_PER_DAY - 1))
    }

    fn from_week(minute: u32) -> Self {
        let minute = minute % MINUTES_PER_WEEK;
        let day = u16::try_from(minute / u32::from(MINUTES_PER_DAY)).unwrap_or(0);
        let of_day = u16::try_from(minute % u32::from(MINUTES_PER_DAY)).unwrap_or(0);
        Self {
            weekday: u8::try_from(day).unwrap_or(0),
            minute: of_day,
        }
    }
}

impl Window {
    /// Whether the window is in force at `t`.
    pub fn covers(&self, t: CivilTime) -> bool {
        if self.start < self.end {
            self.days.contains(t.weekday) && (self.start..self.end).contains(&t.minute)
        } else {
            // Past midnight: from `start` on a listed day to `end` on the
            // day after it.
            let yesterday = (t.weekday + 6) % 7;
            (self.days.contains(t.weekday) && t.minute >= self.start)
                || (self.days.contains(yesterday) && t.minute < self.end)
        }
    }
}

/// A window's text is not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad bandwidth window {text:?}: {why} (write `DAYS HH:MM-HH:MM CAP`, e.g. `mon-fri 08:00-18:00 1000000`, `sat,sun 00:00-24:00 none`, `all 22:00-06:00 pause`)"
)]
pub struct WindowError {
    text: String,
    why: &'static str,
}

impl std::str::FromStr for Window {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |why| WindowError {
            text: text.to_owned(),
            why,
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let [days, span, what] = words.as_slice() else {
            return Err(err("three parts are needed"));
        };
        let days = parse_days(days).ok_or_else(|| err("unknown days"))?;
        let (from, to) = span.split_once('-').ok_or_else(|| err("no HH:MM-HH:MM"))?;
        let start = parse_minute(from).ok_or_else(|| err("bad start time"))?;
        let end = parse_minute(to).ok_or_else(|| err("bad end time"))?;
        if start >= MINUTES_PER_DAY {
            return Err(err("a window starts before 24:00"));
        }
        if end == 0 || start == end {
            return Err(err(
                "a window is not empty (use 00:00-24:00 for a whole day)",
            ));
        }
        let cap = match *what {
            "none" => WindowCap::Unlimited,
            "pause" => WindowCap::Pause,
            n => match n.parse::<u64>() {
                Ok(0) => return Err(err("a cap is at least 1 (use `pause`)")),
                Ok(n) => WindowCap::Bytes(n),
                Err(_) => return Err(err("the cap is bytes per second, `none` or `pause`")),
            },
        };
        Ok(Self {
            days,
            start,
            end,
            cap,
        })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == Days::ALL {
            f.write_str("all")?;
        } else {
            // Runs of three days or more as ranges: `mon-fri`, `sat,sun`.
            let mut parts = Vec::new();
            let mut day = 0u8;
            while day < 7 {
                if !self.days.contains(day) {
                    day += 1;
                    continue;
                }
                let first = day;
                while day + 1 < 7 && self.days.contains(day + 1) {
                    day += 1;
                }
                let name = |d: u8| DAY_NAMES.get(usize::from(d)).copied().unwrap_or("?");
                match day - first {
                    0 => parts.push(name(first).to_owned()),
                    1 => parts.push(format!("{},{}", name(first), name(day))),
                    _ => parts.push(format!("{}-{}", name(first), name(day))),
                }
                day += 1;
            }
            f.write_str(&parts.join(","))?;
        }
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, " {}-{} ", hm(self.start), hm(self.end))?;
        match self.cap {
            WindowCap::Bytes(n) => write!(f, "{n}"),
            WindowCap::Unlimited => f.write_str("none"),
            WindowCap::Pause => f.write_str("pause"),
        }
    }
}

fn parse_days(text: &str) -> Option<Days> {
    if text == "all" {
        return Some(Days::ALL);
    }
    let day = |name: &str| DAY_NAMES.iter().position(|d| *d == name);
    let mut bits = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                if a > b {
                    return None;
                }
                for d in a..=b {
                    bits |= 1 << d;
                }
            }
            None => bits |= 1 << day(part)?,
        }
    }
    (bits != 0).then_some(Days(bits))
}

fn parse_minute(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// The windows, in order of precedence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    windows: Vec<Window>,
}

/// What the schedule says for a moment (default: no window, nothing
/// changes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InForce {
    /// The window in force (its index), if any.
    pub window: Option<usize>,
    /// Its cap (`None` outside every window: the engine's own applies).
    pub cap: Option<WindowCap>,
    /// Minutes until what applies changes (to the start of the next minute
    /// that differs), or `None` if it never does.
    pub minutes_left: Option<u32>,
}

impl Schedule {
    /// A schedule of these windows, the first one covering a moment
    /// applying.
    pub fn new(windows: Vec<Window>) -> Self {
        Self { windows }
    }

    /// The windows.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    fn window_at(&self, t: CivilTime) -> Option<usize> {
        self.windows.iter().position(|w| w.covers(t))
    }

    /// What applies at `t`, and for how many more minutes.
    pub fn at(&self, t: CivilTime) -> InForce {
        if self.windows.is_empty() {
            return InForce::default();
        }
        let window = self.window_at(t);
        let cap = window.and_then(|i| self.windows.get(i)).map(|w| w.cap);
        let now = t.of_week();
        // What applies can only change at a window's start or end: look at
        // those minutes of the coming week, nearest first.
        let minutes_left = (1..=MINUTES_PER_WEEK)
            .filter(|d| {
                let m = CivilTime::from_week(now + d);
                self.windows
                    .iter()
                    .any(|w| m.minute == w.start || m.minute == w.end % MINUTES_PER_DAY)
            })
            .find(|d| {
                let other = self.window_at(CivilTime::from_week(now + d));
                other.and_then(|i| self.windows.get(i)).map(|w| w.cap) != cap
            });
        InForce {
            window,
            cap,
            minutes_left,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn at(weekday: u8, h: u16, m: u16) -> CivilTime {
        CivilTime {
            weekday,
            minute: h * 60 + m,
        }
    }

    fn w(text: &str) -> Window {
        text.parse().unwrap()
    }

    #[test]
    fn windows_parse_and_print_back() {
        for text in [
            "mon-fri 08:00-18:00 1000000",
            "sat,sun 00:00-24:00 none",
            "all 22:00-06:00 pause",
            "mon,wed-fri 12:30-13:45 65536",
        ] {
            assert_eq!(w(text).to_string(), text);
        }
        assert_eq!(w("mon-sun 00:00-01:00 none").days, Days::ALL);
        for bad in [
            "",
            "mon 08:00-18:00",
            "funday 08:00-18:00 none",
            "fri-mon 08:00-18:00 none",
            "mon 8:00-18:00 none",
            "mon 08:00-08:00 none",
            "mon 24:00-01:00 none",
            "mon 08:00-24:30 none",
            "mon 08:60-09:00 none",
            "mon 08:00-00:00 none",
            "mon 08:00-18:00 0",
            "mon 08:00-18:00 fast",
            "mon 08:00-18:00 none extra",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_window_covers_its_days_and_hours_and_runs_past_midnight() {
        let day = w("mon-fri 08:00-18:00 1000");
        assert!(day.covers(at(0, 8, 0)));
        assert!(day.covers(at(4, 17, 59)));
        assert!(!day.covers(at(0, 18, 0)));
        assert!(!day.covers(at(0, 7, 59)));
        assert!(!day.covers(at(5, 12, 0)));
        let night = w("fri 22:00-06:00 pause");
        assert!(night.covers(at(4, 22, 0)));
        assert!(night.covers(at(5, 5, 59)));
        assert!(!night.covers(at(5, 6, 0)));
        assert!(!night.covers(at(4, 21, 59)));
        // Sunday night runs into Monday.
        let sunday = w("sun 23:00-01:00 none");
        assert!(sunday.covers(at(0, 0, 30)));
        assert!(!sunday.covers(at(1, 0, 30)));
        assert!(w("all 00:00-24:00 none").covers(at(6, 23, 59)));
    }

    #[test]
    fn the_first_window_applies_and_the_change_is_found() {
        let schedule = Schedule::new(vec![
            w("mon-fri 12:00-13:00 none"),
            w("mon-fri 08:00-18:00 1000"),
            w("all 22:00-06:00 pause"),
        ]);
        let lunch = schedule.at(at(0, 12, 30));
        assert_eq!(lunch.window, Some(0));
        assert_eq!(lunch.cap, Some(WindowCap::Unlimited));
        assert_eq!(lunch.minutes_left, Some(30));
        let work = schedule.at(at(2, 9, 0));
        assert_eq!(work.cap, Some(WindowCap::Bytes(1000)));
        assert_eq!(work.minutes_left, Some(180));
        let evening = schedule.at(at(2, 19, 0));
        assert_eq!((evening.window, evening.cap), (None, None));
        assert_eq!(evening.minutes_left, Some(180));
        // Friday night's pause lasts until Saturday 06:00.
        let night = schedule.at(at(4, 23, 0));
        assert_eq!(night.cap, Some(WindowCap::Pause));
        assert_eq!(night.minutes_left, Some(7 * 60));
        // Saturday from 06:00: nothing until 22:00.
        assert_eq!(schedule.at(at(5, 6, 0)).minutes_left, Some(16 * 60));
        // Sunday 23:00: the pause runs into Monday 06:00, then work hours.
        assert_eq!(schedule.at(at(6, 23, 0)).minutes_left, Some(7 * 60));
    }

    #[test]
    fn a_schedule_that_never_changes_says_so() {
        assert_eq!(Schedule::default().at(at(3, 3, 3)).minutes_left, None);
        let always = Schedule::new(vec![w("all 00:00-24:00 pause")]);
        let now = always.at(at(1, 0, 0));
        assert_eq!(now.cap, Some(WindowCap::Pause));
        assert_eq!(now.minutes_left, None);
        // Two windows back to back with the same cap are one stretch.
        let same = Schedule::new(vec![w("mon 00:00-12:00 5"), w("mon 12:00-24:00 5")]);
        assert_eq!(same.at(at(0, 1, 0)).minutes_left, Some(23 * 60));
    }
}
