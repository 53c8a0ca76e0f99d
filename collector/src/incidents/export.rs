//! Per-stage exports of an incident (JSON and PDF) with the content Art. 23(4)
//! asks for at that stage.

use serde_json::{Value, json};

use super::{Incident, Stage};
use crate::reports::model::rfc3339;
use crate::reports::pdf::layout::Cell;
use crate::reports::pdf::{Color, Column, Font, Info, Layout};

/// Schema identifier of the JSON export.
pub const SCHEMA: &str = "vigil.nis2-incident-stage/1";

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not yet known",
    }
}

/// Stage content as label/value pairs, in the order of Art. 23(4).
fn content(inc: &Incident, stage: Stage) -> Vec<(&'static str, String)> {
    match stage {
        Stage::EarlyWarning => vec![
            (
                "Suspected unlawful or malicious cause",
                yes_no(inc.early_warning.suspected_malicious).into(),
            ),
            (
                "Possible cross-border impact",
                yes_no(inc.early_warning.cross_border_impact).into(),
            ),
            ("Notes", inc.early_warning.notes.clone()),
        ],
        Stage::Notification => vec![
            (
                "Initial assessment",
                inc.notification.initial_assessment.clone(),
            ),
            ("Severity", inc.notification.severity.clone()),
            ("Impact", inc.notification.impact.clone()),
            (
                "Indicators of compromise",
                inc.notification.indicators_of_compromise.join("\n"),
            ),
        ],
        Stage::FinalReport => vec![
            (
                "Detailed description",
                inc.final_report.detailed_description.clone(),
            ),
            (
                "Root cause / type of threat",
                inc.final_report.root_cause.clone(),
            ),
            ("Mitigation measures", inc.final_report.mitigation.clone()),
            (
                "Cross-border impact",
                inc.final_report.cross_border_impact.clone(),
            ),
        ],
    }
}

fn content_json(inc: &Incident, stage: Stage) -> Value {
    match stage {
        Stage::EarlyWarning => json!(inc.early_warning),
        Stage::Notification => json!(inc.notification),
        Stage::FinalReport => json!(inc.final_report),
    }
}

/// The stage as a JSON value.
pub fn to_value(inc: &Incident, stage: Stage, now_ms: u64) -> Value {
    let d = inc.deadlines();
    json!({
        "schema": SCHEMA,
        "stage": stage,
        "generated_ms": now_ms,
        "tenant": inc.tenant,
        "incident": {
            "id": inc.id,
            "title": inc.title,
            "description": inc.description,
            "status": inc.status,
            "detected_ms": inc.detected_ms,
            "significant": inc.significant,
            "significance": inc.significance,
            "finding_ids": inc.finding_ids,
            "assets": inc.assets,
        },
        "due_ms": d.of(stage),
        "sent_ms": inc.stages.get(stage),
        "content": content_json(inc, stage),
    })
}

/// The stage as pretty-printed JSON bytes.
pub fn json(inc: &Incident, stage: Stage, now_ms: u64) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&to_value(inc, stage, now_ms)).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The stage as a PDF document.
pub fn pdf(inc: &Incident, stage: Stage, now_ms: u64) -> Vec<u8> {
    let mut l = Layout::new(&format!(
        "NIS2 {} - {} - {}",
        stage.title().to_lowercase(),
        inc.tenant,
        inc.id
    ));
    l.paragraph(
        Font::Bold,
        20.0,
        &format!("NIS2 {}", stage.title()),
        Color::BLACK,
    );
    l.paragraph(
        Font::Regular,
        10.0,
        "Directive (EU) 2022/2555, Article 23(4)",
        Color::GREY,
    );
    l.space(10.0);
    let d = inc.deadlines();
    let s = &inc.significance;
    let criteria: Vec<&str> = [
        (
            s.severe_operational_disruption,
            "severe operational disruption",
        ),
        (s.financial_loss, "financial loss"),
        (s.affects_others, "considerable damage to other persons"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, t)| *t)
    .collect();
    let rows: Vec<Vec<Cell>> = [
        ("Entity (tenant)", inc.tenant.clone()),
        ("Incident", format!("{} ({})", inc.title, inc.id)),
        ("Detected", rfc3339(inc.detected_ms)),
        ("Due", rfc3339(d.of(stage))),
        (
            "Sent",
            inc.stages.get(stage).map_or("not yet".into(), rfc3339),
        ),
        (
            "Significant (Art. 23(3))",
            if inc.significant { "yes" } else { "no" }.into(),
        ),
        (
            "Criteria met",
            if criteria.is_empty() {
                "none".into()
            } else {
                criteria.join(", ")
            },
        ),
        ("Rationale", s.rationale.clone()),
        ("Affected assets", inc.assets.join(", ")),
        ("Linked findings", inc.finding_ids.join(", ")),
    ]
    .into_iter()
    .map(|(k, v)| vec![Cell::from(k), Cell::from(v)])
    .collect();
    let cols = [
        Column {
            title: "Field".into(),
            share: 0.38,
        },
        Column {
            title: "Value".into(),
            share: 0.62,
        },
    ];
    l.table(&cols, &rows, 9.0);
    l.heading("Description", 13.0, 30.0);
    l.paragraph(Font::Regular, 10.0, &inc.description, Color::BLACK);
    l.heading(stage.title(), 13.0, 40.0);
    let rows: Vec<Vec<Cell>> = content(inc, stage)
        .into_iter()
        .map(|(k, v)| vec![Cell::from(k), Cell::from(v)])
        .collect();
    l.table(&cols, &rows, 9.0);
    l.paragraph(
        Font::Regular,
        8.0,
        &format!("Generated by vigil at {}", rfc3339(now_ms)),
        Color::GREY,
    );
    l.finish(&Info {
        title: format!("NIS2 {} {}", stage.title(), inc.id),
        created_ms: now_ms,
    })
}
