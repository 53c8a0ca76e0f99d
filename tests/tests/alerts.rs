//! Alerting end to end: real findings from an agent scan flow through the
//! transactional outbox to a webhook receiver that fails at first; deliveries
//! dead-letter and are retried through the API; mute windows hold deliveries
//! back; Slack and SMTP channels produce well-formed messages.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::{Spool, Uplink, UplinkConfig};
use collector::alerts::AlertsConfig;
use collector::alerts::outbox::IncidentDeadline;
use collector::findings::changes::ChangeType;
use collector::findings::{FindingRecord, Space, dec, tenant_prefix};
use collector::{Collector, CollectorConfig};
use console::Role;
use e2e::alerts::{Receiver, api, api_key};
use e2e::{enroll, init};
use protocol::TenantId;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const BARE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

fn fast(max_attempts: u32) -> AlertsConfig {
    AlertsConfig {
        max_attempts,
        backoff_base: "50ms".into(),
        backoff_max: "300ms".into(),
        timeout: "2s".into(),
        poll_interval: "50ms".into(),
        ..AlertsConfig::default()
    }
}

async fn start(dir: &Path, alerts: AlertsConfig) -> Collector {
    let settings = CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        metrics_listen: String::new(),
        console_listen: "127.0.0.1:0".into(),
        alerts,
        ..CollectorConfig::default()
    }
    .validate()
    .unwrap();
    Collector::start(settings).await.unwrap()
}

/// Starts again on `dir` once the previous in-process collector's aborted
/// tasks have released the database.
async fn restart(dir: &Path, alerts: AlertsConfig) -> Collector {
    let settings = CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        metrics_listen: String::new(),
        console_listen: "127.0.0.1:0".into(),
        alerts,
        ..CollectorConfig::default()
    }
    .validate()
    .unwrap();
    for _ in 0..100 {
        match Collector::start(settings.clone()).await {
            Ok(c) => return c,
            Err(e) if e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("restart: {e}"),
        }
    }
    panic!("database still locked after 10 s");
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    assert_ne!(p, 2024, "port 2024 belongs to the machine");
    p
}

/// Polls the async `probe` every 50 ms until it yields a value; panics after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that a real answer matches the OpenAPI schema of its route.
fn documented(method: &str, path: &str, answer: &Value) {
    console::openapi::check_response(method, &format!("/api/v1/tenants/{{tenant}}{path}"), answer)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
}

async fn deliveries(addr: SocketAddr, key: &str, tenant: &str, status: &str) -> Vec<Value> {
    let (s, v) = api(
        addr,
        "GET",
        &format!("/tenants/{tenant}/alert-deliveries?status={status}&limit=1000"),
        key,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    documented("get", "/alert-deliveries", &v);
    v.as_array().unwrap().clone()
}

/// Creates a channel and a rule routing `events` to it; returns the channel answer.
async fn channel_with_rule(
    addr: SocketAddr,
    key: &str,
    channel: Value,
    events: &[&str],
    change_types: Vec<&str>,
) -> Value {
    let (s, ch) = api(
        addr,
        "POST",
        "/tenants/acme/alert-channels",
        key,
        Some(channel),
    )
    .await;
    assert_eq!(s, 201, "{ch}");
    documented("post", "/alert-channels", &ch);
    let (s, rule) = api(
        addr,
        "POST",
        "/tenants/acme/alert-rules",
        key,
        Some(json!({ "channel_id": ch["id"], "min_severity": "info", "events": events, "change_types": change_types })),
    )
    .await;
    assert_eq!(s, 201, "{rule}");
    documented("post", "/alert-rules", &rule);
    for path in ["/alert-channels", "/alert-rules", "/mute-windows"] {
        let (s, v) = api(addr, "GET", &format!("/tenants/acme{path}"), key, None).await;
        assert_eq!(s, 200, "{v}");
        documented("get", path, &v);
    }
    ch
}

/// Queues a test message on channel `ch` of acme; returns the 202 answer.
async fn send_test(addr: SocketAddr, key: &str, ch: &Value) -> Value {
    let path = format!(
        "/tenants/acme/alert-channels/{}/test",
        ch["id"].as_str().unwrap()
    );
    let (s, q) = api(addr, "POST", &path, key, None).await;
    assert_eq!(s, 202, "{q}");
    q
}

/// A loopback HTTP server answering every GET with `response`.
async fn http_server(addr: SocketAddr, response: &'static str) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                    match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                if head.starts_with(b"GET ") || head.starts_with(b"HEAD ") {
                    let _ = s.write_all(response.as_bytes()).await;
                }
            });
        }
    })
}

fn python_verifier(secret: &str, timestamp: &str, signature: &str, body: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    std::fs::write(&file, body).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/verify_webhook.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([
            "--timestamp",
            timestamp,
            "--signature",
            signature,
            "--body-file",
        ])
        .arg(&file)
        .env("VIGIL_WEBHOOK_SECRET", secret)
        .output()
        .expect("python3 runs (installed by .ci/run)");
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "verifier failed: {other:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finding_and_change_reaches_a_recovering_webhook_exactly_by_key() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("c");
    let c = start(&data, fast(30)).await;
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    // Nothing listens here yet: the first attempts are refused connections.
    let hook_port = free_tcp_port();
    let url = format!("http://127.0.0.1:{hook_port}/hook");
    let all_changes: Vec<&str> = ChangeType::ALL.iter().map(|t| t.as_str()).collect();
    let ch = channel_with_rule(
        addr,
        &key,
        json!({ "name": "siem", "kind": "webhook", "url": url }),
        &["finding_new", "finding_reopened", "change"],
        all_changes,
    )
    .await;
    let secret = ch["secret"].as_str().expect("generated secret").to_string();
    assert!(secret.len() >= 32);
    let (_, list) = api(addr, "GET", "/tenants/acme/alert-channels", &key, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none(), "{list}");
    assert_eq!(list[0]["target"], url.as_str());

    // A real scan: a loopback web server without any security header.
    let state = enroll(&c, "acme", &dir.path().join("a")).await.unwrap();
    let spool = Arc::new(
        Spool::open(
            &dir.path().join("spool"),
            state.identity(),
            state.signing_key.clone(),
        )
        .unwrap(),
    );
    let uplink = Uplink::spawn(
        state.clone(),
        spool.clone(),
        UplinkConfig {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
            ..UplinkConfig::default()
        },
    );
    let web_port = free_tcp_port();
    let web = http_server(([127, 0, 0, 1], web_port).into(), BARE).await;
    let recs = e2e::scan_loopback_web(&[web_port]).await;
    let seq = spool.append(recs).unwrap();
    let tenant = TenantId::new("acme").unwrap();
    let f = c.findings();
    e2e::wait_for("batch processed", Duration::from_secs(60), || {
        f.cursor(&tenant, &state.meta.agent).unwrap() >= seq
    })
    .await;
    let findings: Vec<FindingRecord> = f
        .finding_store()
        .scan(
            Space::Findings,
            &tenant_prefix("acme"),
            None,
            false,
            usize::MAX,
        )
        .unwrap()
        .iter()
        .map(|(k, v)| dec(k, v).unwrap())
        .collect();
    assert!(
        findings.iter().any(|f| f.rule_id == "http.csp.missing"),
        "{findings:#?}"
    );
    let changes = f.changes(&tenant, None, 1000).unwrap();
    assert!(!changes.is_empty());
    let mut want_findings: Vec<String> = findings.iter().map(|f| f.id.clone()).collect();
    let mut want_changes: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
    want_findings.sort();
    want_changes.sort();
    let expected = want_findings.len() + want_changes.len();

    // Refused connections count as failed attempts and are retried.
    eventually("refused attempts", Duration::from_secs(30), || async {
        let p = deliveries(addr, &key, "acme", "pending").await;
        (p.len() == expected
            && p.iter().all(|d| d["attempts"].as_u64() >= Some(1))
            && p.iter().any(|d| d["attempts"].as_u64() >= Some(2)))
        .then_some(p)
    })
    .await;
    // The receiver comes up but answers 500 three more times before it recovers.
    let rx = Receiver::start(([127, 0, 0, 1], hook_port).into(), 3).await;
    let delivered = eventually("all delivered", Duration::from_secs(60), || async {
        let d = deliveries(addr, &key, "acme", "delivered").await;
        (d.len() == expected).then_some(d)
    })
    .await;
    assert!(deliveries(addr, &key, "acme", "pending").await.is_empty());
    assert!(deliveries(addr, &key, "acme", "dead").await.is_empty());
    assert!(delivered.iter().any(|d| d["attempts"].as_u64() > Some(1)));

    let all = rx.requests();
    assert_eq!(all.iter().filter(|r| r.status == 500).count(), 3);
    let mut by_key: std::collections::BTreeMap<String, Value> = Default::default();
    for r in &all {
        let p = r.json();
        let k = r.header("x-vigil-idempotency-key").unwrap().to_string();
        assert_eq!(p["idempotency_key"], k.as_str());
        assert_eq!(r.header("x-vigil-event"), p["kind"].as_str());
        // A key seen again (a retry) carries the same payload.
        if let Some(prev) = by_key.insert(k, p.clone()) {
            assert_eq!(prev, p);
        }
    }
    let accepted_keys: std::collections::BTreeSet<String> = rx
        .accepted()
        .iter()
        .map(|r| r.header("x-vigil-idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(accepted_keys.len(), expected, "none lost");
    eprintln!(
        "{expected} events ({} findings, {} changes): {} requests, {} answered 500",
        want_findings.len(),
        want_changes.len(),
        all.len(),
        all.len() - rx.accepted().len()
    );
    let mut got_findings: Vec<String> = by_key
        .values()
        .filter(|p| p["kind"] == "finding_new")
        .map(|p| p["details"]["finding_id"].as_str().unwrap().to_string())
        .collect();
    let mut got_changes: Vec<String> = by_key
        .values()
        .filter(|p| p["kind"] == "change")
        .map(|p| p["details"]["change_id"].as_str().unwrap().to_string())
        .collect();
    got_findings.sort();
    got_changes.sort();
    assert_eq!(got_findings, want_findings);
    assert_eq!(got_changes, want_changes);
    let csp = by_key
        .values()
        .find(|p| p["details"]["rule_id"] == "http.csp.missing")
        .unwrap();
    assert_eq!(csp["tenant"], "acme");
    assert!(csp["severity"].is_string());

    // The reference verifier accepts a captured request and rejects tampering.
    let sample = rx.accepted()[0].clone();
    let ts = sample.header("x-vigil-timestamp").unwrap();
    let sig = sample.header("x-vigil-signature").unwrap();
    assert!(sig.starts_with("v1="));
    assert!(python_verifier(&secret, ts, sig, &sample.body));
    let mut tampered = sample.body.clone();
    let i = tampered.iter().position(|b| *b == b'a').unwrap();
    tampered[i] = b'b';
    assert!(!python_verifier(&secret, ts, sig, &tampered));
    assert!(!python_verifier(
        "another-secret-entirely",
        ts,
        sig,
        &sample.body
    ));
    assert!(collector::alerts::sign::verify(
        secret.as_bytes(),
        ts.parse().unwrap(),
        &sample.body,
        sig
    ));

    let m = c.metrics();
    assert!(
        m.alerts_delivered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= expected as u64
    );
    assert!(
        m.alerts_failed_attempts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );

    // A restart neither loses nor re-sends delivered items.
    uplink.stop().await.unwrap();
    web.abort();
    let before = rx.requests().len();
    drop(f);
    c.shutdown().await;
    let c = restart(&data, fast(30)).await;
    let addr = c.console_addr().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.requests().len(), before, "nothing re-sent after restart");
    assert_eq!(
        deliveries(addr, &key, "acme", "delivered").await.len(),
        expected
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_after_max_attempts_then_retry_through_the_api() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), fast(3)).await;
    let addr = c.console_addr().unwrap();
    let admin = api_key(&c, "acme", Role::Admin);
    let auditor = api_key(&c, "acme", Role::Auditor);
    let globex = api_key(&c, "globex", Role::Admin);
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), 0).await;
    rx.set_failing(true);
    channel_with_rule(
        addr,
        &admin,
        json!({ "name": "hook", "kind": "webhook", "url": format!("http://{}/h", rx.addr), "secret": "0123456789abcdef-given" }),
        &["incident_deadline"],
        vec![],
    )
    .await;
    let deadline = IncidentDeadline {
        incident_id: "inc-1".into(),
        title: "ransomware".into(),
        stage: "early_warning".into(),
        due_ms: 1_900_000_000_000,
        overdue: false,
    };
    c.alerts()
        .enqueue_incident_deadline("acme", &deadline)
        .unwrap();
    let dead = eventually("dead-lettered", Duration::from_secs(30), || async {
        deliveries(addr, &admin, "acme", "dead").await.pop()
    })
    .await;
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["event_kind"], "incident_deadline");
    assert!(
        dead["last_error"].as_str().unwrap().contains("500"),
        "{dead}"
    );
    let id = dead["id"].as_str().unwrap().to_string();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter()
            .all(|r| r.header("x-vigil-idempotency-key") == Some(id.as_str()))
    );
    let m = c.metrics();
    assert_eq!(m.alerts_dead.load(std::sync::atomic::Ordering::Relaxed), 1);
    let text = m.render(c.store().as_ref());
    assert!(text.contains("\nvigil_alerts_dead_total 1\n"), "{text}");
    assert!(
        text.contains("\nvigil_alerts_failed_attempts_total 3\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE vigil_alerts_pending gauge\n"));
    // The same reminder again is the same event: no second delivery.
    c.alerts()
        .enqueue_incident_deadline("acme", &deadline)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, all) = api(addr, "GET", "/tenants/acme/alert-deliveries", &admin, None).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");

    let retry = format!("/tenants/acme/alert-deliveries/{id}/retry");
    assert_eq!(api(addr, "POST", &retry, &auditor, None).await.0, 403);
    let foreign = format!("/tenants/globex/alert-deliveries/{id}/retry");
    assert_eq!(api(addr, "POST", &foreign, &globex, None).await.0, 404);
    assert_eq!(api(addr, "POST", &retry, &globex, None).await.0, 404);
    rx.set_failing(false);
    let (s, v) = api(addr, "POST", &retry, &admin, None).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "pending");
    documented("post", "/alert-deliveries/{id}/retry", &v);
    let done = eventually("delivered after retry", Duration::from_secs(30), || async {
        deliveries(addr, &admin, "acme", "delivered").await.pop()
    })
    .await;
    assert_eq!(done["id"], id.as_str());
    assert_eq!(rx.accepted().len(), 1);
    // Only dead deliveries can be retried.
    assert_eq!(api(addr, "POST", &retry, &admin, None).await.0, 400);
    // The retry is in the tenant's audit log.
    let (_, audit) = api(addr, "GET", "/tenants/acme/audit", &admin, None).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "alert_delivery.retry" && e["target"] == id.as_str()),
        "{audit}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_windows_record_deliveries_without_sending_them() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), fast(3)).await;
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), 0).await;
    channel_with_rule(
        addr,
        &key,
        json!({ "name": "hook", "kind": "webhook", "url": format!("http://{}/h", rx.addr) }),
        &["incident_deadline"],
        vec![],
    )
    .await;
    let now = collector::time::now_ms();
    let (s, w) = api(
        addr,
        "POST",
        "/tenants/acme/mute-windows",
        &key,
        Some(
            json!({ "starts_ms": now - 60_000, "ends_ms": now + 600_000, "reason": "maintenance" }),
        ),
    )
    .await;
    assert_eq!(s, 201, "{w}");
    documented("post", "/mute-windows", &w);
    let reminder = |stage: &str| IncidentDeadline {
        incident_id: "inc-2".into(),
        title: "outage".into(),
        stage: stage.into(),
        due_ms: now + 3_600_000,
        overdue: false,
    };
    c.alerts()
        .enqueue_incident_deadline("acme", &reminder("early_warning"))
        .unwrap();
    let muted = eventually("muted delivery", Duration::from_secs(20), || async {
        deliveries(addr, &key, "acme", "muted").await.pop()
    })
    .await;
    assert_eq!(muted["attempts"], 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.requests().is_empty(), "a muted delivery was sent");
    let m = c.metrics();
    assert_eq!(m.alerts_muted.load(std::sync::atomic::Ordering::Relaxed), 1);

    let path = format!("/tenants/acme/mute-windows/{}", w["id"].as_str().unwrap());
    assert_eq!(api(addr, "DELETE", &path, &key, None).await.0, 204);
    assert_eq!(api(addr, "DELETE", &path, &key, None).await.0, 404);
    c.alerts()
        .enqueue_incident_deadline("acme", &reminder("notification"))
        .unwrap();
    eventually("sent once unmuted", Duration::from_secs(20), || async {
        (rx.accepted().len() == 1).then_some(())
    })
    .await;
    assert!(
        rx.accepted()[0].json()["summary"]
            .as_str()
            .unwrap()
            .contains("notification")
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_channel_posts_text_and_blocks() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), fast(3)).await;
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), 0).await;
    let url = format!("http://{}/services/T0/B0/x", rx.addr);
    let (s, bad) = api(
        addr,
        "POST",
        "/tenants/acme/alert-channels",
        &key,
        Some(json!({ "name": "s", "kind": "slack", "url": url, "secret": "0123456789abcdefgh" })),
    )
    .await;
    assert_eq!(s, 400, "{bad}");
    let (s, ch) = api(
        addr,
        "POST",
        "/tenants/acme/alert-channels",
        &key,
        Some(json!({ "name": "#sec <ops>", "kind": "slack", "url": url })),
    )
    .await;
    assert_eq!(s, 201, "{ch}");
    assert!(ch.get("secret").is_none());
    let q = send_test(addr, &key, &ch).await;
    documented("post", "/alert-channels/{id}/test", &q);
    eventually("slack message", Duration::from_secs(20), || async {
        (rx.accepted().len() == 1).then_some(())
    })
    .await;
    let r = &rx.accepted()[0];
    assert_eq!(r.path, "/services/T0/B0/x");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-vigil-signature").is_none());
    let msg = r.json();
    let text = msg["text"].as_str().unwrap();
    assert!(text.starts_with("vigil test: "), "{text}");
    // Slack control characters are escaped.
    assert!(text.contains("#sec &lt;ops&gt;"), "{text}");
    let blocks = msg["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert!(
        blocks[1]["fields"][0]["text"]
            .as_str()
            .unwrap()
            .contains("acme")
    );
    assert_eq!(blocks[2]["type"], "context");
    assert!(
        blocks[2]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains(q["delivery_id"].as_str().unwrap())
    );
    c.shutdown().await;
}

/// What the test SMTP server received in one session.
#[derive(Debug, Default, Clone)]
struct SmtpSession {
    commands: Vec<String>,
    data: String,
}

/// A loopback SMTP server that accepts everything and records each session.
async fn smtp_server() -> (SocketAddr, Arc<Mutex<Vec<SmtpSession>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let out = sessions.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let sessions = sessions.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                let mut sess = SmtpSession::default();
                w.write_all(b"220 test.local ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    let cmd = line.trim_end().to_string();
                    sess.commands.push(cmd.clone());
                    let upper = cmd.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-test.local\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("AUTH PLAIN") {
                        b"235 2.7.0 ok\r\n"
                    } else if upper == "DATA" {
                        w.write_all(b"354 go on\r\n").await.unwrap();
                        loop {
                            let mut l = String::new();
                            r.read_line(&mut l).await.unwrap();
                            if l == ".\r\n" {
                                break;
                            }
                            sess.data.push_str(&l);
                        }
                        b"250 2.0.0 queued\r\n"
                    } else if upper == "QUIT" {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
                sessions.lock().unwrap().push(sess);
            });
        }
    });
    (addr, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_channel_speaks_smtp_with_auth_and_dot_stuffing() {
    init();
    let (smtp_addr, sessions) = smtp_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fast(3);
    cfg.smtp.server = smtp_addr.to_string();
    cfg.smtp.from = "alerts@vigil.test".into();
    cfg.smtp.username = "relay-user".into();
    cfg.smtp.password = "relay pass".into();
    let c = start(dir.path(), cfg).await;
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    let (s, bad) = api(
        addr,
        "POST",
        "/tenants/acme/alert-channels",
        &key,
        Some(json!({ "name": "m", "kind": "email", "to": ["x@y.test>\r\nRCPT TO:<z@q.test"] })),
    )
    .await;
    assert_eq!(s, 400, "{bad}");
    let ch = channel_with_rule(
        addr,
        &key,
        json!({ "name": "soc mail", "kind": "email", "to": ["soc@acme.test", "ciso@acme.test"] }),
        &["incident_deadline"],
        vec![],
    )
    .await;
    assert_eq!(ch["target"], "soc@acme.test,ciso@acme.test");
    c.alerts()
        .enqueue_incident_deadline(
            "acme",
            &IncidentDeadline {
                incident_id: "inc-3".into(),
                title: "db outage\n.dot line".into(),
                stage: "final_report".into(),
                due_ms: 1_900_000_000_000,
                overdue: true,
            },
        )
        .unwrap();
    let delivered = eventually("email delivered", Duration::from_secs(20), || async {
        deliveries(addr, &key, "acme", "delivered").await.pop()
    })
    .await;
    let id = delivered["id"].as_str().unwrap();
    let sess = sessions.lock().unwrap().clone();
    assert_eq!(sess.len(), 1);
    let s = &sess[0];
    assert_eq!(s.commands[0], "EHLO vigil-collector");
    let auth = s.commands[1].strip_prefix("AUTH PLAIN ").unwrap();
    assert_eq!(
        auth,
        collector::alerts::smtp::base64(b"\0relay-user\0relay pass")
    );
    assert_eq!(s.commands[2], "MAIL FROM:<alerts@vigil.test> BODY=8BITMIME");
    assert_eq!(s.commands[3], "RCPT TO:<soc@acme.test>");
    assert_eq!(s.commands[4], "RCPT TO:<ciso@acme.test>");
    assert_eq!(s.commands[5], "DATA");
    assert_eq!(s.commands.last().unwrap(), "QUIT");
    let d = &s.data;
    assert!(d.contains("From: vigil <alerts@vigil.test>\r\n"), "{d}");
    assert!(d.contains("To: soc@acme.test, ciso@acme.test\r\n"));
    assert!(d.contains(&format!("Message-ID: <{id}@vigil.test>\r\n")));
    assert!(d.contains("\r\nDate: "));
    assert!(d.contains("MIME-Version: 1.0\r\n"));
    // The title's newline cannot start a header: the subject stays one line.
    let subject = d.lines().find(|l| l.starts_with("Subject: ")).unwrap();
    assert!(subject.contains("db outage .dot line"), "{subject}");
    // A body line starting with a dot was stuffed.
    assert!(d.contains("\r\n..dot line\""), "{d}");
    assert!(d.contains(&format!("Delivery: {id}")));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_without_holding_up_other_channels() {
    init();
    // Accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((s, _)) = hang.accept().await {
            keep.lock().unwrap().push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fast(1);
    cfg.timeout = "3s".into();
    let c = start(dir.path(), cfg).await;
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), 0).await;
    let mut ids = Vec::new();
    for url in [
        format!("http://{hang_addr}/h"),
        format!("http://{}/h", rx.addr),
    ] {
        let (s, ch) = api(
            addr,
            "POST",
            "/tenants/acme/alert-channels",
            &key,
            Some(json!({ "name": "h", "kind": "webhook", "url": url })),
        )
        .await;
        assert_eq!(s, 201, "{ch}");
        let q = send_test(addr, &key, &ch).await;
        ids.push(q["delivery_id"].as_str().unwrap().to_string());
    }
    let queued = tokio::time::Instant::now();
    // Recorded as delivered while the other attempt still hangs.
    let done = eventually(
        "fast channel delivered",
        Duration::from_secs(20),
        || async { deliveries(addr, &key, "acme", "delivered").await.pop() },
    )
    .await;
    assert_eq!(done["id"], ids[1].as_str());
    assert_eq!(rx.accepted().len(), 1);
    assert!(
        queued.elapsed() < Duration::from_secs(2),
        "waited for the hanging receiver: {:?}",
        queued.elapsed()
    );
    let pending = deliveries(addr, &key, "acme", "pending").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], ids[0].as_str());
    let dead = eventually(
        "hanging attempt timed out",
        Duration::from_secs(20),
        || async { deliveries(addr, &key, "acme", "dead").await.pop() },
    )
    .await;
    assert_eq!(dead["id"], ids[0].as_str());
    assert!(
        dead["last_error"].as_str().unwrap().contains("timed out"),
        "{dead}"
    );
    acceptor.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_verify_the_receiver_certificate() {
    init();
    // A TLS receiver with a self-signed certificate no trust store knows.
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let tls = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tls_addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(tls.clone()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, sock);
            let mut buf = [0u8; 64];
            let r = std::io::Read::read(&mut s, &mut buf);
            seen.lock().unwrap().push(r.map_err(|e| e.to_string()));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), fast(1)).await;
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    let (s, ch) = api(
        addr,
        "POST",
        "/tenants/acme/alert-channels",
        &key,
        Some(json!({ "name": "tls", "kind": "webhook", "url": format!("https://{tls_addr}/h") })),
    )
    .await;
    assert_eq!(s, 201, "{ch}");
    send_test(addr, &key, &ch).await;
    let dead = eventually("refused certificate", Duration::from_secs(20), || async {
        deliveries(addr, &key, "acme", "dead").await.pop()
    })
    .await;
    let err = dead["last_error"].as_str().unwrap();
    assert!(err.contains("certificate"), "{err}");
    // The TLS handshake was reached (and refused by the client), nothing was read.
    e2e::wait_for("server saw the handshake", Duration::from_secs(10), || {
        !handshakes.lock().unwrap().is_empty()
    })
    .await;
    assert!(handshakes.lock().unwrap().iter().all(|r| r.is_err()));
    c.shutdown().await;
}

/// One SMTP session over `io` (plain or TLS), recording commands into `sess`;
/// `offer` is the extension list answered to EHLO. Returns true after STARTTLS.
fn smtp_dialog(
    io: &mut std::io::BufReader<impl std::io::Read + std::io::Write>,
    offer: &str,
    sess: &mut SmtpSession,
) -> bool {
    use std::io::BufRead;
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let cmd = line.trim_end().to_string();
        sess.commands.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            format!("250-test.local\r\n{offer}")
        } else if upper == "STARTTLS" {
            io.get_mut().write_all(b"220 2.0.0 ready\r\n").unwrap();
            io.get_mut().flush().unwrap();
            return true;
        } else if upper.starts_with("AUTH PLAIN") {
            "235 2.7.0 ok\r\n".into()
        } else if upper == "DATA" {
            io.get_mut().write_all(b"354 go on\r\n").unwrap();
            io.get_mut().flush().unwrap();
            loop {
                let mut l = String::new();
                io.read_line(&mut l).unwrap();
                if l == ".\r\n" {
                    break;
                }
                sess.data.push_str(&l);
            }
            "250 2.0.0 queued\r\n".into()
        } else if upper == "QUIT" {
            let _ = io.get_mut().write_all(b"221 bye\r\n");
            let _ = io.get_mut().flush();
            return false;
        } else {
            "250 ok\r\n".into()
        };
        io.get_mut().write_all(reply.as_bytes()).unwrap();
        io.get_mut().flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_starttls_authenticates_only_inside_tls() {
    use std::io::Write;
    init();
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let ca_file = dir.path().join("relay-ca.pem");
    std::fs::write(&ca_file, ck.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let tls = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap(),
    );
    // A relay that insists on STARTTLS before it offers AUTH.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = listener.local_addr().unwrap();
    let sessions: Arc<Mutex<Vec<(SmtpSession, SmtpSession)>>> = Arc::default();
    let out = sessions.clone();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            sock.write_all(b"220 test.local ESMTP\r\n").unwrap();
            let mut plain = SmtpSession::default();
            let mut io = std::io::BufReader::new(sock);
            let upgraded = smtp_dialog(&mut io, "250 STARTTLS\r\n", &mut plain);
            let mut secure = SmtpSession::default();
            if upgraded {
                let conn = rustls::ServerConnection::new(tls.clone()).unwrap();
                let s = rustls::StreamOwned::new(conn, io.into_inner());
                let mut io = std::io::BufReader::new(s);
                smtp_dialog(&mut io, "250-AUTH PLAIN\r\n250 8BITMIME\r\n", &mut secure);
            }
            out.lock().unwrap().push((plain, secure));
        }
    });
    let mut cfg = fast(1);
    cfg.smtp.server = relay.to_string();
    cfg.smtp.username = "relay-user".into();
    cfg.smtp.password = "relay pass".into();
    cfg.smtp.starttls = true;
    cfg.smtp.ca_file = ca_file.to_string_lossy().into_owned();
    let c = start(&dir.path().join("c"), cfg.clone()).await;
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    let ch = channel_with_rule(
        addr,
        &key,
        json!({ "name": "soc", "kind": "email", "to": ["soc@acme.test"] }),
        &["incident_deadline"],
        vec![],
    )
    .await;
    send_test(addr, &key, &ch).await;
    eventually("delivered over TLS", Duration::from_secs(20), || async {
        deliveries(addr, &key, "acme", "delivered").await.pop()
    })
    .await;
    let (plain, secure) = sessions.lock().unwrap()[0].clone();
    assert_eq!(plain.commands, ["EHLO vigil-collector", "STARTTLS"]);
    assert_eq!(secure.commands[0], "EHLO vigil-collector");
    assert!(secure.commands[1].starts_with("AUTH PLAIN "));
    assert_eq!(
        secure.commands[2],
        "MAIL FROM:<vigil@localhost> BODY=8BITMIME"
    );
    assert!(
        secure
            .data
            .contains("Subject: [vigil] test message for channel soc")
    );
    c.shutdown().await;

    // A relay that does not offer STARTTLS never sees the password.
    let (plain_relay, plain_sessions) = smtp_server().await;
    cfg.smtp.server = plain_relay.to_string();
    cfg.smtp.ca_file = String::new();
    let c = start(&dir.path().join("c2"), cfg).await;
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    let ch = channel_with_rule(
        addr,
        &key,
        json!({ "name": "soc", "kind": "email", "to": ["soc@acme.test"] }),
        &["incident_deadline"],
        vec![],
    )
    .await;
    send_test(addr, &key, &ch).await;
    let dead = eventually(
        "refused without STARTTLS",
        Duration::from_secs(20),
        || async { deliveries(addr, &key, "acme", "dead").await.pop() },
    )
    .await;
    assert!(
        dead["last_error"].as_str().unwrap().contains("STARTTLS"),
        "{dead}"
    );
    e2e::wait_for("relay session ended", Duration::from_secs(10), || {
        !plain_sessions.lock().unwrap().is_empty()
    })
    .await;
    let sent: Vec<String> = plain_sessions
        .lock()
        .unwrap()
        .iter()
        .flat_map(|s| s.commands.clone())
        .collect();
    assert_eq!(sent, ["EHLO vigil-collector"], "no AUTH, no MAIL in clear");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nis2_incident_deadline_reminders_reach_the_webhook_once() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let settings = CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        metrics_listen: String::new(),
        console_listen: "127.0.0.1:0".into(),
        alerts: fast(3),
        incidents: collector::reports::config::IncidentsConfig {
            check_interval: "1s".into(),
            ..Default::default()
        },
        ..CollectorConfig::default()
    }
    .validate()
    .unwrap();
    let c = Collector::start(settings).await.unwrap();
    let addr = c.console_addr().unwrap();
    let key = api_key(&c, "acme", Role::Admin);
    // Fails the first attempt: the reminder is retried like any other delivery.
    let rx = Receiver::start("127.0.0.1:0".parse().unwrap(), 1).await;
    channel_with_rule(
        addr,
        &key,
        json!({ "name": "dpo", "kind": "webhook", "url": format!("http://{}/h", rx.addr) }),
        &["incident_deadline"],
        vec![],
    )
    .await;
    // Detected 25 h ago: the 24 h early warning is overdue, the 72 h
    // notification is not yet within the 6 h reminder lead.
    let detected = collector::time::now_ms() - 25 * 3_600_000;
    let (s, inc) = api(
        addr,
        "POST",
        "/tenants/acme/incidents",
        &key,
        Some(json!({ "title": "Ransomware on file server", "significant": true, "detected_ms": detected })),
    )
    .await;
    assert_eq!(s, 201, "{inc}");
    let id = inc["id"].as_str().unwrap().to_string();
    let got = eventually(
        "the reminder delivered",
        Duration::from_secs(20),
        || async { rx.accepted().pop() },
    )
    .await;
    let body = got.json();
    assert_eq!(
        got.header("x-vigil-event"),
        Some("incident_deadline"),
        "{body}"
    );
    let summary = body["summary"].as_str().unwrap();
    assert!(
        summary.contains("early_warning") && summary.contains("overdue"),
        "{summary}"
    );
    assert!(summary.contains("Ransomware on file server"), "{summary}");
    // Several more checks pass: the reminder is not queued again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rx.accepted().len(), 1, "reminder sent more than once");
    let delivered = deliveries(addr, &key, "acme", "delivered").await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(delivered[0]["attempts"].as_u64().unwrap() >= 2);
    // Marking the stage sent stops further reminders for it.
    let (s, v) = api(
        addr,
        "PATCH",
        &format!("/tenants/acme/incidents/{id}"),
        &key,
        Some(json!({ "mark_stage_sent": "early_warning" })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["overdue"].as_array().unwrap().is_empty(), "{v}");
    c.shutdown().await;
}
