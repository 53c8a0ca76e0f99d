//! Scan schedules: cron expressions and allowed scan windows, evaluated at
//! explicit instants so that every decision is a pure function of the time.
//!
//! * `schedule` is a [`cron`] expression with a **seconds field first**:
//!   `sec min hour day-of-month month day-of-week [year]`, e.g.
//!   `"0 0 */6 * * *"` (every six hours on the hour) or `"0 30 2 * * Mon-Fri"`.
//!   Shorthands such as `@daily` and `@hourly` are accepted too. Numeric
//!   day-of-week values count from Sunday = 1; names (`Mon`, `Tue-Fri`) avoid
//!   the ambiguity.
//! * `windows` restrict when a due run may start: `"Mon-Fri 22:00-06:00"`,
//!   `"Sat,Sun 00:00-24:00"` or `"01:00-05:00"` (every day). A window whose end
//!   is not after its start runs past midnight into the next day, so
//!   `"Fri 22:00-06:00"` covers Friday 22:00 to Saturday 06:00. The start is
//!   inclusive and the end exclusive. No windows means any time.
//! * `timezone` is a fixed UTC offset (`"UTC"`, `"+02:00"`, `"-05:30"`) in which
//!   both the cron expression and the windows are read; UTC when absent. There
//!   are no daylight-saving rules: pick the offset in force, or use UTC.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, FixedOffset, TimeZone, Timelike};
use protocol::{JobSpec, TenantId};
use thiserror::Error;

/// A schedule setting that does not parse; the message says what is wrong.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cron expression is malformed.
    #[error(
        "{expr:?} is not a cron expression (seconds field first, e.g. \"0 0 */6 * * *\"): {reason}"
    )]
    Cron {
        /// The expression as written.
        expr: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A window is malformed.
    #[error("{window:?}: {reason} (expected e.g. \"Mon-Fri 22:00-06:00\")")]
    Window {
        /// The window as written.
        window: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The timezone is not a fixed offset.
    #[error("{0:?} is not a UTC offset (expected \"UTC\", \"+02:00\" or \"-05:30\")")]
    Timezone(String),
}

const MS_PER_SEC: i64 = 1000;
const MINUTES_PER_DAY: u32 = 24 * 60;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses `"UTC"`, `"Z"`, `"+02:00"`, `"-0530"` or `"+2"` into a fixed offset.
pub fn parse_offset(value: &str) -> Result<FixedOffset, ScheduleError> {
    let bad = || ScheduleError::Timezone(value.to_string());
    let v = value.trim();
    if v.eq_ignore_ascii_case("utc") || v.eq_ignore_ascii_case("z") {
        return FixedOffset::east_opt(0).ok_or_else(bad);
    }
    let v = v
        .strip_prefix("UTC")
        .or_else(|| v.strip_prefix("utc"))
        .unwrap_or(v);
    let (sign, rest) = match v.as_bytes().first() {
        Some(b'+') => (1, &v[1..]),
        Some(b'-') => (-1, &v[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// Parses a cron expression (seconds field first).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, ScheduleError> {
    cron::Schedule::from_str(expr.trim()).map_err(|e| ScheduleError::Cron {
        expr: expr.to_string(),
        reason: e.to_string(),
    })
}

/// Parses a list of windows.
pub fn parse_windows(windows: &[String]) -> Result<Vec<Window>, ScheduleError> {
    windows.iter().map(|w| w.parse()).collect()
}

/// An allowed scan window: some days of the week and a time-of-day range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The window as written.
    source: String,
    /// Days the window starts on, indexed Monday = 0.
    days: [bool; 7],
    /// Start, minutes after midnight (inclusive).
    start_min: u32,
    /// End, minutes after midnight (exclusive); `<= start_min` wraps to the next day.
    end_min: u32,
}

fn parse_day(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| s == *d || (s.len() > 3 && d.len() == 3 && s.starts_with(d)))
}

fn parse_days(spec: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for part in spec.split(',').map(str::trim) {
        if part == "*" {
            days = [true; 7];
            continue;
        }
        let unknown = |d: &str| format!("unknown day {d:?} (use Mon, Tue, ... Sun)");
        match part.split_once('-') {
            Some((a, b)) => {
                let a = parse_day(a).ok_or_else(|| unknown(a))?;
                let b = parse_day(b).ok_or_else(|| unknown(b))?;
                // Ranges may wrap over the week's end: "Sat-Mon".
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[parse_day(part).ok_or_else(|| unknown(part))?] = true,
        }
    }
    Ok(days)
}

fn parse_clock(s: &str, allow_24: bool) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time of day HH:MM");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h == 24 && m == 0 && allow_24 {
        return Ok(MINUTES_PER_DAY);
    }
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl FromStr for Window {
    type Err = ScheduleError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ScheduleError::Window {
            window: value.to_string(),
            reason,
        };
        let mut parts = value.split_whitespace();
        let (days, range) = match (parts.next(), parts.next(), parts.next()) {
            (Some(range), None, None) => ([true; 7], range),
            (Some(days), Some(range), None) => (parse_days(days).map_err(err)?, range),
            _ => return Err(err("expected [DAYS] HH:MM-HH:MM".into())),
        };
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| err("time range needs a '-'".into()))?;
        let start_min = parse_clock(start, false).map_err(err)?;
        let end_min = parse_clock(end, true).map_err(err)?;
        if start_min == end_min {
            return Err(err(
                "window is empty; use 00:00-24:00 for a whole day".into()
            ));
        }
        Ok(Self {
            source: value.trim().to_string(),
            days,
            start_min,
            end_min,
        })
    }
}

impl Window {
    fn wraps(&self) -> bool {
        self.end_min <= self.start_min
    }

    /// Whether local time `t` lies inside the window.
    fn contains(&self, t: &DateTime<FixedOffset>) -> bool {
        let today = t.weekday().num_days_from_monday() as usize;
        let yesterday = (today + 6) % 7;
        let minute = t.hour() * 60 + t.minute();
        if self.wraps() {
            (self.days[today] && minute >= self.start_min)
                || (self.days[yesterday] && minute < self.end_min)
        } else {
            self.days[today] && minute >= self.start_min && minute < self.end_min
        }
    }
}

/// When a job runs: a cron expression, optional windows and the offset both are read in.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    cron: cron::Schedule,
    windows: Vec<Window>,
    offset: FixedOffset,
}

fn to_local(offset: FixedOffset, ms: u64) -> Option<DateTime<FixedOffset>> {
    let secs = i64::try_from(ms / 1000).ok()?;
    offset.timestamp_opt(secs, 0).single()
}

fn to_ms(t: &DateTime<FixedOffset>) -> u64 {
    u64::try_from(t.timestamp().saturating_mul(MS_PER_SEC)).unwrap_or(0)
}

impl JobSchedule {
    /// Parses the three settings of a scheduled job.
    pub fn parse(
        expr: &str,
        windows: &[String],
        timezone: Option<&str>,
    ) -> Result<Self, ScheduleError> {
        Self::new(
            parse_cron(expr)?,
            parse_windows(windows)?,
            parse_offset(timezone.unwrap_or("UTC"))?,
        )
    }

    /// Combines parsed parts; refuses an expression that never fires again.
    pub fn new(
        cron: cron::Schedule,
        windows: Vec<Window>,
        offset: FixedOffset,
    ) -> Result<Self, ScheduleError> {
        let schedule = Self {
            cron,
            windows,
            offset,
        };
        // An expression like "0 0 0 30 2 *" (30 February) parses but never fires.
        if schedule.next_fire_after(crate::time::now_ms()).is_none() {
            return Err(ScheduleError::Cron {
                expr: schedule.expression().to_string(),
                reason: "it never fires".into(),
            });
        }
        Ok(schedule)
    }

    /// The cron expression as written.
    pub fn expression(&self) -> &str {
        self.cron.source()
    }

    /// The offset the schedule is read in, shown as `+HH:MM`.
    pub fn offset(&self) -> FixedOffset {
        self.offset
    }

    /// The windows as written.
    pub fn windows(&self) -> Vec<String> {
        self.windows.iter().map(|w| w.source.clone()).collect()
    }

    /// First fire time strictly after `after_ms` (whole seconds), in ms.
    pub fn next_fire_after(&self, after_ms: u64) -> Option<u64> {
        let t = to_local(self.offset, after_ms)?;
        self.cron.after(&t).next().map(|t| to_ms(&t))
    }

    /// Latest fire time at or before `at_ms` (whole seconds), in ms.
    pub fn last_fire_at_or_before(&self, at_ms: u64) -> Option<u64> {
        // `after(t).next_back()` yields the latest fire strictly before t; start
        // one second later so a fire exactly at `at_ms` counts.
        let t = to_local(self.offset, at_ms)? + ChronoDuration::seconds(1);
        self.cron.after(&t).next_back().map(|t| to_ms(&t))
    }

    /// Whether a run may start at `at_ms` (always, when no windows are set).
    pub fn window_open(&self, at_ms: u64) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        match to_local(self.offset, at_ms) {
            Some(t) => self.windows.iter().any(|w| w.contains(&t)),
            None => false,
        }
    }

    /// The earliest instant at or after `at_ms` at which a run may start.
    pub fn next_window_open(&self, at_ms: u64) -> Option<u64> {
        if self.window_open(at_ms) {
            return Some(at_ms);
        }
        let t = to_local(self.offset, at_ms)?;
        let midnight = t
            .with_hour(0)
            .and_then(|t| t.with_minute(0))
            .and_then(|t| t.with_second(0))?;
        // Outside every window, the next opening is the earliest window start
        // after `t`; every window starts at least once a week.
        let mut best: Option<DateTime<FixedOffset>> = None;
        for day in 0..=7 {
            let date = midnight + ChronoDuration::days(day);
            let weekday = date.weekday().num_days_from_monday() as usize;
            for w in self.windows.iter().filter(|w| w.days[weekday]) {
                let start = date + ChronoDuration::minutes(i64::from(w.start_min));
                if start > t && best.is_none_or(|b| start < b) {
                    best = Some(start);
                }
            }
        }
        best.map(|b| to_ms(&b))
    }
}

/// A validated collector-scheduled job of one tenant.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    /// Tenant whose agents run it.
    pub tenant: TenantId,
    /// What to run (sent as is in every run request).
    pub spec: JobSpec,
    /// When to run it.
    pub schedule: JobSchedule,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a UTC date and time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
        to_ms(
            &FixedOffset::east_opt(0)
                .unwrap()
                .with_ymd_and_hms(y, mo, d, h, mi, s)
                .single()
                .unwrap(),
        )
    }

    fn sched(expr: &str, windows: &[&str], tz: Option<&str>) -> JobSchedule {
        let windows: Vec<String> = windows.iter().map(|s| s.to_string()).collect();
        JobSchedule::parse(expr, &windows, tz).unwrap()
    }

    // 2026-03-02 is a Monday.
    #[test]
    fn cron_fires_every_six_hours_on_the_hour() {
        let s = sched("0 0 */6 * * *", &[], None);
        let t = utc(2026, 3, 2, 7, 13, 0);
        assert_eq!(s.next_fire_after(t), Some(utc(2026, 3, 2, 12, 0, 0)));
        // Strictly after: a fire exactly at `t` is not the next one.
        assert_eq!(
            s.next_fire_after(utc(2026, 3, 2, 12, 0, 0)),
            Some(utc(2026, 3, 2, 18, 0, 0))
        );
        assert_eq!(s.last_fire_at_or_before(t), Some(utc(2026, 3, 2, 6, 0, 0)));
        // At or before: a fire exactly at `t` counts.
        assert_eq!(
            s.last_fire_at_or_before(utc(2026, 3, 2, 12, 0, 0)),
            Some(utc(2026, 3, 2, 12, 0, 0))
        );
        // Sub-second parts do not matter.
        assert_eq!(
            s.last_fire_at_or_before(utc(2026, 3, 2, 12, 0, 0) + 999),
            Some(utc(2026, 3, 2, 12, 0, 0))
        );
    }

    #[test]
    fn cron_is_read_in_the_configured_offset() {
        // 02:30 at +02:00 is 00:30 UTC.
        let s = sched("0 30 2 * * *", &[], Some("+02:00"));
        assert_eq!(
            s.next_fire_after(utc(2026, 3, 2, 0, 0, 0)),
            Some(utc(2026, 3, 2, 0, 30, 0))
        );
        let s = sched("0 30 2 * * Mon-Fri", &[], None);
        // Saturday 2026-03-07 → next Monday.
        assert_eq!(
            s.next_fire_after(utc(2026, 3, 7, 0, 0, 0)),
            Some(utc(2026, 3, 9, 2, 30, 0))
        );
    }

    #[test]
    fn overnight_window_covers_the_next_morning() {
        let s = sched("0 0 * * * *", &["Mon-Fri 22:00-06:00"], None);
        assert!(!s.window_open(utc(2026, 3, 2, 21, 59, 59))); // Mon 21:59:59
        assert!(s.window_open(utc(2026, 3, 2, 22, 0, 0))); // Mon 22:00
        assert!(s.window_open(utc(2026, 3, 3, 5, 59, 59))); // Tue 05:59
        assert!(!s.window_open(utc(2026, 3, 3, 6, 0, 0))); // end is exclusive
        assert!(s.window_open(utc(2026, 3, 7, 3, 0, 0))); // Sat 03:00, from Friday night
        assert!(!s.window_open(utc(2026, 3, 7, 22, 30, 0))); // Sat night: not listed
        assert!(!s.window_open(utc(2026, 3, 2, 3, 0, 0))); // Mon 03:00: Sunday not listed
    }

    #[test]
    fn whole_day_and_every_day_windows() {
        let s = sched("@hourly", &["Sat-Sun 00:00-24:00", "12:00-13:00"], None);
        assert!(s.window_open(utc(2026, 3, 7, 0, 0, 0)));
        assert!(s.window_open(utc(2026, 3, 8, 23, 59, 59)));
        assert!(!s.window_open(utc(2026, 3, 9, 0, 0, 0))); // Monday
        assert!(s.window_open(utc(2026, 3, 10, 12, 30, 0))); // every day at noon
        let any = sched("@hourly", &[], None);
        assert!(any.window_open(utc(2026, 3, 10, 3, 0, 0)));
    }

    #[test]
    fn windows_are_read_in_the_offset() {
        // 22:00-23:00 at -05:00 is 03:00-04:00 UTC the next day.
        let s = sched("@hourly", &["Mon 22:00-23:00"], Some("-05:00"));
        assert!(s.window_open(utc(2026, 3, 3, 3, 30, 0)));
        assert!(!s.window_open(utc(2026, 3, 2, 22, 30, 0)));
    }

    #[test]
    fn next_window_opening() {
        let s = sched("0 0 */6 * * *", &["Mon-Fri 22:00-06:00"], None);
        // Inside: now.
        let inside = utc(2026, 3, 3, 1, 0, 0);
        assert_eq!(s.next_window_open(inside), Some(inside));
        // Monday noon → Monday 22:00.
        assert_eq!(
            s.next_window_open(utc(2026, 3, 2, 12, 0, 0)),
            Some(utc(2026, 3, 2, 22, 0, 0))
        );
        // Saturday noon → Monday 22:00.
        assert_eq!(
            s.next_window_open(utc(2026, 3, 7, 12, 0, 0)),
            Some(utc(2026, 3, 9, 22, 0, 0))
        );
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("UTC").unwrap().local_minus_utc(), 0);
        assert_eq!(parse_offset("+02:00").unwrap().local_minus_utc(), 7200);
        assert_eq!(parse_offset("-05:30").unwrap().local_minus_utc(), -19800);
        assert_eq!(parse_offset("+0930").unwrap().local_minus_utc(), 34200);
        assert_eq!(parse_offset("UTC+1").unwrap().local_minus_utc(), 3600);
        for bad in ["Europe/Berlin", "+25:00", "+02:75", "", "2"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let err = |expr: &str, w: &[&str], tz| {
            let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            JobSchedule::parse(expr, &w, tz).unwrap_err().to_string()
        };
        // Five-field (minute-first) crontab syntax is refused, not misread.
        assert!(err("0 */6 * * *", &[], None).contains("seconds field first"));
        assert!(err("0 0 0 30 2 *", &[], None).contains("never fires"));
        assert!(err("@hourly", &["Mon-Fri 22:00"], None).contains("'-'"));
        assert!(err("@hourly", &["Funday 01:00-02:00"], None).contains("unknown day"));
        assert!(err("@hourly", &["25:00-26:00"], None).contains("HH:MM"));
        assert!(err("@hourly", &["Mon 01:00-01:00"], None).contains("empty"));
        assert!(err("@hourly", &["Mon 01:00-02:00 extra"], None).contains("expected"));
        assert!(err("@hourly", &[], Some("CET")).contains("UTC offset"));
        // 24:00 is only an end.
        assert!(err("@hourly", &["24:00-01:00"], None).contains("HH:MM"));
    }

    #[test]
    fn day_lists_and_wrapping_ranges() {
        assert_eq!(
            parse_days("Sat-Mon").unwrap(),
            [true, false, false, false, false, true, true]
        );
        assert_eq!(
            parse_days("mon,Wednesday,fri").unwrap(),
            [true, false, true, false, true, false, false]
        );
        assert_eq!(parse_days("*").unwrap(), [true; 7]);
    }
}
