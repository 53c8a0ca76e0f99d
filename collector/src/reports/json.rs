//! The JSON report (`vigil.compliance-report/1`, schema in docs/reports.md).

use serde_json::{Value, json};

use super::model::{ReportInput, rfc3339};

/// Schema identifier carried in every JSON report.
pub const SCHEMA: &str = "vigil.compliance-report/1";

/// The report as a JSON value.
pub fn to_value(r: &ReportInput) -> Value {
    let p = &r.posture;
    let by_sev: serde_json::Map<String, Value> = r
        .active_by_severity()
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect();
    let active = r.findings.iter().filter(|f| r.is_active(f)).count();
    let findings: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "rule_id": f.rule_id,
                "title": f.title,
                "severity": f.severity,
                "status": r.status_of(f),
                "active": r.is_active(f),
                "asset": f.asset,
                "check": f.check,
                "location": f.location,
                "port": f.port,
                "evidence": f.evidence,
                "remediation": f.remediation,
                "first_seen_ms": f.first_seen_ms,
                "last_seen_ms": f.last_seen_ms,
                "controls": r.controls_of(f),
                "mappings": f.mappings,
                "suppression": f.suppression,
            })
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "tenant": r.tenant,
        "framework": { "key": r.framework.key, "name": r.framework.name, "url": r.framework.url },
        "generated_ms": r.generated_ms,
        "generated_at": rfc3339(r.generated_ms),
        "generator": { "product": "vigil", "version": r.product_version },
        "summary": {
            "score": r.score(),
            "controls": {
                "total": p.controls.len(),
                "pass": p.pass,
                "fail": p.fail,
                "not_assessed": p.not_assessed,
            },
            "findings": {
                "total": r.findings.len(),
                "active": active,
                "suppressed": r.findings.len() - active,
            },
            "active_by_severity": by_sev,
            "top_risks": r.top_risks(5).iter().map(|f| json!({
                "id": f.id, "title": f.title, "severity": f.severity, "asset": f.asset,
                "controls": r.controls_of(f),
            })).collect::<Vec<_>>(),
        },
        "controls": p.controls.iter().map(|c| json!({
            "id": c.control,
            "title": c.title,
            "status": c.status,
            "active_findings": c.active_findings,
            "sample_finding_ids": c.sample,
        })).collect::<Vec<_>>(),
        "findings": findings,
        "changes": r.changes.iter().map(|c| json!({
            "id": c.id,
            "asset": c.asset,
            "change": c.change.as_str(),
            "subject": c.subject,
            "before": c.before,
            "after": c.after,
            "check": c.check,
            "detected_ms": c.detected_ms,
        })).collect::<Vec<_>>(),
    })
}

/// The report as pretty-printed JSON bytes.
pub fn render(r: &ReportInput) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&to_value(r)).unwrap_or_default();
    out.push(b'\n');
    out
}
