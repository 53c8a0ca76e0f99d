//! The CSV report: one row per unresolved finding, RFC 4180 quoting, CRLF lines.

use super::model::{ReportInput, rfc3339};

/// Column headers, in order.
pub const HEADER: [&str; 16] = [
    "finding_id",
    "asset",
    "rule_id",
    "title",
    "severity",
    "status",
    "active",
    "check",
    "location",
    "first_seen",
    "last_seen",
    "framework",
    "controls",
    "all_mappings",
    "evidence",
    "remediation",
];

/// One field, quoted when it holds a comma, quote, CR or LF. A leading `=`,
/// `+`, `-`, `@` or tab gets a `'` so spreadsheets do not run it as a formula.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The report as CSV bytes (UTF-8).
pub fn render(r: &ReportInput) -> Vec<u8> {
    let mut out = String::new();
    let mut row = |fields: &[String]| {
        let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    };
    row(&HEADER.map(str::to_string));
    for f in &r.findings {
        let all: Vec<String> = f
            .mappings
            .iter()
            .map(|m| format!("{}:{}", m.framework, m.control))
            .collect();
        row(&[
            f.id.clone(),
            f.asset.clone(),
            f.rule_id.clone(),
            f.title.clone(),
            f.severity.as_str().to_string(),
            r.status_of(f).to_string(),
            r.is_active(f).to_string(),
            f.check.clone(),
            f.location.clone(),
            rfc3339(f.first_seen_ms),
            rfc3339(f.last_seen_ms),
            r.framework.key.clone(),
            r.controls_of(f).join(";"),
            all.join(";"),
            f.evidence.clone(),
            f.remediation.clone(),
        ]);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_per_rfc4180() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\r\nlines"), "\"two\r\nlines\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
        assert_eq!(field("-1,2"), "\"'-1,2\"");
    }
}
