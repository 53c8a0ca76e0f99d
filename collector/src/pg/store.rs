//! [`Store`] on PostgreSQL: the collector state shared by every collector and
//! worker of a scale-out deployment.

use std::sync::Arc;

use protocol::{AgentId, TenantId};
use serde::{Serialize, de::DeserializeOwned};

use super::{PgError, PgPool, is_retryable, to_i64, to_u64, wait};
use crate::store::{
    AgentRecord, BatchOutcome, DeliveryCounts, RunFilter, RunRecord, Store, StoreError,
    StoreResult, StoredBatch, StoredCa, TokenRecord,
};

/// Tenant of rows that belong to the collector itself.
const COLLECTOR_TENANT: &str = "";

/// Collector state in a PostgreSQL schema (see [`super::migrate`]).
pub struct PgStore {
    pool: Arc<PgPool>,
}

fn db(e: impl Into<PgError>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(e.to_string()))
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn json<T: Serialize>(value: &T) -> StoreResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Backend(e.to_string()))
}

fn from_json<T: DeserializeOwned>(key: &str, v: serde_json::Value) -> StoreResult<T> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn batch_from_row(row: &tokio_postgres::Row) -> StoreResult<StoredBatch> {
    let tenant: String = row.get(0);
    let agent: String = row.get(1);
    let key = format!("{tenant}/{agent}");
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let signature: Vec<u8> = row.get(6);
    Ok(StoredBatch {
        tenant: TenantId::new(&tenant).map_err(|e| corrupt(e.to_string()))?,
        agent: AgentId::new(&agent).map_err(|e| corrupt(e.to_string()))?,
        sequence: to_u64(row.get(2)),
        received_ms: to_u64(row.get(3)),
        records: u32::try_from(row.get::<_, i32>(4)).unwrap_or(0),
        body: row.get(5),
        signature: signature
            .try_into()
            .map_err(|_| corrupt("signature must be 64 bytes".into()))?,
    })
}

const BATCH_COLUMNS: &str = "tenant_id, agent_id, sequence, received_ms, records, body, signature";

impl PgStore {
    /// A store over a migrated pool.
    pub fn new(pool: Arc<PgPool>) -> Self {
        Self { pool }
    }

    /// The connection pool (shared with the findings store and locks).
    pub fn pool(&self) -> &Arc<PgPool> {
        &self.pool
    }

    /// Inserts `value` under (tenant, key) unless present; returns what is stored.
    fn init_meta(&self, tenant: &str, key: &str, value: &[u8]) -> StoreResult<Vec<u8>> {
        let c = self.pool.get().map_err(db)?;
        wait(c.execute(
            "INSERT INTO meta (tenant_id, key, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&tenant, &key, &value],
        ))
        .map_err(db)?;
        let row = wait(c.query_one(
            "SELECT value FROM meta WHERE tenant_id = $1 AND key = $2",
            &[&tenant, &key],
        ))
        .map_err(db)?;
        Ok(row.get(0))
    }

    fn meta(&self, tenant: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let c = self.pool.get().map_err(db)?;
        let row = wait(c.query_opt(
            "SELECT value FROM meta WHERE tenant_id = $1 AND key = $2",
            &[&tenant, &key],
        ))
        .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn runs_where(
        &self,
        clause: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<Vec<RunRecord>> {
        let c = self.pool.get().map_err(db)?;
        let rows = wait(c.query(&format!("SELECT run_id, record FROM runs {clause}"), params))
            .map_err(db)?;
        rows.iter()
            .map(|r| from_json(r.get::<_, &str>(0), r.get(1)))
            .collect()
    }

    /// Highest sequence of an agent published to JetStream and acknowledged.
    pub fn published(&self, tenant: &TenantId, agent: &AgentId) -> StoreResult<u64> {
        let c = self.pool.get().map_err(db)?;
        let row = wait(c.query_opt(
            "SELECT last_sequence FROM published WHERE tenant_id = $1 AND agent_id = $2",
            &[&tenant.as_str(), &agent.as_str()],
        ))
        .map_err(db)?;
        Ok(row.map(|r| to_u64(r.get(0))).unwrap_or(0))
    }

    /// Raises the published high-water mark of an agent (never lowers it).
    pub fn set_published(&self, tenant: &TenantId, agent: &AgentId, seq: u64) -> StoreResult<()> {
        let c = self.pool.get().map_err(db)?;
        wait(c.execute(
            "INSERT INTO published (tenant_id, agent_id, last_sequence) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, agent_id) DO UPDATE
             SET last_sequence = GREATEST(published.last_sequence, EXCLUDED.last_sequence)",
            &[&tenant.as_str(), &agent.as_str(), &to_i64(seq)],
        ))
        .map_err(db)?;
        Ok(())
    }
}

impl Store for PgStore {
    fn server_ca(&self) -> StoreResult<Option<StoredCa>> {
        self.meta(COLLECTOR_TENANT, "server_ca")?
            .map(|v| decode("server_ca", &v))
            .transpose()
    }

    fn init_server_ca(&self, ca: StoredCa) -> StoreResult<StoredCa> {
        let stored = self.init_meta(COLLECTOR_TENANT, "server_ca", &encode(&ca)?)?;
        decode("server_ca", &stored)
    }

    fn secret(&self, name: &str, init: [u8; 32]) -> StoreResult<[u8; 32]> {
        let key = format!("secret/{name}");
        let stored = self.init_meta(COLLECTOR_TENANT, &key, &init)?;
        stored.try_into().map_err(|_| StoreError::Corrupt {
            key,
            reason: "secret must be 32 bytes".into(),
        })
    }

    fn tenant_ca(&self, tenant: &TenantId) -> StoreResult<Option<StoredCa>> {
        self.meta(tenant.as_str(), "tenant_ca")?
            .map(|v| decode(tenant.as_str(), &v))
            .transpose()
    }

    fn init_tenant_ca(&self, tenant: &TenantId, ca: StoredCa) -> StoreResult<StoredCa> {
        let stored = self.init_meta(tenant.as_str(), "tenant_ca", &encode(&ca)?)?;
        decode(tenant.as_str(), &stored)
    }

    fn put_token(&self, hash: [u8; 32], token: &TokenRecord) -> StoreResult<()> {
        let c = self.pool.get().map_err(db)?;
        wait(c.execute(
            "INSERT INTO tokens (tenant_id, hash, record) VALUES ($1, $2, $3)
             ON CONFLICT (hash) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, record = EXCLUDED.record",
            &[&token.tenant.as_str(), &&hash[..], &json(token)?],
        ))
        .map_err(db)?;
        Ok(())
    }

    fn consume_token(&self, hash: [u8; 32], now_ms: u64) -> StoreResult<TokenRecord> {
        // DELETE … RETURNING is atomic: of two racing enrolments, one gets the row.
        let c = self.pool.get().map_err(db)?;
        let row = wait(c.query_opt(
            "DELETE FROM tokens WHERE hash = $1 RETURNING record",
            &[&&hash[..]],
        ))
        .map_err(db)?
        .ok_or(StoreError::InvalidToken)?;
        let token: TokenRecord = from_json("token", row.get(0))?;
        if token.expires_ms <= now_ms {
            return Err(StoreError::InvalidToken);
        }
        Ok(token)
    }

    fn put_agent(&self, agent: &AgentRecord) -> StoreResult<()> {
        let c = self.pool.get().map_err(db)?;
        wait(c.execute(
            "INSERT INTO agents (tenant_id, agent_id, record) VALUES ($1, $2, $3)
             ON CONFLICT (agent_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, record = EXCLUDED.record",
            &[&agent.tenant.as_str(), &agent.agent.as_str(), &json(agent)?],
        ))
        .map_err(db)?;
        Ok(())
    }

    fn agent(&self, agent: &AgentId) -> StoreResult<Option<AgentRecord>> {
        let c = self.pool.get().map_err(db)?;
        wait(c.query_opt(
            "SELECT record FROM agents WHERE agent_id = $1",
            &[&agent.as_str()],
        ))
        .map_err(db)?
        .map(|r| from_json(agent.as_str(), r.get(0)))
        .transpose()
    }

    fn agents(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<AgentRecord>> {
        let c = self.pool.get().map_err(db)?;
        let rows = match tenant {
            Some(t) => wait(c.query(
                "SELECT agent_id, record FROM agents WHERE tenant_id = $1 ORDER BY agent_id",
                &[&t.as_str()],
            )),
            None => wait(c.query("SELECT agent_id, record FROM agents ORDER BY agent_id", &[])),
        }
        .map_err(db)?;
        rows.iter()
            .map(|r| from_json(r.get::<_, &str>(0), r.get(1)))
            .collect()
    }

    fn revoke_agent(&self, agent: &AgentId, now_ms: u64) -> StoreResult<AgentRecord> {
        let mut rec = self
            .agent(agent)?
            .ok_or_else(|| StoreError::UnknownAgent(agent.to_string()))?;
        rec.revoked_ms.get_or_insert(now_ms);
        self.put_agent(&rec)?;
        Ok(rec)
    }

    fn delivery(&self, tenant: &TenantId, agent: &AgentId) -> StoreResult<DeliveryCounts> {
        let c = self.pool.get().map_err(db)?;
        let row = wait(c.query_opt(
            "SELECT last_sequence, batches, records FROM deliveries
             WHERE tenant_id = $1 AND agent_id = $2",
            &[&tenant.as_str(), &agent.as_str()],
        ))
        .map_err(db)?;
        Ok(row
            .map(|r| DeliveryCounts {
                last_sequence: to_u64(r.get(0)),
                batches: to_u64(r.get(1)),
                records: to_u64(r.get(2)),
            })
            .unwrap_or_default())
    }

    fn store_batch(&self, batch: &StoredBatch) -> StoreResult<BatchOutcome> {
        let (tenant, agent) = (batch.tenant.as_str(), batch.agent.as_str());
        let seq = to_i64(batch.sequence);
        let mut c = self.pool.get().map_err(db)?;
        loop {
            let attempt = (|| -> Result<BatchOutcome, tokio_postgres::Error> {
                let tx = wait(c.transaction())?;
                wait(tx.execute(
                    "INSERT INTO deliveries (tenant_id, agent_id, last_sequence, batches, records)
                     VALUES ($1, $2, 0, 0, 0) ON CONFLICT DO NOTHING",
                    &[&tenant, &agent],
                ))?;
                // The row lock orders concurrent writers of one agent.
                let last: i64 = wait(tx.query_one(
                    "SELECT last_sequence FROM deliveries
                     WHERE tenant_id = $1 AND agent_id = $2 FOR UPDATE",
                    &[&tenant, &agent],
                ))?
                .get(0);
                if seq <= last {
                    wait(tx.commit())?;
                    return Ok(BatchOutcome::Duplicate);
                }
                wait(tx.execute(
                    "INSERT INTO batches (tenant_id, agent_id, sequence, received_ms, records, body, signature)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &tenant,
                        &agent,
                        &seq,
                        &to_i64(batch.received_ms),
                        &i32::try_from(batch.records).unwrap_or(i32::MAX),
                        &batch.body,
                        &&batch.signature[..],
                    ],
                ))?;
                wait(tx.execute(
                    "UPDATE deliveries SET last_sequence = $3, batches = batches + 1,
                     records = records + $4 WHERE tenant_id = $1 AND agent_id = $2",
                    &[&tenant, &agent, &seq, &i64::from(batch.records)],
                ))?;
                wait(tx.commit())?;
                Ok(BatchOutcome::Stored)
            })();
            match attempt {
                Err(e) if is_retryable(&e) => continue,
                other => return other.map_err(db),
            }
        }
    }

    fn flush(&self) -> StoreResult<()> {
        // Every statement commits durably before it returns.
        Ok(())
    }

    fn try_lock_schedule(
        &self,
        tenant: &TenantId,
        job_id: &str,
    ) -> StoreResult<Option<Box<dyn Send>>> {
        let lock = super::AdvisoryLock::try_acquire(
            &self.pool,
            tenant.as_str(),
            &format!("schedule/{job_id}"),
        )
        .map_err(db)?;
        Ok(lock.map(|l| Box::new(l) as Box<dyn Send>))
    }

    fn batches(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        from: u64,
    ) -> StoreResult<Vec<StoredBatch>> {
        self.batches_from(tenant, agent, from, usize::MAX)
    }

    fn batches_from(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        from: u64,
        max: usize,
    ) -> StoreResult<Vec<StoredBatch>> {
        let c = self.pool.get().map_err(db)?;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = wait(c.query(
            &format!(
                "SELECT {BATCH_COLUMNS} FROM batches
                 WHERE tenant_id = $1 AND agent_id = $2 AND sequence >= $3
                 ORDER BY sequence LIMIT $4"
            ),
            &[&tenant.as_str(), &agent.as_str(), &to_i64(from), &limit],
        ))
        .map_err(db)?;
        rows.iter().map(batch_from_row).collect()
    }

    fn all_deliveries(&self) -> StoreResult<Vec<(TenantId, AgentId, DeliveryCounts)>> {
        let c = self.pool.get().map_err(db)?;
        let rows = wait(c.query(
            "SELECT tenant_id, agent_id, last_sequence, batches, records FROM deliveries
             ORDER BY tenant_id, agent_id",
            &[],
        ))
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let (t, a): (&str, &str) = (r.get(0), r.get(1));
                let corrupt = |e: String| StoreError::Corrupt {
                    key: format!("{t}/{a}"),
                    reason: e,
                };
                Ok((
                    TenantId::new(t).map_err(|e| corrupt(e.to_string()))?,
                    AgentId::new(a).map_err(|e| corrupt(e.to_string()))?,
                    DeliveryCounts {
                        last_sequence: to_u64(r.get(2)),
                        batches: to_u64(r.get(3)),
                        records: to_u64(r.get(4)),
                    },
                ))
            })
            .collect()
    }

    fn put_run(&self, run: &RunRecord) -> StoreResult<()> {
        let c = self.pool.get().map_err(db)?;
        wait(c.execute(
            "INSERT INTO runs (tenant_id, run_id, agent_id, pending, scheduled_ms, record)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (run_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,
               agent_id = EXCLUDED.agent_id, pending = EXCLUDED.pending,
               scheduled_ms = EXCLUDED.scheduled_ms, record = EXCLUDED.record",
            &[
                &run.tenant.as_str(),
                &run.run_id,
                &run.agent.as_str(),
                &run.status.is_pending(),
                &to_i64(run.scheduled_ms),
                &json(run)?,
            ],
        ))
        .map_err(db)?;
        Ok(())
    }

    fn update_run(
        &self,
        run_id: &str,
        change: &mut dyn FnMut(&mut RunRecord) -> bool,
    ) -> StoreResult<Option<RunRecord>> {
        let mut c = self.pool.get().map_err(db)?;
        let tx = wait(c.transaction()).map_err(db)?;
        let Some(row) = wait(tx.query_opt(
            "SELECT record FROM runs WHERE run_id = $1 FOR UPDATE",
            &[&run_id],
        ))
        .map_err(db)?
        else {
            return Ok(None);
        };
        let mut run: RunRecord = from_json(run_id, row.get(0))?;
        if !change(&mut run) {
            return Ok(Some(run));
        }
        wait(tx.execute(
            "UPDATE runs SET pending = $2, record = $3 WHERE run_id = $1",
            &[&run_id, &run.status.is_pending(), &json(&run)?],
        ))
        .map_err(db)?;
        wait(tx.commit()).map_err(db)?;
        Ok(Some(run))
    }

    fn run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        Ok(self
            .runs_where("WHERE run_id = $1", &[&run_id])?
            .into_iter()
            .next())
    }

    fn runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        let tenant = filter.tenant.as_ref().map(|t| t.as_str());
        let agent = filter.agent.as_ref().map(|a| a.as_str());
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        self.runs_where(
            "WHERE ($1::text IS NULL OR tenant_id = $1)
               AND ($2::text IS NULL OR agent_id = $2)
             ORDER BY run_id DESC LIMIT $3",
            &[&tenant, &agent, &limit],
        )
    }

    fn pending_runs(&self, agent: Option<&AgentId>) -> StoreResult<Vec<RunRecord>> {
        let agent = agent.map(|a| a.as_str());
        self.runs_where(
            "WHERE pending AND ($1::text IS NULL OR agent_id = $1) ORDER BY run_id",
            &[&agent],
        )
    }

    fn prune_runs(&self, before_ms: u64) -> StoreResult<usize> {
        let c = self.pool.get().map_err(db)?;
        let n = wait(c.execute(
            "DELETE FROM runs WHERE NOT pending AND scheduled_ms < $1",
            &[&to_i64(before_ms)],
        ))
        .map_err(db)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn schedule_cursor(&self, tenant: &TenantId, job_id: &str) -> StoreResult<Option<u64>> {
        let c = self.pool.get().map_err(db)?;
        let row = wait(c.query_opt(
            "SELECT at_ms FROM schedule_cursors WHERE tenant_id = $1 AND job_id = $2",
            &[&tenant.as_str(), &job_id],
        ))
        .map_err(db)?;
        Ok(row.map(|r| to_u64(r.get(0))))
    }

    fn set_schedule_cursor(&self, tenant: &TenantId, job_id: &str, at_ms: u64) -> StoreResult<()> {
        let c = self.pool.get().map_err(db)?;
        wait(c.execute(
            "INSERT INTO schedule_cursors (tenant_id, job_id, at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, job_id) DO UPDATE SET at_ms = EXCLUDED.at_ms",
            &[&tenant.as_str(), &job_id, &to_i64(at_ms)],
        ))
        .map_err(db)?;
        Ok(())
    }
}
