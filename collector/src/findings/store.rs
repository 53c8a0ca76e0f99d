//! Storage of the findings pipeline: a small transactional key-value contract
//! ([`FindingStore`]) and its sled implementation ([`SledFindingStore`]).
//!
//! All lifecycle, change-detection and posture logic is written against
//! [`FindingTx`], so another backend only has to provide keyspaces with atomic
//! multi-key transactions, prefix scans and a compare-and-remove.

use std::cell::RefCell;

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use thiserror::Error;

use super::optimistic::{self, BufferedTx};
use crate::store::StoreError;

/// Keyspaces of the findings state; the sled backend keeps one tree per space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Per-agent processing cursor: last batch sequence whose effects are stored.
    Cursors,
    /// Findings by `tenant/id`.
    Findings,
    /// Open finding ids per scan scope (tenant, asset, job, check kind).
    OpenSets,
    /// Per-asset snapshot, baseline and pending drift.
    Assets,
    /// Change events by `tenant/time/id`.
    Changes,
    /// Observation kinds each tenant has sent (which controls were assessed).
    TenantKinds,
    /// Posture history snapshots by `tenant/framework/time`.
    Posture,
    /// Search documents to (re)index: doc key → write version.
    Outbox,
    /// Alert events not yet planned into deliveries, by `tenant/event id`.
    AlertOutbox,
    /// Alert deliveries by `tenant/delivery id`.
    AlertDeliveries,
    /// Pending alert deliveries by big-endian due time + `tenant/delivery id`.
    AlertDue,
    /// Alert channels, rules and mute windows by `tenant/kind/id`.
    AlertConfig,
}

impl Space {
    /// Every space, in tree order.
    pub const ALL: [Space; 12] = [
        Space::Cursors,
        Space::Findings,
        Space::OpenSets,
        Space::Assets,
        Space::Changes,
        Space::TenantKinds,
        Space::Posture,
        Space::Outbox,
        Space::AlertOutbox,
        Space::AlertDeliveries,
        Space::AlertDue,
        Space::AlertConfig,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn tree_name(self) -> &'static str {
        match self {
            Space::Cursors => "fx_cursor",
            Space::Findings => "fx_findings",
            Space::OpenSets => "fx_open_sets",
            Space::Assets => "fx_assets",
            Space::Changes => "fx_changes",
            Space::TenantKinds => "fx_tenant_kinds",
            Space::Posture => "fx_posture",
            Space::Outbox => "fx_index_outbox",
            Space::AlertOutbox => "fx_alert_outbox",
            Space::AlertDeliveries => "fx_alert_deliveries",
            Space::AlertDue => "fx_alert_due",
            Space::AlertConfig => "fx_alert_config",
        }
    }
}

/// Failures of the findings pipeline and its operations.
#[derive(Debug, Error)]
pub enum FindingError {
    /// The collector store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The findings backend failed.
    #[error("findings storage: {0}")]
    Backend(String),
    /// A stored value could not be decoded.
    #[error("corrupt findings record under {key}: {reason}")]
    Corrupt {
        /// Key of the record.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// A transaction was interrupted by the backend (retried internally).
    #[error("transaction interrupted")]
    Interrupted,
    /// The named finding, asset or framework does not exist for the tenant.
    #[error("not found: {0}")]
    NotFound(String),
    /// A request argument is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The search index failed.
    #[error("search index: {0}")]
    Index(String),
    /// The search query is malformed.
    #[error("query: {0}")]
    Query(#[from] crate::search::query::QueryError),
    /// The rule set could not be loaded.
    #[error("rules: {0}")]
    Rules(String),
}

/// Key-value pairs returned by [`FindingStore::scan`].
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads and writes inside one atomic transaction.
pub trait FindingTx {
    /// Value under `key`, seeing this transaction's own writes.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, FindingError>;
    /// Inserts or replaces a value.
    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), FindingError>;
    /// Removes a value if present.
    fn remove(&self, space: Space, key: &[u8]) -> Result<(), FindingError>;
}

/// Backend of the findings state.
pub trait FindingStore: Send + Sync + 'static {
    /// Runs `f` atomically: all of its writes become visible together or not at
    /// all. `f` may run more than once when the backend retries a conflict.
    fn transact(
        &self,
        f: &mut dyn FnMut(&dyn FindingTx) -> Result<(), FindingError>,
    ) -> Result<(), FindingError>;
    /// Value under `key`, outside a transaction.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, FindingError>;
    /// Up to `limit` entries whose key starts with `prefix` and sorts after
    /// `after` (before it when `reverse`), in key order (reversed when `reverse`).
    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, FindingError>;
    /// Removes `key` only if its value is still `expected`; true when removed.
    fn remove_if(&self, space: Space, key: &[u8], expected: &[u8]) -> Result<bool, FindingError>;
    /// Makes every write durable.
    fn flush(&self) -> Result<(), FindingError>;
}

fn backend(e: impl std::fmt::Display) -> FindingError {
    FindingError::Backend(e.to_string())
}

/// Findings state in new trees of the collector's sled database.
pub struct SledFindingStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl SledFindingStore {
    /// Opens (creating if needed) the findings trees in `db`.
    pub fn open(db: sled::Db) -> Result<Self, FindingError> {
        let trees = Space::ALL
            .iter()
            .map(|s| db.open_tree(s.tree_name()).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { db, trees })
    }

    fn tree(&self, space: Space) -> &sled::Tree {
        &self.trees[space.index()]
    }
}

struct SledTx<'a> {
    trees: &'a [TransactionalTree],
    // The first backend error, re-raised after `f` returns so sled can retry conflicts.
    interrupted: RefCell<Option<UnabortableTransactionError>>,
}

impl SledTx<'_> {
    fn stash(&self, e: UnabortableTransactionError) -> FindingError {
        self.interrupted.borrow_mut().get_or_insert(e);
        FindingError::Interrupted
    }
}

impl FindingTx for SledTx<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, FindingError> {
        match self.trees[space.index()].get(key) {
            Ok(v) => Ok(v.map(|v| v.to_vec())),
            Err(e) => Err(self.stash(e)),
        }
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), FindingError> {
        match self.trees[space.index()].insert(key, value) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.stash(e)),
        }
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<(), FindingError> {
        match self.trees[space.index()].remove(key) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.stash(e)),
        }
    }
}

impl SledFindingStore {
    /// A sled transaction: holds sled's process-wide lock while `f` runs, so
    /// `f` must be short (see [`super::optimistic`]).
    fn locked_transact(
        &self,
        f: &mut dyn FnMut(&dyn FindingTx) -> Result<(), FindingError>,
    ) -> Result<(), FindingError> {
        let f = RefCell::new(f);
        let _gate = crate::store::flush_gate::transaction();
        let result = <[sled::Tree] as Transactional<FindingError>>::transaction(
            self.trees.as_slice(),
            |trees: &Vec<TransactionalTree>| {
                let tx = SledTx {
                    trees,
                    interrupted: RefCell::new(None),
                };
                let r = (f.borrow_mut())(&tx);
                if let Some(e) = tx.interrupted.take() {
                    return Err(ConflictableTransactionError::from(e));
                }
                r.map_err(ConflictableTransactionError::Abort)
            },
        );
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }
}

impl FindingStore for SledFindingStore {
    fn transact(
        &self,
        f: &mut dyn FnMut(&dyn FindingTx) -> Result<(), FindingError>,
    ) -> Result<(), FindingError> {
        let read = |space: Space, key: &[u8]| self.get(space, key);
        loop {
            let tx = BufferedTx::new(&read);
            let outcome = f(&tx);
            let (reads, writes) = tx.into_sets();
            let mut valid = false;
            self.locked_transact(&mut |tx| {
                valid = optimistic::still_valid(tx, &reads)?;
                if valid && outcome.is_ok() {
                    optimistic::apply(tx, &writes)?;
                }
                Ok(())
            })?;
            // Something read changed meanwhile: the outcome (even an error) may
            // rest on a mix of old and new values, so run `f` again.
            if valid {
                return outcome;
            }
        }
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, FindingError> {
        Ok(self
            .tree(space)
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        prefix: &[u8],
        after: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, FindingError> {
        let tree = self.tree(space);
        let mut out = Vec::new();
        let mut push =
            |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool, FindingError> {
                let (k, v) = item.map_err(backend)?;
                out.push((k.to_vec(), v.to_vec()));
                Ok(out.len() < limit)
            };
        if limit == 0 {
            return Ok(out);
        }
        let iter = tree.scan_prefix(prefix);
        match (after, reverse) {
            (None, false) => {
                for item in iter {
                    if !push(item)? {
                        break;
                    }
                }
            }
            (None, true) => {
                for item in iter.rev() {
                    if !push(item)? {
                        break;
                    }
                }
            }
            (Some(a), false) => {
                use std::ops::Bound;
                for item in tree.range::<&[u8], _>((Bound::Excluded(a), Bound::Unbounded)) {
                    if item.as_ref().is_ok_and(|(k, _)| !k.starts_with(prefix)) {
                        break;
                    }
                    if !push(item)? {
                        break;
                    }
                }
            }
            (Some(a), true) => {
                for item in tree.range::<&[u8], _>(prefix..a).rev() {
                    if !push(item)? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    fn remove_if(&self, space: Space, key: &[u8], expected: &[u8]) -> Result<bool, FindingError> {
        let swapped = self
            .tree(space)
            .compare_and_swap(key, Some(expected), None as Option<&[u8]>)
            .map_err(backend)?;
        Ok(swapped.is_ok())
    }

    fn flush(&self) -> Result<(), FindingError> {
        let _gate = crate::store::flush_gate::flush();
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_changed_under_a_transaction_runs_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledFindingStore::open(sled::open(dir.path()).unwrap()).unwrap();
        s.transact(&mut |tx| tx.put(Space::Findings, b"n", b"1"))
            .unwrap();
        let mut runs = 0;
        s.transact(&mut |tx| {
            runs += 1;
            let n = tx.get(Space::Findings, b"n")?.unwrap()[0] - b'0';
            if runs == 1 {
                // Another writer commits between this read and our commit.
                s.tree(Space::Findings).insert(b"n", b"5").unwrap();
            }
            // Reads see the transaction's own writes.
            tx.put(Space::Cursors, b"seen", &[b'0' + n])?;
            let seen = tx.get(Space::Cursors, b"seen")?.unwrap()[0] - b'0';
            tx.put(Space::Findings, b"n", &[b'0' + seen + 1])
        })
        .unwrap();
        assert_eq!(runs, 2);
        assert_eq!(s.get(Space::Findings, b"n").unwrap(), Some(b"6".to_vec()));
        assert_eq!(s.get(Space::Cursors, b"seen").unwrap(), Some(b"5".to_vec()));
    }

    #[test]
    fn transaction_is_atomic_and_scans_respect_prefix_and_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledFindingStore::open(sled::open(dir.path()).unwrap()).unwrap();
        s.transact(&mut |tx| {
            tx.put(Space::Findings, b"a/1", b"x")?;
            tx.put(Space::Findings, b"a/2", b"y")?;
            tx.put(Space::Findings, b"b/1", b"z")?;
            tx.put(Space::Cursors, b"a", b"1")
        })
        .unwrap();
        // A failing transaction leaves nothing behind.
        let err = s.transact(&mut |tx| {
            tx.put(Space::Findings, b"a/3", b"w")?;
            Err(FindingError::Invalid("boom".into()))
        });
        assert!(matches!(err, Err(FindingError::Invalid(_))));
        assert_eq!(s.get(Space::Findings, b"a/3").unwrap(), None);
        let all = s.scan(Space::Findings, b"a/", None, false, 10).unwrap();
        assert_eq!(all.len(), 2);
        let after = s
            .scan(Space::Findings, b"a/", Some(b"a/1"), false, 10)
            .unwrap();
        assert_eq!(after, vec![(b"a/2".to_vec(), b"y".to_vec())]);
        let rev = s.scan(Space::Findings, b"a/", None, true, 1).unwrap();
        assert_eq!(rev[0].0, b"a/2".to_vec());
        let before = s
            .scan(Space::Findings, b"a/", Some(b"a/2"), true, 10)
            .unwrap();
        assert_eq!(before, vec![(b"a/1".to_vec(), b"x".to_vec())]);
        assert!(!s.remove_if(Space::Findings, b"a/1", b"nope").unwrap());
        assert!(s.remove_if(Space::Findings, b"a/1", b"x").unwrap());
        assert_eq!(s.get(Space::Findings, b"a/1").unwrap(), None);
    }
}
