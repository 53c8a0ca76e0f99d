//! The hash-chained audit log: API actions append to it, verification walks
//! it, and any change to stored entries is caught at the first broken link.

mod common;

use axum::http::{Method, StatusCode};
use common::{Auth, Fixture, t};
use console::AccountStore;
use console::audit::{AuditDraft, AuditEntry, verify};
use console::sled_accounts::AUDIT_TREE;
use serde_json::json;

fn audit_key(tenant: &str, seq: u64) -> Vec<u8> {
    let mut k = tenant.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn draft(n: u64) -> AuditDraft {
    AuditDraft {
        time_ms: 1_000 + n,
        actor: "user:admin@acme.test".into(),
        action: "agent.revoke".into(),
        target: format!("ag-{n}"),
        details: json!({ "n": n, "a": [1, 2] }),
    }
}

#[tokio::test]
async fn state_changing_api_actions_are_audited_with_actor_and_no_secrets() {
    let f = Fixture::new();
    let admin = Auth::Cookie(f.login("admin@acme.test").await);
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/tokens",
            &admin,
            Some(json!({ "ttl_secs": 60 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = r.body["token"].as_str().unwrap().to_string();
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/agents/ag-acme1/revoke",
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/api-keys",
            &admin,
            Some(json!({ "name": "ci", "role": "auditor" })),
        )
        .await;
    let key = r.body["key"].as_str().unwrap().to_string();
    let key_id = r.body["id"].as_str().unwrap().to_string();
    let r = f
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/acme/api-keys/{key_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/members",
            &admin,
            Some(json!({ "email": "x@acme.test", "role": "viewer", "password": "twelve chars!" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Reads are not audited.
    f.call(Method::GET, "/api/v1/tenants/acme/agents", &admin, None)
        .await;

    let auditor = Auth::Cookie(f.login("auditor@acme.test").await);
    let r = f
        .call(Method::GET, "/api/v1/tenants/acme/audit", &auditor, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let entries: Vec<AuditEntry> = serde_json::from_value(r.body.clone()).unwrap();
    let got: Vec<(u64, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e.seq,
                e.actor.as_str(),
                e.action.as_str(),
                e.target.as_str(),
            )
        })
        .collect();
    let a = "user:admin@acme.test";
    assert_eq!(
        got,
        [
            (1, a, "token.create", "enrolment-token"),
            (2, a, "agent.revoke", "ag-acme1"),
            (3, a, "api_key.create", key_id.as_str()),
            (4, a, "api_key.delete", key_id.as_str()),
            (5, a, "member.set", "x@acme.test"),
        ]
    );
    let text = r.body.to_string();
    assert!(!text.contains(&token) && !text.contains(&key) && !text.contains("twelve chars!"));
    // Paging.
    let r = f
        .call(
            Method::GET,
            "/api/v1/tenants/acme/audit?from=4&limit=1",
            &auditor,
            None,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["seq"], 4);
    let r = f
        .call(
            Method::GET,
            "/api/v1/tenants/acme/audit?limit=0",
            &auditor,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let report = verify(f.accounts.as_ref(), &t("acme")).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.entries, 5);
    // globex has its own, empty chain.
    let g = verify(f.accounts.as_ref(), &t("globex")).unwrap();
    assert!(g.ok() && g.entries == 0);
}

#[test]
fn chain_links_each_entry_to_the_previous_hash() {
    let f = Fixture::new();
    let e1 = f.accounts.append_audit(&t("acme"), draft(1)).unwrap();
    let e2 = f.accounts.append_audit(&t("acme"), draft(2)).unwrap();
    let other = f.accounts.append_audit(&t("globex"), draft(1)).unwrap();
    assert_eq!((e1.seq, e2.seq, other.seq), (1, 2, 1));
    assert_eq!(e1.prev_hash, hex::encode([0u8; 32]));
    assert_eq!(e2.prev_hash, e1.hash);
    // Same content in another tenant hashes differently (the tenant is hashed).
    assert_ne!(other.hash, e1.hash);
    assert_eq!(hex::encode(e2.recompute().unwrap()), e2.hash);
    let head = f.accounts.audit_head(&t("acme")).unwrap().unwrap();
    assert_eq!((head.0, hex::encode(head.1)), (2, e2.hash.clone()));
}

/// Builds a 5-entry log, applies `tamper` to the sled tree, and returns the report.
fn tampered(tamper: impl FnOnce(&sled::Tree)) -> console::audit::VerifyReport {
    let f = Fixture::new();
    for n in 1..=5 {
        f.accounts.append_audit(&t("acme"), draft(n)).unwrap();
    }
    assert!(verify(f.accounts.as_ref(), &t("acme")).unwrap().ok());
    let tree = f.db.open_tree(AUDIT_TREE).unwrap();
    tamper(&tree);
    verify(f.accounts.as_ref(), &t("acme")).unwrap()
}

fn edit(tree: &sled::Tree, seq: u64, change: impl FnOnce(&mut AuditEntry)) {
    let key = audit_key("acme", seq);
    let mut e: AuditEntry = serde_json::from_slice(&tree.get(&key).unwrap().unwrap()).unwrap();
    change(&mut e);
    tree.insert(key, serde_json::to_vec(&e).unwrap()).unwrap();
}

#[test]
fn verify_catches_an_edited_field() {
    let r = tampered(|tree| edit(tree, 3, |e| e.target = "ag-innocent".into()));
    let b = r.broken.expect("tampering detected");
    assert_eq!(b.seq, 3);
    assert!(b.reason.contains("hash does not match"), "{}", b.reason);
    assert_eq!(r.entries, 2);
}

#[test]
fn verify_catches_an_edit_that_recomputes_its_own_hash() {
    // Rewriting an entry and its hash still breaks the next entry's prev_hash.
    let r = tampered(|tree| {
        edit(tree, 2, |e| {
            e.actor = "user:someone-else@acme.test".into();
            e.hash = hex::encode(e.recompute().unwrap());
        })
    });
    let b = r.broken.expect("tampering detected");
    assert_eq!(b.seq, 3);
    assert!(b.reason.contains("prev_hash"), "{}", b.reason);
}

#[test]
fn verify_catches_removed_and_reordered_entries() {
    let r = tampered(|tree| {
        tree.remove(audit_key("acme", 3)).unwrap();
    });
    assert_eq!(r.broken.map(|b| b.seq), Some(3));

    // Dropping the newest entry is caught against the recorded head.
    let r = tampered(|tree| {
        tree.remove(audit_key("acme", 5)).unwrap();
    });
    let b = r.broken.expect("truncation detected");
    assert_eq!(b.seq, 5);
    assert!(b.reason.contains("removed"), "{}", b.reason);

    // Swapping two entries' contents.
    let r = tampered(|tree| {
        let a = tree.get(audit_key("acme", 2)).unwrap().unwrap();
        let b = tree.get(audit_key("acme", 4)).unwrap().unwrap();
        tree.insert(audit_key("acme", 2), b).unwrap();
        tree.insert(audit_key("acme", 4), a).unwrap();
    });
    assert_eq!(r.broken.map(|b| b.seq), Some(2));
}

#[test]
fn details_are_hashed_as_stored() {
    let r = tampered(|tree| edit(tree, 1, |e| e.details = e.details.replace("[1,2]", "[1,3]")));
    assert_eq!(r.broken.map(|b| b.seq), Some(1));
}

#[tokio::test]
async fn suppression_and_baseline_decisions_are_audited_with_their_owner() {
    let f = Fixture::new();
    let admin = Auth::Cookie(f.login("admin@acme.test").await);
    let uri = "/api/v1/tenants/acme/findings/f-acme1/suppression";
    let r = f
        .call(
            Method::PUT,
            uri,
            &admin,
            Some(json!({ "kind": "accepted_risk", "reason": "  " })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = f
        .call(
            Method::PUT,
            uri,
            &admin,
            Some(json!({ "kind": "accepted_risk", "reason": "legacy host", "expires_ms": 99 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The caller is accountable unless someone else is named.
    assert_eq!(r.body["suppression"]["owner"], "user:admin@acme.test");
    let r = f.call(Method::DELETE, uri, &admin, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["suppression"].is_null());
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/assets/web.acme.test/accept-baseline",
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Unknown findings, frameworks and bad queries are refused and not audited.
    let r = f
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/findings/f-globex1/suppression",
            &admin,
            Some(json!({ "kind": "suppressed", "reason": "x" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = f
        .call(
            Method::GET,
            "/api/v1/tenants/acme/posture/unknown",
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = f
        .call(
            Method::GET,
            "/api/v1/tenants/acme/findings?q=%28",
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unbalanced")
    );
    let r = f
        .call(
            Method::GET,
            "/api/v1/tenants/acme/findings?limit=x",
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let entries = f.accounts.audit_entries(&t("acme"), 1, 100).unwrap();
    let got: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("finding.suppress", "f-acme1"),
            ("finding.unsuppress", "f-acme1"),
            ("asset.accept_baseline", "web.acme.test"),
        ]
    );
    let details: serde_json::Value = serde_json::from_str(&entries[0].details).unwrap();
    assert_eq!(
        details,
        json!({ "kind": "accepted_risk", "reason": "legacy host", "owner": "user:admin@acme.test", "expires_ms": 99 })
    );
    assert!(verify(f.accounts.as_ref(), &t("acme")).unwrap().ok());
}

#[tokio::test]
async fn auditors_export_the_log_with_its_verification() {
    let f = Fixture::new();
    for n in 1..=3 {
        f.accounts.append_audit(&t("acme"), draft(n)).unwrap();
    }
    let auditor = Auth::Cookie(f.login("auditor@acme.test").await);
    let uri = "/api/v1/tenants/acme/audit/export";
    let r = f.call(Method::GET, uri, &auditor, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let cd = r.headers["content-disposition"].to_str().unwrap();
    assert_eq!(cd, "attachment; filename=\"vigil-audit-acme.json\"");
    console::openapi::check_response("get", "/api/v1/tenants/{tenant}/audit/export", &r.body)
        .unwrap();
    assert_eq!(r.body["verification"]["broken"], serde_json::Value::Null);
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 3);
    assert_eq!(r.body["exported_by"], "user:auditor@acme.test");
    assert_eq!(r.body["truncated"], false);

    // After tampering, the export says where the chain breaks.
    let tree = f.db.open_tree(AUDIT_TREE).unwrap();
    edit(&tree, 2, |e| e.time_ms += 1);
    let r = f.call(Method::GET, uri, &auditor, None).await;
    assert_eq!(r.body["verification"]["broken"]["seq"], 2);
}
