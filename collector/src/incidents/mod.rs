//! NIS2 Art. 23 incidents: records per tenant linked to findings and assets,
//! a significance assessment, notification deadlines with stage states,
//! reminders and per-stage exports. See docs/incidents.md.

pub mod deadlines;
pub mod export;
pub mod reminders;
pub mod service;
pub mod store;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use deadlines::{Deadlines, Stage};
pub use reminders::{IncidentReminder, ReminderKind};
pub use service::IncidentService;

/// Failures of incident operations.
#[derive(Debug, Error)]
pub enum IncidentError {
    /// Incident storage failed.
    #[error("incident storage: {0}")]
    Storage(String),
    /// No such incident in the tenant.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
}

impl From<sled::Error> for IncidentError {
    fn from(e: sled::Error) -> Self {
        IncidentError::Storage(e.to_string())
    }
}

/// Whether the incident is still being handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    /// Being handled; deadlines are watched.
    Open,
    /// Handled.
    Closed,
}

/// The Art. 23(3) significance criteria and the reasoning behind the verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Significance {
    /// (a) has caused or can cause severe operational disruption of the services.
    pub severe_operational_disruption: bool,
    /// (a) has caused or can cause financial loss for the entity.
    pub financial_loss: bool,
    /// (b) has affected or can affect other natural or legal persons by causing
    /// considerable material or non-material damage.
    pub affects_others: bool,
    /// Free-text rationale.
    pub rationale: String,
}

impl Significance {
    /// Whether any criterion is met.
    pub fn any(&self) -> bool {
        self.severe_operational_disruption || self.financial_loss || self.affects_others
    }
}

/// Content of the early warning (Art. 23(4)(a)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyWarning {
    /// Whether the incident is suspected of being caused by unlawful or malicious acts.
    pub suspected_malicious: Option<bool>,
    /// Whether it could have a cross-border impact.
    pub cross_border_impact: Option<bool>,
    /// Further remarks.
    pub notes: String,
}

/// Content of the incident notification (Art. 23(4)(b)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Notification {
    /// Initial assessment of the incident.
    pub initial_assessment: String,
    /// Its severity.
    pub severity: String,
    /// Its impact.
    pub impact: String,
    /// Indicators of compromise, where available.
    pub indicators_of_compromise: Vec<String>,
}

/// Content of the final report (Art. 23(4)(d)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinalReport {
    /// Detailed description: severity and impact.
    pub detailed_description: String,
    /// Type of threat or root cause that likely triggered the incident.
    pub root_cause: String,
    /// Applied and ongoing mitigation measures.
    pub mitigation: String,
    /// Cross-border impact, where applicable.
    pub cross_border_impact: String,
}

/// When each stage was sent, ms since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagesSent {
    /// Early warning sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_warning_sent_ms: Option<u64>,
    /// Incident notification sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_sent_ms: Option<u64>,
    /// Final report sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_report_sent_ms: Option<u64>,
}

impl StagesSent {
    /// When `stage` was sent.
    pub fn get(&self, stage: Stage) -> Option<u64> {
        match stage {
            Stage::EarlyWarning => self.early_warning_sent_ms,
            Stage::Notification => self.notification_sent_ms,
            Stage::FinalReport => self.final_report_sent_ms,
        }
    }

    /// Records `stage` as sent at `ms`.
    pub fn set(&mut self, stage: Stage, ms: u64) {
        let slot = match stage {
            Stage::EarlyWarning => &mut self.early_warning_sent_ms,
            Stage::Notification => &mut self.notification_sent_ms,
            Stage::FinalReport => &mut self.final_report_sent_ms,
        };
        *slot = Some(ms);
    }
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Id (`inc-` + 16 hex digits).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Short title.
    pub title: String,
    /// What happened.
    pub description: String,
    /// Open or closed.
    pub status: IncidentStatus,
    /// Whether it is significant under Art. 23(3) (only then do deadlines apply).
    pub significant: bool,
    /// The assessment behind `significant`.
    pub significance: Significance,
    /// When the entity became aware of it, ms since the epoch.
    pub detected_ms: u64,
    /// Linked findings of the tenant.
    pub finding_ids: Vec<String>,
    /// Affected assets.
    pub assets: Vec<String>,
    /// Stage send times.
    pub stages: StagesSent,
    /// Early warning content.
    pub early_warning: EarlyWarning,
    /// Notification content.
    pub notification: Notification,
    /// Final report content.
    pub final_report: FinalReport,
    /// Created, ms since the epoch.
    pub created_ms: u64,
    /// Last changed.
    pub updated_ms: u64,
    /// Who created it.
    pub created_by: String,
    /// When it was closed.
    pub closed_ms: Option<u64>,
}

/// The next stage due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextDeadline {
    /// Stage.
    pub stage: Stage,
    /// Due time, ms since the epoch.
    pub due_ms: u64,
}

/// An incident with its deadlines evaluated against a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentView {
    /// The record.
    #[serde(flatten)]
    pub incident: Incident,
    /// Due times of the stages.
    pub deadlines: Deadlines,
    /// Stages due and not sent (significant incidents only).
    pub overdue: Vec<Stage>,
    /// Earliest stage not sent (significant incidents only).
    pub next_deadline: Option<NextDeadline>,
}

impl Incident {
    /// Deadlines of this incident.
    pub fn deadlines(&self) -> Deadlines {
        deadlines::deadlines(self.detected_ms)
    }

    /// Deadline state as of `now_ms`.
    pub fn view(&self, now_ms: u64) -> IncidentView {
        let d = self.deadlines();
        let sent = |s: Stage| self.stages.get(s).is_some();
        let (overdue, next) = if self.significant {
            (
                deadlines::overdue(&d, sent, now_ms),
                deadlines::next_deadline(&d, sent)
                    .map(|(stage, due_ms)| NextDeadline { stage, due_ms }),
            )
        } else {
            (Vec::new(), None)
        };
        IncidentView {
            incident: self.clone(),
            deadlines: d,
            overdue,
            next_deadline: next,
        }
    }
}

/// A new incident as requested.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Detection time; now when absent.
    #[serde(default)]
    pub detected_ms: Option<u64>,
    /// Significant under Art. 23(3).
    pub significant: bool,
    /// Assessment.
    #[serde(default)]
    pub significance: Significance,
    /// Linked findings.
    #[serde(default)]
    pub finding_ids: Vec<String>,
    /// Affected assets.
    #[serde(default)]
    pub assets: Vec<String>,
    /// Early warning content.
    #[serde(default)]
    pub early_warning: Option<EarlyWarning>,
    /// Notification content.
    #[serde(default)]
    pub notification: Option<Notification>,
    /// Final report content.
    #[serde(default)]
    pub final_report: Option<FinalReport>,
}

/// Changes to an incident; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// Open or close.
    pub status: Option<IncidentStatus>,
    /// Significance verdict.
    pub significant: Option<bool>,
    /// Assessment.
    pub significance: Option<Significance>,
    /// Corrected detection time.
    pub detected_ms: Option<u64>,
    /// Replaces the linked findings.
    pub finding_ids: Option<Vec<String>>,
    /// Replaces the affected assets.
    pub assets: Option<Vec<String>>,
    /// Records a stage as sent.
    pub mark_stage_sent: Option<Stage>,
    /// When it was sent (now when absent).
    pub sent_ms: Option<u64>,
    /// Replaces the early warning content.
    pub early_warning: Option<EarlyWarning>,
    /// Replaces the notification content.
    pub notification: Option<Notification>,
    /// Replaces the final report content.
    pub final_report: Option<FinalReport>,
}
