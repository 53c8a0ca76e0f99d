//! Counters of report generation and incident reminders, appended to the
//! collector's Prometheus text by the metrics endpoint.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Report and incident counters.
#[derive(Debug, Default)]
pub struct ComplianceMetrics {
    /// Reports generated.
    pub reports_done: AtomicU64,
    /// Reports whose generation failed.
    pub reports_failed: AtomicU64,
    /// Bytes of report files written.
    pub report_bytes: AtomicU64,
    /// Reports deleted by retention.
    pub reports_expired: AtomicU64,
    /// Reports waiting or running (gauge).
    pub reports_queued: AtomicU64,
    /// Reminders that a notification stage is due soon.
    pub incident_reminders_due_soon: AtomicU64,
    /// Reminders that a notification stage is overdue.
    pub incident_reminders_overdue: AtomicU64,
}

impl ComplianceMetrics {
    /// Prometheus text of these counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, kind, help, v) in [
            (
                "vigil_reports_generated_total",
                "counter",
                "Compliance reports generated.",
                get(&self.reports_done),
            ),
            (
                "vigil_reports_failed_total",
                "counter",
                "Compliance reports whose generation failed.",
                get(&self.reports_failed),
            ),
            (
                "vigil_report_bytes_total",
                "counter",
                "Bytes of report files written.",
                get(&self.report_bytes),
            ),
            (
                "vigil_reports_expired_total",
                "counter",
                "Reports deleted by retention.",
                get(&self.reports_expired),
            ),
            (
                "vigil_reports_queued",
                "gauge",
                "Reports queued or being generated.",
                get(&self.reports_queued),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        let name = "vigil_incident_reminders_total";
        let _ = writeln!(
            out,
            "# HELP {name} NIS2 incident deadline reminders emitted.\n# TYPE {name} counter"
        );
        let _ = writeln!(
            out,
            "{name}{{kind=\"due_soon\"}} {}\n{name}{{kind=\"overdue\"}} {}",
            get(&self.incident_reminders_due_soon),
            get(&self.incident_reminders_overdue)
        );
        out
    }
}
