//! Report metadata and the generation queue in sled: `rp_reports` maps
//! `tenant/id` to [`ReportMeta`] JSON, `rp_queue` maps a monotonic sequence
//! number to `tenant/id`. A queue entry is removed only once its report is
//! done or failed, so a report queued or running at a crash is generated after
//! the restart.

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::{ReportError, ReportMeta};

const REPORTS: &str = "rp_reports";
const QUEUE: &str = "rp_queue";

/// The sled trees of reports.
#[derive(Clone)]
pub struct ReportStore {
    db: sled::Db,
    reports: sled::Tree,
    queue: sled::Tree,
}

fn key(tenant: &str, id: &str) -> Vec<u8> {
    format!("{tenant}/{id}").into_bytes()
}

fn decode(k: &[u8], v: &[u8]) -> Result<ReportMeta, ReportError> {
    serde_json::from_slice(v)
        .map_err(|e| ReportError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(k))))
}

fn encode(m: &ReportMeta) -> Result<Vec<u8>, ReportError> {
    serde_json::to_vec(m).map_err(|e| ReportError::Storage(e.to_string()))
}

impl ReportStore {
    /// Opens (creating) the trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, ReportError> {
        Ok(Self {
            db: db.clone(),
            reports: db.open_tree(REPORTS)?,
            queue: db.open_tree(QUEUE)?,
        })
    }

    /// Stores a new report and queues it, atomically.
    pub fn enqueue(&self, meta: &ReportMeta) -> Result<(), ReportError> {
        let seq = self.db.generate_id()?;
        let k = key(&meta.tenant, &meta.id);
        let v = encode(meta)?;
        (&self.reports, &self.queue)
            .transaction(|(reports, queue)| {
                reports.insert(k.as_slice(), v.as_slice())?;
                queue.insert(&seq.to_be_bytes(), k.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| ReportError::Storage(format!("{e:?}")))?;
        self.db.flush()?;
        Ok(())
    }

    /// One report of a tenant.
    pub fn get(&self, tenant: &str, id: &str) -> Result<Option<ReportMeta>, ReportError> {
        let k = key(tenant, id);
        self.reports.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Replaces a report's metadata.
    pub fn put(&self, meta: &ReportMeta) -> Result<(), ReportError> {
        self.reports
            .insert(key(&meta.tenant, &meta.id), encode(meta)?)?;
        Ok(())
    }

    /// Reports of a tenant, newest first.
    pub fn list(&self, tenant: &str) -> Result<Vec<ReportMeta>, ReportError> {
        let mut out = Vec::new();
        for kv in self.reports.scan_prefix(format!("{tenant}/")) {
            let (k, v) = kv?;
            out.push(decode(&k, &v)?);
        }
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Every report of every tenant.
    pub fn all(&self) -> Result<Vec<ReportMeta>, ReportError> {
        let mut out = Vec::new();
        for kv in self.reports.iter() {
            let (k, v) = kv?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Deletes a report's metadata.
    pub fn remove(&self, tenant: &str, id: &str) -> Result<(), ReportError> {
        self.reports.remove(key(tenant, id))?;
        Ok(())
    }

    /// The oldest queue entry: its sequence key and `(tenant, id)`.
    pub fn head(&self) -> Result<Option<(sled::IVec, String, String)>, ReportError> {
        let Some((seq, v)) = self.queue.first()? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&v).into_owned();
        let (tenant, id) = text.split_once('/').unwrap_or((&text, ""));
        Ok(Some((seq, tenant.to_string(), id.to_string())))
    }

    /// Removes a queue entry.
    pub fn dequeue(&self, seq: &[u8]) -> Result<(), ReportError> {
        self.queue.remove(seq)?;
        self.db.flush()?;
        Ok(())
    }

    /// Entries waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }
}
