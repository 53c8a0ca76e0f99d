//! Writing alert events into the outbox inside a findings transaction.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::interest_key;
use super::model::{AlertEvent, EventKind, Interest};
use crate::findings::changes::ChangeEvent;
use crate::findings::{FindingError, FindingRecord, FindingStore, FindingTx, Space, dec, enc};

fn event_id(parts: &[&str]) -> String {
    let mut d = Sha256::new();
    for p in parts {
        d.update((p.len() as u64).to_be_bytes());
        d.update(p.as_bytes());
    }
    hex::encode(&d.finalize()[..16])
}

/// Key of an event in [`Space::AlertOutbox`].
pub fn outbox_key(ev: &AlertEvent) -> Vec<u8> {
    crate::findings::tenant_key(&ev.tenant, &ev.id)
}

/// Queues `ev` in the transaction `tx`.
pub fn put_event(tx: &dyn FindingTx, ev: &AlertEvent) -> Result<(), FindingError> {
    tx.put(Space::AlertOutbox, &outbox_key(ev), &enc(ev)?)
}

/// The tenant's interest summary as seen by `tx`; `None` without rules.
fn interest(tx: &dyn FindingTx, tenant: &str) -> Result<Option<Interest>, FindingError> {
    let key = interest_key(tenant);
    tx.get(Space::AlertConfig, &key)?
        .map(|v| dec(&key, &v))
        .transpose()
}

/// Queues a new or reopened finding (`kind` says which) if a rule of the
/// tenant may want it.
pub fn enqueue_finding(
    tx: &dyn FindingTx,
    f: &FindingRecord,
    kind: EventKind,
) -> Result<(), FindingError> {
    if !interest(tx, &f.tenant)?.is_some_and(|i| i.wants_finding(kind, f.severity)) {
        return Ok(());
    }
    let at = f.history.last().map_or(f.last_seen_ms, |t| t.at_ms);
    if f.suppressed(at) {
        // A suppressed or accepted finding coming back is not news.
        return Ok(());
    }
    let verb = match kind {
        EventKind::FindingReopened => "reopened",
        _ => "new",
    };
    let ev = AlertEvent {
        id: event_id(&[kind.as_str(), &f.tenant, &f.id, &at.to_string()]),
        tenant: f.tenant.clone(),
        kind,
        created_ms: at,
        severity: Some(f.severity),
        change_type: None,
        summary: format!(
            "[{}] {verb} finding on {}: {}",
            f.severity.as_str(),
            f.asset,
            f.title
        ),
        asset: Some(f.asset.clone()),
        details: json!({
            "finding_id": f.id, "rule_id": f.rule_id, "title": f.title,
            "severity": f.severity, "check": f.check, "location": f.location,
            "evidence": f.evidence, "remediation": f.remediation, "state": f.state,
            "port": f.port, "first_seen_ms": f.first_seen_ms, "last_seen_ms": f.last_seen_ms,
        }),
    };
    put_event(tx, &ev)
}

/// Queues a change event if a rule of the tenant may want it.
pub fn enqueue_change(tx: &dyn FindingTx, c: &ChangeEvent) -> Result<(), FindingError> {
    let change = c.change.as_str();
    if !interest(tx, &c.tenant)?.is_some_and(|i| i.wants_change(change)) {
        return Ok(());
    }
    let ev = AlertEvent {
        id: event_id(&["change", &c.tenant, &c.id, &c.detected_ms.to_string()]),
        tenant: c.tenant.clone(),
        kind: EventKind::Change,
        created_ms: c.detected_ms,
        severity: None,
        change_type: Some(change.to_string()),
        summary: format!("{change} on {}: {}", c.asset, c.subject),
        asset: Some(c.asset.clone()),
        details: json!({
            "change_id": c.id, "change_type": change, "subject": c.subject,
            "before": c.before, "after": c.after, "check": c.check, "port": c.port,
            "detected_ms": c.detected_ms,
        }),
    };
    put_event(tx, &ev)
}

/// What an incident deadline reminder says.
#[derive(Debug, Clone)]
pub struct IncidentDeadline {
    /// Incident id.
    pub incident_id: String,
    /// Incident title.
    pub title: String,
    /// Reporting stage: `early_warning`, `notification` or `final_report`.
    pub stage: String,
    /// When the stage is due, ms since the epoch.
    pub due_ms: u64,
    /// Whether the deadline has passed.
    pub overdue: bool,
}

/// Queues an `incident_deadline` event for `tenant` in its own transaction
/// (for the NIS2 incident reminders). One reminder per (incident, stage,
/// overdue) is kept however often this is called.
pub fn enqueue_incident_deadline(
    fs: &dyn FindingStore,
    tenant: &str,
    d: &IncidentDeadline,
) -> Result<String, FindingError> {
    let overdue = if d.overdue { "overdue" } else { "due" };
    let id = event_id(&[
        "incident_deadline",
        tenant,
        &d.incident_id,
        &d.stage,
        &d.due_ms.to_string(),
        overdue,
    ]);
    let ev = AlertEvent {
        id: id.clone(),
        tenant: tenant.to_string(),
        kind: EventKind::IncidentDeadline,
        // The deadline, not the call time: repeated calls must yield the same delivery ids.
        created_ms: d.due_ms,
        severity: None,
        change_type: None,
        summary: format!(
            "NIS2 incident \"{}\": {} {overdue} at {}",
            d.title, d.stage, d.due_ms
        ),
        asset: None,
        details: json!({
            "incident_id": d.incident_id, "title": d.title, "stage": d.stage,
            "due_ms": d.due_ms, "overdue": d.overdue,
        }),
    };
    fs.transact(&mut |tx| put_event(tx, &ev))?;
    Ok(id)
}
