//! A small fleet in CI: 50 agents, each enrolled with its own certificate and
//! signing key, share one client socket and stream realistic batches plus
//! heartbeats while searches run; every batch is acknowledged exactly once
//! and stored once, and every search is answered.

use std::collections::HashMap;
use std::time::Duration;

use e2e::fleet::{FleetOptions, Target, enroll_fleet, run_fleet};
use e2e::{init, start_collector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_stream_and_every_batch_is_acked_exactly_once() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let collector = start_collector(&dir.path().join("c")).await;
    let target = Target::InProcess(&collector);
    let mut opts = FleetOptions::new(50, &dir.path().join("agents"));
    opts.records_per_batch = 50;
    opts.batches_per_agent = 10;
    opts.window = 4;
    opts.heartbeat = Some(Duration::from_millis(500));
    // Stay connected a little after the last ack so heartbeats flow too.
    opts.duration = Duration::from_secs(3);
    // Console-style facetted searches while the batches are ingested and indexed.
    opts.search_rate = 10.0;
    let states = enroll_fleet(&target, &opts).await.unwrap();
    // Every agent has its own identity and signing key.
    let mut keys = HashMap::new();
    for s in &states {
        assert!(
            keys.insert(
                s.signing_key.verifying_key().to_bytes(),
                s.meta.agent.clone()
            )
            .is_none()
        );
    }
    let report = run_fleet(&target, &opts, states.clone()).await.unwrap();
    eprint!("{}", report.render());
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.agents_connected, 50);
    assert_eq!(report.collector_connections, Some(50));
    assert_eq!(report.batches_sent, 500);
    assert_eq!(report.batches_acked, 500, "each batch acked exactly once");
    assert_eq!(report.records_acked, 500 * 50);
    assert!(report.heartbeats.0 >= 50, "{:?}", report.heartbeats);
    assert_eq!(report.heartbeats.0, report.heartbeats.1);
    assert!(report.ack_latency.1 >= report.ack_latency.0);
    let searches = report.searches.as_ref().unwrap();
    assert!(searches.failed.is_empty(), "{:?}", searches.failed);
    assert!(searches.answered >= 10, "{searches:?}");
    assert!(searches.latency.1 >= searches.latency.0);
    let m = collector.metrics();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&m.batches_duplicate), 0);
    // Collector-wide group commit: sessions share flushes (one per session
    // welcome and one per ack if nothing were shared).
    let (flushes, acks) = (get(&m.group_commits), get(&m.acks_sent));
    assert!(
        flushes > 0 && flushes < acks + 50,
        "{flushes} flushes for {acks} acks"
    );
    let store = collector.store();
    for s in &states {
        let seqs: Vec<u64> = store
            .batches(&s.meta.tenant, &s.meta.agent, 0)
            .unwrap()
            .iter()
            .map(|b| b.sequence)
            .collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "agent {}", s.meta.agent);
        let d = store.delivery(&s.meta.tenant, &s.meta.agent).unwrap();
        assert_eq!((d.batches, d.records), (10, 500));
    }
    collector.shutdown().await;
}
