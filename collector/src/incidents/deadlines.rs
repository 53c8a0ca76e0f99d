//! NIS2 Art. 23(4) reporting deadlines, counted from detection: early warning
//! within 24 hours, incident notification within 72 hours, final report within
//! one calendar month. The Directive counts the final report from the
//! notification; counting from detection is never later, so it is the safe
//! choice for a reminder.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use serde::{Deserialize, Serialize};

/// 24 hours in ms.
pub const EARLY_WARNING_MS: u64 = 24 * 3600 * 1000;
/// 72 hours in ms.
pub const NOTIFICATION_MS: u64 = 72 * 3600 * 1000;

/// A notification stage of Art. 23(4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Art. 23(4)(a): early warning.
    EarlyWarning,
    /// Art. 23(4)(b): incident notification.
    Notification,
    /// Art. 23(4)(d): final report.
    FinalReport,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 3] = [Stage::EarlyWarning, Stage::Notification, Stage::FinalReport];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::EarlyWarning => "early_warning",
            Stage::Notification => "notification",
            Stage::FinalReport => "final_report",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<Stage> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Human title.
    pub fn title(self) -> &'static str {
        match self {
            Stage::EarlyWarning => "Early warning",
            Stage::Notification => "Incident notification",
            Stage::FinalReport => "Final report",
        }
    }
}

/// Due times of the three stages, ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Early warning due.
    pub early_warning_ms: u64,
    /// Incident notification due.
    pub notification_ms: u64,
    /// Final report due.
    pub final_report_ms: u64,
}

impl Deadlines {
    /// Due time of one stage.
    pub fn of(&self, stage: Stage) -> u64 {
        match stage {
            Stage::EarlyWarning => self.early_warning_ms,
            Stage::Notification => self.notification_ms,
            Stage::FinalReport => self.final_report_ms,
        }
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// The same UTC day and time one month later; a day the next month lacks is
/// clamped to its last day (31 Jan → 28/29 Feb).
pub fn add_calendar_month(ms: u64) -> u64 {
    let Some(dt) = DateTime::from_timestamp_millis(ms as i64) else {
        return ms;
    };
    let (y, m) = if dt.month() == 12 {
        (dt.year() + 1, 1)
    } else {
        (dt.year(), dt.month() + 1)
    };
    let day = dt.day().min(days_in_month(y, m));
    NaiveDate::from_ymd_opt(y, m, day)
        .and_then(|d| {
            d.and_hms_milli_opt(
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.timestamp_subsec_millis(),
            )
        })
        .map_or(ms, |n| n.and_utc().timestamp_millis().max(0) as u64)
}

/// Deadlines of an incident detected at `detected_ms`.
pub fn deadlines(detected_ms: u64) -> Deadlines {
    Deadlines {
        early_warning_ms: detected_ms.saturating_add(EARLY_WARNING_MS),
        notification_ms: detected_ms.saturating_add(NOTIFICATION_MS),
        final_report_ms: add_calendar_month(detected_ms),
    }
}

/// Stages not sent whose due time has passed: overdue strictly after the due
/// millisecond ("within 24 hours" includes the 24th hour's last instant).
pub fn overdue(d: &Deadlines, sent: impl Fn(Stage) -> bool, now_ms: u64) -> Vec<Stage> {
    Stage::ALL
        .into_iter()
        .filter(|s| !sent(*s) && now_ms > d.of(*s))
        .collect()
}

/// The earliest stage not yet sent, with its due time.
pub fn next_deadline(d: &Deadlines, sent: impl Fn(Stage) -> bool) -> Option<(Stage, u64)> {
    Stage::ALL
        .into_iter()
        .filter(|s| !sent(*s))
        .map(|s| (s, d.of(s)))
        .min_by_key(|(s, due)| (*due, *s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() as u64
    }

    #[test]
    fn hours_deadlines_count_from_detection() {
        let d = deadlines(ms("2025-03-10T08:15:30Z"));
        assert_eq!(d.early_warning_ms, ms("2025-03-11T08:15:30Z"));
        assert_eq!(d.notification_ms, ms("2025-03-13T08:15:30Z"));
        assert_eq!(d.final_report_ms, ms("2025-04-10T08:15:30Z"));
    }

    #[test]
    fn calendar_month_clamps_to_the_last_day() {
        assert_eq!(
            add_calendar_month(ms("2025-01-31T23:00:00Z")),
            ms("2025-02-28T23:00:00Z")
        );
        assert_eq!(
            add_calendar_month(ms("2024-01-31T10:00:00Z")),
            ms("2024-02-29T10:00:00Z")
        );
        assert_eq!(
            add_calendar_month(ms("2024-01-29T10:00:00Z")),
            ms("2024-02-29T10:00:00Z")
        );
        assert_eq!(
            add_calendar_month(ms("2025-03-31T00:00:00Z")),
            ms("2025-04-30T00:00:00Z")
        );
        assert_eq!(
            add_calendar_month(ms("2025-12-31T12:34:56.789Z")),
            ms("2026-01-31T12:34:56.789Z")
        );
        assert_eq!(
            add_calendar_month(ms("2025-08-31T00:00:00Z")),
            ms("2025-09-30T00:00:00Z")
        );
        assert_eq!(
            add_calendar_month(ms("2025-02-28T05:00:00Z")),
            ms("2025-03-28T05:00:00Z")
        );
    }

    #[test]
    fn overdue_starts_one_millisecond_after_the_due_time() {
        let detected = ms("2025-01-31T12:00:00Z");
        let d = deadlines(detected);
        let none = |_| false;
        assert!(overdue(&d, none, d.early_warning_ms).is_empty());
        assert_eq!(
            overdue(&d, none, d.early_warning_ms + 1),
            [Stage::EarlyWarning]
        );
        assert_eq!(overdue(&d, none, d.notification_ms), [Stage::EarlyWarning]);
        assert_eq!(
            overdue(&d, none, d.notification_ms + 1),
            [Stage::EarlyWarning, Stage::Notification]
        );
        assert_eq!(d.final_report_ms, ms("2025-02-28T12:00:00Z"));
        assert_eq!(overdue(&d, none, d.final_report_ms).len(), 2);
        assert_eq!(overdue(&d, none, d.final_report_ms + 1).len(), 3);
        // A sent stage is never overdue, however late.
        let ew_sent = |s| s == Stage::EarlyWarning;
        assert_eq!(
            overdue(&d, ew_sent, d.final_report_ms + 1),
            [Stage::Notification, Stage::FinalReport]
        );
    }

    #[test]
    fn next_deadline_is_the_earliest_unsent_stage() {
        let d = deadlines(1_000);
        assert_eq!(
            next_deadline(&d, |_| false),
            Some((Stage::EarlyWarning, d.early_warning_ms))
        );
        assert_eq!(
            next_deadline(&d, |s| s == Stage::EarlyWarning),
            Some((Stage::Notification, d.notification_ms))
        );
        assert_eq!(next_deadline(&d, |_| true), None);
    }
}
