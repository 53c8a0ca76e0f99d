//! Durable collector state behind a backend-neutral trait.
//!
//! The embedded default is sled ([`SledStore`]); anything that can provide
//! these operations atomically (PostgreSQL, say) can be added later without
//! touching the transport or enrolment code.

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
}
