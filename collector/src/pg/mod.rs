//! PostgreSQL backend of the scale-out mode: collector state ([`PgStore`]),
//! findings state ([`PgFindingStore`]), full-text search over a time-partitioned
//! table and advisory-lock coordination.
//!
//! The collector's storage traits are synchronous and are called both from
//! blocking threads and directly from async tasks. The sync `postgres` crate
//! would start a runtime inside a runtime there and panic, so connections are
//! `tokio-postgres` clients whose I/O runs on a private runtime thread, and the
//! sync methods wait on them with a runtime-independent [`wait`].

#[cfg(test)]
mod contract;
mod findings;
mod locks;
mod migrate;
mod search;
mod store;

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use thiserror::Error;
use tokio_postgres::error::SqlState;

pub use findings::PgFindingStore;
pub use locks::AdvisoryLock;
pub use migrate::migrate;
pub use search::{SearchHit, search_findings};
pub use store::PgStore;

/// Failures of the PostgreSQL backend.
#[derive(Debug, Error)]
pub enum PgError {
    /// The connection URL is malformed.
    #[error("postgres URL: {0}")]
    Url(String),
    /// Connecting or a statement failed.
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The background I/O runtime could not start or has stopped.
    #[error("postgres runtime: {0}")]
    Runtime(String),
    /// A schema name is not a plain identifier.
    #[error("invalid schema name {0:?}: use lower-case letters, digits and _")]
    Schema(String),
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `fut` to completion on the calling thread by parking between polls.
/// Works inside and outside a tokio runtime because the futures it is used
/// on only wait for channels fed by the private I/O runtime.
pub fn wait<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Whether a failed transaction should simply be retried.
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A private single-threaded tokio runtime on its own OS thread, for network
/// clients used from synchronous code; stops when dropped.
pub struct IoRuntime {
    handle: tokio::runtime::Handle,
    // Dropping the sender ends the runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl IoRuntime {
    /// Starts the runtime thread.
    pub fn start(name: &str) -> Result<Self, String> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| e.to_string())?;
        let handle = rx.recv().map_err(|e| e.to_string())??;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Handle to spawn work on the runtime.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `fut` on the runtime and waits for it from any thread.
    pub fn run<F>(&self, fut: F) -> Result<F::Output, String>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        wait(self.handle.spawn(fut)).map_err(|e| e.to_string())
    }
}

/// A bounded pool of connections whose I/O runs on one private runtime thread.
pub struct PgPool {
    config: tokio_postgres::Config,
    schema: String,
    max: usize,
    io: IoRuntime,
    idle: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<tokio_postgres::Client>,
    open: usize,
}

impl PgPool {
    /// Connects lazily to `url`; every connection uses `schema` (created by
    /// [`migrate`]) as its search path. At most `max` connections are open.
    pub fn new(url: &str, schema: &str, max: usize) -> Result<Arc<Self>, PgError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| PgError::Url(e.to_string()))?;
        if !valid_schema(schema) {
            return Err(PgError::Schema(schema.to_string()));
        }
        let io = IoRuntime::start("vigil-postgres-io").map_err(PgError::Runtime)?;
        Ok(Arc::new(Self {
            config,
            schema: schema.to_string(),
            max: max.max(1),
            io,
            idle: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }))
    }

    /// The schema every connection works in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let config = self.config.clone();
        let task = self.io.handle().spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!("postgres connection closed: {e}");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        let client = wait(task).map_err(|e| PgError::Runtime(e.to_string()))??;
        // The schema name was validated as a plain identifier in `new`.
        wait(client.batch_execute(&format!("SET search_path TO {}, public", self.schema)))?;
        Ok(client)
    }

    /// Takes a connection, opening one when none is idle and the pool has room.
    pub fn get(&self) -> Result<Pooled<'_>, PgError> {
        let mut state = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(c) = state.idle.pop() {
                if !c.is_closed() {
                    return Ok(Pooled {
                        pool: self,
                        client: Some(c),
                    });
                }
                state.open -= 1;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(c) => Ok(Pooled {
                        pool: self,
                        client: Some(c),
                    }),
                    Err(e) => {
                        let mut s = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                        s.open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl PgPool {
    /// Takes a pooled connection out for session state such as advisory
    /// locks; it still counts against the pool until [`PgPool::give_back`].
    pub fn take(&self) -> Result<tokio_postgres::Client, PgError> {
        let mut pooled = self.get()?;
        let client = pooled.client.take().expect("present until drop");
        std::mem::forget(pooled);
        Ok(client)
    }

    /// Accounts for a connection from [`PgPool::take`] that was closed instead.
    pub fn give_back_closed(&self) {
        let mut state = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        state.open -= 1;
        self.freed.notify_one();
    }

    /// Returns a connection from [`PgPool::take`].
    pub fn give_back(&self, client: tokio_postgres::Client) {
        let mut state = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(client);
        }
        self.freed.notify_one();
    }
}

/// A connection borrowed from a [`PgPool`]; returned to it on drop.
pub struct Pooled<'a> {
    pool: &'a PgPool,
    client: Option<tokio_postgres::Client>,
}

impl Deref for Pooled<'_> {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        match self.client.take() {
            Some(c) if !c.is_closed() => state.idle.push(c),
            _ => state.open -= 1,
        }
        self.pool.freed.notify_one();
    }
}

/// Converts a stored u64 (sequence, ms) to PostgreSQL's BIGINT.
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Converts a BIGINT read back to u64 (negative values never get stored).
pub fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use super::PgPool;

    /// A fresh migrated schema in the test database, or None when
    /// VIGIL_TEST_POSTGRES_URL is unset (CI fails instead of skipping).
    pub fn pool(name: &str) -> Option<Arc<PgPool>> {
        let Ok(url) = std::env::var("VIGIL_TEST_POSTGRES_URL") else {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!(
                    "VIGIL_TEST_POSTGRES_URL is not set under CI: run `eval \"$(deploy/scaleout/services.sh start)\"` first"
                );
            }
            eprintln!(
                "note: PostgreSQL contract tests skipped; run `eval \"$(deploy/scaleout/services.sh start)\"` to include them"
            );
            return None;
        };
        let mut raw = [0u8; 4];
        getrandom::fill(&mut raw).expect("random");
        let schema = format!("t_{name}_{}", hex::encode(raw));
        let pool = PgPool::new(&url, &schema, 4).expect("pool");
        super::migrate(&pool).expect("migrate");
        Some(pool)
    }
}
