//! The console API as mounted by a running collector: the bootstrap admin
//! created over the admin path logs in over real HTTP, uses collector
//! operations, and every action lands in a verifiable audit log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use collector::Collector;
use collector::admin::AdminRequest;
use collector::config::{CollectorConfig, ScopeConfig, TenantConfig};
use collector::console_api::AccountRequest;
use collector::store::AgentRecord;
use console::audit::VerifyReport;
use protocol::{AgentId, TenantId};
use serde_json::{Value, json};

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

/// One HTTP/1.1 request over a fresh connection (the API is plain HTTP on loopback).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap()
    };
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_admin_logs_in_and_actions_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        metrics_listen: String::new(),
        console_listen: "127.0.0.1:0".into(),
        tenants: [(
            "acme".to_string(),
            TenantConfig {
                scope: ScopeConfig {
                    cidrs: vec!["192.0.2.0/24".into()],
                    hostnames: vec!["*.acme.test".into()],
                    ports: "443,8443".into(),
                },
                jobs: vec![],
            },
        )]
        .into(),
        ..CollectorConfig::default()
    }
    .validate()
    .unwrap();
    let collector = Collector::start(settings).await.unwrap();
    let addr = collector.console_addr().expect("console API listening");
    let admin = collector.admin();
    let acme = TenantId::new("acme").unwrap();
    // Two enrolled agents, one in another tenant (enrolment itself is tested end to end elsewhere).
    for (tenant, agent) in [
        ("acme", "ag-00000000000000a1"),
        ("other", "ag-00000000000000b1"),
    ] {
        collector
            .store()
            .put_agent(&AgentRecord {
                tenant: TenantId::new(tenant).unwrap(),
                agent: AgentId::new(agent).unwrap(),
                hostname: format!("{tenant}-host"),
                signing_key: [7; 32],
                enrolled_ms: 1,
                cert_not_after_ms: u64::MAX,
                revoked_ms: None,
                last_seen_ms: 2,
            })
            .unwrap();
    }

    // First-run bootstrap, as `collector user create` sends it.
    let created = admin
        .handle(AdminRequest::Accounts(AccountRequest::CreateUser {
            email: "Root@Acme.test".into(),
            tenant: acme.clone(),
            role: console::Role::Admin,
            password: Some("bootstrap password".into()),
        }))
        .unwrap();
    assert_eq!(created["email"], "root@acme.test");
    assert_eq!(created["created"], true);
    // A CLI token is audited too.
    admin
        .handle(AdminRequest::CreateToken {
            tenant: acme.clone(),
            ttl_secs: Some(60),
        })
        .unwrap();

    let (status, cookie) = tokio::task::spawn_blocking(move || {
        let r = http(
            addr,
            "POST",
            "/api/v1/login",
            None,
            Some(json!({ "email": "root@acme.test", "password": "bootstrap password" })),
        );
        let cookie = r
            .headers
            .iter()
            .find(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_string());
        (r.status, cookie)
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    let cookie = cookie.expect("session cookie");
    let cookie_for_findings = cookie.clone();

    let answers = tokio::task::spawn_blocking(move || {
        let c = Some(cookie.as_str());
        vec![
            http(
                addr,
                "POST",
                "/api/v1/tenants/acme/tokens",
                c,
                Some(json!({ "ttl_secs": 600 })),
            ),
            http(addr, "GET", "/api/v1/tenants/acme/agents", c, None),
            http(addr, "GET", "/api/v1/tenants/acme/stats", c, None),
            http(addr, "GET", "/api/v1/tenants/acme/records?limit=5", c, None),
            http(
                addr,
                "POST",
                "/api/v1/tenants/acme/agents/ag-0000000000000000/revoke",
                c,
                None,
            ),
            http(addr, "GET", "/api/v1/tenants/other/agents", c, None),
            http(addr, "GET", "/api/v1/tenants/acme/schedules", c, None),
            // Another tenant's agent through our tenant: 404, and it stays enrolled.
            http(
                addr,
                "POST",
                "/api/v1/tenants/acme/agents/ag-00000000000000b1/revoke",
                c,
                None,
            ),
            http(
                addr,
                "POST",
                "/api/v1/tenants/acme/agents/ag-00000000000000a1/revoke",
                c,
                None,
            ),
            http(addr, "GET", "/api/v1/tenants/acme/runs?limit=10", c, None),
        ]
    })
    .await
    .unwrap();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [201, 200, 200, 200, 404, 404, 200, 404, 200, 200]);
    let token = answers[0].body["token"].as_str().unwrap();
    assert!(token.starts_with("vgt_"));
    assert_eq!(
        answers[0].body["ca_fingerprint"],
        collector.ca_fingerprint()
    );
    let listed: Vec<&str> = answers[1]
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["ag-00000000000000a1"]);
    assert!(answers[8].body["revoked_ms"].is_u64());
    let store = collector.store();
    assert!(
        store
            .agent(&AgentId::new("ag-00000000000000b1").unwrap())
            .unwrap()
            .unwrap()
            .revoked_ms
            .is_none()
    );
    assert!(
        store
            .agent(&AgentId::new("ag-00000000000000a1").unwrap())
            .unwrap()
            .unwrap()
            .revoked_ms
            .is_some()
    );
    // Collector answers match the schemas the OpenAPI document promises.
    let t = "/api/v1/tenants/{tenant}";
    for (i, method, path) in [
        (0, "post", "/tokens"),
        (1, "get", "/agents"),
        (2, "get", "/stats"),
        (3, "get", "/records"),
        (6, "get", "/schedules"),
        (8, "post", "/agents/{agent}/revoke"),
        (9, "get", "/runs"),
    ] {
        console::openapi::check_response(method, &format!("{t}{path}"), &answers[i].body).unwrap();
    }
    assert_eq!(answers[2].body["records"], 0);
    assert_eq!(answers[5].body["error"]["code"], "not_found");
    // No collector-scheduled jobs are configured, so no schedules and no runs.
    assert_eq!(
        (&answers[6].body, &answers[9].body),
        (&json!([]), &json!([]))
    );

    // The enrolment token from the API is a real one: the store accepts it once.
    let hash = collector::admin::token_hash(token);
    assert!(collector.store().consume_token(hash, 0).is_ok());

    // Findings, changes and posture come from the findings pipeline, tenant-scoped.
    let cookie2 = cookie_for_findings.clone();
    let f = tokio::task::spawn_blocking(move || {
        let c = Some(cookie2.as_str());
        vec![
            http(
                addr,
                "GET",
                "/api/v1/tenants/acme/findings?q=severity%3Ahigh&limit=5&facets=true",
                c,
                None,
            ),
            http(
                addr,
                "GET",
                "/api/v1/tenants/acme/findings?q=%28%28",
                c,
                None,
            ),
            http(
                addr,
                "GET",
                "/api/v1/tenants/acme/findings/no-such-finding",
                c,
                None,
            ),
            http(addr, "GET", "/api/v1/tenants/acme/changes?limit=5", c, None),
            http(
                addr,
                "GET",
                "/api/v1/tenants/acme/posture/nis2?history=3",
                c,
                None,
            ),
            http(
                addr,
                "GET",
                "/api/v1/tenants/acme/posture/no-such-framework",
                c,
                None,
            ),
            http(
                addr,
                "PUT",
                "/api/v1/tenants/acme/findings/no-such-finding/suppression",
                c,
                Some(json!({ "kind": "suppressed", "reason": "test" })),
            ),
            http(
                addr,
                "GET",
                "/api/v1/tenants/acme/findings?limit=5&bogus=1",
                c,
                None,
            ),
            http(addr, "GET", "/api/v1/tenants/acme/scope", c, None),
        ]
    })
    .await
    .unwrap();
    let got: Vec<(u16, String)> = f.iter().map(|a| (a.status, a.body.to_string())).collect();
    let statuses: Vec<u16> = f.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [200, 400, 404, 200, 200, 404, 404, 400, 200],
        "{got:#?}"
    );
    console::openapi::check_response("get", "/api/v1/tenants/{tenant}/scope", &f[8].body).unwrap();
    assert_eq!(f[8].body["scope"]["cidrs"], json!(["192.0.2.0/24"]));
    assert_eq!(f[8].body["scope"]["ports"], "443,8443");
    console::openapi::check_response("get", "/api/v1/tenants/{tenant}/findings", &f[0].body)
        .unwrap();
    console::openapi::check_response("get", "/api/v1/tenants/{tenant}/changes", &f[3].body)
        .unwrap();

    let accounts = collector.accounts().expect("sled store has accounts");
    let entries = accounts.audit_entries(&acme, 1, 100).unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("cli", "member.set"),
            ("cli", "token.create"),
            ("user:root@acme.test", "token.create"),
            ("user:root@acme.test", "agent.revoke"),
        ]
    );
    let v = admin
        .handle(AdminRequest::Accounts(AccountRequest::AuditVerify {
            tenant: None,
        }))
        .unwrap();
    let reports: Vec<VerifyReport> = serde_json::from_value(v).unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].ok() && reports[0].entries == 4, "{reports:?}");
    collector.shutdown().await;
}
