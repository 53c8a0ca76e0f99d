//! `[reports]` and `[incidents]` settings of the collector configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, parse_duration};

/// Report generation and retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    /// Finished reports older than this are deleted with their files.
    pub retention: String,
    /// Finished reports kept per tenant; the oldest beyond it are deleted.
    pub max_per_tenant: usize,
    /// Reports a tenant may have queued or running at once.
    pub max_queued_per_tenant: usize,
    /// Most recent change events a report lists.
    pub change_history: usize,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            retention: "30d".into(),
            max_per_tenant: 50,
            max_queued_per_tenant: 10,
            change_history: 100,
        }
    }
}

/// Parsed [`ReportsConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    /// See [`ReportsConfig::retention`].
    pub retention: Duration,
    /// See [`ReportsConfig::max_per_tenant`].
    pub max_per_tenant: usize,
    /// See [`ReportsConfig::max_queued_per_tenant`].
    pub max_queued_per_tenant: usize,
    /// See [`ReportsConfig::change_history`].
    pub change_history: usize,
}

impl ReportsConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<ReportSettings, ConfigError> {
        let retention = parse_duration("reports.retention", &self.retention)?;
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        };
        if retention < Duration::from_secs(60) {
            return Err(invalid("reports.retention", "must be at least 1m"));
        }
        if self.max_per_tenant == 0 {
            return Err(invalid("reports.max_per_tenant", "must be at least 1"));
        }
        if self.max_queued_per_tenant == 0 {
            return Err(invalid(
                "reports.max_queued_per_tenant",
                "must be at least 1",
            ));
        }
        if self.change_history > 10_000 {
            return Err(invalid("reports.change_history", "must be at most 10000"));
        }
        Ok(ReportSettings {
            retention,
            max_per_tenant: self.max_per_tenant,
            max_queued_per_tenant: self.max_queued_per_tenant,
            change_history: self.change_history,
        })
    }
}

/// NIS2 incident deadline reminders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentsConfig {
    /// A reminder is emitted when a notification stage falls due within this long.
    pub reminder_lead: String,
    /// How often open incidents are checked for due and overdue stages.
    pub check_interval: String,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            reminder_lead: "6h".into(),
            check_interval: "1m".into(),
        }
    }
}

/// Parsed [`IncidentsConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentSettings {
    /// See [`IncidentsConfig::reminder_lead`].
    pub reminder_lead: Duration,
    /// See [`IncidentsConfig::check_interval`].
    pub check_interval: Duration,
}

impl IncidentsConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<IncidentSettings, ConfigError> {
        let reminder_lead = parse_duration("incidents.reminder_lead", &self.reminder_lead)?;
        let check_interval = parse_duration("incidents.check_interval", &self.check_interval)?;
        if check_interval < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: "incidents.check_interval".into(),
                message: "must be at least 1s".into(),
            });
        }
        if reminder_lead > Duration::from_secs(72 * 3600) {
            return Err(ConfigError::Invalid {
                key: "incidents.reminder_lead".into(),
                message: "must be at most 72h".into(),
            });
        }
        Ok(IncidentSettings {
            reminder_lead,
            check_interval,
        })
    }
}
