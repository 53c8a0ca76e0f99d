//! Compliance reports and NIS2 incidents end to end: an agent scans a bare
//! loopback HTTP server, the findings pipeline produces real findings, and a
//! console user requests a report in every format over HTTP, polls it until
//! done and downloads it (the PDF is rendered by poppler's pdftoppm). An
//! incident linked to a real finding is recorded, advanced and exported; all
//! of it is tenant-isolated and audited.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{Spool, Uplink, UplinkConfig};
use collector::Collector;
use collector::admin::AdminRequest;
use collector::config::CollectorConfig;
use e2e::{enroll, init, wait_for};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a fresh loopback connection.
fn http(addr: SocketAddr, method: &str, path: &str, cookie: &str, body: Option<Value>) -> Answer {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    body: Option<Value>,
) -> Answer {
    let (m, p, c) = (method.to_string(), path.to_string(), cookie.to_string());
    tokio::task::spawn_blocking(move || http(addr, &m, &p, &c, body))
        .await
        .unwrap()
}

async fn login(addr: SocketAddr, email: &str) -> String {
    let r = call(
        addr,
        "POST",
        "/api/v1/login",
        "",
        Some(json!({ "email": email, "password": "reports e2e password" })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn create_user(c: &Collector, email: &str, tenant: &str, role: &str) {
    let req: AdminRequest = serde_json::from_value(json!({
        "op": "accounts", "kind": "create_user", "email": email, "tenant": tenant,
        "role": role, "password": "reports e2e password"
    }))
    .unwrap();
    c.admin().handle(req).unwrap();
}

async fn bare_http_server(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nServer: Apache/2.4.1\r\nContent-Length: 0\r\n\r\n",
                    )
                    .await;
            });
        }
    })
}

/// Pages of a PDF rendered by pdftoppm and their dark-pixel counts.
fn rasterise(pdf: &[u8]) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new("pdftoppm")
        .args(["-r", "30", "-gray"])
        .arg(&file)
        .arg(dir.path().join("p"))
        .output()
        .expect("pdftoppm runs (Debian package poppler-utils, installed by .ci/run)");
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
            let (mut fields, mut at) = (0, 0);
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
    let out = Command::new("pdftotext")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext runs");
    assert!(out.status.success());
    // Wrapped table cells come out as several lines; compare word sequences.
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_in_every_format_and_incidents_over_the_api() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let settings = CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("c"),
        metrics_listen: "127.0.0.1:0".into(),
        console_listen: "127.0.0.1:0".into(),
        ..CollectorConfig::default()
    }
    .validate()
    .unwrap();
    let c = Collector::start(settings).await.unwrap();
    let api = c.console_addr().unwrap();

    // Real findings: scan a bare loopback web server and stream the results.
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
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert_ne!(port, 2024);
    let server = bare_http_server(([127, 0, 0, 1], port).into()).await;
    let recs = e2e::scan_loopback_web(&[port]).await;
    let seq = spool.append(recs).unwrap();
    let f = c.findings();
    let (t, a) = (state.meta.tenant.clone(), state.meta.agent.clone());
    wait_for("batch processed", Duration::from_secs(60), || {
        f.cursor(&t, &a).unwrap() >= seq && f.outbox_len().unwrap() == 0
    })
    .await;
    let posture = f.posture(&t, "nis2").unwrap();
    let failing = posture
        .controls
        .iter()
        .find(|c| c.status == collector::findings::posture::ControlStatus::Fail)
        .expect("the bare server fails a NIS2 control")
        .clone();
    let finding_id = failing.sample[0].clone();

    create_user(&c, "auditor@acme.test", "acme", "auditor");
    create_user(&c, "viewer@acme.test", "acme", "viewer");
    create_user(&c, "admin@globex.test", "globex", "admin");
    let auditor = login(api, "auditor@acme.test").await;
    let viewer = login(api, "viewer@acme.test").await;
    let globex = login(api, "admin@globex.test").await;

    // A viewer may read but not request.
    let r = call(
        api,
        "POST",
        "/api/v1/tenants/acme/reports",
        &viewer,
        Some(json!({ "framework": "nis2", "format": "pdf" })),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        api,
        "POST",
        "/api/v1/tenants/acme/reports",
        &auditor,
        Some(json!({ "framework": "nosuch", "format": "pdf" })),
    )
    .await;
    assert_eq!(r.status, 400);

    let started = Instant::now();
    let mut ids = Vec::new();
    for format in ["pdf", "json", "csv", "ocsf", "sarif"] {
        let r = call(
            api,
            "POST",
            "/api/v1/tenants/acme/reports",
            &auditor,
            Some(json!({ "framework": "nis2", "format": format })),
        )
        .await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert!(v["status"] == "queued" || v["status"] == "running" || v["status"] == "done");
        ids.push((format, v["id"].as_str().unwrap().to_string()));
    }
    for (format, id) in &ids {
        let path = format!("/api/v1/tenants/acme/reports/{id}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let meta = loop {
            let v = call(api, "GET", &path, &viewer, None).await.json();
            let p = v["progress"].as_u64().unwrap();
            assert!(p <= 100);
            if v["status"] == "done" || v["status"] == "failed" {
                break v;
            }
            // Until done the file is not there.
            let d = call(api, "GET", &format!("{path}/download"), &viewer, None).await;
            if d.status != 200 {
                assert_eq!(d.status, 409);
            }
            assert!(Instant::now() < deadline, "report {id} stuck: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(meta["status"], "done", "{meta}");
        assert_eq!(meta["progress"], 100);
        assert_eq!(meta["requested_by"], "user:auditor@acme.test");
        let d = call(api, "GET", &format!("{path}/download"), &viewer, None).await;
        assert_eq!(d.status, 200);
        assert_eq!(meta["size_bytes"].as_u64().unwrap(), d.body.len() as u64);
        let disposition = d.header("content-disposition").to_string();
        assert!(
            disposition.starts_with(&format!("attachment; filename=\"vigil-acme-nis2-{id}.")),
            "{disposition}"
        );
        let ctype = d.header("content-type").to_string();
        match *format {
            "pdf" => {
                assert_eq!(ctype, "application/pdf");
                let pages = rasterise(&d.body);
                assert!(
                    pages.len() >= 3 && pages.iter().all(|&n| n > 50),
                    "{pages:?}"
                );
                let text = pdf_text(&d.body);
                assert!(
                    text.contains("acme") && text.contains(&failing.control),
                    "{text}"
                );
            }
            "json" => {
                let v: Value = serde_json::from_slice(&d.body).unwrap();
                assert_eq!(v["tenant"], "acme");
                assert!(
                    v["findings"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|f| f["id"] == finding_id.as_str())
                );
            }
            "csv" => {
                assert!(ctype.starts_with("text/csv"));
                let text = String::from_utf8(d.body.clone()).unwrap();
                assert!(text.contains(&finding_id));
            }
            "ocsf" => {
                let v: Value = serde_json::from_slice(&d.body).unwrap();
                let e = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["finding_info"]["uid"] == finding_id.as_str())
                    .unwrap();
                assert_eq!(e["class_uid"], 2003);
                assert_eq!(e["type_uid"], 200301);
            }
            "sarif" => {
                assert_eq!(ctype, "application/sarif+json");
                let v: Value = serde_json::from_slice(&d.body).unwrap();
                assert!(!v["runs"][0]["results"].as_array().unwrap().is_empty());
            }
            _ => unreachable!(),
        }
        // Another tenant's admin cannot see it, through either tenant.
        for p in [path.clone(), format!("/api/v1/tenants/globex/reports/{id}")] {
            assert_eq!(call(api, "GET", &p, &globex, None).await.status, 404, "{p}");
        }
    }
    let list = call(api, "GET", "/api/v1/tenants/acme/reports", &viewer, None)
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 5);
    eprintln!(
        "5 reports generated and downloaded in {:?}",
        started.elapsed()
    );

    // A NIS2 incident linked to the real finding.
    let r = call(
        api,
        "POST",
        "/api/v1/tenants/acme/incidents",
        &auditor,
        Some(json!({
            "title": "Defacement of the public site",
            "description": "Web server compromised",
            "significant": true,
            "significance": { "affects_others": true, "rationale": "customer data exposed" },
            "finding_ids": [finding_id],
            "assets": ["127.0.0.1"],
        })),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let inc = r.json();
    let inc_id = inc["id"].as_str().unwrap().to_string();
    let detected = inc["detected_ms"].as_u64().unwrap();
    assert_eq!(
        inc["deadlines"]["early_warning_ms"].as_u64().unwrap(),
        detected + 24 * 3_600_000
    );
    assert_eq!(inc["next_deadline"]["stage"], "early_warning");
    let r = call(
        api,
        "POST",
        "/api/v1/tenants/acme/incidents",
        &auditor,
        Some(json!({
            "title": "x", "significant": true, "finding_ids": ["ffffffffffffffffffffffffffffffff"],
        })),
    )
    .await;
    assert_eq!(r.status, 400, "unknown findings are refused");
    let ipath = format!("/api/v1/tenants/acme/incidents/{inc_id}");
    let r = call(
        api,
        "PATCH",
        &ipath,
        &viewer,
        Some(json!({ "status": "closed" })),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        api,
        "PATCH",
        &ipath,
        &auditor,
        Some(json!({
            "mark_stage_sent": "early_warning",
            "early_warning": { "suspected_malicious": true, "cross_border_impact": false },
        })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert!(v["stages"]["early_warning_sent_ms"].is_u64());
    assert_eq!(v["next_deadline"]["stage"], "notification");
    let e = call(
        api,
        "GET",
        &format!("{ipath}/export/early_warning?format=pdf"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(e.status, 200);
    assert_eq!(e.header("content-type"), "application/pdf");
    assert!(rasterise(&e.body).iter().all(|&n| n > 50));
    assert!(pdf_text(&e.body).contains("Suspected unlawful or malicious cause"));
    let e = call(
        api,
        "GET",
        &format!("{ipath}/export/early_warning?format=json"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(e.json()["content"]["suspected_malicious"], true);
    assert_eq!(
        call(api, "GET", &ipath.replace("acme", "globex"), &globex, None)
            .await
            .status,
        404
    );
    assert_eq!(call(api, "GET", &ipath, &globex, None).await.status, 404);
    let list = call(api, "GET", "/api/v1/tenants/acme/incidents", &viewer, None)
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Every change is in the audit log.
    let audit = call(
        api,
        "GET",
        "/api/v1/tenants/acme/audit?limit=1000",
        &auditor,
        None,
    )
    .await
    .json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "report.create").count(), 5);
    assert!(actions.contains(&"incident.create") && actions.contains(&"incident.update"));

    // Metrics count the generated reports.
    let m = c.metrics_addr().unwrap();
    let text = String::from_utf8(call(m, "GET", "/metrics", "", None).await.body).unwrap();
    assert!(text.contains("vigil_reports_generated_total 5"), "{text}");

    uplink.stop().await.unwrap();
    server.abort();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_reports_through_the_running_collector_and_offline() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("c");
    let addr: SocketAddr = ([127, 0, 0, 1], e2e::free_udp_port()).into();
    let p = e2e::CollectorProcess::start(&data, addr).await;
    let cli = |args: &[&str]| {
        Command::new(e2e::workspace_bin("collector"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = dir.path().join("r.pdf");
    let o = cli(&[
        "report",
        "create",
        "--tenant",
        "acme",
        "--framework",
        "iso27001",
        "--format",
        "pdf",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(meta["status"], "done");
    assert_eq!(meta["requested_by"], "cli");
    let pdf = std::fs::read(&out).unwrap();
    assert!(rasterise(&pdf).iter().all(|&n| n > 50));
    assert!(pdf_text(&pdf).contains("acme"));
    // The running collector made the file, in its data directory.
    let id = meta["id"].as_str().unwrap();
    assert!(
        data.join("reports/acme")
            .join(format!("{id}.pdf"))
            .is_file()
    );
    p.kill();
    // With no collector running the CLI generates it in place.
    let out = dir.path().join("r.sarif");
    let o = cli(&[
        "report",
        "create",
        "--tenant",
        "acme",
        "--framework",
        "soc2",
        "--format",
        "sarif",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let o = cli(&["report", "list", "--tenant", "acme"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains(" done ")).count(),
        2,
        "{text}"
    );
}
