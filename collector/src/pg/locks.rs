//! Cluster-wide mutual exclusion with PostgreSQL session advisory locks.
//!
//! `pg_try_advisory_lock` never waits: of several collectors evaluating the
//! same (tenant, job) schedule at once exactly one gets the lock and fires the
//! job; the others skip it. The lock lives as long as the connection that took
//! it, so it is held on a connection kept out of the pool until release.

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
        let client = pool.dedicated()?;
        let got: bool = wait(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]))?.get(0);
        Ok(got.then(|| Self {
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
            if let Err(e) = wait(c.execute("SELECT pg_advisory_unlock($1)", &[&self.key])) {
                tracing::warn!("advisory unlock failed (released with the connection): {e}");
            }
            self.pool.give_back(c);
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
