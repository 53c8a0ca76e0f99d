//! SARIF 2.1.0 export: one run whose driver lists every rule of the rule set
//! and whose results are the unresolved findings, located at their asset.

use rules::Severity;
use serde_json::{Value, json};

use super::model::ReportInput;

/// SARIF schema URI.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub-style 0..10 score so code-scanning UIs rank findings like vigil does.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// The SARIF log as a JSON value.
pub fn to_value(r: &ReportInput) -> Value {
    let rules: Vec<Value> = r
        .rules
        .iter()
        .map(|rule| {
            let tags: Vec<String> = rule
                .mappings
                .iter()
                .map(|m| format!("{}:{}", m.framework, m.control))
                .collect();
            json!({
                "id": rule.id,
                "name": rule.title,
                "shortDescription": { "text": rule.title },
                "fullDescription": { "text": rule.description },
                "help": { "text": rule.remediation },
                "helpUri": rule.references.first(),
                "defaultConfiguration": { "level": level(rule.severity) },
                "properties": {
                    "tags": tags,
                    "severity": rule.severity,
                    "security-severity": security_severity(rule.severity),
                },
            })
        })
        .collect();
    let results: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            let mut location = json!({
                "logicalLocations": [{
                    "name": f.asset,
                    "fullyQualifiedName": format!("{}/{}", f.asset, f.location),
                    "kind": "resource",
                }],
            });
            // A URL location is a real artifact; other locations are host:port text.
            if f.location.starts_with("http://") || f.location.starts_with("https://") {
                location["physicalLocation"] =
                    json!({ "artifactLocation": { "uri": f.location } });
            }
            let mut result = json!({
                "ruleId": f.rule_id,
                "ruleIndex": r.rules.iter().position(|x| x.id == f.rule_id),
                "level": level(f.severity),
                "message": { "text": format!("{} on {} ({}): {}", f.title, f.asset, f.location, f.evidence) },
                "locations": [location],
                "partialFingerprints": { "vigilFindingId/v1": f.id },
                "properties": {
                    "severity": f.severity,
                    "status": r.status_of(f),
                    "controls": r.controls_of(f),
                    "first_seen_ms": f.first_seen_ms,
                    "last_seen_ms": f.last_seen_ms,
                },
            });
            if !r.is_active(f) {
                result["suppressions"] = json!([{
                    "kind": "external",
                    "justification": f.suppression.as_ref().map(|s| s.reason.as_str()).unwrap_or_default(),
                }]);
            }
            result
        })
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "vigil",
                "version": r.product_version,
                "rules": rules,
            } },
            "automationDetails": { "id": format!("vigil/{}/{}/{}", r.tenant, r.framework.key, r.generated_ms) },
            "properties": { "tenant": r.tenant, "framework": r.framework.key },
            "results": results,
        }],
    })
}

/// The log as pretty-printed JSON bytes.
pub fn render(r: &ReportInput) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&to_value(r)).unwrap_or_default();
    out.push(b'\n');
    out
}
