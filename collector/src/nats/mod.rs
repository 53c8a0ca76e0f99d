//! NATS JetStream transport of the scale-out backend: collectors publish each
//! verified batch ([`JetStreamLink`], [`PublishingStore`]) and workers consume
//! them durably into PostgreSQL ([`worker`]).

mod message;
mod store;
pub mod worker;

use std::time::Duration;

use async_nats::jetstream;
use thiserror::Error;

use crate::backend::ScaleoutConfig;
use crate::pg::IoRuntime;
use crate::store::StoredBatch;

pub use message::{BatchMessage, decode_batch, encode_batch};
pub use store::PublishingStore;

/// Failures of the NATS link.
#[derive(Debug, Error)]
pub enum NatsError {
    /// Connecting failed.
    #[error("nats connect: {0}")]
    Connect(String),
    /// A JetStream request (stream, consumer, publish, fetch, ack) failed.
    #[error("jetstream: {0}")]
    JetStream(String),
    /// JetStream did not acknowledge in time.
    #[error("jetstream publish not acknowledged within {0:?}")]
    Timeout(Duration),
    /// A message is not a batch this collector wrote.
    #[error("malformed batch message: {0}")]
    Malformed(String),
    /// The I/O runtime failed.
    #[error("nats runtime: {0}")]
    Runtime(String),
}

fn js_err(e: impl std::fmt::Display) -> NatsError {
    NatsError::JetStream(e.to_string())
}

/// Subject of a tenant's batches.
pub fn subject(prefix: &str, tenant: &str) -> String {
    format!("{prefix}.{tenant}")
}

/// Creates the stream unless it exists: work-queue retention (a message is
/// gone once a worker acks it), file storage, dedupe by message id.
pub async fn ensure_stream(
    js: &jetstream::Context,
    s: &ScaleoutConfig,
) -> Result<jetstream::stream::Stream, NatsError> {
    let times = s.times().map_err(|e| NatsError::JetStream(e.to_string()))?;
    js.get_or_create_stream(jetstream::stream::Config {
        name: s.stream.clone(),
        subjects: vec![format!("{}.>", s.subject_prefix)],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        storage: jetstream::stream::StorageType::File,
        duplicate_window: times.duplicate_window,
        ..Default::default()
    })
    .await
    .map_err(js_err)
}

/// A collector's connection to JetStream, usable from synchronous code.
pub struct JetStreamLink {
    io: IoRuntime,
    js: jetstream::Context,
    prefix: String,
    timeout: Duration,
}

impl JetStreamLink {
    /// Connects and makes sure the stream exists.
    pub fn connect(s: &ScaleoutConfig) -> Result<Self, NatsError> {
        let io = IoRuntime::start("vigil-nats-io").map_err(NatsError::Runtime)?;
        let url = s.nats_url.clone();
        let cfg = s.clone();
        let js = io
            .run(async move {
                let client = async_nats::connect(url)
                    .await
                    .map_err(|e| NatsError::Connect(e.to_string()))?;
                let js = jetstream::new(client);
                ensure_stream(&js, &cfg).await?;
                Ok::<_, NatsError>(js)
            })
            .map_err(NatsError::Runtime)??;
        let timeout = s
            .times()
            .map_err(|e| NatsError::JetStream(e.to_string()))?
            .publish_timeout;
        Ok(Self {
            io,
            js,
            prefix: s.subject_prefix.clone(),
            timeout,
        })
    }

    /// Publishes one verified batch and waits for JetStream's ack; returns
    /// whether JetStream had it already (same message id within the window).
    pub fn publish(&self, batch: &StoredBatch) -> Result<bool, NatsError> {
        let (headers, payload) = encode_batch(batch);
        let js = self.js.clone();
        let subject = subject(&self.prefix, batch.tenant.as_str());
        let timeout = self.timeout;
        self.io
            .run(async move {
                let acked = async {
                    let pending = js
                        .publish_with_headers(subject, headers, payload.into())
                        .await
                        .map_err(js_err)?;
                    pending.await.map_err(js_err)
                };
                match tokio::time::timeout(timeout, acked).await {
                    Ok(Ok(ack)) => Ok(ack.duplicate),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(NatsError::Timeout(timeout)),
                }
            })
            .map_err(NatsError::Runtime)?
    }
}
