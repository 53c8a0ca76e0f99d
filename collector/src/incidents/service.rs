//! Incident operations: create, list, update (with the audit-worthy list of
//! what changed), export, and the reminder check.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use protocol::TenantId;
use serde_json::{Value, json};

use super::reminders::{self, IncidentReminder, ReminderKind};
use super::store::IncidentStore;
use super::{
    Incident, IncidentError, IncidentPatch, IncidentStatus, IncidentView, NewIncident, Stage,
    StagesSent,
};
use crate::compliance_metrics::ComplianceMetrics;
use crate::findings::FindingError;
use crate::findings::pipeline::Pipeline;
use crate::reports::config::IncidentSettings;
use crate::time::Clock;

/// Longest title accepted.
pub const MAX_TITLE: usize = 200;
/// Most linked findings or assets per incident.
pub const MAX_LINKS: usize = 500;

/// Incident records, deadlines and reminders.
pub struct IncidentService {
    store: IncidentStore,
    pipeline: Option<Arc<Pipeline>>,
    settings: IncidentSettings,
    clock: Arc<dyn Clock>,
    metrics: Arc<ComplianceMetrics>,
    sink: std::sync::OnceLock<Arc<dyn ReminderSink>>,
}

/// Where deadline reminders go besides the log (the alerts outbox).
pub trait ReminderSink: Send + Sync + 'static {
    /// Queues one reminder durably. It must be idempotent: a reminder whose
    /// "sent" marker was lost in a crash is forwarded again.
    fn forward(&self, reminder: &IncidentReminder) -> Result<(), String>;
}

fn check_links(ids: &[String], what: &str) -> Result<(), IncidentError> {
    if ids.len() > MAX_LINKS {
        return Err(IncidentError::Invalid(format!(
            "at most {MAX_LINKS} {what} per incident"
        )));
    }
    if ids.iter().any(|s| s.trim().is_empty() || s.len() > 512) {
        return Err(IncidentError::Invalid(format!(
            "{what} must be 1..512 characters"
        )));
    }
    Ok(())
}

impl IncidentService {
    /// A service over `db`; `pipeline` validates linked finding ids.
    pub fn new(
        db: &sled::Db,
        pipeline: Option<Arc<Pipeline>>,
        settings: IncidentSettings,
        clock: Arc<dyn Clock>,
        metrics: Arc<ComplianceMetrics>,
    ) -> Result<Self, IncidentError> {
        Ok(Self {
            store: IncidentStore::open(db)?,
            pipeline,
            settings,
            clock,
            metrics,
            sink: std::sync::OnceLock::new(),
        })
    }

    /// Sends reminders to `sink` from now on (once; later calls are ignored).
    pub fn set_reminder_sink(&self, sink: Arc<dyn ReminderSink>) {
        let _ = self.sink.set(sink);
    }

    /// The clock deadlines are evaluated against.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn check_findings(&self, tenant: &TenantId, ids: &[String]) -> Result<(), IncidentError> {
        check_links(ids, "finding_ids")?;
        let Some(p) = &self.pipeline else {
            return Ok(());
        };
        for id in ids {
            match p.finding(tenant, id) {
                Ok(_) => {}
                // A finding of another tenant is as unknown as a missing one.
                Err(FindingError::NotFound(_)) => {
                    return Err(IncidentError::Invalid(format!("unknown finding {id}")));
                }
                Err(e) => return Err(IncidentError::Storage(e.to_string())),
            }
        }
        Ok(())
    }

    fn check_title(title: &str) -> Result<String, IncidentError> {
        let t = title.trim();
        if t.is_empty() || t.chars().count() > MAX_TITLE {
            return Err(IncidentError::Invalid(format!(
                "title must be 1..{MAX_TITLE} characters"
            )));
        }
        Ok(t.to_string())
    }

    /// Records a new incident.
    pub fn create(
        &self,
        tenant: &TenantId,
        input: NewIncident,
        actor: &str,
    ) -> Result<IncidentView, IncidentError> {
        let title = Self::check_title(&input.title)?;
        self.check_findings(tenant, &input.finding_ids)?;
        check_links(&input.assets, "assets")?;
        let now = self.clock.now_ms();
        let detected_ms = input.detected_ms.unwrap_or(now);
        if detected_ms > now.saturating_add(60_000) {
            return Err(IncidentError::Invalid(
                "detected_ms lies in the future".into(),
            ));
        }
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| IncidentError::Storage(e.to_string()))?;
        let inc = Incident {
            id: format!("inc-{}", hex::encode(id)),
            tenant: tenant.to_string(),
            title,
            description: input.description,
            status: IncidentStatus::Open,
            significant: input.significant,
            significance: input.significance,
            detected_ms,
            finding_ids: input.finding_ids,
            assets: input.assets,
            stages: StagesSent::default(),
            early_warning: input.early_warning.unwrap_or_default(),
            notification: input.notification.unwrap_or_default(),
            final_report: input.final_report.unwrap_or_default(),
            created_ms: now,
            updated_ms: now,
            created_by: actor.to_string(),
            closed_ms: None,
        };
        self.store.put(&inc)?;
        tracing::info!(tenant = %tenant, id = %inc.id, significant = inc.significant, "incident recorded");
        Ok(inc.view(now))
    }

    /// One incident.
    pub fn get(&self, tenant: &TenantId, id: &str) -> Result<IncidentView, IncidentError> {
        Ok(self.record(tenant, id)?.view(self.clock.now_ms()))
    }

    /// The stored record.
    pub fn record(&self, tenant: &TenantId, id: &str) -> Result<Incident, IncidentError> {
        self.store
            .get(tenant.as_str(), id)?
            .ok_or_else(|| IncidentError::NotFound(format!("incident {id}")))
    }

    /// Incidents of a tenant, newest detection first.
    pub fn list(&self, tenant: &TenantId) -> Result<Vec<IncidentView>, IncidentError> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .list(tenant.as_str())?
            .iter()
            .map(|i| i.view(now))
            .collect())
    }

    /// Applies a patch; returns the incident and what changed (for the audit log).
    pub fn update(
        &self,
        tenant: &TenantId,
        id: &str,
        patch: IncidentPatch,
    ) -> Result<(IncidentView, Value), IncidentError> {
        let mut inc = self.record(tenant, id)?;
        let now = self.clock.now_ms();
        let mut changed = serde_json::Map::new();
        if let Some(t) = patch.title {
            inc.title = Self::check_title(&t)?;
            changed.insert("title".into(), json!(inc.title));
        }
        if let Some(d) = patch.description {
            inc.description = d;
            changed.insert("description".into(), json!(true));
        }
        if let Some(s) = patch.significant {
            inc.significant = s;
            changed.insert("significant".into(), json!(s));
        }
        if let Some(s) = patch.significance {
            changed.insert("significance".into(), json!(s));
            inc.significance = s;
        }
        if let Some(d) = patch.detected_ms {
            if d > now.saturating_add(60_000) {
                return Err(IncidentError::Invalid(
                    "detected_ms lies in the future".into(),
                ));
            }
            inc.detected_ms = d;
            changed.insert("detected_ms".into(), json!(d));
        }
        if let Some(f) = patch.finding_ids {
            self.check_findings(tenant, &f)?;
            changed.insert("finding_ids".into(), json!(f));
            inc.finding_ids = f;
        }
        if let Some(a) = patch.assets {
            check_links(&a, "assets")?;
            changed.insert("assets".into(), json!(a));
            inc.assets = a;
        }
        if let Some(c) = patch.early_warning {
            inc.early_warning = c;
            changed.insert("early_warning".into(), json!(true));
        }
        if let Some(c) = patch.notification {
            inc.notification = c;
            changed.insert("notification".into(), json!(true));
        }
        if let Some(c) = patch.final_report {
            inc.final_report = c;
            changed.insert("final_report".into(), json!(true));
        }
        match (patch.mark_stage_sent, patch.sent_ms) {
            (Some(stage), sent) => {
                if inc.stages.get(stage).is_some() {
                    return Err(IncidentError::Invalid(format!(
                        "{} was already marked as sent",
                        stage.as_str()
                    )));
                }
                let at = sent.unwrap_or(now);
                if at > now.saturating_add(60_000) {
                    return Err(IncidentError::Invalid("sent_ms lies in the future".into()));
                }
                inc.stages.set(stage, at);
                changed.insert(
                    "stage_sent".into(),
                    json!({ "stage": stage, "sent_ms": at }),
                );
            }
            (None, Some(_)) => {
                return Err(IncidentError::Invalid(
                    "sent_ms needs mark_stage_sent".into(),
                ));
            }
            (None, None) => {}
        }
        if let Some(s) = patch.status {
            if s != inc.status {
                inc.closed_ms = (s == IncidentStatus::Closed).then_some(now);
            }
            inc.status = s;
            changed.insert("status".into(), json!(s));
        }
        if changed.is_empty() {
            return Err(IncidentError::Invalid("nothing to change".into()));
        }
        inc.updated_ms = now;
        self.store.put(&inc)?;
        Ok((inc.view(now), Value::Object(changed)))
    }

    /// Reminders due now that were not emitted yet (nothing is marked).
    pub fn pending_reminders(&self) -> Result<Vec<IncidentReminder>, IncidentError> {
        let all = self.store.all()?;
        let mut out = Vec::new();
        for r in reminders::due(&all, self.clock.now_ms(), self.settings.reminder_lead) {
            if !self.store.reminder_sent(&r)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Records a reminder as delivered; `false` when it already was.
    pub fn mark_reminder_sent(&self, r: &IncidentReminder) -> Result<bool, IncidentError> {
        self.store.mark_reminder_sent(r, self.clock.now_ms())
    }

    /// Emits every pending reminder once: marks it, logs it and counts it.
    /// The caller may forward the returned reminders (e.g. to the alerts outbox).
    pub fn check_reminders(&self) -> Result<Vec<IncidentReminder>, IncidentError> {
        let mut out = Vec::new();
        for r in self.pending_reminders()? {
            // Forwarded before it is marked: a crash in between forwards it
            // again (the sink deduplicates) instead of losing it.
            if let Some(sink) = self.sink.get()
                && let Err(e) = sink.forward(&r)
            {
                tracing::error!(
                    "incident {} reminder not queued for alerting, retried at the next check: {e}",
                    r.incident_id
                );
                continue;
            }
            if !self.mark_reminder_sent(&r)? {
                continue;
            }
            let counter = match r.kind {
                ReminderKind::DueSoon => &self.metrics.incident_reminders_due_soon,
                ReminderKind::Overdue => &self.metrics.incident_reminders_overdue,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                tenant = %r.tenant,
                incident = %r.incident_id,
                stage = r.stage.as_str(),
                kind = r.kind.as_str(),
                due_ms = r.due_ms,
                "{}",
                r.summary()
            );
            out.push(r);
        }
        Ok(out)
    }

    /// Checks reminders every `check_interval` until aborted.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.settings.check_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = self.clone();
                match tokio::task::spawn_blocking(move || s.check_reminders()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!("incident reminder check: {e}"),
                    Err(e) => tracing::error!("incident reminder check panicked: {e}"),
                }
            }
        })
    }

    /// Export of one stage of an incident.
    pub fn export(
        &self,
        tenant: &TenantId,
        id: &str,
        stage: Stage,
        pdf: bool,
    ) -> Result<Vec<u8>, IncidentError> {
        let inc = self.record(tenant, id)?;
        let now = self.clock.now_ms();
        Ok(if pdf {
            super::export::pdf(&inc, stage, now)
        } else {
            super::export::json(&inc, stage, now)
        })
    }
}
