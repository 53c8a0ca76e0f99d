//! The agent process is SIGKILLed while it scans and streams; after restarts
//! every batch it ever sealed reaches the collector exactly once.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use collector::config::{JobConfig, ScopeConfig, TenantConfig};
use collector::{Collector, CollectorConfig};
use e2e::{enroll, init, workspace_bin};
use protocol::CheckKind;

fn spawn_agent(state_dir: &std::path::Path) -> Child {
    Command::new(workspace_bin("agent"))
        .arg("--state-dir")
        .arg(state_dir)
        .arg("run")
        .env(
            "RUST_LOG",
            std::env::var("VIGIL_TEST_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkill_loses_and_duplicates_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // Loopback services of our own for the agent's job to find; they greet
    // like SSH so identification is immediate.
    let mut ports = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(l.local_addr().unwrap().port().to_string());
        servers.push(tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            }
        }));
    }
    assert!(!ports.iter().any(|p| p == "2024"));
    let ports = ports.join(",");
    let mut tenants = BTreeMap::new();
    tenants.insert(
        "acme".to_string(),
        TenantConfig {
            scope: ScopeConfig {
                cidrs: vec!["127.0.0.1/32".into()],
                hostnames: vec![],
                ports: ports.clone(),
            },
            jobs: vec![JobConfig {
                id: "loopback".into(),
                targets: vec!["127.0.0.1".into()],
                ports: Some(ports),
                checks: vec![CheckKind::Ports],
                every: Some("300ms".into()),
                ..serde_json::from_value(serde_json::json!({
                    "id": "x", "targets": [], "checks": []
                }))
                .unwrap()
            }],
        },
    );
    let settings = CollectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("c"),
        metrics_listen: String::new(),
        console_listen: String::new(),
        tenants,
        ..CollectorConfig::default()
    }
    .validate()
    .unwrap();
    let collector = Collector::start(settings).await.unwrap();
    let state_dir = dir.path().join("agent");
    let state = enroll(&collector, "acme", &state_dir).await.unwrap();
    let store = collector.store();
    let delivered = || {
        store
            .delivery(&state.meta.tenant, &state.meta.agent)
            .unwrap()
            .last_sequence
    };

    // Kill the agent at staggered moments while it scans, spools and sends.
    for round in 0..4u64 {
        let mut agent = spawn_agent(&state_dir);
        let target = delivered() + 2;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while delivered() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress in round {round}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * round)).await;
        agent.kill().unwrap();
        agent.wait().unwrap();
    }

    // A last, orderly run drains whatever the kills left in the spool.
    let mut agent = spawn_agent(&state_dir);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // SIGTERM: the agent stops scanning and leaves after its in-flight acks.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status();
    let status = tokio::task::spawn_blocking(move || agent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "agent exits cleanly on SIGTERM: {status}");

    // What the agent sealed: everything in its spool counter.
    let spool = agent::Spool::open(
        &state_dir.join("spool"),
        state.identity(),
        state.signing_key.clone(),
    )
    .unwrap();
    let sealed = spool.last();
    let backlog = spool.pending();
    assert!(sealed >= 8, "the agent produced batches ({sealed})");
    let stored: Vec<u64> = store
        .batches(&state.meta.tenant, &state.meta.agent, 0)
        .unwrap()
        .iter()
        .map(|b| b.sequence)
        .collect();
    // Everything the agent acknowledged as delivered is stored, once, without gaps;
    // anything still pending is exactly the tail the collector has not stored.
    assert_eq!(stored, (1..=sealed - backlog).collect::<Vec<_>>());
    assert_eq!(spool.acked(), sealed - backlog);
    collector.shutdown().await;
    for s in servers {
        s.abort();
    }
}
