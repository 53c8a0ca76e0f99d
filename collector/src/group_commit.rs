//! Collector-wide group commit: one flusher makes the store durable for every
//! session that asked since its previous flush, so ten thousand agents cost one
//! fsync per round instead of ten thousand competing ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;
use crate::store::Store;

/// Why a wait for durability failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The store failed to flush; nothing after the last good flush is durable.
    #[error("flush failed: {0}")]
    Flush(String),
    /// The flusher stopped (collector shutting down).
    #[error("group committer stopped")]
    Stopped,
}

/// Progress published by the flusher.
#[derive(Debug, Clone)]
enum Durable {
    /// Every ticket up to this one is durable.
    Upto(u64),
    /// The store failed; the collector stops acknowledging.
    Failed(String),
}

/// Hands out tickets and reports when they are durable.
pub struct GroupCommit {
    requested: AtomicU64,
    wake: Notify,
    durable: watch::Sender<Durable>,
}

impl GroupCommit {
    /// Starts the flusher task over `store` (it stops once the store is dropped
    /// elsewhere, or when the task is aborted).
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (durable, _) = watch::channel(Durable::Upto(0));
        let gc = Arc::new(Self {
            requested: AtomicU64::new(0),
            wake: Notify::new(),
            durable,
        });
        // Only a weak reference: a collector that failed to start must not keep its store open.
        let task = tokio::spawn(flusher(gc.clone(), Arc::downgrade(&store), metrics));
        (gc, task)
    }

    /// Waits until everything written before this call is durable.
    pub async fn durable(&self) -> Result<(), CommitError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.durable.subscribe();
        self.wake.notify_one();
        let state = rx
            .wait_for(|d| match d {
                Durable::Upto(n) => *n >= ticket,
                Durable::Failed(_) => true,
            })
            .await
            .map_err(|_| CommitError::Stopped)?;
        match &*state {
            Durable::Upto(_) => Ok(()),
            Durable::Failed(e) => Err(CommitError::Flush(e.clone())),
        }
    }
}

async fn flusher(gc: Arc<GroupCommit>, store: Weak<dyn Store>, metrics: Arc<Metrics>) {
    loop {
        let woken = gc.wake.notified();
        let target = gc.requested.load(Ordering::SeqCst);
        let done = match &*gc.durable.borrow() {
            Durable::Upto(n) => *n,
            Durable::Failed(_) => return,
        };
        if target <= done {
            woken.await;
            continue;
        }
        // A ticket taken before this point was for writes made before it, so
        // the flush below covers every ticket up to `target`.
        let Some(s) = store.upgrade() else { return };
        let result = tokio::task::spawn_blocking(move || s.flush()).await;
        Metrics::inc(&metrics.group_commits);
        let next = match result {
            Ok(Ok(())) => Durable::Upto(target),
            Ok(Err(e)) => Durable::Failed(e.to_string()),
            Err(e) => Durable::Failed(e.to_string()),
        };
        if let Durable::Failed(e) = &next {
            tracing::error!("group commit: {e}; no further acks");
        }
        gc.durable.send_replace(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_share_few_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let metrics = Arc::new(Metrics::default());
        let (gc, _task) = GroupCommit::start(store.clone(), metrics.clone());
        let waiters: Vec<_> = (0..500)
            .map(|_| {
                let gc = gc.clone();
                tokio::spawn(async move { gc.durable().await })
            })
            .collect();
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        let flushes = metrics.group_commits.load(Ordering::Relaxed);
        assert!((1..500).contains(&flushes), "{flushes} flushes");
        // A later request is served by a later flush, never by an earlier one.
        gc.durable().await.unwrap();
        assert!(metrics.group_commits.load(Ordering::Relaxed) > flushes);
    }
}
