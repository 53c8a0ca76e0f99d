//! Optimistic transactions for the sled findings store.
//!
//! A sled transaction holds a process-wide write lock for as long as its
//! closure runs, and every other sled read, write and flush in the collector —
//! batch ingest included — waits for it. The findings pipeline's closures
//! decode, evaluate and encode thousands of records, so running them inside
//! sled would stall ingest for that long. Instead the closure runs against a
//! [`BufferedTx`] that reads the trees directly (remembering every value it
//! saw) and keeps its writes in memory; the sled transaction afterwards only
//! checks that nothing it read has changed and applies the writes. If
//! something did change, the closure runs again, as [`super::FindingStore::transact`]
//! allows.

use std::cell::RefCell;
use std::collections::HashMap;

use super::store::{FindingError, FindingTx, Space};

type Key = (Space, Vec<u8>);

/// Reads one value from the store, outside any transaction.
pub type ReadFn<'a> = &'a dyn Fn(Space, &[u8]) -> Result<Option<Vec<u8>>, FindingError>;

/// Reads straight from the store, writes into memory.
pub struct BufferedTx<'a> {
    read: ReadFn<'a>,
    // Value of every key as first read from the store (None: absent).
    seen: RefCell<HashMap<Key, Option<Vec<u8>>>>,
    // Pending writes, the latest per key (None: remove).
    writes: RefCell<HashMap<Key, Option<Vec<u8>>>>,
}

impl<'a> BufferedTx<'a> {
    /// A transaction reading through `read`.
    pub fn new(read: ReadFn<'a>) -> Self {
        Self {
            read,
            seen: RefCell::default(),
            writes: RefCell::default(),
        }
    }

    /// What the closure read (to validate) and wrote (to apply).
    pub fn into_sets(self) -> (ReadSet, WriteSet) {
        (
            self.seen.into_inner().into_iter().collect(),
            self.writes.into_inner().into_iter().collect(),
        )
    }
}

/// Keys read and the values they had.
pub type ReadSet = Vec<(Key, Option<Vec<u8>>)>;
/// Keys written and their new values (None: removed).
pub type WriteSet = Vec<(Key, Option<Vec<u8>>)>;

impl FindingTx for BufferedTx<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, FindingError> {
        let k = (space, key.to_vec());
        if let Some(v) = self.writes.borrow().get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.seen.borrow().get(&k) {
            return Ok(v.clone());
        }
        let v = (self.read)(space, key)?;
        self.seen.borrow_mut().insert(k, v.clone());
        Ok(v)
    }

    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<(), FindingError> {
        self.writes
            .borrow_mut()
            .insert((space, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&self, space: Space, key: &[u8]) -> Result<(), FindingError> {
        self.writes.borrow_mut().insert((space, key.to_vec()), None);
        Ok(())
    }
}

/// Inside the real transaction: whether every read value is still current.
pub fn still_valid(tx: &dyn FindingTx, read: &ReadSet) -> Result<bool, FindingError> {
    for ((space, key), value) in read {
        if tx.get(*space, key)? != *value {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Inside the real transaction: applies the buffered writes.
pub fn apply(tx: &dyn FindingTx, writes: &WriteSet) -> Result<(), FindingError> {
    for ((space, key), value) in writes {
        match value {
            Some(v) => tx.put(*space, key, v)?,
            None => tx.remove(*space, key)?,
        }
    }
    Ok(())
}
