//! The report queue and the incident service over a real sled database with a
//! manual clock: restart-proof queue, retention, tenant isolation, deadline
//! views at exact boundaries, and once-only persisted reminders.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use collector::compliance_api::Compliance;
use collector::findings::pipeline::{Pipeline, PipelineOptions};
use collector::incidents::{
    IncidentError, IncidentPatch, IncidentStatus, NewIncident, ReminderKind, Stage,
};
use collector::reports::config::{IncidentSettings, ReportSettings};
use collector::reports::{ReportError, ReportFormat, ReportStatus};
use collector::store::{SledStore, Store};
use collector::time::ManualClock;
use protocol::TenantId;

const H: u64 = 3_600_000;
const T0: u64 = 1_738_324_800_000; // 2025-01-31T12:00:00Z

fn t(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

struct Env {
    compliance: Compliance,
    store: Arc<dyn Store>,
}

fn open(dir: &Path, clock: Arc<ManualClock>, reports: ReportSettings) -> Env {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("db")).unwrap());
    let pipeline = Pipeline::open(
        dir,
        store.clone(),
        Arc::new(rules::RuleSet::builtin().unwrap()),
        Arc::new(collector::metrics::Metrics::default()),
        PipelineOptions::default(),
    )
    .unwrap();
    let db = store.sled_db().unwrap();
    let compliance = Compliance::with_settings(
        dir,
        &db,
        Arc::new(pipeline),
        clock,
        reports,
        IncidentSettings {
            reminder_lead: Duration::from_secs(6 * 3600),
            check_interval: Duration::from_secs(60),
        },
    )
    .unwrap();
    Env { compliance, store }
}

fn report_settings() -> ReportSettings {
    ReportSettings {
        retention: Duration::from_secs(24 * 3600),
        max_per_tenant: 3,
        max_queued_per_tenant: 2,
        change_history: 10,
    }
}

#[test]
fn a_queued_report_survives_a_restart_and_is_generated_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let id = {
        let env = open(dir.path(), clock.clone(), report_settings());
        let m = env
            .compliance
            .reports
            .request(&t("acme"), "nis2", ReportFormat::Json, "user:a@acme.test")
            .unwrap();
        assert_eq!((m.status, m.progress), (ReportStatus::Queued, 0));
        env.store.flush().unwrap();
        m.id
        // Dropped without a worker ever running: a crash before generation.
    };
    let env = open(dir.path(), clock.clone(), report_settings());
    let reports = &env.compliance.reports;
    assert_eq!(
        reports.get(&t("acme"), &id).unwrap().status,
        ReportStatus::Queued
    );
    assert!(
        reports.file(&t("acme"), &id).unwrap().is_none(),
        "not downloadable yet"
    );
    clock.advance(1500);
    assert!(reports.process_next().unwrap());
    assert!(!reports.process_next().unwrap(), "queue drained");
    let m = reports.get(&t("acme"), &id).unwrap();
    assert_eq!((m.status, m.progress), (ReportStatus::Done, 100));
    assert_eq!(m.finished_ms, Some(T0 + 1500));
    let f = reports.file(&t("acme"), &id).unwrap().unwrap();
    assert_eq!(m.size_bytes, Some(f.bytes.len() as u64));
    let v: serde_json::Value = serde_json::from_slice(&f.bytes).unwrap();
    assert_eq!(v["tenant"], "acme");
    assert!(
        dir.path()
            .join("reports/acme")
            .join(format!("{id}.json"))
            .is_file()
    );
    // Another tenant cannot see it.
    assert!(matches!(
        reports.get(&t("globex"), &id),
        Err(ReportError::NotFound(_))
    ));
    assert!(reports.list(&t("globex")).unwrap().is_empty());
}

#[test]
fn requests_are_validated_and_limited_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(
        dir.path(),
        Arc::new(ManualClock::new(T0)),
        report_settings(),
    );
    let r = &env.compliance.reports;
    assert!(matches!(
        r.request(&t("acme"), "nosuch", ReportFormat::Pdf, "cli"),
        Err(ReportError::Invalid(_))
    ));
    r.request(&t("acme"), "nis2", ReportFormat::Pdf, "cli")
        .unwrap();
    r.request(&t("acme"), "iso27001", ReportFormat::Csv, "cli")
        .unwrap();
    assert!(matches!(
        r.request(&t("acme"), "soc2", ReportFormat::Sarif, "cli"),
        Err(ReportError::Busy(_))
    ));
    // The limit is per tenant.
    r.request(&t("globex"), "cis", ReportFormat::Ocsf, "cli")
        .unwrap();
}

#[test]
fn retention_deletes_old_and_surplus_reports_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let env = open(dir.path(), clock.clone(), report_settings());
    let r = &env.compliance.reports;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            r.request(&t("acme"), "nis2", ReportFormat::Csv, "cli")
                .unwrap()
                .id,
        );
        while r.process_next().unwrap() {}
        clock.advance(60_000);
    }
    let path = |id: &str| dir.path().join("reports/acme").join(format!("{id}.csv"));
    assert!(path(&ids[0]).is_file());
    // Four kept against a limit of three: the oldest goes.
    assert_eq!(r.sweep().unwrap(), 1);
    assert!(!path(&ids[0]).exists());
    assert_eq!(r.list(&t("acme")).unwrap().len(), 3);
    // A day later every one is past the retention.
    clock.advance(25 * H);
    assert_eq!(r.sweep().unwrap(), 3);
    assert!(r.list(&t("acme")).unwrap().is_empty());
    assert!(!path(&ids[3]).exists());
}

fn new_incident(significant: bool) -> NewIncident {
    serde_json::from_value(serde_json::json!({
        "title": "Ransomware on the file server",
        "description": "Encrypted shares",
        "detected_ms": T0,
        "significant": significant,
        "significance": { "severe_operational_disruption": true, "rationale": "file service down" },
        "assets": ["files.acme.test"],
    }))
    .unwrap()
}

#[test]
fn incident_views_compute_deadlines_overdue_and_next_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let env = open(dir.path(), clock.clone(), report_settings());
    let inc = &env.compliance.incidents;
    let v = inc
        .create(&t("acme"), new_incident(true), "user:a")
        .unwrap();
    assert_eq!(v.deadlines.early_warning_ms, T0 + 24 * H);
    assert_eq!(v.deadlines.notification_ms, T0 + 72 * H);
    // Detected 31 January: the final report is due on 28 February.
    assert_eq!(v.deadlines.final_report_ms, T0 + 28 * 24 * H);
    let id = v.incident.id.clone();
    clock.set(T0 + 24 * H);
    let v = inc.get(&t("acme"), &id).unwrap();
    assert!(v.overdue.is_empty(), "due, not yet overdue");
    assert_eq!(v.next_deadline.unwrap().stage, Stage::EarlyWarning);
    clock.set(T0 + 24 * H + 1);
    assert_eq!(
        inc.get(&t("acme"), &id).unwrap().overdue,
        [Stage::EarlyWarning]
    );
    let patch: IncidentPatch =
        serde_json::from_value(serde_json::json!({ "mark_stage_sent": "early_warning" })).unwrap();
    let (v, changes) = inc.update(&t("acme"), &id, patch.clone()).unwrap();
    assert!(v.overdue.is_empty());
    assert_eq!(
        v.incident.stages.early_warning_sent_ms,
        Some(T0 + 24 * H + 1)
    );
    assert_eq!(v.next_deadline.unwrap().stage, Stage::Notification);
    assert_eq!(changes["stage_sent"]["stage"], "early_warning");
    assert!(matches!(
        inc.update(&t("acme"), &id, patch),
        Err(IncidentError::Invalid(_))
    ));
    // Not significant: no deadlines apply.
    let v = inc
        .create(&t("acme"), new_incident(false), "user:a")
        .unwrap();
    clock.set(T0 + 100 * 24 * H);
    let v = inc.get(&t("acme"), &v.incident.id).unwrap();
    assert!(v.overdue.is_empty() && v.next_deadline.is_none());
    // Foreign tenant and unknown findings.
    assert!(matches!(
        inc.get(&t("globex"), &id),
        Err(IncidentError::NotFound(_))
    ));
    let mut bad = new_incident(true);
    bad.finding_ids = vec!["0123456789abcdef0123456789abcdef".into()];
    assert!(matches!(
        inc.create(&t("acme"), bad, "user:a"),
        Err(IncidentError::Invalid(_))
    ));
}

#[test]
fn reminders_fire_once_per_stage_and_kind_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let id = {
        let env = open(dir.path(), clock.clone(), report_settings());
        let inc = &env.compliance.incidents;
        let id = inc
            .create(&t("acme"), new_incident(true), "user:a")
            .unwrap()
            .incident
            .id;
        inc.create(&t("acme"), new_incident(false), "user:a")
            .unwrap();
        // 18 h before the early warning is due: outside the 6 h lead.
        clock.set(T0 + 18 * H - 1);
        assert!(inc.check_reminders().unwrap().is_empty());
        clock.set(T0 + 18 * H);
        let r = inc.check_reminders().unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].stage, r[0].kind),
            (Stage::EarlyWarning, ReminderKind::DueSoon)
        );
        assert_eq!(r[0].due_ms, T0 + 24 * H);
        assert!(
            r[0].summary().contains("due at 2025-02-01T12:00:00Z"),
            "{}",
            r[0].summary()
        );
        assert!(inc.check_reminders().unwrap().is_empty(), "once only");
        clock.set(T0 + 24 * H);
        assert!(
            inc.check_reminders().unwrap().is_empty(),
            "not overdue at the due time"
        );
        clock.set(T0 + 24 * H + 1);
        let r = inc.check_reminders().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].stage, r[0].kind),
            (Stage::EarlyWarning, ReminderKind::Overdue)
        );
        assert_eq!(
            env.compliance
                .metrics
                .incident_reminders_overdue
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        env.store.flush().unwrap();
        id
    };
    // After a restart the markers hold: nothing is emitted twice.
    let env = open(dir.path(), clock.clone(), report_settings());
    let inc = &env.compliance.incidents;
    assert!(inc.check_reminders().unwrap().is_empty());
    // The notification's lead window opens at 66 h.
    clock.set(T0 + 66 * H);
    let r = inc.check_reminders().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].stage, r[0].kind),
        (Stage::Notification, ReminderKind::DueSoon)
    );
    // A closed incident is not chased any more.
    let patch = IncidentPatch {
        status: Some(IncidentStatus::Closed),
        ..IncidentPatch::default()
    };
    inc.update(&t("acme"), &id, patch).unwrap();
    clock.set(T0 + 80 * 24 * H);
    assert!(inc.pending_reminders().unwrap().is_empty());
}

#[test]
fn stage_exports_carry_the_stage_content() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(
        dir.path(),
        Arc::new(ManualClock::new(T0 + H)),
        report_settings(),
    );
    let inc = &env.compliance.incidents;
    let id = inc
        .create(&t("acme"), new_incident(true), "user:a")
        .unwrap()
        .incident
        .id;
    let patch: IncidentPatch = serde_json::from_value(serde_json::json!({
        "final_report": { "root_cause": "phished admin credentials", "mitigation": "MFA everywhere" },
        "notification": { "indicators_of_compromise": ["203.0.113.7", "evil.example"] },
    }))
    .unwrap();
    inc.update(&t("acme"), &id, patch).unwrap();
    let json = inc
        .export(&t("acme"), &id, Stage::FinalReport, false)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["stage"], "final_report");
    assert_eq!(v["content"]["root_cause"], "phished admin credentials");
    assert_eq!(v["due_ms"], T0 + 28 * 24 * H);
    let json = inc
        .export(&t("acme"), &id, Stage::Notification, false)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["content"]["indicators_of_compromise"][1], "evil.example");
    let pdf = inc
        .export(&t("acme"), &id, Stage::FinalReport, true)
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-1.4"));
    let text = String::from_utf8_lossy(&pdf);
    assert!(text.contains("(MFA everywhere)") && text.contains("(NIS2 Final report)"));
}

#[test]
fn api_answers_match_the_documented_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let env = open(dir.path(), clock.clone(), report_settings());
    let ops = env.compliance.ops();
    let base = "/api/v1/tenants/{tenant}";
    let check = |method: &str, path: &str, v: &serde_json::Value| {
        console::openapi::check_response(method, &format!("{base}{path}"), v)
            .unwrap_or_else(|e| panic!("{e}: {v}"));
    };
    let created = ops
        .create_report(&t("acme"), "nis2", "sarif", "user:a@acme.test")
        .unwrap();
    check("post", "/reports", &created);
    let id = created["id"].as_str().unwrap().to_string();
    assert!(ops.report_file(&t("acme"), &id).unwrap().is_none());
    while env.compliance.reports.process_next().unwrap() {}
    check(
        "get",
        "/reports/{id}",
        &ops.report(&t("acme"), &id).unwrap(),
    );
    check("get", "/reports", &ops.list_reports(&t("acme")).unwrap());
    let file = ops.report_file(&t("acme"), &id).unwrap().unwrap();
    assert_eq!(file.content_type, "application/sarif+json");
    assert_eq!(file.filename, format!("vigil-acme-nis2-{id}.sarif"));
    assert!(ops.create_report(&t("acme"), "nis2", "docx", "x").is_err());

    let inc = ops
        .create_incident(
            &t("acme"),
            serde_json::json!({ "title": "Outage", "significant": true }),
            "user:a",
        )
        .unwrap();
    check("post", "/incidents", &inc);
    let id = inc["id"].as_str().unwrap().to_string();
    let (v, changes) = ops
        .update_incident(
            &t("acme"),
            &id,
            serde_json::json!({ "mark_stage_sent": "early_warning" }),
        )
        .unwrap();
    check("patch", "/incidents/{id}", &v);
    assert_eq!(changes["stage_sent"]["sent_ms"], T0);
    check(
        "get",
        "/incidents",
        &ops.list_incidents(&t("acme")).unwrap(),
    );
    assert!(
        ops.update_incident(&t("acme"), &id, serde_json::json!({ "colour": "red" }))
            .is_err()
    );
    // A foreign tenant's id is not found, whatever the body.
    assert!(matches!(
        ops.update_incident(&t("globex"), &id, serde_json::json!({ "colour": "red" })),
        Err(console::OpsError::NotFound(_))
    ));
    let d = ops
        .export_incident(&t("acme"), &id, "notification", "json")
        .unwrap();
    assert_eq!(d.filename, format!("vigil-acme-{id}-notification.json"));
    assert!(
        ops.export_incident(&t("acme"), &id, "bogus", "json")
            .is_err()
    );
}

#[test]
fn deploy_example_documents_the_report_and_incident_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.toml");
    let c = collector::config::CollectorConfig::load(&path).unwrap();
    assert_eq!(
        c.reports,
        collector::reports::config::ReportsConfig::default()
    );
    assert_eq!(
        c.incidents,
        collector::reports::config::IncidentsConfig::default()
    );
    let bad: collector::config::CollectorConfig =
        toml::from_str("[incidents]\nreminder_lead = \"100h\"\n").unwrap();
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("incidents.reminder_lead")
    );
    let bad: collector::config::CollectorConfig =
        toml::from_str("[reports]\nmax_per_tenant = 0\n").unwrap();
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("reports.max_per_tenant")
    );
}

#[test]
fn an_unreadable_queued_report_is_dropped_without_blocking_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let env = open(
        dir.path(),
        Arc::new(ManualClock::new(T0)),
        report_settings(),
    );
    let r = &env.compliance.reports;
    let bad = r
        .request(&t("acme"), "nis2", ReportFormat::Json, "cli")
        .unwrap();
    let good = r
        .request(&t("acme"), "nis2", ReportFormat::Csv, "cli")
        .unwrap();
    let db = env.store.sled_db().unwrap();
    db.open_tree("rp_reports")
        .unwrap()
        .insert(format!("acme/{}", bad.id), b"{not json".to_vec())
        .unwrap();
    assert!(r.process_next().unwrap(), "the bad entry is dropped");
    assert!(r.process_next().unwrap());
    assert!(!r.process_next().unwrap());
    assert_eq!(
        r.get(&t("acme"), &good.id).unwrap().status,
        ReportStatus::Done
    );
}
