//! The embedded sled backend.

use std::path::Path;

use protocol::{AgentId, TenantId};
use serde::{Serialize, de::DeserializeOwned};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    AgentRecord, BatchOutcome, DeliveryCounts, RunFilter, RunRecord, Store, StoreError,
    StoreResult, StoredBatch, StoredCa, TokenRecord,
};

const SERVER_CA_KEY: &[u8] = b"server_ca";

/// Collector state in a sled database directory.
pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    tenant_cas: sled::Tree,
    tokens: sled::Tree,
    agents: sled::Tree,
    batches: sled::Tree,
    delivery: sled::Tree,
    /// Scan runs by run id (ids sort by due time).
    runs: sled::Tree,
    /// Index of queued and running runs: `{agent}/{run_id}` → empty.
    runs_pending: sled::Tree,
    /// Schedule evaluation progress: `{tenant}/{job_id}` → u64 ms, big-endian.
    schedule_cursors: sled::Tree,
}

fn pending_key(run: &RunRecord) -> Vec<u8> {
    format!("{}/{}", run.agent, run.run_id).into_bytes()
}

fn cursor_key(tenant: &TenantId, job_id: &str) -> Vec<u8> {
    format!("{tenant}/{job_id}").into_bytes()
}

fn txn_result<T>(r: Result<T, TransactionError<StoreError>>) -> StoreResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(backend(e)),
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(backend)
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn pair_key(tenant: &TenantId, agent: &AgentId) -> Vec<u8> {
    // Identifiers cannot contain '/', so the key is unambiguous and sorts per agent.
    format!("{tenant}/{agent}/").into_bytes()
}

fn batch_key(tenant: &TenantId, agent: &AgentId, seq: u64) -> Vec<u8> {
    let mut k = pair_key(tenant, agent);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

const BATCH_HEADER: usize = 4 + 8 + 64;

fn encode_batch_value(b: &StoredBatch) -> Vec<u8> {
    let mut v = Vec::with_capacity(BATCH_HEADER + b.body.len());
    v.extend_from_slice(&b.records.to_be_bytes());
    v.extend_from_slice(&b.received_ms.to_be_bytes());
    v.extend_from_slice(&b.signature);
    v.extend_from_slice(&b.body);
    v
}

fn decode_batch_value(
    tenant: &TenantId,
    agent: &AgentId,
    key: &[u8],
    v: &[u8],
) -> StoreResult<StoredBatch> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    };
    if v.len() < BATCH_HEADER || key.len() < 8 {
        return Err(corrupt("batch value too short"));
    }
    let seq_bytes: [u8; 8] = key[key.len() - 8..]
        .try_into()
        .map_err(|_| corrupt("bad key"))?;
    let records = u32::from_be_bytes(v[0..4].try_into().map_err(|_| corrupt("bad header"))?);
    let received_ms = u64::from_be_bytes(v[4..12].try_into().map_err(|_| corrupt("bad header"))?);
    let signature: [u8; 64] = v[12..76].try_into().map_err(|_| corrupt("bad signature"))?;
    Ok(StoredBatch {
        tenant: tenant.clone(),
        agent: agent.clone(),
        sequence: u64::from_be_bytes(seq_bytes),
        received_ms,
        records,
        body: v[BATCH_HEADER..].to_vec(),
        signature,
    })
}

impl SledStore {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .open()
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", dir.display())))?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        Ok(Self {
            meta: tree("meta")?,
            tenant_cas: tree("tenant_ca")?,
            tokens: tree("tokens")?,
            agents: tree("agents")?,
            batches: tree("batches")?,
            delivery: tree("delivery")?,
            runs: tree("runs")?,
            runs_pending: tree("runs_pending")?,
            schedule_cursors: tree("schedule_cursors")?,
            db,
        })
    }

    fn init_once(&self, tree: &sled::Tree, key: &[u8], ca: StoredCa) -> StoreResult<StoredCa> {
        let bytes = encode(&ca)?;
        match tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(bytes))
            .map_err(backend)?
        {
            Ok(()) => Ok(ca),
            Err(cas) => match cas.current {
                Some(existing) => decode(key, &existing),
                None => Err(StoreError::Backend("CA vanished during creation".into())),
            },
        }
    }
}

impl Store for SledStore {
    fn server_ca(&self) -> StoreResult<Option<StoredCa>> {
        self.meta
            .get(SERVER_CA_KEY)
            .map_err(backend)?
            .map(|v| decode(SERVER_CA_KEY, &v))
            .transpose()
    }

    fn init_server_ca(&self, ca: StoredCa) -> StoreResult<StoredCa> {
        self.init_once(&self.meta, SERVER_CA_KEY, ca)
    }

    fn secret(&self, name: &str, init: [u8; 32]) -> StoreResult<[u8; 32]> {
        let key = format!("secret/{name}");
        let current = match self
            .meta
            .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(&init[..]))
            .map_err(backend)?
        {
            Ok(()) => return Ok(init),
            Err(cas) => cas.current,
        };
        current
            .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok())
            .ok_or_else(|| StoreError::Corrupt {
                key,
                reason: "secret must be 32 bytes".into(),
            })
    }

    fn tenant_ca(&self, tenant: &TenantId) -> StoreResult<Option<StoredCa>> {
        let key = tenant.as_str().as_bytes();
        self.tenant_cas
            .get(key)
            .map_err(backend)?
            .map(|v| decode(key, &v))
            .transpose()
    }

    fn init_tenant_ca(&self, tenant: &TenantId, ca: StoredCa) -> StoreResult<StoredCa> {
        self.init_once(&self.tenant_cas, tenant.as_str().as_bytes(), ca)
    }

    fn put_token(&self, hash: [u8; 32], token: &TokenRecord) -> StoreResult<()> {
        self.tokens.insert(hash, encode(token)?).map_err(backend)?;
        Ok(())
    }

    fn consume_token(&self, hash: [u8; 32], now_ms: u64) -> StoreResult<TokenRecord> {
        // remove() is atomic: of two agents racing with one token, exactly one gets it.
        let Some(bytes) = self.tokens.remove(hash).map_err(backend)? else {
            return Err(StoreError::InvalidToken);
        };
        let token: TokenRecord = decode(&hash, &bytes)?;
        if token.expires_ms <= now_ms {
            return Err(StoreError::InvalidToken);
        }
        Ok(token)
    }

    fn put_agent(&self, agent: &AgentRecord) -> StoreResult<()> {
        self.agents
            .insert(agent.agent.as_str(), encode(agent)?)
            .map_err(backend)?;
        Ok(())
    }

    fn agent(&self, agent: &AgentId) -> StoreResult<Option<AgentRecord>> {
        let key = agent.as_str().as_bytes();
        self.agents
            .get(key)
            .map_err(backend)?
            .map(|v| decode(key, &v))
            .transpose()
    }

    fn agents(&self, tenant: Option<&TenantId>) -> StoreResult<Vec<AgentRecord>> {
        let mut out = Vec::new();
        for item in self.agents.iter() {
            let (k, v) = item.map_err(backend)?;
            let rec: AgentRecord = decode(&k, &v)?;
            if tenant.is_none_or(|t| *t == rec.tenant) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn revoke_agent(&self, agent: &AgentId, now_ms: u64) -> StoreResult<AgentRecord> {
        let mut rec = self
            .agent(agent)?
            .ok_or_else(|| StoreError::UnknownAgent(agent.to_string()))?;
        rec.revoked_ms.get_or_insert(now_ms);
        self.put_agent(&rec)?;
        self.flush()?;
        Ok(rec)
    }

    fn delivery(&self, tenant: &TenantId, agent: &AgentId) -> StoreResult<DeliveryCounts> {
        let key = pair_key(tenant, agent);
        Ok(self
            .delivery
            .get(&key)
            .map_err(backend)?
            .map(|v| decode(&key, &v))
            .transpose()?
            .unwrap_or_default())
    }

    fn store_batch(&self, batch: &StoredBatch) -> StoreResult<BatchOutcome> {
        let dkey = pair_key(&batch.tenant, &batch.agent);
        let bkey = batch_key(&batch.tenant, &batch.agent, batch.sequence);
        let value = encode_batch_value(batch);
        let _gate = super::flush_gate::transaction();
        let result = (&self.batches, &self.delivery).transaction(|(batches, delivery)| {
            let mut counts: DeliveryCounts = match delivery.get(&dkey)? {
                Some(v) => decode(&dkey, &v).map_err(ConflictableTransactionError::Abort)?,
                None => DeliveryCounts::default(),
            };
            if batch.sequence <= counts.last_sequence {
                return Ok(BatchOutcome::Duplicate);
            }
            batches.insert(bkey.as_slice(), value.as_slice())?;
            counts.last_sequence = batch.sequence;
            counts.batches += 1;
            counts.records += u64::from(batch.records);
            let encoded = encode(&counts).map_err(ConflictableTransactionError::Abort)?;
            delivery.insert(dkey.as_slice(), encoded)?;
            Ok(BatchOutcome::Stored)
        });
        match result {
            Ok(outcome) => Ok(outcome),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }

    fn flush(&self) -> StoreResult<()> {
        let _gate = super::flush_gate::flush();
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    fn batches(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        from: u64,
    ) -> StoreResult<Vec<StoredBatch>> {
        let start = batch_key(tenant, agent, from);
        let end = batch_key(tenant, agent, u64::MAX);
        let mut out = Vec::new();
        for item in self.batches.range(start..=end) {
            let (k, v) = item.map_err(backend)?;
            out.push(decode_batch_value(tenant, agent, &k, &v)?);
        }
        Ok(out)
    }

    fn batches_from(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        from: u64,
        max: usize,
    ) -> StoreResult<Vec<StoredBatch>> {
        let start = batch_key(tenant, agent, from);
        let end = batch_key(tenant, agent, u64::MAX);
        let mut out = Vec::new();
        for item in self.batches.range(start..=end).take(max) {
            let (k, v) = item.map_err(backend)?;
            out.push(decode_batch_value(tenant, agent, &k, &v)?);
        }
        Ok(out)
    }

    fn sled_db(&self) -> Option<sled::Db> {
        Some(self.db.clone())
    }

    fn all_deliveries(&self) -> StoreResult<Vec<(TenantId, AgentId, DeliveryCounts)>> {
        let mut out = Vec::new();
        for item in self.delivery.iter() {
            let (k, v) = item.map_err(backend)?;
            let text = String::from_utf8_lossy(&k).into_owned();
            let mut parts = text.split('/');
            let (Some(t), Some(a)) = (parts.next(), parts.next()) else {
                return Err(StoreError::Corrupt {
                    key: text,
                    reason: "bad delivery key".into(),
                });
            };
            let tenant = TenantId::new(t).map_err(backend)?;
            let agent = AgentId::new(a).map_err(backend)?;
            out.push((tenant, agent, decode(&k, &v)?));
        }
        Ok(out)
    }

    fn put_run(&self, run: &RunRecord) -> StoreResult<()> {
        let value = encode(run)?;
        let pkey = pending_key(run);
        let pending = run.status.is_pending();
        txn_result((&self.runs, &self.runs_pending).transaction(|(runs, idx)| {
            runs.insert(run.run_id.as_bytes(), value.as_slice())?;
            if pending {
                idx.insert(pkey.as_slice(), &[][..])?;
            } else {
                idx.remove(pkey.as_slice())?;
            }
            Ok(())
        }))
    }

    fn update_run(
        &self,
        run_id: &str,
        change: &mut dyn FnMut(&mut RunRecord) -> bool,
    ) -> StoreResult<Option<RunRecord>> {
        let key = run_id.as_bytes();
        // A transaction body may run more than once; RefCell lets the FnMut be
        // called from the Fn closure sled requires.
        let change = std::cell::RefCell::new(change);
        txn_result((&self.runs, &self.runs_pending).transaction(|(runs, idx)| {
            let Some(bytes) = runs.get(key)? else {
                return Ok(None);
            };
            let mut run: RunRecord =
                decode(key, &bytes).map_err(ConflictableTransactionError::Abort)?;
            if !(change.borrow_mut())(&mut run) {
                return Ok(Some(run));
            }
            let value = encode(&run).map_err(ConflictableTransactionError::Abort)?;
            runs.insert(key, value)?;
            let pkey = pending_key(&run);
            if run.status.is_pending() {
                idx.insert(pkey, &[][..])?;
            } else {
                idx.remove(pkey)?;
            }
            Ok(Some(run))
        }))
    }

    fn run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        let key = run_id.as_bytes();
        self.runs
            .get(key)
            .map_err(backend)?
            .map(|v| decode(key, &v))
            .transpose()
    }

    fn runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        let mut out = Vec::new();
        for item in self.runs.iter().rev() {
            if filter.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let (k, v) = item.map_err(backend)?;
            let run: RunRecord = decode(&k, &v)?;
            if filter.tenant.as_ref().is_none_or(|t| *t == run.tenant)
                && filter.agent.as_ref().is_none_or(|a| *a == run.agent)
            {
                out.push(run);
            }
        }
        Ok(out)
    }

    fn pending_runs(&self, agent: Option<&AgentId>) -> StoreResult<Vec<RunRecord>> {
        let prefix = agent.map(|a| format!("{a}/")).unwrap_or_default();
        let mut out = Vec::new();
        for item in self.runs_pending.scan_prefix(prefix.as_bytes()) {
            let (k, _) = item.map_err(backend)?;
            let text = String::from_utf8_lossy(&k).into_owned();
            let Some((_, run_id)) = text.split_once('/') else {
                return Err(StoreError::Corrupt {
                    key: text,
                    reason: "bad pending-run key".into(),
                });
            };
            // A stale index entry (run deleted) is skipped rather than fatal.
            if let Some(run) = self.run(run_id)?
                && run.status.is_pending()
            {
                out.push(run);
            }
        }
        out.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(out)
    }

    fn prune_runs(&self, before_ms: u64) -> StoreResult<usize> {
        let mut removed = 0;
        for item in self.runs.iter() {
            let (k, v) = item.map_err(backend)?;
            let run: RunRecord = decode(&k, &v)?;
            if run.scheduled_ms >= before_ms {
                // Ids sort by due time: everything after this is newer.
                break;
            }
            if !run.status.is_pending() {
                self.runs.remove(&k).map_err(backend)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn schedule_cursor(&self, tenant: &TenantId, job_id: &str) -> StoreResult<Option<u64>> {
        let key = cursor_key(tenant, job_id);
        match self.schedule_cursors.get(&key).map_err(backend)? {
            None => Ok(None),
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(|b| Some(u64::from_be_bytes(b)))
                .map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "schedule cursor must be 8 bytes".into(),
                }),
        }
    }

    fn set_schedule_cursor(&self, tenant: &TenantId, job_id: &str, at_ms: u64) -> StoreResult<()> {
        self.schedule_cursors
            .insert(cursor_key(tenant, job_id), &at_ms.to_be_bytes())
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (TenantId, AgentId) {
        (
            TenantId::new("acme").unwrap(),
            AgentId::new("ag-1").unwrap(),
        )
    }

    fn batch(seq: u64) -> StoredBatch {
        let (tenant, agent) = ids();
        StoredBatch {
            tenant,
            agent,
            sequence: seq,
            received_ms: 10,
            records: 3,
            body: vec![seq as u8; 5],
            signature: [9; 64],
        }
    }

    #[test]
    fn batches_dedupe_by_sequence_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            assert_eq!(s.store_batch(&batch(1)).unwrap(), BatchOutcome::Stored);
            assert_eq!(s.store_batch(&batch(2)).unwrap(), BatchOutcome::Stored);
            assert_eq!(s.store_batch(&batch(2)).unwrap(), BatchOutcome::Duplicate);
            assert_eq!(s.store_batch(&batch(1)).unwrap(), BatchOutcome::Duplicate);
            s.flush().unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        let (t, a) = ids();
        let d = s.delivery(&t, &a).unwrap();
        assert_eq!((d.last_sequence, d.batches, d.records), (2, 2, 6));
        let stored = s.batches(&t, &a, 0).unwrap();
        assert_eq!(stored, vec![batch(1), batch(2)]);
        assert_eq!(s.batches(&t, &a, 2).unwrap(), vec![batch(2)]);
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let rec = TokenRecord {
            tenant: ids().0,
            created_ms: 0,
            expires_ms: 100,
        };
        s.put_token([1; 32], &rec).unwrap();
        s.put_token([2; 32], &rec).unwrap();
        assert_eq!(s.consume_token([1; 32], 50).unwrap(), rec);
        assert!(matches!(
            s.consume_token([1; 32], 50),
            Err(StoreError::InvalidToken)
        ));
        assert!(matches!(
            s.consume_token([2; 32], 100),
            Err(StoreError::InvalidToken)
        ));
    }

    #[test]
    fn ca_init_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let a = StoredCa {
            cert_der: vec![1],
            key_pkcs8: vec![2],
        };
        let b = StoredCa {
            cert_der: vec![3],
            key_pkcs8: vec![4],
        };
        assert_eq!(s.init_tenant_ca(&ids().0, a.clone()).unwrap(), a);
        assert_eq!(s.init_tenant_ca(&ids().0, b).unwrap(), a);
        assert_eq!(s.tenant_ca(&ids().0).unwrap(), Some(a));
    }
}
