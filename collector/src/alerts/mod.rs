//! Per-tenant alerting with a transactional outbox (issue 5).
//!
//! The findings pipeline writes an [`AlertEvent`] into [`Space::AlertOutbox`]
//! in the same transaction that stores the finding or change event
//! ([`outbox`]), so an alert is never lost nor invented by a crash. The
//! [`dispatcher`] turns outbox events into one [`Delivery`] per matching
//! channel (evaluating rules and mute windows when it plans them), sends them
//! with retries, exponential backoff and jitter, and dead-letters them after
//! the configured number of attempts. Every state change of a delivery is a
//! transaction on the same store, so a restart neither loses nor re-sends a
//! delivered item (sending is at-least-once; receivers dedupe on the
//! idempotency key). Channels, rules and mute windows live in
//! [`Space::AlertConfig`] under tenant-prefixed keys ([`service`]).

pub mod api;
pub mod config;
pub mod dispatcher;
pub mod model;
pub mod outbox;
pub mod service;
pub mod sign;
pub mod slack;
pub mod smtp;
pub mod webhook;

use thiserror::Error;

pub use crate::findings::Space;
use crate::findings::{FindingError, tenant_key};
pub use config::{AlertSettings, AlertsConfig};
pub use model::{
    AlertEvent, AlertRule, Channel, ChannelKind, Delivery, DeliveryStatus, EventKind, MuteWindow,
};
pub use service::AlertService;

/// Failures of alert management and delivery.
#[derive(Debug, Error)]
pub enum AlertError {
    /// The findings store failed.
    #[error(transparent)]
    Store(#[from] FindingError),
    /// The named channel, rule, window or delivery does not exist for the tenant.
    #[error("not found: {0}")]
    NotFound(String),
    /// A request argument is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Sending failed (the message is stored as the delivery's last error).
    #[error("{0}")]
    Send(String),
}

/// Forwards NIS2 incident deadline reminders into the alerts outbox as
/// `incident_deadline` events (idempotent per incident, stage, due time and kind).
pub struct IncidentReminders(pub std::sync::Arc<AlertService>);

impl crate::incidents::service::ReminderSink for IncidentReminders {
    fn forward(&self, r: &crate::incidents::IncidentReminder) -> Result<(), String> {
        let deadline = outbox::IncidentDeadline {
            incident_id: r.incident_id.clone(),
            title: r.title.clone(),
            stage: r.stage.as_str().to_string(),
            due_ms: r.due_ms,
            overdue: r.kind == crate::incidents::ReminderKind::Overdue,
        };
        self.0
            .enqueue_incident_deadline(&r.tenant, &deadline)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Key of a tenant's channel, rule or mute window in [`Space::AlertConfig`].
pub(crate) fn config_key(tenant: &str, what: &str, id: &str) -> Vec<u8> {
    tenant_key(tenant, &format!("{what}/{id}"))
}

/// Key of a tenant's [`model::Interest`] in [`Space::AlertConfig`].
pub(crate) fn interest_key(tenant: &str) -> Vec<u8> {
    tenant_key(tenant, "interest")
}

/// Key of a delivery in [`Space::AlertDeliveries`].
pub(crate) fn delivery_key(tenant: &str, id: &str) -> Vec<u8> {
    tenant_key(tenant, id)
}

/// Key of a pending delivery in [`Space::AlertDue`]: due time first, so a scan
/// from the start yields the deliveries due soonest.
pub(crate) fn due_key(next_attempt_ms: u64, tenant: &str, id: &str) -> Vec<u8> {
    let mut k = next_attempt_ms.to_be_bytes().to_vec();
    k.extend_from_slice(&delivery_key(tenant, id));
    k
}

/// Random hex id of `n` bytes.
pub(crate) fn random_id(n: usize) -> Result<String, AlertError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| AlertError::Send(format!("random: {e}")))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests;
