//! One agent streams 1M small records to a collector over loopback QUIC:
//! spooled and signed by the agent, verified, stored durably in sled and
//! acknowledged by the collector. Prints records/s for the whole path.
//!
//! Run: `cargo bench -p e2e --bench stream` (VIGIL_BENCH_RECORDS and
//! VIGIL_BENCH_BATCH override the record count and batch size;
//! VIGIL_BENCH_PIPELINE=off|on runs only one of the two collector modes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{Spool, Uplink, UplinkConfig};
use e2e::{enroll, init, records};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    init();
    let total = env_or("VIGIL_BENCH_RECORDS", 1_000_000);
    let per_batch = env_or("VIGIL_BENCH_BATCH", 1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Transport alone (ingest-only collector), then with the findings pipeline
    // competing for the same two cores, as in a default deployment.
    let modes: &[bool] = match std::env::var("VIGIL_BENCH_PIPELINE").as_deref() {
        Ok("off") => &[false],
        Ok("on") => &[true],
        _ => &[false, true],
    };
    for &pipeline in modes {
        rt.block_on(run(total, per_batch, pipeline));
    }
}

async fn run(total: usize, per_batch: usize, pipeline: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = e2e::settings(
        &dir.path().join("collector"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    settings.raw.findings_pipeline = pipeline;
    let collector = collector::Collector::start(settings)
        .await
        .expect("collector");
    println!(
        "== findings pipeline {}",
        if pipeline {
            "on (default)"
        } else {
            "off (ingest only)"
        }
    );
    let state = enroll(&collector, "bench", &dir.path().join("agent"))
        .await
        .expect("enrol");
    let spool = Arc::new(
        Spool::open(
            &dir.path().join("spool"),
            state.identity(),
            state.signing_key.clone(),
        )
        .expect("spool"),
    );
    let batches = total.div_ceil(per_batch) as u64;
    // Pre-build the records so the measurement covers the pipeline, not test data generation.
    let prepared: Vec<_> = (0..batches)
        .map(|b| records(&format!("b{b}"), per_batch))
        .collect();
    let sample = protocol::encode_value(&prepared[0][0])
        .expect("encode")
        .len();
    println!(
        "streaming {total} records ({sample} bytes each encoded) in {batches} batches of {per_batch}"
    );

    let uplink = Uplink::spawn(
        state.clone(),
        spool.clone(),
        UplinkConfig {
            window: 64,
            ..UplinkConfig::default()
        },
    );
    let started = Instant::now();
    let producer = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || {
            for recs in prepared {
                spool.append(recs).expect("append");
            }
        })
    };
    let mut acked = spool.subscribe_acked();
    let mut last_report = Instant::now();
    while *acked.borrow_and_update() < batches {
        if tokio::time::timeout(Duration::from_secs(60), acked.changed())
            .await
            .is_err()
        {
            panic!("no ack for 60 s at {} of {batches}", spool.acked());
        }
        if last_report.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "  {:>5.1}% acknowledged",
                spool.acked() as f64 * 100.0 / batches as f64
            );
            last_report = Instant::now();
        }
    }
    let elapsed = started.elapsed();
    producer.await.expect("producer");
    uplink.stop().await.expect("uplink stop");

    let d = collector
        .store()
        .delivery(&state.meta.tenant, &state.meta.agent)
        .expect("delivery");
    assert_eq!(d.records, (batches as usize * per_batch) as u64);
    let secs = elapsed.as_secs_f64();
    println!(
        "end to end (spool+sign → QUIC → verify+sled+fsync → ack): {} records in {:.2} s = {:.0} records/s ({:.1} MB/s of records)",
        d.records,
        secs,
        d.records as f64 / secs,
        (d.records as f64 * sample as f64) / secs / 1e6
    );

    // The signing and verification share of that work, measured alone.
    let key = state.signing_key.clone();
    let body = protocol::BatchBody {
        tenant: state.meta.tenant.clone(),
        agent: state.meta.agent.clone(),
        sequence: 1,
        created_ms: 0,
        records: records("sig", per_batch),
    };
    let n = 200;
    let t = Instant::now();
    let mut signed = None;
    for _ in 0..n {
        signed = Some(protocol::sign_batch(&key, &body).expect("sign"));
    }
    let sign_rate = (n * per_batch) as f64 / t.elapsed().as_secs_f64();
    let signed = signed.expect("signed");
    let vk = key.verifying_key();
    let t = Instant::now();
    for _ in 0..n {
        signed.verify(&vk).expect("verify");
    }
    let verify_rate = (n * per_batch) as f64 / t.elapsed().as_secs_f64();
    println!(
        "encode+sign alone: {sign_rate:.0} records/s; verify+decode alone: {verify_rate:.0} records/s"
    );
    collector.shutdown().await;
}
