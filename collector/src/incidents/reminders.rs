//! Deadline reminders: for each open significant incident, one "due soon"
//! reminder when a stage falls due within the lead time and one "overdue"
//! reminder once it has passed, each at most once per stage and kind.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Incident, IncidentStatus, Stage};

/// Why a reminder is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    /// The stage is due within the lead time.
    DueSoon,
    /// The stage's due time has passed.
    Overdue,
}

impl ReminderKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderKind::DueSoon => "due_soon",
            ReminderKind::Overdue => "overdue",
        }
    }
}

/// A reminder to send a notification stage (the alerts outbox's `incident_deadline` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentReminder {
    /// Tenant.
    pub tenant: String,
    /// Incident id.
    pub incident_id: String,
    /// Incident title.
    pub title: String,
    /// Stage.
    pub stage: Stage,
    /// Due soon or overdue.
    pub kind: ReminderKind,
    /// Due time of the stage, ms since the epoch.
    pub due_ms: u64,
}

impl IncidentReminder {
    /// One-line summary for logs and alert messages.
    pub fn summary(&self) -> String {
        let when = crate::reports::model::rfc3339(self.due_ms);
        match self.kind {
            ReminderKind::DueSoon => format!(
                "NIS2 {} for incident {} ({}) is due at {when}",
                self.stage.title().to_lowercase(),
                self.incident_id,
                self.title
            ),
            ReminderKind::Overdue => format!(
                "NIS2 {} for incident {} ({}) is OVERDUE since {when}",
                self.stage.title().to_lowercase(),
                self.incident_id,
                self.title
            ),
        }
    }
}

/// Reminders due for `incidents` at `now_ms`, before de-duplication: for each
/// unsent stage of an open significant incident, `Overdue` once past its due
/// time, else `DueSoon` once within `lead` of it.
pub fn due(incidents: &[Incident], now_ms: u64, lead: Duration) -> Vec<IncidentReminder> {
    let lead = lead.as_millis() as u64;
    let mut out = Vec::new();
    for inc in incidents
        .iter()
        .filter(|i| i.significant && i.status == IncidentStatus::Open)
    {
        let d = inc.deadlines();
        for stage in Stage::ALL {
            if inc.stages.get(stage).is_some() {
                continue;
            }
            let due_ms = d.of(stage);
            let kind = if now_ms > due_ms {
                ReminderKind::Overdue
            } else if now_ms.saturating_add(lead) >= due_ms {
                ReminderKind::DueSoon
            } else {
                continue;
            };
            out.push(IncidentReminder {
                tenant: inc.tenant.clone(),
                incident_id: inc.id.clone(),
                title: inc.title.clone(),
                stage,
                kind,
                due_ms,
            });
        }
    }
    out
}
