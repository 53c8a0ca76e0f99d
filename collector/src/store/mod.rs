//! Durable collector state behind a backend-neutral trait.
//!
//! The embedded default is sled ([`SledStore`]); anything that can provide
//! these operations atomically (PostgreSQL, say) can be added later without
//! touching the transport or enrolment code.

pub mod flush_gate;
mod sled_store;

use protocol::{AgentId, TenantId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use sled_store::SledStore;

/// Failures of the storage backend.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend itself failed (I/O, corruption).
    #[error("storage backend: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record under {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The enrolment token is unknown, expired or already used.
    #[error("enrolment token is unknown, expired or already used")]
    InvalidToken,
    /// No agent with that id exists.
    #[error("no agent with id {0}")]
    UnknownAgent(String),
}

/// Result alias for storage operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A CA certificate together with its private key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredCa {
    /// CA certificate, DER.
    pub cert_der: Vec<u8>,
    /// CA private key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
}

/// An enrolment token as stored: only its hash is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// Tenant the token enrols into.
    pub tenant: TenantId,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Expiry time, ms since the epoch.
    pub expires_ms: u64,
}

/// An enrolled agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentRecord {
    /// Tenant of the agent.
    pub tenant: TenantId,
    /// Agent identifier.
    pub agent: AgentId,
    /// Host name the agent reported at enrolment.
    pub hostname: String,
    /// Ed25519 key its batches must be signed with.
    pub signing_key: [u8; 32],
    /// Enrolment time, ms since the epoch.
    pub enrolled_ms: u64,
    /// Expiry of the newest certificate issued to it, ms since the epoch.
    pub cert_not_after_ms: u64,
    /// Revocation time, if revoked.
    pub revoked_ms: Option<u64>,
    /// Last time the agent connected, ms since the epoch.
    pub last_seen_ms: u64,
}

/// What happened to a batch handed to [`Store::store_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Newly stored.
    Stored,
    /// Its sequence was already stored: dropped idempotently.
    Duplicate,
}

/// A stored batch, kept with its signature so it can be re-verified later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// Tenant the batch belongs to.
    pub tenant: TenantId,
    /// Agent that sent it.
    pub agent: AgentId,
    /// Its sequence number.
    pub sequence: u64,
    /// When the collector received it, ms since the epoch.
    pub received_ms: u64,
    /// Number of records inside.
    pub records: u32,
    /// The signed body bytes exactly as received.
    pub body: Vec<u8>,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

/// Per-agent delivery counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCounts {
    /// Highest sequence stored.
    pub last_sequence: u64,
    /// Batches stored.
    pub batches: u64,
    /// Records stored.
    pub records: u64,
}

/// Lifecycle of a scheduled scan run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Due, waiting for the agent to connect or for an allowed window.
    Queued,
    /// Sent to the agent; no report yet.
    Running,
    /// The agent ran it and spooled the results.
    Succeeded,
    /// The agent refused or failed it, or never reported.
    Failed,
    /// Superseded by a newer run of the same job before it could start.
    Missed,
}

impl RunStatus {
    /// Whether the run can still change.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Queued | Self::Running)
    }

    /// Lower-case name, as shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Missed => "missed",
        }
    }
}

/// One scan run of a scheduled job on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Identifier, sortable by due time.
    pub run_id: String,
    /// Tenant of the agent.
    pub tenant: TenantId,
    /// Agent that runs it.
    pub agent: AgentId,
    /// Job that runs.
    pub job_id: String,
    /// Where it is in its lifecycle.
    pub status: RunStatus,
    /// When the schedule made it due, ms since the epoch (collector clock).
    pub scheduled_ms: u64,
    /// When it was last sent to the agent, ms since the epoch (collector clock).
    pub dispatched_ms: Option<u64>,
    /// How many times it was sent (resent after reconnects).
    pub dispatches: u32,
    /// When the scan started (agent clock).
    pub started_ms: Option<u64>,
    /// When the scan finished (agent clock), or when the collector gave up on it.
    pub finished_ms: Option<u64>,
    /// Observations produced.
    pub observations: u64,
    /// Batches the observations were spooled in.
    pub batches: u64,
    /// Spool sequence of the run's last batch (0 when none).
    pub last_sequence: u64,
    /// Why it failed or was missed.
    pub error: Option<String>,
}

impl RunRecord {
    /// Scan duration in ms, once started and finished.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.finished_ms?.saturating_sub(self.started_ms?))
    }
}

/// Which runs [`Store::runs`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Only this tenant's runs.
    pub tenant: Option<TenantId>,
    /// Only this agent's runs.
    pub agent: Option<AgentId>,
    /// At most this many, newest first; all when absent.
    pub limit: Option<usize>,
}

/// Backend-neutral collector state.
pub trait Store: Send + Sync + 'static {
    /// The collector's server CA, if created.
    fn server_ca(&self) -> StoreResult<Option<StoredCa>>;
    /// Stores the server CA unless one exists; returns the one in force.
    fn init_server_ca(&self, ca: StoredCa) -> StoreResult<StoredCa>;
    /// A named 32-byte secret, stored as `init` on first use; returns the one in force.
    fn secret(&self, name: &str, init: [u8; 32]) -> StoreResult<[u8; 32]>;
    /// A tenant's CA, if created.
    fn tenant_ca(&self, tenant: &TenantId) -> StoreResult<Option<StoredCa>>;
    /// Stores a tenant CA unless one exists; returns the one in force.
    fn init_tenant_ca(&self, tenant: &TenantId, ca: StoredCa) -> StoreResult<StoredCa>;

    /// Records a new token under the SHA-256 of its secret.
    fn put_token(&self, hash: [u8; 32], token: &TokenRecord) -> StoreResult<()>;
    /// Atomically consumes a token that has not expired at `now_ms`.
    fn consume_token(&self, hash: [u8; 32], now_ms: u64) -> StoreResult<TokenRecord>;

    /// Inserts or replaces an agent record.
    fn put_agent(&self, agent: &AgentRecord) -> StoreResult<()>;
    /// Looks an agent up by id.
    fn agent(&self, agent: &AgentId) -> StoreResult<Option<AgentRecord>>;
    /// All agents, optionally of one tenant.
    fn agents(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<AgentRecord>>;
    /// Marks an agent revoked; returns its record.
    fn revoke_agent(&self, agent: &AgentId, now_ms: u64) -> StoreResult<AgentRecord>;

    /// Delivery counters of one agent.
    fn delivery(&self, tenant: &TenantId, agent: &AgentId) -> StoreResult<DeliveryCounts>;
    /// Stores a batch unless its sequence is not above the last stored one.
    /// Not durable until [`Store::flush`] returns.
    fn store_batch(&self, batch: &StoredBatch) -> StoreResult<BatchOutcome>;
    /// Makes everything stored so far durable.
    fn flush(&self) -> StoreResult<()>;
    /// Batches of one agent with sequence ≥ `from`, in order.
    fn batches(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        from: u64,
    ) -> StoreResult<Vec<StoredBatch>>;
    /// Delivery counters of every agent, keyed by tenant and agent.
    fn all_deliveries(&self) -> StoreResult<Vec<(TenantId, AgentId, DeliveryCounts)>>;

    /// Inserts or replaces a scan run (not durable until [`Store::flush`]).
    fn put_run(&self, run: &RunRecord) -> StoreResult<()>;
    /// Atomically changes a run: `change` edits a fresh copy and returns
    /// whether to keep the edit. Returns the run as stored afterwards.
    fn update_run(
        &self,
        run_id: &str,
        change: &mut dyn FnMut(&mut RunRecord) -> bool,
    ) -> StoreResult<Option<RunRecord>>;
    /// One run by id.
    fn run(&self, run_id: &str) -> StoreResult<Option<RunRecord>>;
    /// Runs matching `filter`, newest (latest due) first.
    fn runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>>;
    /// Queued and running runs, optionally of one agent, oldest first.
    fn pending_runs(&self, agent: Option<&AgentId>) -> StoreResult<Vec<RunRecord>>;
    /// Deletes finished runs that were due before `before_ms`; returns how many.
    fn prune_runs(&self, before_ms: u64) -> StoreResult<usize>;
    /// Latest instant up to which a tenant's job schedule has been evaluated.
    fn schedule_cursor(&self, tenant: &TenantId, job_id: &str) -> StoreResult<Option<u64>>;
    /// Records how far a tenant's job schedule has been evaluated.
    fn set_schedule_cursor(&self, tenant: &TenantId, job_id: &str, at_ms: u64) -> StoreResult<()>;

    /// At most `max` batches of one agent with sequence ≥ `from`, in order.
    fn batches_from(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        from: u64,
        max: usize,
    ) -> StoreResult<Vec<StoredBatch>> {
        let mut all = self.batches(tenant, agent, from)?;
        all.truncate(max);
        Ok(all)
    }

    /// Cluster-wide right to evaluate one tenant's job schedule, held until the
    /// guard drops; `None` while another collector holds it. A backend with a
    /// single collector always grants it.
    fn try_lock_schedule(
        &self,
        _tenant: &TenantId,
        _job_id: &str,
    ) -> StoreResult<Option<Box<dyn Send>>> {
        Ok(Some(Box::new(())))
    }

    /// The sled database behind the store, when it is sled (the findings
    /// pipeline keeps its own trees in it so one flush covers both).
    fn sled_db(&self) -> Option<sled::Db> {
        None
    }
}
