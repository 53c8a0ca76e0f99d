//! Cluster-wide mutual exclusion with PostgreSQL session advisory locks.
//!
//! `pg_try_advisory_lock` never waits: of several collectors evaluating the
//! same (tenant, job) schedule at once exactly one gets the lock and fires the
//! job; the others skip it. The lock lives as long as the session that took
//! it, so its connection stays out of the pool until the lock is released.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{PgError, PgPool, wait};

/// 64-bit advisory-lock key of a (tenant, name) pair.
pub fn lock_key(tenant: &str, name: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// A held advisory lock; released on drop (or when its connection dies).
pub struct AdvisoryLock {
    pool: Arc<PgPool>,
    key: i64,
    client: Option<tokio_postgres::Client>,
}

impl AdvisoryLock {
    /// Takes the lock of (tenant, name) if nobody holds it; None when taken.
    pub fn try_acquire(
        pool: &Arc<PgPool>,
        tenant: &str,
        name: &str,
    ) -> Result<Option<Self>, PgError> {
        let key = lock_key(tenant, name);
        let client = pool.take()?;
        let got = match wait(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key])) {
            Ok(row) => row.get::<_, bool>(0),
            Err(e) => {
                pool.give_back(client);
                return Err(e.into());
            }
        };
        if !got {
            pool.give_back(client);
            return Ok(None);
        }
        Ok(Some(Self {
            pool: pool.clone(),
            key,
            client: Some(client),
        }))
    }

    /// The lock key.
    pub fn key(&self) -> i64 {
        self.key
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            match wait(c.execute("SELECT pg_advisory_unlock($1)", &[&self.key])) {
                Ok(_) => self.pool.give_back(c),
                Err(e) => {
                    // Closing the session releases every lock it holds.
                    tracing::warn!("advisory unlock failed, closing the connection: {e}");
                    drop(c);
                    self.pool.give_back_closed();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_holder_per_key() {
        let Some(pool) = super::super::test_support::pool("locks") else {
            return;
        };
        let tenant = format!("t{}", pool.schema());
        let a = AdvisoryLock::try_acquire(&pool, &tenant, "job-1").unwrap();
        assert!(a.is_some());
        assert!(
            AdvisoryLock::try_acquire(&pool, &tenant, "job-1")
                .unwrap()
                .is_none()
        );
        // Another job or tenant is independent.
        assert!(
            AdvisoryLock::try_acquire(&pool, &tenant, "job-2")
                .unwrap()
                .is_some()
        );
        drop(a);
        assert!(
            AdvisoryLock::try_acquire(&pool, &tenant, "job-1")
                .unwrap()
                .is_some()
        );
    }
}
