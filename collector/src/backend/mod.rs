//! Backend selection: the embedded default (sled + Tantivy in `data_dir`) or
//! the scale-out backend (stateless collectors publishing verified batches to
//! NATS JetStream, `collector worker` processes consuming them into
//! PostgreSQL). See `docs/scaleout.md`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Settings, parse_duration};
use crate::findings::FindingError;
use crate::findings::pipeline::{Pipeline, PipelineOptions};
use crate::metrics::Metrics;
use crate::nats::{JetStreamLink, NatsError, PublishingStore};
use crate::pg::{PgError, PgFindingStore, PgPool, PgStore, migrate};
use crate::search::SearchIndex;
use crate::store::Store;

/// Which storage backend the collector uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// sled + Tantivy in `data_dir` (single collector).
    #[default]
    Embedded,
    /// NATS JetStream + PostgreSQL (several collectors and workers).
    Scaleout,
}

/// `[backend]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// `embedded` (default) or `scaleout`.
    pub kind: BackendKind,
    /// Settings of the scale-out backend (`[backend.scaleout]`).
    pub scaleout: ScaleoutConfig,
}

/// `[backend.scaleout]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleoutConfig {
    /// NATS server URL, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// PostgreSQL URL, e.g. `postgres://vigil@127.0.0.1:5432/vigil`.
    pub postgres_url: String,
    /// PostgreSQL schema holding every vigil table (created if missing).
    pub postgres_schema: String,
    /// Connections per process.
    pub postgres_pool_size: usize,
    /// JetStream stream of verified batches (created if missing).
    pub stream: String,
    /// Subject prefix; batches go to `<prefix>.<tenant>`.
    pub subject_prefix: String,
    /// Durable pull consumer the workers share.
    pub consumer: String,
    /// How long a publish may wait for JetStream's ack before the batch is refused.
    pub publish_timeout: String,
    /// Window in which JetStream drops a republished batch by its message id.
    pub duplicate_window: String,
    /// How long a worker may hold a message before JetStream redelivers it.
    pub ack_wait: String,
    /// Messages a worker fetches at once.
    pub fetch_batch: usize,
}

impl Default for ScaleoutConfig {
    fn default() -> Self {
        Self {
            nats_url: String::new(),
            postgres_url: String::new(),
            postgres_schema: "vigil".into(),
            postgres_pool_size: 8,
            stream: "VIGIL_BATCHES".into(),
            subject_prefix: "vigil.batches".into(),
            consumer: "vigil-worker".into(),
            publish_timeout: "10s".into(),
            duplicate_window: "10m".into(),
            ack_wait: "30s".into(),
            fetch_batch: 256,
        }
    }
}

/// Parsed `[backend.scaleout]` durations.
#[derive(Debug, Clone, Copy)]
pub struct ScaleoutTimes {
    /// Publish ack timeout.
    pub publish_timeout: Duration,
    /// JetStream duplicate window.
    pub duplicate_window: Duration,
    /// Consumer ack wait.
    pub ack_wait: Duration,
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: format!("backend.scaleout.{key}"),
        message: message.into(),
    }
}

fn is_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

impl ScaleoutConfig {
    /// Parses the durations.
    pub fn times(&self) -> Result<ScaleoutTimes, ConfigError> {
        let d = |k: &str, v: &str| parse_duration(&format!("backend.scaleout.{k}"), v);
        Ok(ScaleoutTimes {
            publish_timeout: d("publish_timeout", &self.publish_timeout)?,
            duplicate_window: d("duplicate_window", &self.duplicate_window)?,
            ack_wait: d("ack_wait", &self.ack_wait)?,
        })
    }
}

impl BackendConfig {
    /// Whether the scale-out backend is selected.
    pub fn is_scaleout(&self) -> bool {
        self.kind == BackendKind::Scaleout
    }

    /// Checks the section; the scale-out settings only when selected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.is_scaleout() {
            return Ok(());
        }
        let s = &self.scaleout;
        if !(s.nats_url.starts_with("nats://") || s.nats_url.starts_with("tls://")) {
            return Err(invalid("nats_url", "must be a nats:// or tls:// URL"));
        }
        if !(s.postgres_url.starts_with("postgres://")
            || s.postgres_url.starts_with("postgresql://"))
        {
            return Err(invalid("postgres_url", "must be a postgres:// URL"));
        }
        if !s
            .postgres_schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || !s
                .postgres_schema
                .starts_with(|c: char| c.is_ascii_lowercase())
        {
            return Err(invalid(
                "postgres_schema",
                "lower-case letters, digits and _, starting with a letter",
            ));
        }
        if !(2..=256).contains(&s.postgres_pool_size) {
            return Err(invalid(
                "postgres_pool_size",
                "must be 2..=256 (a schedule lock holds one)",
            ));
        }
        if !is_name(&s.stream, &[]) {
            return Err(invalid("stream", "letters, digits, _ and - only"));
        }
        if !is_name(&s.consumer, &[]) {
            return Err(invalid("consumer", "letters, digits, _ and - only"));
        }
        if !is_name(&s.subject_prefix, &['.']) || s.subject_prefix.ends_with('.') {
            return Err(invalid(
                "subject_prefix",
                "dot-separated tokens of letters, digits, _ and -",
            ));
        }
        if !(1..=10_000).contains(&s.fetch_batch) {
            return Err(invalid("fetch_batch", "must be 1..=10000"));
        }
        let t = s.times()?;
        if t.publish_timeout < Duration::from_millis(100) {
            return Err(invalid("publish_timeout", "must be at least 100ms"));
        }
        if t.duplicate_window < Duration::from_secs(1) {
            return Err(invalid("duplicate_window", "must be at least 1s"));
        }
        if t.ack_wait < Duration::from_secs(1) {
            return Err(invalid("ack_wait", "must be at least 1s"));
        }
        Ok(())
    }
}

/// Failures while opening the scale-out backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// PostgreSQL failed.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// NATS failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// Invalid settings.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Opens the migrated PostgreSQL pool of the scale-out settings.
pub fn open_pool(s: &ScaleoutConfig) -> Result<Arc<PgPool>, BackendError> {
    let pool = PgPool::new(&s.postgres_url, &s.postgres_schema, s.postgres_pool_size)?;
    migrate(&pool)?;
    Ok(pool)
}

/// The store of a scale-out collector: PostgreSQL state, batches to JetStream.
pub fn open_collector_store(settings: &Settings) -> Result<Arc<dyn Store>, BackendError> {
    let s = &settings.raw.backend.scaleout;
    let pool = open_pool(s)?;
    let link = JetStreamLink::connect(s)?;
    Ok(Arc::new(PublishingStore::new(PgStore::new(pool), link)))
}

/// The findings pipeline over `store`: the embedded one in `data_dir`, or in
/// scale-out mode the PostgreSQL findings state with a throwaway in-memory
/// Tantivy index (search in scale-out mode is [`crate::pg::search_findings`]).
pub fn open_pipeline(
    settings: &Settings,
    store: Arc<dyn Store>,
    rules: Arc<rules::RuleSet>,
    metrics: Arc<Metrics>,
) -> Result<Pipeline, FindingError> {
    if !settings.raw.backend.is_scaleout() {
        return Pipeline::open(
            &settings.raw.data_dir,
            store,
            rules,
            metrics,
            PipelineOptions::default(),
        );
    }
    let pool = open_pool(&settings.raw.backend.scaleout)
        .map_err(|e| FindingError::Backend(e.to_string()))?;
    let fs = Arc::new(PgFindingStore::new(pool));
    let pipeline = Pipeline::with_parts(
        store,
        fs.clone(),
        rules,
        SearchIndex::in_ram()?,
        metrics,
        PipelineOptions::default(),
    );
    // Searches go to PostgreSQL, where the workers index every tenant's findings.
    pipeline.set_external_search(fs);
    Ok(pipeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaleout_example_config_in_deploy_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/collector-scaleout.toml");
        let s = crate::CollectorConfig::load(&path)
            .unwrap()
            .validate()
            .unwrap();
        assert!(s.raw.backend.is_scaleout());
        assert_eq!(
            s.raw.backend.scaleout.times().unwrap().ack_wait,
            Duration::from_secs(30)
        );
        assert!(!s.schedules.is_empty());
    }

    #[test]
    fn scaleout_settings_are_validated_only_when_selected() {
        let mut b = BackendConfig::default();
        assert!(b.validate().is_ok());
        b.kind = BackendKind::Scaleout;
        assert!(b.validate().is_err(), "URLs are required");
        b.scaleout.nats_url = "nats://127.0.0.1:4222".into();
        b.scaleout.postgres_url = "postgres://vigil@127.0.0.1/vigil".into();
        assert!(b.validate().is_ok());
        b.scaleout.postgres_schema = "bad; drop".into();
        assert!(b.validate().is_err());
        b.scaleout.postgres_schema = "vigil".into();
        b.scaleout.subject_prefix = "a.b.".into();
        assert!(b.validate().is_err());
        b.scaleout.subject_prefix = "a.b".into();
        b.scaleout.ack_wait = "10ms".into();
        assert!(b.validate().is_err());
    }
}
