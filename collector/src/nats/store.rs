//! The store of a scale-out collector: PostgreSQL for everything except
//! batches, which go to JetStream; a worker writes them to PostgreSQL.

use protocol::{AgentId, TenantId};

use super::JetStreamLink;
use crate::pg::PgStore;
use crate::store::{
    AgentRecord, BatchOutcome, DeliveryCounts, RunFilter, RunRecord, Store, StoreError,
    StoreResult, StoredBatch, StoredCa, TokenRecord,
};

/// [`PgStore`] whose `store_batch` publishes to JetStream instead.
///
/// `store_batch` returns only after JetStream acknowledged the publish and the
/// agent's published high-water mark is raised in PostgreSQL, so the session
/// acks the agent only for batches JetStream holds durably. The mark is shared
/// by every collector: an agent reconnecting elsewhere resumes after it.
pub struct PublishingStore {
    pg: PgStore,
    link: JetStreamLink,
}

impl PublishingStore {
    /// Combines the PostgreSQL state with the JetStream link.
    pub fn new(pg: PgStore, link: JetStreamLink) -> Self {
        Self { pg, link }
    }

    /// The PostgreSQL store underneath.
    pub fn pg(&self) -> &PgStore {
        &self.pg
    }
}

impl Store for PublishingStore {
    fn server_ca(&self) -> StoreResult<Option<StoredCa>> {
        self.pg.server_ca()
    }
    fn init_server_ca(&self, ca: StoredCa) -> StoreResult<StoredCa> {
        self.pg.init_server_ca(ca)
    }
    fn secret(&self, name: &str, init: [u8; 32]) -> StoreResult<[u8; 32]> {
        self.pg.secret(name, init)
    }
    fn tenant_ca(&self, tenant: &TenantId) -> StoreResult<Option<StoredCa>> {
        self.pg.tenant_ca(tenant)
    }
    fn init_tenant_ca(&self, tenant: &TenantId, ca: StoredCa) -> StoreResult<StoredCa> {
        self.pg.init_tenant_ca(tenant, ca)
    }
    fn put_token(&self, hash: [u8; 32], token: &TokenRecord) -> StoreResult<()> {
        self.pg.put_token(hash, token)
    }
    fn consume_token(&self, hash: [u8; 32], now_ms: u64) -> StoreResult<TokenRecord> {
        self.pg.consume_token(hash, now_ms)
    }
    fn put_agent(&self, agent: &AgentRecord) -> StoreResult<()> {
        self.pg.put_agent(agent)
    }
    fn agent(&self, agent: &AgentId) -> StoreResult<Option<AgentRecord>> {
        self.pg.agent(agent)
    }
    fn agents(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<AgentRecord>> {
        self.pg.agents(tenant)
    }
    fn revoke_agent(&self, agent: &AgentId, now_ms: u64) -> StoreResult<AgentRecord> {
        self.pg.revoke_agent(agent, now_ms)
    }

    /// Counters from PostgreSQL, with `last_sequence` at least the published
    /// mark: the session tells the agent this in Welcome, and everything up
    /// to it is durable in JetStream even if no worker has stored it yet.
    fn delivery(&self, tenant: &TenantId, agent: &AgentId) -> StoreResult<DeliveryCounts> {
        let mut d = self.pg.delivery(tenant, agent)?;
        d.last_sequence = d.last_sequence.max(self.pg.published(tenant, agent)?);
        Ok(d)
    }

    fn store_batch(&self, batch: &StoredBatch) -> StoreResult<BatchOutcome> {
        if batch.sequence <= self.pg.published(&batch.tenant, &batch.agent)? {
            return Ok(BatchOutcome::Duplicate);
        }
        let duplicate = self
            .link
            .publish(batch)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        self.pg
            .set_published(&batch.tenant, &batch.agent, batch.sequence)?;
        Ok(if duplicate {
            BatchOutcome::Duplicate
        } else {
            BatchOutcome::Stored
        })
    }

    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }
    fn try_lock_schedule(
        &self,
        tenant: &TenantId,
        job_id: &str,
    ) -> StoreResult<Option<Box<dyn Send>>> {
        self.pg.try_lock_schedule(tenant, job_id)
    }
    fn batches(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        from: u64,
    ) -> StoreResult<Vec<StoredBatch>> {
        self.pg.batches(tenant, agent, from)
    }
    fn batches_from(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        from: u64,
        max: usize,
    ) -> StoreResult<Vec<StoredBatch>> {
        self.pg.batches_from(tenant, agent, from, max)
    }
    fn all_deliveries(&self) -> StoreResult<Vec<(TenantId, AgentId, DeliveryCounts)>> {
        self.pg.all_deliveries()
    }
    fn put_run(&self, run: &RunRecord) -> StoreResult<()> {
        self.pg.put_run(run)
    }
    fn update_run(
        &self,
        run_id: &str,
        change: &mut dyn FnMut(&mut RunRecord) -> bool,
    ) -> StoreResult<Option<RunRecord>> {
        self.pg.update_run(run_id, change)
    }
    fn run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        self.pg.run(run_id)
    }
    fn runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        self.pg.runs(filter)
    }
    fn pending_runs(&self, agent: Option<&AgentId>) -> StoreResult<Vec<RunRecord>> {
        self.pg.pending_runs(agent)
    }
    fn prune_runs(&self, before_ms: u64) -> StoreResult<usize> {
        self.pg.prune_runs(before_ms)
    }
    fn schedule_cursor(&self, tenant: &TenantId, job_id: &str) -> StoreResult<Option<u64>> {
        self.pg.schedule_cursor(tenant, job_id)
    }
    fn set_schedule_cursor(&self, tenant: &TenantId, job_id: &str, at_ms: u64) -> StoreResult<()> {
        self.pg.set_schedule_cursor(tenant, job_id, at_ms)
    }
}
