//! OCSF 1.1 export: a JSON array of Compliance Finding (2003) events for
//! findings mapped to the report's framework and Detection Finding (2004)
//! events for the others.

use rules::Severity;
use serde_json::{Value, json};

use super::model::ReportInput;
use crate::findings::FindingRecord;

/// OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.1.0";
/// Findings category.
pub const CATEGORY_FINDINGS: u32 = 2;
/// Compliance Finding class.
pub const CLASS_COMPLIANCE: u32 = 2003;
/// Detection Finding class.
pub const CLASS_DETECTION: u32 = 2004;
/// Activity "Create": the report states each finding as of its generation.
pub const ACTIVITY_CREATE: u32 = 1;

fn severity(s: Severity) -> (u32, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// OCSF finding status: 1 New, 2 In Progress (open/reopened), 3 Suppressed.
fn status(r: &ReportInput, f: &FindingRecord) -> (u32, &'static str) {
    match r.status_of(f) {
        "suppressed" | "accepted_risk" => (3, "Suppressed"),
        "new" => (1, "New"),
        "resolved" => (4, "Resolved"),
        _ => (2, "In Progress"),
    }
}

fn event(r: &ReportInput, f: &FindingRecord) -> Value {
    let controls = r.controls_of(f);
    let class_uid = if controls.is_empty() {
        CLASS_DETECTION
    } else {
        CLASS_COMPLIANCE
    };
    let (severity_id, severity_name) = severity(f.severity);
    let (status_id, status_name) = status(r, f);
    let rule = r.rule(&f.rule_id);
    let mut e = json!({
        "class_uid": class_uid,
        "class_name": if class_uid == CLASS_COMPLIANCE { "Compliance Finding" } else { "Detection Finding" },
        "category_uid": CATEGORY_FINDINGS,
        "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "type_uid": class_uid * 100 + ACTIVITY_CREATE,
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": status_id,
        "status": status_name,
        "time": r.generated_ms,
        "message": f.title,
        "metadata": {
            "version": OCSF_VERSION,
            "product": { "name": "vigil", "vendor_name": "vigil", "version": r.product_version },
            "tenant_uid": r.tenant,
            "uid": format!("{}-{}", f.id, r.generated_ms),
        },
        "finding_info": {
            "uid": f.id,
            "title": f.title,
            "desc": rule.map(|r| r.description.as_str()).unwrap_or_default(),
            "created_time": f.first_seen_ms,
            "first_seen_time": f.first_seen_ms,
            "last_seen_time": f.last_seen_ms,
            "modified_time": f.last_seen_ms,
            "types": [f.check],
            "analytic": { "uid": f.rule_id, "name": f.title, "type_id": 1, "type": "Rule" },
        },
        "resources": [{
            "uid": f.asset,
            "name": f.asset,
            "type": "host",
            "data": { "location": f.location, "port": f.port, "evidence": f.evidence },
        }],
        "remediation": { "desc": f.remediation },
        "unmapped": { "vigil_state": r.status_of(f) },
    });
    if class_uid == CLASS_COMPLIANCE {
        // Every control this finding fails, with the posture status of the first.
        e["compliance"] = json!({
            "standards": [r.framework.name],
            "requirements": controls,
            "control": controls.first(),
            "status_id": 3,
            "status": "Fail",
        });
    }
    e
}

/// Events of the report as a JSON value.
pub fn to_value(r: &ReportInput) -> Value {
    Value::Array(r.findings.iter().map(|f| event(r, f)).collect())
}

/// The export as pretty-printed JSON bytes.
pub fn render(r: &ReportInput) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&to_value(r)).unwrap_or_default();
    out.push(b'\n');
    out
}
