//! The PDF report: cover page, executive summary, posture per control,
//! findings by severity with remediation and assets, and change history.

use std::collections::BTreeMap;

use rules::Severity;

use super::model::{ReportInput, SEVERITIES, rfc3339};
use super::pdf::layout::Cell;
use super::pdf::{Color, Column, Font, Info, Layout};
use crate::findings::FindingRecord;
use crate::findings::posture::ControlStatus;

/// Fill colour and whether text on it should be white.
pub fn severity_color(s: Severity) -> (Color, bool) {
    match s {
        Severity::Critical => (Color(0.5, 0.0, 0.1), true),
        Severity::High => (Color(0.85, 0.22, 0.12), true),
        Severity::Medium => (Color(0.96, 0.62, 0.12), false),
        Severity::Low => (Color(0.98, 0.87, 0.35), false),
        Severity::Info => (Color(0.75, 0.85, 0.96), false),
    }
}

fn status_cell(s: ControlStatus) -> Cell {
    let (text, fill) = match s {
        ControlStatus::Pass => ("pass", Color(0.73, 0.9, 0.73)),
        ControlStatus::Fail => ("fail", Color(0.97, 0.7, 0.7)),
        ControlStatus::NotAssessed => ("not assessed", Color(0.9, 0.9, 0.9)),
    };
    Cell {
        text: text.into(),
        fill: Some(fill),
        light_text: false,
    }
}

fn severity_cell(s: Severity) -> Cell {
    let (fill, light_text) = severity_color(s);
    Cell {
        text: s.as_str().into(),
        fill: Some(fill),
        light_text,
    }
}

fn col(title: &str, share: f32) -> Column {
    Column {
        title: title.into(),
        share,
    }
}

/// Renders the report; `progress` is told how far it got (0..=100).
pub fn render(r: &ReportInput, progress: &mut dyn FnMut(u8)) -> Vec<u8> {
    let footer = format!(
        "vigil compliance report - {} - {}",
        r.tenant, r.framework.name
    );
    let mut l = Layout::new(&footer);
    cover(&mut l, r);
    l.page_break();
    summary(&mut l, r);
    progress(60);
    controls(&mut l, r);
    progress(70);
    findings(&mut l, r);
    progress(85);
    changes(&mut l, r);
    let info = Info {
        title: format!("Compliance report {} / {}", r.tenant, r.framework.key),
        created_ms: r.generated_ms,
    };
    l.finish(&info)
}

fn cover(l: &mut Layout, r: &ReportInput) {
    let w = l.width();
    l.fill_rect(50.0, 700.0, w, 6.0, Color(0.1, 0.25, 0.5));
    l.space(150.0);
    l.paragraph(Font::Bold, 28.0, "Compliance report", Color::BLACK);
    l.space(10.0);
    l.paragraph(Font::Regular, 16.0, &r.framework.name, Color::BLACK);
    l.space(40.0);
    for (k, v) in [
        ("Tenant", r.tenant.clone()),
        (
            "Framework",
            format!("{} ({})", r.framework.name, r.framework.key),
        ),
        ("Generated", rfc3339(r.generated_ms)),
        ("Generator", format!("vigil {}", r.product_version)),
    ] {
        l.paragraph(Font::Bold, 11.0, k, Color::GREY);
        l.paragraph(Font::Regular, 13.0, &v, Color::BLACK);
        l.space(8.0);
    }
    if let Some(url) = &r.framework.url {
        l.paragraph(Font::Regular, 9.0, url, Color::GREY);
    }
    l.space(30.0);
    l.paragraph(
        Font::Regular,
        9.0,
        "This report states the findings vigil derived from authorised scans as of the \
         generation time. Controls marked 'not assessed' were not covered by any scan the \
         tenant ran; they are neither passed nor failed.",
        Color::GREY,
    );
}

fn summary(l: &mut Layout, r: &ReportInput) {
    l.heading("Executive summary", 16.0, 80.0);
    let p = &r.posture;
    let score = r
        .score()
        .map_or("n/a (no control assessed)".to_string(), |s| {
            format!("{s} / 100")
        });
    l.paragraph(
        Font::Bold,
        12.0,
        &format!("Posture score: {score}"),
        Color::BLACK,
    );
    l.paragraph(
        Font::Regular,
        10.0,
        &format!(
            "{} controls: {} pass, {} fail, {} not assessed. The score is the passing share of the assessed controls.",
            p.controls.len(),
            p.pass,
            p.fail,
            p.not_assessed
        ),
        Color::BLACK,
    );
    l.space(8.0);
    let rows: Vec<Vec<Cell>> = r
        .active_by_severity()
        .into_iter()
        .map(|(s, n)| vec![severity_cell(s), Cell::from(n.to_string())])
        .collect();
    l.paragraph(
        Font::Bold,
        11.0,
        "Active findings by severity",
        Color::BLACK,
    );
    l.space(4.0);
    l.table(
        &[col("Severity", 0.3), col("Active findings", 0.7)],
        &rows,
        9.0,
    );
    let suppressed = r.findings.iter().filter(|f| !r.is_active(f)).count();
    if suppressed > 0 {
        l.paragraph(
            Font::Regular,
            9.0,
            &format!(
                "{suppressed} further finding(s) are suppressed or accepted risks and do not count."
            ),
            Color::GREY,
        );
    }
    l.space(6.0);
    l.paragraph(Font::Bold, 11.0, "Top risks", Color::BLACK);
    l.space(4.0);
    let top = r.top_risks(5);
    if top.is_empty() {
        l.paragraph(Font::Regular, 10.0, "No active findings.", Color::BLACK);
    } else {
        let rows: Vec<Vec<Cell>> = top
            .iter()
            .map(|f| {
                vec![
                    severity_cell(f.severity),
                    Cell::from(f.title.as_str()),
                    Cell::from(f.asset.as_str()),
                    Cell::from(r.controls_of(f).join(", ")),
                ]
            })
            .collect();
        l.table(
            &[
                col("Severity", 0.14),
                col("Finding", 0.44),
                col("Asset", 0.24),
                col("Controls", 0.18),
            ],
            &rows,
            9.0,
        );
    }
}

fn controls(l: &mut Layout, r: &ReportInput) {
    l.heading(
        &format!("Posture per control - {}", r.framework.name),
        16.0,
        60.0,
    );
    let rows: Vec<Vec<Cell>> = r
        .posture
        .controls
        .iter()
        .map(|c| {
            vec![
                Cell::from(c.control.as_str()),
                Cell::from(c.title.as_str()),
                status_cell(c.status),
                Cell::from(c.active_findings.to_string()),
            ]
        })
        .collect();
    l.table(
        &[
            col("Control", 0.14),
            col("Title", 0.56),
            col("Status", 0.16),
            col("Findings", 0.14),
        ],
        &rows,
        9.0,
    );
}

fn findings(l: &mut Layout, r: &ReportInput) {
    l.heading("Findings by severity", 16.0, 60.0);
    if r.findings.is_empty() {
        l.paragraph(Font::Regular, 10.0, "No unresolved findings.", Color::BLACK);
        return;
    }
    // One block per rule and severity: the remediation once, the affected assets listed.
    let mut groups: BTreeMap<(std::cmp::Reverse<Severity>, &str), Vec<&FindingRecord>> =
        BTreeMap::new();
    for f in &r.findings {
        groups
            .entry((std::cmp::Reverse(f.severity), f.rule_id.as_str()))
            .or_default()
            .push(f);
    }
    for s in SEVERITIES {
        let of_sev: Vec<_> = groups.iter().filter(|((sev, _), _)| sev.0 == s).collect();
        if of_sev.is_empty() {
            continue;
        }
        let (fill, light) = severity_color(s);
        l.ensure(80.0);
        l.space(6.0);
        let y = l.y();
        l.fill_rect(50.0, y - 16.0, l.width(), 16.0, fill);
        let text_color = if light { Color::WHITE } else { Color::BLACK };
        let title = format!(
            "{} ({})",
            s.as_str().to_uppercase(),
            of_sev.iter().map(|(_, v)| v.len()).sum::<usize>()
        );
        l.text_at(Font::Bold, 11.0, 54.0, y - 12.0, &title, text_color);
        l.space(22.0);
        for ((_, rule_id), fs) in of_sev {
            let first = fs[0];
            l.ensure(70.0);
            l.paragraph(
                Font::Bold,
                10.5,
                &format!("{} [{}]", first.title, rule_id),
                Color::BLACK,
            );
            let controls = r.controls_of(first);
            if !controls.is_empty() {
                l.paragraph(
                    Font::Regular,
                    9.0,
                    &format!("{} controls: {}", r.framework.key, controls.join(", ")),
                    Color::GREY,
                );
            }
            l.paragraph_indented(Font::Bold, 9.0, 0.0, "Remediation", Color::BLACK);
            l.paragraph_indented(Font::Regular, 9.0, 8.0, &first.remediation, Color::BLACK);
            l.space(3.0);
            let rows: Vec<Vec<Cell>> = fs
                .iter()
                .map(|f| {
                    vec![
                        Cell::from(f.asset.as_str()),
                        Cell::from(f.location.as_str()),
                        Cell::from(r.status_of(f)),
                        Cell::from(f.evidence.as_str()),
                    ]
                })
                .collect();
            l.table(
                &[
                    col("Asset", 0.24),
                    col("Location", 0.26),
                    col("Status", 0.14),
                    col("Evidence", 0.36),
                ],
                &rows,
                8.0,
            );
        }
    }
}

fn changes(l: &mut Layout, r: &ReportInput) {
    l.heading("Change history", 16.0, 60.0);
    if r.changes.is_empty() {
        l.paragraph(
            Font::Regular,
            10.0,
            "No change events recorded.",
            Color::BLACK,
        );
        return;
    }
    let rows: Vec<Vec<Cell>> = r
        .changes
        .iter()
        .map(|c| {
            let what = match (&c.before, &c.after) {
                (Some(b), Some(a)) => format!("{} -> {}", b, a),
                (None, Some(a)) => a.clone(),
                (Some(b), None) => format!("was {b}"),
                (None, None) => String::new(),
            };
            vec![
                Cell::from(rfc3339(c.detected_ms)),
                Cell::from(c.asset.as_str()),
                Cell::from(c.change.as_str()),
                Cell::from(format!("{} {}", c.subject, what)),
            ]
        })
        .collect();
    l.table(
        &[
            col("Detected", 0.2),
            col("Asset", 0.2),
            col("Change", 0.25),
            col("Details", 0.35),
        ],
        &rows,
        8.0,
    );
}
