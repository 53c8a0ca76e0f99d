//! `collector worker`: consumes verified batches from JetStream with a durable
//! pull consumer, stores each in PostgreSQL and acks it only after the commit,
//! then runs the findings pipeline over PostgreSQL.
//!
//! Redelivery is harmless: a batch at or below the agent's stored sequence is
//! a duplicate (primary key `(tenant_id, agent_id, sequence)`) and is just
//! acked again. Batches of one agent must be stored in order (the pipeline
//! follows a per-agent cursor), so a batch that arrives after a gap is
//! negatively acked with a delay until the missing one is stored, or until it
//! has been delivered [`GAP_PATIENCE`] times (an agent may legitimately skip).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use thiserror::Error;
use tokio::sync::watch;

use super::{NatsError, decode_batch, ensure_stream};
use crate::backend::{BackendError, open_pool};
use crate::config::Settings;
use crate::findings::FindingError;
use crate::findings::pipeline::{Pipeline, PipelineOptions};
use crate::metrics::Metrics;
use crate::pg::{PgFindingStore, PgStore};
use crate::search::{IndexOptions, SearchIndex};
use crate::store::{BatchOutcome, Store, StoreError};

/// Deliveries after which a batch following a gap is stored anyway.
pub const GAP_PATIENCE: i64 = 5;

/// Failures that stop a worker.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// Opening the backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// JetStream failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The findings pipeline could not start.
    #[error(transparent)]
    Findings(#[from] FindingError),
    /// The worker is not configured for the scale-out backend.
    #[error("`collector worker` needs [backend] kind = \"scaleout\"")]
    NotScaleout,
    /// A blocking task panicked.
    #[error("worker task failed: {0}")]
    Task(String),
}

/// Counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Batches newly stored in PostgreSQL.
    pub batches: AtomicU64,
    /// Records in those batches.
    pub records: AtomicU64,
    /// Redelivered or republished batches dropped as duplicates.
    pub duplicates: AtomicU64,
    /// Messages negatively acked (gap or storage failure).
    pub naks: AtomicU64,
}

impl WorkerStats {
    /// The counters in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            (
                "vigil_worker_batches_stored_total",
                "Batches the worker stored in PostgreSQL.",
                &self.batches,
            ),
            (
                "vigil_worker_records_stored_total",
                "Records in the batches the worker stored.",
                &self.records,
            ),
            (
                "vigil_worker_duplicates_total",
                "Redelivered or republished batches dropped as duplicates.",
                &self.duplicates,
            ),
            (
                "vigil_worker_naks_total",
                "Messages negatively acknowledged (ordering gap or storage failure).",
                &self.naks,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// Serves the worker's and its findings pipeline's metrics on `metrics_listen`.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    stats: Arc<WorkerStats>,
    metrics: Arc<Metrics>,
    store: Arc<PgStore>,
) -> Result<tokio::task::JoinHandle<()>, WorkerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| WorkerError::Task(format!("metrics listener {addr}: {e}")))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (stats, metrics, store) = (stats.clone(), metrics.clone(), store.clone());
            async move {
                let body = tokio::task::spawn_blocking(move || {
                    let mut body = metrics.render(store.as_ref());
                    body.push_str(&stats.render());
                    body
                })
                .await
                .unwrap_or_default();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    body,
                )
            }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("worker metrics server stopped: {e}");
        }
    }))
}

enum Verdict {
    Ack,
    Nak(Duration),
    Term,
}

fn store_one(store: &PgStore, msg: &jetstream::Message, stats: &WorkerStats) -> Verdict {
    let batch = match decode_batch(msg.headers.as_ref(), &msg.payload) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("dropping malformed message: {e}");
            return Verdict::Term;
        }
    };
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let last = match store.delivery(&batch.tenant, &batch.agent) {
        Ok(d) => d.last_sequence,
        Err(e) => {
            tracing::warn!("reading delivery state failed: {e}");
            return Verdict::Nak(Duration::from_secs(1));
        }
    };
    if batch.sequence > last + 1 && delivered < GAP_PATIENCE {
        tracing::debug!(
            "{}/{} batch {} waits for {} (delivery {delivered})",
            batch.tenant,
            batch.agent,
            batch.sequence,
            last + 1
        );
        return Verdict::Nak(Duration::from_millis(200));
    }
    match store.store_batch(&batch) {
        Ok(BatchOutcome::Stored) => {
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .records
                .fetch_add(u64::from(batch.records), Ordering::Relaxed);
            Verdict::Ack
        }
        Ok(BatchOutcome::Duplicate) => {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            Verdict::Ack
        }
        Err(StoreError::Backend(e)) => {
            tracing::warn!("storing batch failed, will be redelivered: {e}");
            Verdict::Nak(Duration::from_secs(1))
        }
        Err(e) => {
            tracing::warn!("storing batch failed: {e}");
            Verdict::Nak(Duration::from_secs(1))
        }
    }
}

/// Runs a worker until `stop` turns true.
pub async fn run(
    settings: Settings,
    stats: Arc<WorkerStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    if !settings.raw.backend.is_scaleout() {
        return Err(WorkerError::NotScaleout);
    }
    let cfg = settings.raw.backend.scaleout.clone();
    let times = cfg.times().map_err(BackendError::from)?;
    let pool = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || open_pool(&cfg))
            .await
            .map_err(|e| WorkerError::Task(e.to_string()))??
    };
    let store = Arc::new(PgStore::new(pool.clone()));
    let rules = settings
        .load_rules()
        .map_err(|e| FindingError::Rules(e.to_string()))?;
    std::fs::create_dir_all(&settings.raw.data_dir)
        .map_err(|e| FindingError::Backend(format!("data_dir: {e}")))?;
    // The worker's Tantivy index is a local, rebuildable cache; queries in
    // scale-out mode go to PostgreSQL full-text search.
    let index = SearchIndex::open(
        &settings.raw.data_dir.join("index"),
        IndexOptions::default(),
    )?;
    let metrics = Arc::new(Metrics::default());
    let pipeline = Arc::new(Pipeline::with_parts(
        store.clone() as Arc<dyn Store>,
        Arc::new(PgFindingStore::new(pool)),
        Arc::new(rules),
        index,
        metrics.clone(),
        PipelineOptions::default(),
    ));
    let metrics_task = match settings.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, stats.clone(), metrics, store.clone()).await?),
        None => None,
    };
    let client = async_nats::connect(cfg.nats_url.as_str())
        .await
        .map_err(|e| NatsError::Connect(e.to_string()))?;
    let js = jetstream::new(client);
    let stream = ensure_stream(&js, &cfg).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &cfg.consumer,
            pull::Config {
                durable_name: Some(cfg.consumer.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: times.ack_wait,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| NatsError::JetStream(e.to_string()))?;
    // Findings are derived beside ingest, woken after each stored round, so a
    // slow rules pass never holds up acking JetStream.
    let notify = Arc::new(tokio::sync::Notify::new());
    let findings_task = settings
        .raw
        .findings_pipeline
        .then(|| pipeline.clone().spawn(notify.clone()));
    tracing::info!(
        "worker consuming {} with durable consumer {}",
        cfg.stream,
        cfg.consumer
    );
    while !*stop.borrow() {
        let mut fetched = consumer
            .fetch()
            .max_messages(cfg.fetch_batch)
            .messages()
            .await
            .map_err(|e| NatsError::JetStream(e.to_string()))?;
        let mut msgs = Vec::new();
        while let Some(m) = fetched.next().await {
            match m {
                Ok(m) => msgs.push(m),
                Err(e) => {
                    tracing::warn!("fetch: {e}");
                    break;
                }
            }
        }
        if msgs.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let (s, st) = (store.clone(), stats.clone());
        let (msgs, verdicts) = tokio::task::spawn_blocking(move || {
            let v: Vec<Verdict> = msgs.iter().map(|m| store_one(&s, m, &st)).collect();
            (msgs, v)
        })
        .await
        .map_err(|e| WorkerError::Task(e.to_string()))?;
        for (m, v) in msgs.iter().zip(verdicts) {
            let r = match v {
                Verdict::Ack => m.ack().await,
                Verdict::Nak(d) => {
                    stats.naks.fetch_add(1, Ordering::Relaxed);
                    m.ack_with(AckKind::Nak(Some(d))).await
                }
                Verdict::Term => m.ack_with(AckKind::Term).await,
            };
            if let Err(e) = r {
                // Unacked messages come back after ack_wait; storing them is idempotent.
                tracing::warn!("ack failed: {e}");
            }
        }
        notify.notify_one();
    }
    for t in [findings_task, metrics_task].into_iter().flatten() {
        t.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_render_as_prometheus_counters() {
        let s = WorkerStats::default();
        s.batches.fetch_add(3, Ordering::Relaxed);
        s.records.fetch_add(3000, Ordering::Relaxed);
        let text = s.render();
        assert!(text.contains("# TYPE vigil_worker_batches_stored_total counter\n"));
        assert!(text.contains("\nvigil_worker_batches_stored_total 3\n"));
        assert!(text.contains("\nvigil_worker_records_stored_total 3000\n"));
        assert!(text.contains("\nvigil_worker_naks_total 0\n"));
    }
}
