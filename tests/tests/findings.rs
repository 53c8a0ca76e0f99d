//! Findings pipeline end to end: an agent scans loopback HTTP servers that
//! change between scans, streams the results over QUIC, and the collector
//! turns them into findings, lifecycle transitions, change events, posture and
//! tenant-isolated search results.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::{AgentState, Spool, Uplink, UplinkConfig};
use collector::Collector;
use collector::admin::AdminRequest;
use collector::findings::changes::{ChangeEvent, ChangeType};
use collector::findings::requests::FindingsRequest;
use collector::findings::{FindingRecord, FindingState, SuppressionKind};
use collector::search::SearchResults;
use e2e::{enroll, init, start_collector, wait_for};
use protocol::{Observation, PortObservation, PortState, Record, TenantId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HARDENED: &str = "HTTP/1.1 200 OK\r\nServer: nginx/1.18.0\r\n\
    Content-Security-Policy: default-src 'self'\r\nX-Frame-Options: DENY\r\n\
    X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
    Permissions-Policy: geolocation=()\r\nContent-Length: 0\r\n\r\n";
const BARE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// An HTTP server on loopback whose response can be swapped between scans.
async fn http_server(
    addr: SocketAddr,
    response: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind(addr).unwrap();
    let l = sock.listen(64).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let response = response.clone();
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
                    let r = response.lock().unwrap().clone();
                    let _ = s.write_all(r.as_bytes()).await;
                }
            });
        }
    })
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    assert_ne!(p, 2024, "port 2024 belongs to the machine");
    p
}

fn fast_uplink() -> UplinkConfig {
    UplinkConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        ..UplinkConfig::default()
    }
}

/// Spools `records` as one batch and waits until the collector has processed and indexed it.
async fn deliver(c: &Collector, state: &AgentState, spool: &Spool, records: Vec<Record>) {
    let seq = spool.append(records).unwrap();
    let f = c.findings();
    let (t, a) = (state.meta.tenant.clone(), state.meta.agent.clone());
    wait_for(
        "batch processed and indexed",
        Duration::from_secs(60),
        || f.cursor(&t, &a).unwrap() >= seq && f.outbox_len().unwrap() == 0,
    )
    .await;
}

fn search(c: &Collector, tenant: &str, query: &str) -> SearchResults {
    let v = c
        .admin()
        .handle(AdminRequest::Findings(FindingsRequest::Search {
            tenant: TenantId::new(tenant).unwrap(),
            query: query.into(),
            limit: Some(200),
            offset: None,
            facets: true,
        }))
        .unwrap();
    serde_json::from_value(v).unwrap()
}

fn findings(c: &Collector, tenant: &str, query: &str) -> Vec<FindingRecord> {
    search(c, tenant, &format!("kind:finding {query}"))
        .hits
        .into_iter()
        .map(|h| serde_json::from_value(h.doc).unwrap())
        .collect()
}

fn changes(c: &Collector, tenant: &str) -> Vec<ChangeEvent> {
    c.findings()
        .changes(&TenantId::new(tenant).unwrap(), None, 1000)
        .unwrap()
}

fn one(fs: &[FindingRecord], rule: &str, port: u16) -> FindingRecord {
    let hits: Vec<_> = fs
        .iter()
        .filter(|f| f.rule_id == rule && f.port == Some(port))
        .collect();
    assert_eq!(hits.len(), 1, "{rule} on {port}: {fs:#?}");
    hits[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_target_drives_lifecycle_changes_mappings_and_posture() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let c = start_collector(&dir.path().join("c")).await;
    let state = enroll(&c, "acme", &dir.path().join("a")).await.unwrap();
    let spool = Arc::new(
        Spool::open(
            &dir.path().join("spool"),
            state.identity(),
            state.signing_key.clone(),
        )
        .unwrap(),
    );
    let uplink = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());

    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    let a1: SocketAddr = ([127, 0, 0, 1], p1).into();
    let a2: SocketAddr = ([127, 0, 0, 1], p2).into();
    let r1 = Arc::new(Mutex::new(HARDENED.to_string()));
    let s1 = http_server(a1, r1.clone()).await;
    let tenant = TenantId::new("acme").unwrap();

    // Scan 1: only p1, hardened headers but a version-disclosing Server header.
    let recs = e2e::scan_loopback_web(&[p1, p2]).await;
    assert!(
        recs.iter()
            .any(|r| matches!(&r.observation, Observation::Http(h) if h.csp.is_some())),
        "{recs:#?}"
    );
    deliver(&c, &state, &spool, recs).await;
    let fs = findings(&c, "acme", "");
    let disclosure = one(&fs, "http.server.version-disclosure", p1);
    assert_eq!(disclosure.state, FindingState::New);
    assert!(fs.iter().all(|f| f.rule_id != "http.csp.missing"));
    // Every finding carries exactly its rule's framework mappings, and search by them finds it.
    let rules = rules::RuleSet::builtin().unwrap();
    for f in &fs {
        assert_eq!(
            f.mappings,
            rules.rule(&f.rule_id).unwrap().mappings,
            "{}",
            f.rule_id
        );
    }
    let m = &disclosure.mappings[0];
    let q = format!(
        "framework:{} control:\"{}\" port:{p1}",
        m.framework, m.control
    );
    assert!(
        findings(&c, "acme", &q)
            .iter()
            .any(|f| f.id == disclosure.id),
        "{q}"
    );
    let ch = changes(&c, "acme");
    assert_eq!(ch.len(), 1, "{ch:#?}");
    assert_eq!(ch[0].change, ChangeType::AssetAppeared);
    c.findings()
        .record_posture_history(tenant.as_str(), collector::time::now_ms())
        .unwrap();

    // Scan 2: p1 loses every header (and the Server header), p2 opens with the hardened server.
    *r1.lock().unwrap() = BARE.to_string();
    let r2 = Arc::new(Mutex::new(HARDENED.to_string()));
    let s2 = http_server(a2, r2).await;
    let recs = e2e::scan_loopback_web(&[p1, p2]).await;
    deliver(&c, &state, &spool, recs).await;
    let fs = findings(&c, "acme", "");
    let d1 = one(&fs, "http.server.version-disclosure", p1);
    assert_eq!(d1.state, FindingState::Resolved);
    assert_eq!(d1.id, disclosure.id, "identity is stable across scans");
    assert_eq!(
        one(&fs, "http.server.version-disclosure", p2).state,
        FindingState::New
    );
    let csp = one(&fs, "http.csp.missing", p1);
    assert_eq!(csp.state, FindingState::New);
    let ch = changes(&c, "acme");
    let has = |t: ChangeType, subject: &str| {
        ch.iter()
            .any(|e| e.change == t && e.subject.contains(subject))
    };
    assert!(
        has(ChangeType::PortOpened, &format!("127.0.0.1:{p2}")),
        "{ch:#?}"
    );
    assert!(
        has(ChangeType::HeaderRemoved, "content-security-policy"),
        "{ch:#?}"
    );
    assert!(has(ChangeType::HeaderRemoved, "x-frame-options"), "{ch:#?}");
    let found = search(
        &c,
        "acme",
        &format!("kind:change type:port_opened port:{p2}"),
    );
    assert_eq!(found.total, 1, "{found:#?}");
    // Accepting the baseline makes p2 and the bare headers the reference.
    assert!(
        !c.findings()
            .asset(&tenant, "127.0.0.1")
            .unwrap()
            .drift
            .is_empty()
    );
    c.findings().accept_baseline(&tenant, "127.0.0.1").unwrap();
    assert!(
        c.findings()
            .asset(&tenant, "127.0.0.1")
            .unwrap()
            .drift
            .is_empty()
    );
    let posture_before = c.findings().posture(&tenant, "nis2").unwrap();
    c.findings()
        .record_posture_history(tenant.as_str(), collector::time::now_ms())
        .unwrap();

    // Accept the risk of the CSP finding: it leaves the failing set, stays searchable.
    let v = c
        .admin()
        .handle(AdminRequest::Findings(FindingsRequest::Suppress {
            tenant: tenant.clone(),
            id: csp.id.clone(),
            kind: SuppressionKind::AcceptedRisk,
            reason: "legacy app, replaced in Q3".into(),
            owner: "web-team".into(),
            expires_ms: Some(collector::time::now_ms() + 86_400_000),
        }))
        .unwrap();
    assert_eq!(v["suppression"]["owner"], "web-team");
    assert_eq!(findings(&c, "acme", "suppressed:true").len(), 1);

    // Scan 3: p1 hardened again (CSP finding resolves, disclosure reopens), p2 closed.
    *r1.lock().unwrap() = HARDENED.to_string();
    s2.abort();
    let _ = s2.await;
    let recs = e2e::scan_loopback_web(&[p1, p2]).await;
    deliver(&c, &state, &spool, recs).await;
    let fs = findings(&c, "acme", "");
    let d1 = one(&fs, "http.server.version-disclosure", p1);
    assert_eq!(d1.state, FindingState::Reopened);
    let states: Vec<_> = d1.history.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [
            FindingState::New,
            FindingState::Resolved,
            FindingState::Reopened
        ]
    );
    assert_eq!(
        one(&fs, "http.csp.missing", p1).state,
        FindingState::Resolved
    );
    assert_eq!(
        one(&fs, "http.server.version-disclosure", p2).state,
        FindingState::Resolved
    );
    let ch = changes(&c, "acme");
    assert!(
        ch.iter()
            .any(|e| e.change == ChangeType::PortClosed && e.port == Some(p2)),
        "{ch:#?}"
    );
    // Posture moved and the history shows it.
    let posture_after = c.findings().posture(&tenant, "nis2").unwrap();
    let active = |p: &collector::findings::posture::Posture| -> u64 {
        p.controls.iter().map(|c| c.active_findings).sum()
    };
    assert!(
        active(&posture_after) < active(&posture_before),
        "{posture_before:#?}\n{posture_after:#?}"
    );
    c.findings()
        .record_posture_history(tenant.as_str(), collector::time::now_ms())
        .unwrap();
    let history = c.findings().posture_history(&tenant, "nis2", 10).unwrap();
    assert!(history.len() >= 2, "{history:#?}");
    // Up after scan 2, back down after scan 3: the peak is in the history.
    assert!(
        history
            .iter()
            .any(|h| h.active_findings > history[0].active_findings),
        "{history:#?}"
    );
    assert!(
        posture_after
            .controls
            .iter()
            .any(|c| c.status == collector::findings::posture::ControlStatus::NotAssessed)
    );

    // The index can be rebuilt from sled and answers the same.
    let before = search(&c, "acme", "").total;
    c.findings().rebuild_index().unwrap();
    assert_eq!(search(&c, "acme", "").total, before);

    uplink.stop().await.unwrap();
    s1.abort();
    c.shutdown().await;
}

fn rdp(asset: &str, n: u16) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            asset: asset.into(),
            job_id: "sweep".into(),
            observed_ms: 1_700_000_000_000 + u64::from(i),
            observation: Observation::Port(PortObservation {
                ip: format!("10.0.0.{i}"),
                port: 3389,
                state: PortState::Open,
                service: Some("rdp".into()),
                product: None,
                banner: None,
                tls: false,
            }),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_never_crosses_tenants() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let c = start_collector(&dir.path().join("c")).await;
    let mut agents = Vec::new();
    for (tenant, asset) in [("acme", "acme-dc"), ("globex", "globex-dc")] {
        let state = enroll(&c, tenant, &dir.path().join(tenant)).await.unwrap();
        let spool = Arc::new(
            Spool::open(
                &dir.path().join(format!("{tenant}-spool")),
                state.identity(),
                state.signing_key.clone(),
            )
            .unwrap(),
        );
        let up = Uplink::spawn(state.clone(), spool.clone(), fast_uplink());
        deliver(&c, &state, &spool, rdp(asset, 5)).await;
        agents.push((up, state));
    }
    let acme = findings(&c, "acme", "rule:port.rdp.exposed");
    assert_eq!(acme.len(), 5);
    assert!(
        acme.iter()
            .all(|f| f.tenant == "acme" && f.asset == "acme-dc")
    );
    let acme_id = acme[0].id.clone();
    // Queries crafted to reach the other tenant: refused or empty, never acme's documents.
    for q in [
        "tenant:acme",
        "tenant:acme OR port:3389",
        "asset:acme-dc",
        "acme",
        "acme-dc",
        &format!("id:{acme_id}"),
        "(asset:acme* OR -asset:acme*)",
        "asset:*",
        "\"acme-dc\"",
        "port:[0 TO 65535] sort:-last_seen",
    ] {
        match c
            .admin()
            .handle(AdminRequest::Findings(FindingsRequest::Search {
                tenant: TenantId::new("globex").unwrap(),
                query: q.to_string(),
                limit: Some(1000),
                offset: None,
                facets: true,
            })) {
            Ok(v) => {
                let r: SearchResults = serde_json::from_value(v).unwrap();
                for h in &r.hits {
                    assert_eq!(h.doc["tenant"], "globex", "{q:?} leaked {h:?}");
                }
                for values in r.facets.values() {
                    assert!(
                        values.iter().all(|(v, _)| !v.contains("acme")),
                        "{q:?} facets leaked"
                    );
                }
            }
            Err(e) => assert!(e.to_string().contains("unknown field"), "{q:?}: {e}"),
        }
    }
    // The same id under the other tenant does not exist either.
    assert!(
        c.findings()
            .finding(&TenantId::new("globex").unwrap(), &acme_id)
            .is_err()
    );
    assert_eq!(findings(&c, "globex", "port:3389").len(), 5);
    for (up, _) in agents {
        up.stop().await.unwrap();
    }
    c.shutdown().await;
}
