//! Report formats on a fixed input: JSON, CSV, OCSF and SARIF against golden
//! files (regenerate with `VIGIL_UPDATE_GOLDEN=1`), structural checks of each
//! format, and the PDF rendered by poppler (`pdftoppm`, `pdftotext`; Debian
//! package poppler-utils, installed by `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

use collector::findings::changes::{ChangeEvent, ChangeType};
use collector::findings::posture::{ControlPosture, ControlStatus, Posture};
use collector::findings::{FindingRecord, FindingState, Suppression, SuppressionKind, Transition};
use collector::reports::model::{ReportInput, RuleInfo};
use collector::reports::{ReportFormat, render};
use rules::{Framework, Mapping, Severity};
use serde_json::Value;

const T0: u64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

fn mapping(fw: &str, control: &str, title: &str) -> Mapping {
    Mapping {
        framework: fw.into(),
        control: control.into(),
        title: title.into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn finding(
    id: &str,
    asset: &str,
    rule: &str,
    title: &str,
    severity: Severity,
    state: FindingState,
    location: &str,
    mappings: Vec<Mapping>,
) -> FindingRecord {
    FindingRecord {
        id: id.into(),
        tenant: "acme".into(),
        asset: asset.into(),
        rule_id: rule.into(),
        title: title.into(),
        severity,
        check: rule.split('.').next().unwrap_or("port").into(),
        job_id: "nightly".into(),
        location: location.into(),
        evidence: format!("evidence of {id}, with \"quotes\", commas\nand a newline"),
        remediation: format!("Fix {title} (see the runbook)."),
        mappings,
        state,
        first_seen_ms: T0 - 86_400_000,
        last_seen_ms: T0 - 3_600_000,
        resolved_ms: None,
        reopened: 0,
        port: Some(443),
        not_after_ms: None,
        suppression: None,
        history: vec![Transition {
            at_ms: T0 - 86_400_000,
            state: FindingState::New,
        }],
    }
}

fn rule(id: &str, title: &str, severity: Severity, mappings: Vec<Mapping>) -> RuleInfo {
    RuleInfo {
        id: id.into(),
        title: title.into(),
        description: format!("Why {title} matters."),
        severity,
        check: id.split('.').next().unwrap_or("port").into(),
        remediation: format!("Fix {title} (see the runbook)."),
        references: vec!["https://example.test/ref".into()],
        mappings,
    }
}

/// A fixed report: three controls (fail, pass, not assessed), four findings
/// (one suppressed, one not mapped to the framework), two change events.
fn input() -> ReportInput {
    let crypto = mapping("nis2", "21(2)(h)", "Cryptography and encryption");
    let vuln = mapping(
        "nis2",
        "21(2)(e)",
        "Security in acquisition and maintenance",
    );
    let iso = mapping("iso27001", "A.8.24", "Use of cryptography");
    let mut suppressed = finding(
        "f3",
        "db.acme.test",
        "tls.cert.expiring-soon",
        "TLS certificate expires within 14 days",
        Severity::High,
        FindingState::Open,
        "10.0.0.3:443 (db.acme.test)",
        vec![crypto.clone()],
    );
    suppressed.suppression = Some(Suppression {
        kind: SuppressionKind::AcceptedRisk,
        reason: "replacement ordered".into(),
        owner: "ops@acme.test".into(),
        created_ms: T0 - 1000,
        expires_ms: Some(T0 + 86_400_000),
    });
    let mut findings = vec![
        finding(
            "f1",
            "web.acme.test",
            "tls.protocol.legacy",
            "Legacy TLS 1.0 accepted",
            Severity::Critical,
            FindingState::New,
            "10.0.0.1:443 (web.acme.test)",
            vec![crypto.clone(), iso.clone()],
        ),
        finding(
            "f2",
            "web.acme.test",
            "http.header.hsts-missing",
            "HSTS header missing — Zertifikat läuft ab 東京",
            Severity::Medium,
            FindingState::Reopened,
            "https://web.acme.test/",
            vec![crypto.clone()],
        ),
        suppressed,
        finding(
            "f4",
            "mail.acme.test",
            "port.smtp.open",
            "=SMTP service exposed",
            Severity::Low,
            FindingState::Open,
            "10.0.0.4:25",
            vec![iso.clone()],
        ),
    ];
    collector::reports::model::sort_findings(&mut findings);
    ReportInput {
        tenant: "acme".into(),
        framework: Framework {
            key: "nis2".into(),
            name: "NIS2 Directive (EU) 2022/2555, Art. 21(2)".into(),
            url: Some("https://eur-lex.europa.eu/eli/dir/2022/2555/oj".into()),
        },
        generated_ms: T0,
        product_version: "0.0.0-golden".into(),
        posture: Posture {
            tenant: "acme".into(),
            framework: "nis2".into(),
            framework_name: "NIS2".into(),
            computed_ms: T0,
            pass: 1,
            fail: 1,
            not_assessed: 1,
            controls: vec![
                ControlPosture {
                    control: "21(2)(h)".into(),
                    title: "Cryptography and encryption".into(),
                    status: ControlStatus::Fail,
                    active_findings: 2,
                    sample: vec!["f1".into(), "f2".into()],
                },
                ControlPosture {
                    control: "21(2)(e)".into(),
                    title: "Security in acquisition and maintenance".into(),
                    status: ControlStatus::Pass,
                    active_findings: 0,
                    sample: vec![],
                },
                ControlPosture {
                    control: "21(2)(i)".into(),
                    title: "Access control (human resources security)".into(),
                    status: ControlStatus::NotAssessed,
                    active_findings: 0,
                    sample: vec![],
                },
            ],
        },
        findings,
        changes: vec![
            ChangeEvent {
                id: "c2".into(),
                tenant: "acme".into(),
                asset: "web.acme.test".into(),
                change: ChangeType::TlsProtocolAdded,
                subject: "10.0.0.1:443".into(),
                before: Some("TLSv1.2,TLSv1.3".into()),
                after: Some("TLSv1,TLSv1.2,TLSv1.3".into()),
                check: "tls".into(),
                job_id: "nightly".into(),
                detected_ms: T0 - 7_200_000,
                port: Some(443),
            },
            ChangeEvent {
                id: "c1".into(),
                tenant: "acme".into(),
                asset: "mail.acme.test".into(),
                change: ChangeType::PortOpened,
                subject: "10.0.0.4:25".into(),
                before: None,
                after: Some("smtp".into()),
                check: "port".into(),
                job_id: "nightly".into(),
                detected_ms: T0 - 9_000_000,
                port: Some(25),
            },
        ],
        rules: vec![
            rule(
                "http.header.hsts-missing",
                "HSTS header missing",
                Severity::Medium,
                vec![crypto.clone()],
            ),
            rule(
                "port.smtp.open",
                "SMTP service exposed",
                Severity::Low,
                vec![iso.clone()],
            ),
            rule(
                "tls.cert.expiring-soon",
                "TLS certificate expires within 14 days",
                Severity::High,
                vec![crypto.clone()],
            ),
            rule(
                "tls.protocol.legacy",
                "Legacy TLS 1.0 accepted",
                Severity::Critical,
                vec![crypto, vuln, iso],
            ),
        ],
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check_golden(name: &str, actual: &[u8]) {
    let path = golden_dir().join(name);
    if std::env::var_os("VIGIL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (VIGIL_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from its golden file; if the change is intended, rerun with VIGIL_UPDATE_GOLDEN=1\n--- actual ---\n{}",
        String::from_utf8_lossy(actual)
    );
}

fn rendered(format: ReportFormat) -> Vec<u8> {
    let mut seen = Vec::new();
    let out = render(&input(), format, &mut |p| seen.push(p));
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&95));
    out
}

#[test]
fn json_report_matches_golden_and_summarises() {
    let out = rendered(ReportFormat::Json);
    check_golden("report.json", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["schema"], "vigil.compliance-report/1");
    assert_eq!(v["summary"]["score"], 50);
    assert_eq!(v["summary"]["findings"]["active"], 3);
    assert_eq!(
        v["summary"]["active_by_severity"]["high"], 0,
        "the accepted risk does not count"
    );
    assert_eq!(v["summary"]["top_risks"][0]["id"], "f1");
    assert_eq!(v["findings"].as_array().unwrap().len(), 4);
}

#[test]
fn csv_report_matches_golden_with_one_row_per_finding() {
    let out = rendered(ReportFormat::Csv);
    check_golden("report.csv", &out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("finding_id,asset,rule_id,"));
    // Quoted newlines stay inside their field: 1 header + 4 records.
    let mut records = 0;
    let mut in_quotes = false;
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !in_quotes {
            records += 1;
        }
        if line.matches('"').count() % 2 == 1 {
            in_quotes = !in_quotes;
        }
    }
    assert_eq!(records, 5);
    assert!(text.contains("'=SMTP service exposed"), "formula guard");
    assert!(text.contains("nis2:21(2)(h);iso27001:A.8.24"));
}

#[test]
fn ocsf_events_match_golden_and_the_class_rules() {
    let out = rendered(ReportFormat::Ocsf);
    check_golden("report.ocsf.json", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    let events = v.as_array().unwrap();
    assert_eq!(events.len(), 4);
    for e in events {
        let class = e["class_uid"].as_u64().unwrap();
        assert_eq!(
            e["type_uid"].as_u64().unwrap(),
            class * 100 + e["activity_id"].as_u64().unwrap()
        );
        assert_eq!(e["category_uid"], 2);
        assert!(
            e["finding_info"]["uid"].is_string() && e["metadata"]["product"]["name"] == "vigil"
        );
        let mapped = e["finding_info"]["uid"] != "f4";
        assert_eq!(class, if mapped { 2003 } else { 2004 }, "{e}");
        assert_eq!(e["compliance"].is_object(), mapped);
    }
    let f1 = events
        .iter()
        .find(|e| e["finding_info"]["uid"] == "f1")
        .unwrap();
    assert_eq!(f1["severity_id"], 5);
    assert_eq!(f1["status_id"], 1);
    assert_eq!(
        f1["compliance"]["requirements"],
        serde_json::json!(["21(2)(h)"])
    );
    let f3 = events
        .iter()
        .find(|e| e["finding_info"]["uid"] == "f3")
        .unwrap();
    assert_eq!(f3["status_id"], 3, "accepted risk is suppressed");
}

#[test]
fn sarif_log_matches_golden_and_references_its_rules() {
    let out = rendered(ReportFormat::Sarif);
    check_golden("report.sarif", &out);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    for r in run["results"].as_array().unwrap() {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(r["locations"][0]["logicalLocations"][0]["name"].is_string());
    }
    let f2 = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partialFingerprints"]["vigilFindingId/v1"] == "f2")
        .unwrap();
    assert_eq!(
        f2["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "https://web.acme.test/"
    );
}

fn tool(name: &str) -> Command {
    let found = Command::new(name).arg("-v").output().is_ok();
    assert!(
        found,
        "{name} is missing: install poppler-utils (.ci/run does)"
    );
    Command::new(name)
}

/// Renders `pdf` at low resolution; returns (pages, non-white pixels per page).
pub fn rasterise(pdf: &[u8]) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = tool("pdftoppm")
        .args(["-r", "30", "-gray"])
        .arg(&file)
        .arg(dir.path().join("p"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pdftoppm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pgm"))
        .collect();
    pages.sort();
    pages
        .iter()
        .map(|p| {
            let data = std::fs::read(p).unwrap();
            // Binary PGM: "P5\n<w> <h>\n<max>\n" then one byte per pixel.
            let mut fields = 0;
            let mut at = 0;
            while fields < 4 {
                while data[at].is_ascii_whitespace() {
                    at += 1;
                }
                while !data[at].is_ascii_whitespace() {
                    at += 1;
                }
                fields += 1;
            }
            data[at + 1..].iter().filter(|&&b| b < 200).count()
        })
        .collect()
}

fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = tool("pdftotext").arg(&file).arg("-").output().unwrap();
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pdf_report_renders_with_poppler_and_carries_its_facts() {
    let pdf = rendered(ReportFormat::Pdf);
    assert!(pdf.starts_with(b"%PDF-1.4"));
    // poppler complains on stderr about a broken xref table or object syntax.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.pdf");
    std::fs::write(&file, &pdf).unwrap();
    let info = tool("pdfinfo").arg(&file).output().unwrap();
    assert!(info.status.success());
    assert!(
        info.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("PDF version:     1.4") && info.contains("(A4)"),
        "{info}"
    );
    let pages = rasterise(&pdf);
    assert!(pages.len() >= 3, "cover, summary and sections: {pages:?}");
    assert!(
        pages.iter().all(|&dark| dark > 50),
        "a page is blank: {pages:?}"
    );
    let text = pdf_text(&pdf);
    for needle in [
        "Compliance report",
        "acme",
        "21(2)(h)",
        "Posture score: 50 / 100",
        "Legacy TLS 1.0 accepted",
        "Zertifikat läuft ab",
        "Change history",
        "TLS_PROTOCOL_ADDED",
        "accepted_risk",
        &format!("Page 1 of {}", pages.len()),
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn large_pdf_report_breaks_pages_and_keeps_every_finding() {
    let mut r = input();
    let template = r.findings[0].clone();
    for i in 0..150 {
        let mut f = template.clone();
        f.id = format!("bulk{i:03}");
        f.asset = format!("host{i:03}.acme.test");
        r.findings.push(f);
    }
    let pdf = render(&r, ReportFormat::Pdf, &mut |_| {});
    let pages = rasterise(&pdf);
    assert!(pages.len() >= 6, "{} pages", pages.len());
    assert!(pages.iter().all(|&dark| dark > 50));
    let text = pdf_text(&pdf);
    assert!(text.contains("host000.acme.test") && text.contains("host149.acme.test"));
    assert!(text.contains(&format!("Page {0} of {0}", pages.len())));
}
