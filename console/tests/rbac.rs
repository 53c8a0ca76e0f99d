//! Role checks and tenant isolation for every route: each route × each role ×
//! own / foreign / unknown tenant, for sessions and API keys alike.

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::{Auth, Fixture, t};
use console::{AccountStore, Role};
use serde_json::{Value, json};

/// A tenant-scoped route: method, path after `/api/v1/tenants/{tenant}`, lowest role, success status.
struct Case {
    method: Method,
    path: &'static str,
    min: Role,
    ok: StatusCode,
}

fn cases() -> Vec<Case> {
    use StatusCode as S;
    let c = |method, path, min, ok| Case {
        method,
        path,
        min,
        ok,
    };
    vec![
        c(Method::GET, "/agents", Role::Viewer, S::OK),
        c(Method::POST, "/agents/{agent}/revoke", Role::Admin, S::OK),
        c(Method::POST, "/tokens", Role::Admin, S::CREATED),
        c(Method::GET, "/stats", Role::Viewer, S::OK),
        c(Method::GET, "/records", Role::Viewer, S::OK),
        c(Method::GET, "/scope", Role::Viewer, S::OK),
        c(Method::GET, "/schedules", Role::Viewer, S::OK),
        c(Method::GET, "/runs", Role::Viewer, S::OK),
        c(
            Method::POST,
            "/schedules/{job}/run",
            Role::Admin,
            S::ACCEPTED,
        ),
        c(Method::GET, "/findings", Role::Viewer, S::OK),
        c(Method::GET, "/findings/{id}", Role::Viewer, S::OK),
        c(
            Method::PUT,
            "/findings/{id}/suppression",
            Role::Admin,
            S::OK,
        ),
        c(
            Method::DELETE,
            "/findings/{id}/suppression",
            Role::Admin,
            S::OK,
        ),
        c(Method::GET, "/changes", Role::Viewer, S::OK),
        c(Method::GET, "/posture/{framework}", Role::Viewer, S::OK),
        c(Method::GET, "/assets/{asset}", Role::Viewer, S::OK),
        c(
            Method::POST,
            "/assets/{asset}/accept-baseline",
            Role::Admin,
            S::OK,
        ),
        c(Method::GET, "/api-keys", Role::Auditor, S::OK),
        c(Method::POST, "/api-keys", Role::Admin, S::CREATED),
        c(
            Method::DELETE,
            "/api-keys/{key}",
            Role::Admin,
            S::NO_CONTENT,
        ),
        c(Method::GET, "/members", Role::Auditor, S::OK),
        c(Method::POST, "/members", Role::Admin, S::CREATED),
        c(Method::GET, "/audit", Role::Auditor, S::OK),
        c(Method::GET, "/audit/export", Role::Auditor, S::OK),
        c(
            Method::DELETE,
            "/members/{user}",
            Role::Admin,
            S::NO_CONTENT,
        ),
        c(Method::GET, "/reports", Role::Viewer, S::OK),
        c(Method::POST, "/reports", Role::Auditor, S::ACCEPTED),
        c(Method::GET, "/reports/{id}", Role::Viewer, S::OK),
        c(Method::GET, "/reports/{id}/download", Role::Viewer, S::OK),
        c(Method::GET, "/incidents", Role::Viewer, S::OK),
        c(Method::POST, "/incidents", Role::Auditor, S::CREATED),
        c(Method::GET, "/incidents/{id}", Role::Viewer, S::OK),
        c(Method::PATCH, "/incidents/{id}", Role::Auditor, S::OK),
        c(
            Method::GET,
            "/incidents/{id}/export/{stage}",
            Role::Viewer,
            S::OK,
        ),
        c(Method::GET, "/alert-channels", Role::Auditor, S::OK),
        c(Method::POST, "/alert-channels", Role::Admin, S::CREATED),
        c(
            Method::POST,
            "/alert-channels/{id}/test",
            Role::Admin,
            S::ACCEPTED,
        ),
        c(Method::GET, "/alert-rules", Role::Auditor, S::OK),
        c(Method::POST, "/alert-rules", Role::Admin, S::CREATED),
        c(
            Method::DELETE,
            "/alert-rules/{id}",
            Role::Admin,
            S::NO_CONTENT,
        ),
        c(Method::GET, "/mute-windows", Role::Auditor, S::OK),
        c(Method::POST, "/mute-windows", Role::Admin, S::CREATED),
        c(
            Method::DELETE,
            "/mute-windows/{id}",
            Role::Admin,
            S::NO_CONTENT,
        ),
        c(Method::GET, "/alert-deliveries", Role::Auditor, S::OK),
        c(
            Method::POST,
            "/alert-deliveries/{id}/retry",
            Role::Admin,
            S::ACCEPTED,
        ),
        // Last: the rule and test cases above use the seeded channel.
        c(
            Method::DELETE,
            "/alert-channels/{id}",
            Role::Admin,
            S::NO_CONTENT,
        ),
    ]
}

/// Routes outside a tenant.
fn global_routes() -> Vec<(Method, &'static str)> {
    vec![
        (Method::POST, "/api/v1/login"),
        (Method::POST, "/api/v1/logout"),
        (Method::GET, "/api/v1/me"),
        (Method::POST, "/api/v1/me/password"),
        (Method::GET, "/api/v1/openapi.json"),
    ]
}

/// Concrete URI and body for a case in `tenant`; resources named in the path
/// exist in `resource_tenant` (so a foreign tenant's agent or key can be aimed at).
fn request(
    f: &Fixture,
    case: &Case,
    tenant: &str,
    resource_tenant: &str,
) -> (String, Option<Value>) {
    let agent = if resource_tenant == "globex" {
        "ag-globex1"
    } else {
        "ag-acme1"
    };
    let path = case
        .path
        .replace("{agent}", agent)
        .replace("{id}", &format!("f-{resource_tenant}1"))
        .replace("{asset}", &format!("web.{resource_tenant}.test"))
        .replace("{framework}", "nis2")
        .replace("{job}", &format!("nightly-{resource_tenant}"))
        .replace("{stage}", "early_warning");
    let path = if path.contains("{user}") {
        let n = u64::from_le_bytes(console::accounts::random_bytes::<8>().unwrap());
        let (u, _) = console::accounts::create_user_with_membership(
            f.accounts.as_ref(),
            &format!("leaver{n:x}@{resource_tenant}.test"),
            Some("a long enough password"),
            &t(resource_tenant),
            Role::Viewer,
            1,
        )
        .unwrap();
        path.replace("{user}", &u.id)
    } else {
        path
    };
    let path = if path.contains("{key}") {
        let (id, _) = f.api_key(resource_tenant, Role::Viewer);
        path.replace("{key}", &id)
    } else {
        path
    };
    let uri = format!("/api/v1/tenants/{tenant}{path}");
    let body = match (case.method.as_str(), case.path) {
        ("POST", "/tokens") => Some(json!({ "ttl_secs": 3600 })),
        ("POST", "/api-keys") => Some(json!({ "name": "ci", "role": "viewer" })),
        ("PUT", "/findings/{id}/suppression") => {
            Some(json!({ "kind": "accepted_risk", "reason": "compensating control" }))
        }
        ("POST", "/reports") => Some(json!({ "framework": "nis2", "format": "pdf" })),
        ("POST", "/incidents") => Some(json!({ "title": "ransomware", "significant": true })),
        ("PATCH", "/incidents/{id}") => Some(json!({ "status": "closed" })),
        ("POST", "/alert-channels") => {
            Some(json!({ "name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook" }))
        }
        ("POST", "/alert-rules") => Some(
            json!({ "channel_id": format!("f-{tenant}1"), "events": ["finding_new"], "min_severity": "high" }),
        ),
        ("POST", "/mute-windows") => {
            Some(json!({ "starts_ms": 1, "ends_ms": 2, "reason": "maintenance" }))
        }
        ("POST", "/members") => {
            let n = u64::from_le_bytes(console::accounts::random_bytes::<8>().unwrap());
            Some(
                json!({ "email": format!("new{n:x}@acme.test"), "role": "viewer", "password": "a long enough password" }),
            )
        }
        _ => None,
    };
    (uri, body)
}

async fn run_matrix(f: &Fixture, who: &[(Role, Auth)]) {
    for (role, auth) in who {
        for case in cases() {
            for (tenant, resources) in [
                ("acme", "acme"),
                ("globex", "globex"),
                ("nosuch", "acme"),
                ("acme", "globex"),
            ] {
                let (uri, body) = request(f, &case, tenant, resources);
                let before = f.accounts.audit_head(&t("acme")).unwrap();
                let r = f.call(case.method.clone(), &uri, auth, body).await;
                let names_resource = ["{agent}", "{key}", "{id}", "{asset}", "{user}", "{job}"]
                    .iter()
                    .any(|p| case.path.contains(p));
                let expected = if tenant != "acme" {
                    StatusCode::NOT_FOUND
                } else if *role < case.min {
                    StatusCode::FORBIDDEN
                } else if resources != "acme" && names_resource {
                    // Another tenant's agent or key through our own tenant: still 404.
                    StatusCode::NOT_FOUND
                } else {
                    case.ok
                };
                assert_eq!(
                    r.status, expected,
                    "{role:?} {} {uri}: {}",
                    case.method, r.body
                );
                if !r.status.is_success() {
                    r.error_code();
                    // Refused requests leave no trace in the audit log.
                    assert_eq!(f.accounts.audit_head(&t("acme")).unwrap(), before, "{uri}");
                }
            }
        }
    }
}

#[tokio::test]
async fn every_route_by_role_and_tenant_with_sessions() {
    let f = Fixture::new();
    let mut who = Vec::new();
    for (role, email) in [
        (Role::Viewer, "viewer@acme.test"),
        (Role::Auditor, "auditor@acme.test"),
        (Role::Admin, "admin@acme.test"),
    ] {
        who.push((role, Auth::Cookie(f.login(email).await)));
    }
    run_matrix(&f, &who).await;
    // Nothing was done in globex by acme's users.
    assert!(f.accounts.audit_head(&t("globex")).unwrap().is_none());
    assert!(!f.ops.agents.lock().unwrap()["ag-globex1"].1);
}

#[tokio::test]
async fn every_route_by_role_and_tenant_with_api_keys() {
    let f = Fixture::new();
    let who: Vec<(Role, Auth)> = [Role::Viewer, Role::Auditor, Role::Admin]
        .into_iter()
        .map(|role| (role, Auth::Bearer(f.api_key("acme", role).1)))
        .collect();
    run_matrix(&f, &who).await;
    assert!(f.accounts.audit_head(&t("globex")).unwrap().is_none());
}

#[tokio::test]
async fn unauthenticated_requests_are_401_everywhere_but_login_and_openapi() {
    let f = Fixture::new();
    for case in cases() {
        let (uri, body) = request(&f, &case, "acme", "acme");
        let r = f.call(case.method.clone(), &uri, &Auth::None, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.error_code(), "unauthenticated");
        // Unknown tenants too: authentication comes first, so nothing leaks.
        let (uri, body) = request(&f, &case, "nosuch", "acme");
        let r = f.call(case.method.clone(), &uri, &Auth::None, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    for (m, p) in [
        (Method::POST, "/api/v1/logout"),
        (Method::GET, "/api/v1/me"),
        (Method::POST, "/api/v1/me/password"),
    ] {
        assert_eq!(
            f.call(m, p, &Auth::None, None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = f
        .call(Method::GET, "/api/v1/openapi.json", &Auth::None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = f.call(Method::GET, "/api/v1/nope", &Auth::None, None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn msp_user_acts_per_tenant_with_its_role_there() {
    let f = Fixture::new();
    let msp = Auth::Cookie(f.login("msp@staff.test").await);
    let me = f.call(Method::GET, "/api/v1/me", &msp, None).await;
    assert_eq!(me.status, StatusCode::OK);
    let mut tenants: Vec<(String, String)> = me.body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["tenant"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    tenants.sort();
    assert_eq!(
        tenants,
        [
            ("acme".into(), "admin".into()),
            ("globex".into(), "viewer".into())
        ]
    );
    // Admin in acme, viewer in globex.
    let r = f
        .call(Method::POST, "/api/v1/tenants/acme/tokens", &msp, None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = f
        .call(Method::POST, "/api/v1/tenants/globex/tokens", &msp, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = f
        .call(Method::GET, "/api/v1/tenants/globex/agents", &msp, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let agents: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["ag-globex1"]);
    assert_eq!(f.ops.tokens.lock().unwrap().as_slice(), [t("acme")]);
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes_the_router_serves() {
    let f = Fixture::new();
    let r = f
        .call(Method::GET, "/api/v1/openapi.json", &Auth::None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in r.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let mut expected: BTreeSet<(String, String)> = cases()
        .iter()
        .map(|c| {
            (
                c.method.to_string(),
                format!("/api/v1/tenants/{{tenant}}{}", c.path),
            )
        })
        .collect();
    expected.extend(
        global_routes()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string())),
    );
    assert_eq!(documented, expected);
    // Every documented operation is routed: as admin nothing is 405 or an unknown path.
    // An API key, so calling logout on the way does not end the caller's session.
    let admin = Auth::Bearer(f.api_key("acme", Role::Admin).1);
    for (method, path) in &documented {
        let uri = path
            .replace("{tenant}", "acme")
            .replace("{agent}", "ag-acme2")
            .replace("{key}", "k-none")
            .replace("{id}", "f-none")
            .replace("{user}", "u-none")
            .replace("{asset}", "none")
            .replace("{framework}", "nis2")
            .replace("{job}", "j-none")
            .replace("{stage}", "early_warning");
        let m: Method = method.parse().unwrap();
        let r = f.call(m, &uri, &admin, Some(json!({}))).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if r.status == StatusCode::NOT_FOUND {
            // Only a missing resource, never a missing route.
            assert!(
                ["{key}", "{id}", "{asset}", "{user}", "{job}"]
                    .iter()
                    .any(|p| path.contains(p)),
                "{method} {uri} is not routed"
            );
        }
    }
    // A method the router does not serve is 405 in the error shape.
    let r = f.call(Method::DELETE, "/api/v1/me", &admin, None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn console_owned_answers_match_their_documented_schemas() {
    let f = Fixture::new();
    let r = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            Some(json!({ "email": "msp@staff.test", "password": common::PASSWORD })),
        )
        .await;
    console::openapi::check_response("post", "/api/v1/login", &r.body).unwrap();
    let admin = Auth::Cookie(f.login("admin@acme.test").await);
    let key = Auth::Bearer(f.api_key("acme", Role::Auditor).1);
    for auth in [&admin, &key] {
        let r = f.call(Method::GET, "/api/v1/me", auth, None).await;
        console::openapi::check_response("get", "/api/v1/me", &r.body).unwrap();
    }
    let base = "/api/v1/tenants/{tenant}";
    let calls = [
        (
            "post",
            "/api-keys",
            Some(json!({ "name": "ci", "role": "auditor" })),
        ),
        ("get", "/api-keys", None),
        (
            "post",
            "/members",
            Some(json!({ "email": "n@acme.test", "role": "viewer", "password": "long enough pw" })),
        ),
        ("get", "/members", None),
        ("get", "/audit", None),
    ];
    for (method, path, body) in calls {
        let uri = format!("/api/v1/tenants/acme{path}");
        let r = f
            .call(method.to_uppercase().parse().unwrap(), &uri, &admin, body)
            .await;
        assert!(r.status.is_success(), "{method} {uri}: {}", r.body);
        if r.body.is_array() {
            assert!(
                !r.body.as_array().unwrap().is_empty(),
                "{method} {uri} answered nothing to check"
            );
        }
        console::openapi::check_response(method, &format!("{base}{path}"), &r.body).unwrap();
    }
    // The checker itself refuses a wrong shape.
    let bad = json!([{ "user_id": "u-1", "email": "x", "role": "superuser" }]);
    assert!(
        console::openapi::check_response("get", "/api/v1/tenants/{tenant}/members", &bad).is_err()
    );
    let bad = json!({ "tenants": [{ "tenant": "acme" }] });
    assert!(console::openapi::check_response("get", "/api/v1/me", &bad).is_err());
}
