//! Alerting routes through the console: audit entries (never with secrets),
//! query validation and documented answer shapes.

mod common;

use axum::http::{Method, StatusCode};
use common::{Auth, Fixture};
use serde_json::{Value, json};

const BASE: &str = "/api/v1/tenants/acme";

#[tokio::test]
async fn alert_changes_are_audited_without_secrets_and_answers_match_the_schemas() {
    let f = Fixture::new();
    let admin = Auth::Cookie(f.login("admin@acme.test").await);
    let r = f
        .call(
            Method::POST,
            &format!("{BASE}/alert-channels"),
            &admin,
            Some(json!({ "name": "siem", "kind": "webhook", "url": "https://siem.example/hook" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    let channel = r.body["id"].as_str().unwrap().to_string();
    console::openapi::check_response("post", "/api/v1/tenants/{tenant}/alert-channels", &r.body)
        .unwrap();
    let r = f
        .call(
            Method::POST,
            &format!("{BASE}/alert-rules"),
            &admin,
            Some(json!({ "channel_id": channel, "events": ["change"], "change_types": ["PORT_OPENED"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Omitted fields take their documented defaults.
    assert_eq!(r.body["min_severity"], "info");
    assert_eq!(r.body["enabled"], true);
    let r = f
        .call(
            Method::POST,
            &format!("{BASE}/mute-windows"),
            &admin,
            Some(json!({ "starts_ms": 10, "ends_ms": 20, "reason": "patching" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = f
        .call(
            Method::POST,
            &format!("{BASE}/alert-channels/{channel}/test"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = f
        .call(
            Method::POST,
            &format!("{BASE}/alert-deliveries/f-acme1/retry"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = f
        .call(
            Method::DELETE,
            &format!("{BASE}/alert-channels/{channel}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Unknown fields and bad filters are refused before anything changes.
    let r = f
        .call(
            Method::POST,
            &format!("{BASE}/alert-channels"),
            &admin,
            Some(json!({ "name": "x", "kind": "webhook", "url": "https://a.example", "bogus": 1 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for q in ["status=lost", "limit=0", "limit=1001"] {
        let r = f
            .call(
                Method::GET,
                &format!("{BASE}/alert-deliveries?{q}"),
                &admin,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
    }
    let r = f
        .call(
            Method::GET,
            &format!("{BASE}/alert-deliveries?status=pending"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_array().unwrap().len(), 1, "the retried one");
    console::openapi::check_response("get", "/api/v1/tenants/{tenant}/alert-deliveries", &r.body)
        .unwrap();

    let r = f
        .call(Method::GET, &format!("{BASE}/audit"), &admin, None)
        .await;
    let actions: Vec<(String, String)> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        "alert_channel.create",
        "alert_rule.create",
        "mute_window.create",
        "alert_channel.test",
        "alert_delivery.retry",
        "alert_channel.delete",
    ];
    assert_eq!(
        actions.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        want
    );
    assert!(actions.iter().all(|(_, who)| who == "user:admin@acme.test"));
    let text = Value::to_string(&r.body);
    assert!(
        !text.contains(&secret),
        "the webhook secret leaked into the audit log"
    );
}
