//! Scale-out throughput: signed batches published the way a scale-out
//! collector publishes them (JetStream publish ack + published mark in
//! PostgreSQL), then consumed by a worker into PostgreSQL. Prints records/s
//! for publishing, for NATS → worker → PostgreSQL ingest, and for ingest with
//! the findings pipeline deriving findings over PostgreSQL.
//!
//! Run: `eval "$(deploy/scaleout/services.sh start)"; cargo bench -p e2e --bench scaleout`
//! (VIGIL_BENCH_RECORDS and VIGIL_BENCH_BATCH override record count and batch size).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use collector::CollectorConfig;
use collector::backend::{BackendKind, open_pool};
use collector::nats::worker::{WorkerStats, run};
use collector::nats::{JetStreamLink, PublishingStore};
use collector::pg::{PgStore, wait};
use collector::store::{AgentRecord, Store, StoredBatch};
use e2e::{init, records};
use protocol::{AgentId, BatchBody, SigningKey, TenantId, sign_batch};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    init();
    let (Ok(nats), Ok(pg)) = (
        std::env::var("VIGIL_TEST_NATS_URL"),
        std::env::var("VIGIL_TEST_POSTGRES_URL"),
    ) else {
        eprintln!(
            "scale-out bench needs VIGIL_TEST_NATS_URL and VIGIL_TEST_POSTGRES_URL: \
             eval \"$(deploy/scaleout/services.sh start)\""
        );
        std::process::exit(2);
    };
    let total = env_or("VIGIL_BENCH_RECORDS", 200_000);
    let per_batch = env_or("VIGIL_BENCH_BATCH", 1000).max(1);
    let batches = total.div_ceil(per_batch) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for pipeline in [false, true] {
        let run_id = format!("{}{}", std::process::id(), u8::from(pipeline));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = CollectorConfig {
            data_dir: dir.path().to_path_buf(),
            metrics_listen: String::new(),
            console_listen: String::new(),
            findings_pipeline: pipeline,
            ..CollectorConfig::default()
        };
        config.backend.kind = BackendKind::Scaleout;
        let s = &mut config.backend.scaleout;
        s.nats_url = nats.clone();
        s.postgres_url = pg.clone();
        s.postgres_schema = format!("bench_{run_id}");
        s.stream = format!("BENCH_{run_id}");
        s.subject_prefix = format!("bench{run_id}.batches");
        s.consumer = format!("w{run_id}");
        s.fetch_batch = 256;
        let settings = config.validate().expect("settings");
        let sc = settings.raw.backend.scaleout.clone();

        // The agent, as enrolment would have stored it.
        let key = SigningKey::from_bytes(&[42; 32]);
        let (tenant, agent) = (
            TenantId::new("bench").unwrap(),
            AgentId::new("ag-bench").unwrap(),
        );
        let pool = open_pool(&sc).expect("postgres");
        let store = PublishingStore::new(
            PgStore::new(pool.clone()),
            JetStreamLink::connect(&sc).expect("nats"),
        );
        store
            .put_agent(&AgentRecord {
                tenant: tenant.clone(),
                agent: agent.clone(),
                hostname: "bench".into(),
                signing_key: key.verifying_key().to_bytes(),
                enrolled_ms: 0,
                cert_not_after_ms: u64::MAX / 2,
                revoked_ms: None,
                last_seen_ms: 0,
            })
            .expect("agent");
        let signed: Vec<StoredBatch> = (1..=batches)
            .map(|seq| {
                let body = BatchBody {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    sequence: seq,
                    created_ms: 1_700_000_000_000,
                    records: records(&format!("b{seq}"), per_batch),
                };
                let b = sign_batch(&key, &body).expect("sign");
                StoredBatch {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    sequence: seq,
                    received_ms: 0,
                    records: per_batch as u32,
                    body: b.body,
                    signature: b.signature,
                }
            })
            .collect();

        let t0 = Instant::now();
        for b in &signed {
            store.store_batch(b).expect("publish");
        }
        let published = t0.elapsed();

        let stats = Arc::new(WorkerStats::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let t1 = Instant::now();
        let worker = rt.spawn(run(settings.clone(), stats.clone(), stop_rx));
        while stats.batches.load(Ordering::Relaxed) < batches {
            assert!(!worker.is_finished(), "worker stopped");
            std::thread::sleep(Duration::from_millis(5));
        }
        let ingested = t1.elapsed();
        let mut derived = None;
        if pipeline {
            let cursor_key = format!("{tenant}/{agent}").into_bytes();
            loop {
                let c = pool.get().expect("conn");
                let row = wait(c.query_opt(
                    "SELECT value FROM fx_kv WHERE space = 0 AND key = $1",
                    &[&cursor_key],
                ))
                .expect("cursor");
                let done = row
                    .map(|r| r.get::<_, Vec<u8>>(0))
                    .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                    .is_some_and(|b| u64::from_be_bytes(b) >= batches);
                if done {
                    break;
                }
                assert!(t1.elapsed() < Duration::from_secs(1800), "pipeline stalled");
                std::thread::sleep(Duration::from_millis(20));
            }
            derived = Some(t1.elapsed());
        }
        let _ = stop_tx.send(true);
        rt.block_on(worker).expect("join").expect("worker");
        let recs = (batches as usize * per_batch) as f64;
        println!(
            "scaleout publish (collector → JetStream ack → published mark): {} records in {:.2?}: {:.0} records/s",
            recs,
            published,
            recs / published.as_secs_f64()
        );
        println!(
            "scaleout ingest (JetStream → worker → PostgreSQL, findings pipeline {}): {:.2?}: {:.0} records/s",
            if pipeline { "on" } else { "off" },
            ingested,
            recs / ingested.as_secs_f64()
        );
        if let Some(d) = derived {
            println!(
                "scaleout findings derived over PostgreSQL: {:.2?}: {:.0} records/s",
                d,
                recs / d.as_secs_f64()
            );
        }
    }
}
