//! Report and incident routes beyond the role matrix: 409 before a report is
//! done, audit entries for every change and none for refused ones.

mod common;

use axum::http::{Method, StatusCode};
use common::{Auth, Fixture, t};
use console::{AccountStore, Role};
use serde_json::json;

#[tokio::test]
async fn a_report_cannot_be_downloaded_before_it_is_done() {
    let f = Fixture::new();
    let auditor = Auth::Bearer(f.api_key("acme", Role::Auditor).1);
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/reports",
            &auditor,
            Some(json!({ "framework": "nis2", "format": "csv" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = f
        .call(
            Method::GET,
            &format!("/api/v1/tenants/acme/reports/{id}/download"),
            &auditor,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "not_ready")
    );
    let entries = f.accounts.audit_entries(&t("acme"), 1, 100).unwrap();
    let e = entries
        .iter()
        .find(|e| e.action == "report.create")
        .unwrap();
    assert_eq!(e.target, id);
    assert!(e.details.contains("\"format\":\"csv\""), "{}", e.details);
    // A malformed request is refused before anything is recorded.
    let before = f.accounts.audit_head(&t("acme")).unwrap();
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/reports",
            &auditor,
            Some(json!({ "framework": "nis2", "format": "csv", "extra": 1 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.accounts.audit_head(&t("acme")).unwrap(), before);
}

#[tokio::test]
async fn incident_changes_are_audited_and_downloads_are_attachments() {
    let f = Fixture::new();
    let auditor = Auth::Bearer(f.api_key("acme", Role::Auditor).1);
    let r = f
        .call(
            Method::PATCH,
            "/api/v1/tenants/acme/incidents/f-acme1",
            &auditor,
            Some(json!({ "mark_stage_sent": "early_warning" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let entries = f.accounts.audit_entries(&t("acme"), 1, 100).unwrap();
    let e = entries
        .iter()
        .find(|e| e.action == "incident.update")
        .unwrap();
    assert_eq!(e.target, "f-acme1");
    assert!(e.actor.starts_with("api-key:"));
    let r = f
        .call(
            Method::GET,
            "/api/v1/tenants/acme/incidents/f-acme1/export/final_report?format=json",
            &auditor,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let disposition = r.headers["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        "attachment; filename=\"vigil-acme-f-acme1-final_report.json\""
    );
    let r = f
        .call(
            Method::GET,
            "/api/v1/tenants/acme/incidents/f-acme1/export/final_report?colour=red",
            &auditor,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
