//! The collector is SIGKILLed mid-stream, repeatedly; afterwards every batch
//! the agent spooled is stored exactly once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent::{Spool, Uplink, UplinkConfig};
use collector::admin::{AdminRequest, CreatedToken};
use collector::store::{SledStore, Store};
use e2e::{CollectorProcess, enroll_with, free_udp_port, init, records};
use protocol::{Observation, SignedBatch, TenantId};

const BATCHES: u64 = 240;
const PER_BATCH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkill_mid_stream_loses_and_duplicates_nothing() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("collector");
    let addr: SocketAddr = ([127, 0, 0, 1], free_udp_port()).into();
    let mut proc = CollectorProcess::start(&cdir, addr).await;
    let token: CreatedToken = serde_json::from_value(
        proc.admin(&AdminRequest::CreateToken {
            tenant: TenantId::new("acme").unwrap(),
            ttl_secs: None,
        })
        .await
        .expect("token"),
    )
    .unwrap();
    let state = enroll_with(addr, &token, &dir.path().join("agent"))
        .await
        .unwrap();
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
            window: 8,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            ..UplinkConfig::default()
        },
    );

    let producer = {
        let spool = spool.clone();
        tokio::spawn(async move {
            for i in 1..=BATCHES {
                let s = spool.clone();
                tokio::task::spawn_blocking(move || s.append(records(&format!("r{i}"), PER_BATCH)))
                    .await
                    .unwrap()
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        })
    };

    // Kill the collector four times while results are flowing.
    for round in 1..=4u64 {
        let threshold = round * BATCHES / 5;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while spool.acked() < threshold {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress before kill {round}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proc.kill();
        // Results keep being spooled while the collector is down.
        tokio::time::sleep(Duration::from_millis(300)).await;
        proc = CollectorProcess::start(&cdir, addr).await;
    }
    producer.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while spool.acked() < BATCHES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {BATCHES} acknowledged",
            spool.acked()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    uplink.stop().await.unwrap();
    assert_eq!(spool.pending(), 0);
    // A final SIGKILL too: what was acknowledged must already be durable.
    proc.kill();

    let store = SledStore::open(&cdir.join("db")).unwrap();
    let (tenant, agent) = (state.meta.tenant.clone(), state.meta.agent.clone());
    let stored = store.batches(&tenant, &agent, 0).unwrap();
    let seqs: Vec<u64> = stored.iter().map(|b| b.sequence).collect();
    assert_eq!(
        seqs,
        (1..=BATCHES).collect::<Vec<_>>(),
        "every batch exactly once"
    );
    let key = state.signing_key.verifying_key();
    let mut seen = HashSet::new();
    for b in &stored {
        let body = SignedBatch {
            body: b.body.clone(),
            signature: b.signature,
        }
        .verify(&key)
        .unwrap();
        assert_eq!(body.sequence, b.sequence);
        for r in body.records {
            let Observation::Port(p) = r.observation else {
                panic!("unexpected observation")
            };
            assert!(seen.insert(p.banner.unwrap()), "duplicate record");
        }
    }
    assert_eq!(seen.len() as u64, BATCHES * PER_BATCH as u64);
    let d = store.delivery(&tenant, &agent).unwrap();
    assert_eq!(
        (d.last_sequence, d.batches, d.records),
        (BATCHES, BATCHES, BATCHES * PER_BATCH as u64)
    );
}
