//! Findings pipeline throughput without the transport: realistic signed
//! batches of many agents are stored in a sled store first, then the pipeline
//! catches up (verify, decode, evaluate the rules, apply findings lifecycle and
//! change detection in sled, index in Tantivy). Prints records/s per phase.
//!
//! Run: `cargo bench -p e2e --bench pipeline` (VIGIL_BENCH_AGENTS,
//! VIGIL_BENCH_BATCHES per agent, VIGIL_BENCH_BATCH records per batch,
//! VIGIL_BENCH_ROUNDS: how many times the same fleet re-sends its batches, so
//! later rounds measure updates of existing findings rather than creation).

use std::sync::Arc;
use std::time::Instant;

use collector::findings::pipeline::{Pipeline, PipelineOptions};
use collector::metrics::Metrics;
use collector::store::{AgentRecord, SledStore, Store, StoredBatch};
use e2e::fleet::realistic_records;
use protocol::{AgentId, BatchBody, SigningKey, TenantId};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pipeline options, with VIGIL_BENCH_TX_RECORDS, VIGIL_BENCH_INDEX_THREADS
/// and VIGIL_BENCH_INDEX_HEAP_MB overriding the defaults.
fn options() -> PipelineOptions {
    let mut o = PipelineOptions::default();
    o.tx_records = env_or("VIGIL_BENCH_TX_RECORDS", o.tx_records);
    o.index.threads = env_or("VIGIL_BENCH_INDEX_THREADS", o.index.threads);
    o.index.heap_bytes = env_or("VIGIL_BENCH_INDEX_HEAP_MB", o.index.heap_bytes >> 20) << 20;
    println!(
        "tx_records {}, index threads {}, index heap {} MiB",
        o.tx_records,
        o.index.threads,
        o.index.heap_bytes >> 20
    );
    o
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let agents = env_or("VIGIL_BENCH_AGENTS", 100);
    let batches = env_or("VIGIL_BENCH_BATCHES", 10) as u64;
    let per_batch = env_or("VIGIL_BENCH_BATCH", 500);
    let rounds = env_or("VIGIL_BENCH_ROUNDS", 2) as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("db")).expect("sled store"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let fleet: Vec<(TenantId, AgentId, SigningKey)> = (0..agents)
        .map(|i| {
            let tenant = TenantId::new(format!("t{}", i % 4)).expect("tenant");
            let agent = AgentId::new(format!("ag-{i:05}")).expect("agent");
            let key = SigningKey::from_bytes(&[(i % 251) as u8 + 1; 32]);
            store
                .put_agent(&AgentRecord {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    hostname: format!("h{i}"),
                    signing_key: key.verifying_key().to_bytes(),
                    enrolled_ms: now,
                    cert_not_after_ms: now + 86_400_000,
                    revoked_ms: None,
                    last_seen_ms: now,
                })
                .expect("agent");
            (tenant, agent, key)
        })
        .collect();
    let pipeline = Pipeline::open(
        dir.path(),
        store.clone(),
        Arc::new(rules::RuleSet::builtin().expect("rules")),
        Arc::new(Metrics::default()),
        options(),
    )
    .expect("pipeline");
    println!(
        "{agents} agents x {batches} batches x {per_batch} records per round, {rounds} rounds"
    );
    for round in 0..rounds {
        let t = Instant::now();
        let mut records = 0u64;
        for b in 0..batches {
            for (i, (tenant, agent, key)) in fleet.iter().enumerate() {
                let sequence = round * batches + b + 1;
                // Round r re-sends round 0's observations: same hosts, later times.
                let recs = realistic_records(i, b + 1, per_batch, now + sequence * 1000);
                records += recs.len() as u64;
                let body = BatchBody {
                    tenant: tenant.clone(),
                    agent: agent.clone(),
                    sequence,
                    created_ms: now,
                    records: recs,
                };
                let signed = protocol::sign_batch(key, &body).expect("sign");
                store
                    .store_batch(&StoredBatch {
                        tenant: tenant.clone(),
                        agent: agent.clone(),
                        sequence,
                        received_ms: now,
                        records: per_batch as u32,
                        body: signed.body,
                        signature: signed.signature,
                    })
                    .expect("store");
            }
        }
        store.flush().expect("flush");
        let stored = t.elapsed();
        let t = Instant::now();
        let stats = pipeline.catch_up().expect("catch up");
        let took = t.elapsed();
        println!(
            "round {}: {records} records stored in {:.2} s; pipeline {} batches, {} records, {} docs indexed in {:.2} s = {:.0} records/s",
            round + 1,
            stored.as_secs_f64(),
            stats.batches,
            stats.records,
            stats.indexed,
            took.as_secs_f64(),
            stats.records as f64 / took.as_secs_f64()
        );
    }
}
