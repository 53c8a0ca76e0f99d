//! Keeps sled transactions from queueing on sled's global lock while a flush
//! waits for the log.
//!
//! `sled::Db::flush` holds sled's process-wide concurrency-control lock shared
//! while it waits for the log to become stable, and a transaction takes that
//! lock exclusively. A transaction queued behind the flush blocks every other
//! sled call (the lock prefers writers), including sled's own background log
//! flusher. Under heavy ingest with the findings pipeline that cycle left a
//! collector hung with the flush waiting forever (see docs/benchmarks.md). The
//! gate makes transactions wait here instead, where they block nobody else.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());

/// Held around a sled transaction: any number at once, none during a flush.
pub fn transaction() -> RwLockReadGuard<'static, ()> {
    // Poisoning carries no state here: the guarded data is `()`.
    GATE.read().unwrap_or_else(|p| p.into_inner())
}

/// Held around `sled::Db::flush`.
pub fn flush() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|p| p.into_inner())
}
