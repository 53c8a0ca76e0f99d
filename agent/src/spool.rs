//! Disk spool: every result batch is signed, framed and made durable here
//! before it is sent, and deleted only after the collector acknowledged it.
//!
//! Layout: one file per batch, `<sequence:020>.frame`, holding the exact frame
//! sent on the wire, and `acked` holding the highest acknowledged sequence.
//! The next sequence is one past the larger of the newest file and `acked`, so
//! sequence numbers never repeat, even across crashes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use protocol::{AgentIdentity, BatchBody, DEFAULT_MAX_FRAME, Message, Record, SigningKey};
use thiserror::Error;
use tokio::sync::watch;

use crate::scan::now_ms;

use crate::fsutil::{sync_dir, write_atomic};

/// Spool failures.
#[derive(Debug, Error)]
pub enum SpoolError {
    /// A file operation failed (disk full, permissions...).
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A batch could not be encoded or signed.
    #[error("encoding batch: {0}")]
    Encode(#[from] protocol::ProtocolError),
    /// A poisoned lock: a thread panicked while holding the spool.
    #[error("spool lock poisoned")]
    Poisoned,
}

const ACKED: &str = "acked";
const QUARANTINE: &str = "corrupt";

#[derive(Debug)]
struct Inner {
    /// Highest acknowledged sequence.
    acked: u64,
    /// Highest sequence written.
    last: u64,
}

/// Durable queue of signed batches for one agent.
pub struct Spool {
    dir: PathBuf,
    identity: AgentIdentity,
    key: SigningKey,
    inner: Mutex<Inner>,
    last_tx: watch::Sender<u64>,
    acked_tx: watch::Sender<u64>,
}

fn frame_name(seq: u64) -> String {
    format!("{seq:020}.frame")
}

fn parse_frame_name(name: &str) -> Option<u64> {
    name.strip_suffix(".frame")?.parse().ok()
}

impl Spool {
    /// Opens the spool in `dir`, quarantining damaged batch files.
    pub fn open(dir: &Path, identity: AgentIdentity, key: SigningKey) -> Result<Self, SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        crate::fsutil::create_private_dir(dir).map_err(io(dir))?;
        let acked_path = dir.join(ACKED);
        let acked = match fs::read(&acked_path) {
            Ok(b) => b
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| SpoolError::Io {
                    path: acked_path.clone(),
                    source: std::io::Error::other("acked marker must be 8 bytes"),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&acked_path)(e)),
        };
        let verifying = key.verifying_key();
        let mut last = acked;
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // An append that never completed: it was never sent either.
                fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            let Some(seq) = parse_frame_name(&name) else {
                continue;
            };
            if seq <= acked {
                fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            last = last.max(seq);
            let bytes = fs::read(&path).map_err(io(&path))?;
            if let Err(why) = check_frame(&bytes, &verifying) {
                let qdir = dir.join(QUARANTINE);
                fs::create_dir_all(&qdir).map_err(io(&qdir))?;
                fs::rename(&path, qdir.join(&name)).map_err(io(&path))?;
                tracing::error!(
                    "spool file {} is damaged ({why}); moved to {}",
                    path.display(),
                    qdir.display()
                );
            }
        }
        sync_dir(dir).map_err(io(dir))?;
        let (last_tx, _) = watch::channel(last);
        let (acked_tx, _) = watch::channel(acked);
        Ok(Self {
            dir: dir.to_path_buf(),
            identity,
            key,
            inner: Mutex::new(Inner { acked, last }),
            last_tx,
            acked_tx,
        })
    }

    fn io(&self, path: &Path, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Signs `records` as the next batch and makes it durable; returns its sequence.
    pub fn append(&self, records: Vec<Record>) -> Result<u64, SpoolError> {
        let mut inner = self.inner.lock().map_err(|_| SpoolError::Poisoned)?;
        let sequence = inner.last + 1;
        let body = BatchBody {
            tenant: self.identity.tenant.clone(),
            agent: self.identity.agent.clone(),
            sequence,
            created_ms: now_ms(),
            records,
        };
        let signed = protocol::sign_batch(&self.key, &body)?;
        let frame = protocol::encode_frame(&Message::Batch(signed), DEFAULT_MAX_FRAME)?;
        let path = self.dir.join(frame_name(sequence));
        write_atomic(&path, &frame, true).map_err(|e| self.io(&path, e))?;
        inner.last = sequence;
        drop(inner);
        self.last_tx.send_replace(sequence);
        Ok(sequence)
    }

    /// The wire frame of batch `seq`; `Ok(None)` if it is gone (acked or quarantined).
    pub fn read_frame(&self, seq: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        let path = self.dir.join(frame_name(seq));
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    /// Records that the collector durably stored everything up to `seq`, and
    /// deletes those batches.
    pub fn ack(&self, seq: u64) -> Result<(), SpoolError> {
        let mut inner = self.inner.lock().map_err(|_| SpoolError::Poisoned)?;
        if seq <= inner.acked {
            return Ok(());
        }
        let old = inner.acked;
        let path = self.dir.join(ACKED);
        // The marker goes first: a crash before the deletions only leaves files
        // that the next open removes.
        write_atomic(&path, &seq.to_be_bytes(), false).map_err(|e| self.io(&path, e))?;
        inner.acked = seq;
        if inner.last < seq {
            // The collector has seen sequences we no longer remember: never reuse them.
            tracing::warn!(
                "collector acknowledged sequence {seq} beyond our newest {}; continuing after it",
                inner.last
            );
            inner.last = seq;
            self.last_tx.send_replace(seq);
        }
        let upto = inner.last.min(seq);
        drop(inner);
        for s in old + 1..=upto {
            let p = self.dir.join(frame_name(s));
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&p, e)),
            }
        }
        self.acked_tx.send_replace(seq);
        Ok(())
    }

    /// Highest acknowledged sequence.
    pub fn acked(&self) -> u64 {
        *self.acked_tx.borrow()
    }

    /// Highest sequence written.
    pub fn last(&self) -> u64 {
        *self.last_tx.borrow()
    }

    /// Batches written but not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.last().saturating_sub(self.acked())
    }

    /// Notified whenever a batch is appended.
    pub fn subscribe_last(&self) -> watch::Receiver<u64> {
        self.last_tx.subscribe()
    }

    /// Notified whenever the acknowledged sequence moves.
    pub fn subscribe_acked(&self) -> watch::Receiver<u64> {
        self.acked_tx.subscribe()
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A spooled frame must decode as a batch signed by our own key.
fn check_frame(bytes: &[u8], key: &protocol::VerifyingKey) -> Result<(), String> {
    match protocol::decode_frame(bytes, DEFAULT_MAX_FRAME) {
        Ok((Message::Batch(b), used)) if used == bytes.len() => {
            b.verify_signature(key).map_err(|e| e.to_string())
        }
        Ok(_) => Err("not a single batch frame".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{AgentId, Observation, PortObservation, PortState, TenantId};

    fn identity() -> AgentIdentity {
        AgentIdentity {
            tenant: TenantId::new("acme").unwrap(),
            agent: AgentId::new("ag-1").unwrap(),
        }
    }

    fn records(n: u16) -> Vec<Record> {
        (0..n)
            .map(|p| Record {
                asset: "127.0.0.1".into(),
                job_id: "j".into(),
                observed_ms: 1,
                observation: Observation::Port(PortObservation {
                    ip: "127.0.0.1".into(),
                    port: p,
                    state: PortState::Closed,
                    service: None,
                    product: None,
                    banner: None,
                    tls: false,
                }),
            })
            .collect()
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    #[test]
    fn sequences_survive_reopen_and_acks_delete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), identity(), key()).unwrap();
            assert_eq!(s.append(records(3)).unwrap(), 1);
            assert_eq!(s.append(records(3)).unwrap(), 2);
            assert_eq!(s.append(records(3)).unwrap(), 3);
            s.ack(2).unwrap();
            assert!(s.read_frame(1).unwrap().is_none());
            assert!(s.read_frame(3).unwrap().is_some());
        }
        let s = Spool::open(dir.path(), identity(), key()).unwrap();
        assert_eq!((s.acked(), s.last(), s.pending()), (2, 3, 1));
        s.ack(3).unwrap();
        drop(s);
        // Everything acked and deleted: the next sequence still moves forward.
        let s = Spool::open(dir.path(), identity(), key()).unwrap();
        assert_eq!(s.append(records(1)).unwrap(), 4);
    }

    #[test]
    fn frames_are_signed_batches_with_the_right_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), identity(), key()).unwrap();
        s.append(records(5)).unwrap();
        let frame = s.read_frame(1).unwrap().unwrap();
        let (msg, _) = protocol::decode_frame(&frame, DEFAULT_MAX_FRAME).unwrap();
        let Message::Batch(b) = msg else {
            panic!("not a batch")
        };
        let body = b.verify(&key().verifying_key()).unwrap();
        assert_eq!(body.sequence, 1);
        assert_eq!(body.records, records(5));
    }

    #[test]
    fn damaged_files_are_quarantined_and_leftover_temps_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), identity(), key()).unwrap();
            s.append(records(2)).unwrap();
            s.append(records(2)).unwrap();
        }
        let p = dir.path().join(frame_name(1));
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        fs::write(&p, bytes).unwrap();
        fs::write(dir.path().join(".00000000000000000003.frame.tmp"), b"half").unwrap();
        let s = Spool::open(dir.path(), identity(), key()).unwrap();
        assert!(s.read_frame(1).unwrap().is_none());
        assert!(s.read_frame(2).unwrap().is_some());
        assert!(dir.path().join(QUARANTINE).join(frame_name(1)).exists());
        assert!(!dir.path().join(".00000000000000000003.frame.tmp").exists());
        assert_eq!(s.append(records(1)).unwrap(), 3);
    }

    #[test]
    fn ack_beyond_last_moves_sequence_forward() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), identity(), key()).unwrap();
        s.ack(10).unwrap();
        assert_eq!(s.append(records(1)).unwrap(), 11);
    }
}
