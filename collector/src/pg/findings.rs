//! [`FindingStore`] on PostgreSQL.
//!
//! Spaces are rows of one `fx_kv` table (`space`, full key as bytea so scans
//! keep sled's byte order); `tenant_id` is parsed from the tenant-prefixed key
//! and stored and filtered on every row. Transactions run SERIALIZABLE and are
//! retried on serialization failures, which is what the trait's "`f` may run
//! more than once" allows. Writes to the findings space also maintain the
//! full-text `finding_search` table in the same transaction.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio_postgres::IsolationLevel;

use super::{PgPool, is_retryable, to_i64, wait};
use crate::findings::FindingRecord;
use crate::findings::store::{Entries, FindingError, FindingStore, FindingTx, Space};
use crate::search::severity_rank;

/// Transaction attempts before a persistent conflict is reported.
const MAX_ATTEMPTS: usize = 50;

/// Findings state in the PostgreSQL schema of a [`PgPool`].
pub struct PgFindingStore {
    pool: Arc<PgPool>,
    // Monthly search partitions known to exist (created on demand).
    partitions: Mutex<HashSet<String>>,
    // Months a transaction found without a partition; created between attempts.
    missing: Mutex<Vec<u64>>,
}

fn backend(e: impl std::fmt::Display) -> FindingError {
    FindingError::Backend(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod key_tenant_tests {
    use super::*;

    #[test]
    fn every_space_yields_the_tenant_of_its_keys() {
        assert_eq!(key_tenant(Space::Findings, b"acme/f1"), "acme");
        assert_eq!(key_tenant(Space::Outbox, b"facme/f1"), "acme");
        let due = crate::alerts::due_key(1_700_000_000_000, "acme", "d1");
        assert_eq!(key_tenant(Space::AlertDue, &due), "acme");
        assert_eq!(
            key_tenant(
                Space::AlertDeliveries,
                &crate::alerts::delivery_key("acme", "d1")
            ),
            "acme"
        );
    }
}

impl crate::findings::pipeline::ExternalSearch for PgFindingStore {
    fn search_ids(
        &self,
        tenant: &str,
        query: &str,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<String>, FindingError> {
        let hits = super::search::search_findings(&self.pool, tenant, query, limit, now_ms)?;
        Ok(hits.into_iter().map(|h| h.id).collect())
    }
}

fn space_id(space: Space) -> i16 {
    space as i16
}

/// The tenant a key belongs to: the part before the first `/` (after the
/// one-byte document-kind prefix of index-outbox keys and the 8-byte due time
/// of pending alert deliveries), or the whole key.
pub fn key_tenant(space: Space, key: &[u8]) -> String {
    let k = match space {
        Space::Outbox => key.get(1..).unwrap_or_default(),
        Space::AlertDue => key.get(8..).unwrap_or_default(),
        _ => key,
    };
    let t = k.split(|b| *b == b'/').next().unwrap_or_default();
    String::from_utf8_lossy(t).into_owned()
}

/// Smallest byte string greater than every string starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Start of the month containing `ms` and of the next one, as (name suffix, from, to).
fn month_bounds(ms: u64) -> (String, String, String) {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    use chrono::Datelike;
    let (y, m) = (dt.year(), dt.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (
        format!("{y:04}{m:02}"),
        format!("{y:04}-{m:02}-01 00:00:00+00"),
        format!("{ny:04}-{nm:02}-01 00:00:00+00"),
    )
}

impl PgFindingStore {
    /// A findings store over a migrated pool.
    pub fn new(pool: Arc<PgPool>) -> Self {
        Self {
            pool,
            partitions: Mutex::new(HashSet::new()),
            missing: Mutex::new(Vec::new()),
        }
    }

    /// Creates the search partition for the month of `first_seen_ms` unless known.
    fn ensure_partition(&self, first_seen_ms: u64) -> Result<(), FindingError> {
        let (suffix, from, to) = month_bounds(first_seen_ms);
        if lock(&self.partitions).contains(&suffix) {
            return Ok(());
        }
        // Its own transaction, never inside a findings transaction: creating a
        // partition locks the parent table exclusively, and a transaction that
        // already wrote to it would deadlock with its own DDL.
        let mut c = self.pool.get().map_err(backend)?;
        let tx = wait(c.transaction()).map_err(backend)?;
        wait(tx.execute("SELECT pg_advisory_xact_lock(7461001)", &[])).map_err(backend)?;
        // Bounds and names come from integers formatted above, never from input.
        wait(tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS finding_search_{suffix} PARTITION OF finding_search
             FOR VALUES FROM ('{from}') TO ('{to}')"
        )))
        .map_err(backend)?;
        wait(tx.commit()).map_err(backend)?;
        lock(&self.partitions).insert(suffix);
        Ok(())
    }
}

/// One search row to upsert, derived from a finding written in the transaction.
struct SearchRow {
    tenant: String,
    id: String,
    first_seen: std::time::SystemTime,
    last_seen_ms: i64,
    asset: String,
    rule_id: String,
    severity: String,
    rank: i16,
    state: String,
    check: String,
    job_id: String,
    port: Option<i32>,
    frameworks: String,
    controls: String,
    title: String,
    text: String,
}

/// Separator of the framework and control lists sent as one text per row
/// (PostgreSQL cannot unnest an array of arrays row by row).
const LIST_SEP: char = '\u{1f}';

fn search_row(key: &[u8], value: &[u8]) -> Result<SearchRow, FindingError> {
    let f: FindingRecord = crate::findings::dec(key, value)?;
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let severity = name(serde_json::to_value(f.severity));
    let join =
        |it: &mut dyn Iterator<Item = &str>| it.collect::<Vec<_>>().join(&LIST_SEP.to_string());
    Ok(SearchRow {
        tenant: key_tenant(Space::Findings, key),
        rank: severity_rank(&severity).unwrap_or(0) as i16,
        severity,
        state: name(serde_json::to_value(f.state)),
        frameworks: join(&mut f.mappings.iter().map(|m| m.framework.as_str())),
        controls: join(&mut f.mappings.iter().map(|m| m.control.as_str())),
        text: format!(
            "{} {} {} {} {}",
            f.title, f.evidence, f.location, f.asset, f.rule_id
        ),
        first_seen: std::time::UNIX_EPOCH + std::time::Duration::from_millis(f.first_seen_ms),
        last_seen_ms: to_i64(f.last_seen_ms),
        port: f.port.map(i32::from),
        id: f.id,
        asset: f.asset,
        rule_id: f.rule_id,
        check: f.check,
        job_id: f.job_id,
        title: f.title,
    })
}

/// Buffered writes of a transaction: (space, key) → value, None = removed.
type Writes = BTreeMap<(i16, Vec<u8>), Option<Vec<u8>>>;

/// A findings transaction: reads go to PostgreSQL (inside the SERIALIZABLE
/// transaction, after this transaction's own buffered writes), writes are
/// buffered and sent as a few set-based statements just before commit.
struct PgTx<'a> {
    tx: tokio_postgres::Transaction<'a>,
    store: &'a PgFindingStore,
    // (space, key) → new value, or None for a removal.
    writes: RefCell<Writes>,
}

impl PgTx<'_> {
    fn sql<T>(&self, r: Result<T, tokio_postgres::Error>) -> Result<T, FindingError> {
        r.map_err(|e| {
            if is_retryable(&e) {
                FindingError::Interrupted
            } else {
                backend(e)
            }
        })
    }

    fn partition_exists(&self, first_seen_ms: u64) -> Result<bool, FindingError> {
        let (suffix, _, _) = month_bounds(first_seen_ms);
        if lock(&self.store.partitions).contains(&suffix) {
            return Ok(true);
        }
        let name = format!("finding_search_{suffix}");
        let row = self.sql(wait(
            self.tx
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]),
        ))?;
        let exists: bool = row.get(0);
        if exists {
            lock(&self.store.partitions).insert(suffix);
        }
        Ok(exists)
    }

    /// Sends the buffered writes: upserts, removals and search rows.
    fn flush_writes(&self) -> Result<(), FindingError> {
        let writes = std::mem::take(&mut *self.writes.borrow_mut());
        let (mut ps, mut pt, mut pk, mut pv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut ds, mut dt, mut dk) = (Vec::new(), Vec::new(), Vec::new());
        let mut rows = Vec::new();
        let (mut gone_t, mut gone_id) = (Vec::new(), Vec::new());
        for ((space, key), value) in writes {
            let sp = Space::ALL[space as usize];
            let tenant = key_tenant(sp, &key);
            match value {
                Some(v) => {
                    if sp == Space::Findings {
                        rows.push(search_row(&key, &v)?);
                    }
                    ps.push(space);
                    pt.push(tenant);
                    pk.push(key);
                    pv.push(v);
                }
                None => {
                    if sp == Space::Findings {
                        let id = key.get(tenant.len() + 1..).unwrap_or_default();
                        gone_id.push(String::from_utf8_lossy(id).into_owned());
                        gone_t.push(tenant.clone());
                    }
                    ds.push(space);
                    dt.push(tenant);
                    dk.push(key);
                }
            }
        }
        if !ds.is_empty() {
            self.sql(wait(self.tx.execute(
                "DELETE FROM fx_kv f USING unnest($1::smallint[], $2::text[], $3::bytea[]) AS d(s, t, k)
                 WHERE f.space = d.s AND f.tenant_id = d.t AND f.key = d.k",
                &[&ds, &dt, &dk],
            )))?;
        }
        if !gone_id.is_empty() {
            self.sql(wait(self.tx.execute(
                "DELETE FROM finding_search f USING unnest($1::text[], $2::text[]) AS d(t, i)
                 WHERE f.tenant_id = d.t AND f.finding_id = d.i",
                &[&gone_t, &gone_id],
            )))?;
        }
        if !ps.is_empty() {
            self.sql(wait(self.tx.execute(
                "INSERT INTO fx_kv (space, tenant_id, key, value)
                 SELECT * FROM unnest($1::smallint[], $2::text[], $3::bytea[], $4::bytea[])
                 ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value",
                &[&ps, &pt, &pk, &pv],
            )))?;
        }
        if !rows.is_empty() {
            macro_rules! col {
                ($f:ident) => {
                    rows.iter().map(|r| r.$f.clone()).collect::<Vec<_>>()
                };
            }
            let sep = LIST_SEP.to_string();
            self.sql(wait(self.tx.execute(
                "INSERT INTO finding_search (tenant_id, finding_id, first_seen, last_seen_ms, asset,
                   rule_id, severity, severity_rank, state, check_kind, job_id, port, frameworks,
                   controls, title, doc)
                 SELECT t, i, fs, ls, a, r, sv, rk, st, ck, j, p,
                   CASE WHEN fw = '' THEN '{}'::text[] ELSE string_to_array(fw, $17) END,
                   CASE WHEN ct = '' THEN '{}'::text[] ELSE string_to_array(ct, $17) END,
                   ti, to_tsvector('simple', tx)
                 FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::text[],
                   $6::text[], $7::text[], $8::smallint[], $9::text[], $10::text[], $11::text[],
                   $12::int[], $13::text[], $14::text[], $15::text[], $16::text[])
                   AS u(t, i, fs, ls, a, r, sv, rk, st, ck, j, p, fw, ct, ti, tx)
                 ON CONFLICT (tenant_id, finding_id, first_seen) DO UPDATE SET
                   last_seen_ms = EXCLUDED.last_seen_ms, asset = EXCLUDED.asset,
                   rule_id = EXCLUDED.rule_id, severity = EXCLUDED.severity,
                   severity_rank = EXCLUDED.severity_rank, state = EXCLUDED.state,
                   check_kind = EXCLUDED.check_kind, job_id = EXCLUDED.job_id, port = EXCLUDED.port,
                   frameworks = EXCLUDED.frameworks, controls = EXCLUDED.controls,
                   title = EXCLUDED.title, doc = EXCLUDED.doc",
                &[
                    &col!(tenant),
                    &col!(id),
                    &col!(first_seen),
                    &col!(last_seen_ms),
                    &col!(asset),
                    &col!(rule_id),
                    &col!(severity),
                    &col!(rank),
                    &col!(state),
                    &col!(check),
                    &col!(job_id),
                    &col!(port),
                    &col!(frameworks),
                    &col!(controls),
                    &col!(title),
                    &col!(text),
                    &sep,
                ],
            )))?;
        }
        Ok(())
    }
}

impl FindingTx for PgTx<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, FindingError> {
        if let Some(v) = self.writes.borrow().get(&(space_id(space), key.to_vec())) {
            return Ok(v.clone());
        }
        let row = self.sql(wait(self.tx.query_opt(
            "SELECT value FROM fx_kv WHERE space = $1 AND tenant_id = $2 AND key = $3",
            &[&space_id(space), &key_tenant(space, key), &key],
        )))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), FindingError> {
        if space == Space::Findings {
            let f: FindingRecord = crate::findings::dec(key, value)?;
            if !self.partition_exists(f.first_seen_ms)? {
                // Abort this attempt; `transact` creates it and runs `f` again.
                lock(&self.store.missing).push(f.first_seen_ms);
                return Err(FindingError::Interrupted);
            }
        }
        self.writes
            .borrow_mut()
            .insert((space_id(space), key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<(), FindingError> {
        self.writes
            .borrow_mut()
            .insert((space_id(space), key.to_vec()), None);
        Ok(())
    }
}

impl FindingStore for PgFindingStore {
    fn transact(
        &self,
        f: &mut dyn FnMut(&dyn FindingTx) -> Result<(), FindingError>,
    ) -> Result<(), FindingError> {
        let mut client = self.pool.get().map_err(backend)?;
        for _ in 0..MAX_ATTEMPTS {
            let tx = wait(
                client
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start(),
            )
            .map_err(backend)?;
            let ptx = PgTx {
                tx,
                store: self,
                writes: RefCell::new(BTreeMap::new()),
            };
            match f(&ptx).and_then(|()| ptx.flush_writes()) {
                Ok(()) => match wait(ptx.tx.commit()) {
                    Ok(()) => return Ok(()),
                    Err(e) if is_retryable(&e) => continue,
                    Err(e) => return Err(backend(e)),
                },
                Err(FindingError::Interrupted) => {
                    drop(ptx); // rolls back before any partition DDL
                    let months = std::mem::take(&mut *lock(&self.missing));
                    for ms in months {
                        self.ensure_partition(ms)?;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(FindingError::Backend(format!(
            "transaction still conflicting after {MAX_ATTEMPTS} attempts"
        )))
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, FindingError> {
        let c = self.pool.get().map_err(backend)?;
        let row = wait(c.query_opt(
            "SELECT value FROM fx_kv WHERE space = $1 AND tenant_id = $2 AND key = $3",
            &[&space_id(space), &key_tenant(space, key), &key],
        ))
        .map_err(backend)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, FindingError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A prefix that names a whole tenant also filters on the tenant column.
        let tenant = if prefix.contains(&b'/') {
            Some(key_tenant(space, prefix))
        } else {
            None
        };
        let end = prefix_end(prefix);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let order = if reverse { "DESC" } else { "ASC" };
        let cursor = if reverse { "<" } else { ">" };
        let c = self.pool.get().map_err(backend)?;
        let rows = wait(c.query(
            &format!(
                "SELECT key, value FROM fx_kv
                 WHERE space = $1 AND key >= $2
                   AND ($3::bytea IS NULL OR key < $3)
                   AND ($4::text IS NULL OR tenant_id = $4)
                   AND ($5::bytea IS NULL OR key {cursor} $5)
                 ORDER BY key {order} LIMIT $6"
            ),
            &[&space_id(space), &prefix, &end, &tenant, &after, &limit],
        ))
        .map_err(backend)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn remove_if(&self, space: Space, key: &[u8], expected: &[u8]) -> Result<bool, FindingError> {
        let c = self.pool.get().map_err(backend)?;
        let n = wait(c.execute(
            "DELETE FROM fx_kv WHERE space = $1 AND tenant_id = $2 AND key = $3 AND value = $4",
            &[&space_id(space), &key_tenant(space, key), &key, &expected],
        ))
        .map_err(backend)?;
        Ok(n == 1)
    }

    fn flush(&self) -> Result<(), FindingError> {
        // Commits are durable when they return.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_is_parsed_from_keys() {
        assert_eq!(key_tenant(Space::Findings, b"acme/abc"), "acme");
        assert_eq!(key_tenant(Space::Outbox, b"facme/abc"), "acme");
        assert_eq!(key_tenant(Space::TenantKinds, b"acme"), "acme");
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
    }
}
