//! Per-tenant, append-only, hash-chained audit log.
//!
//! Each entry's hash is SHA-256 over a canonical, length-prefixed encoding of
//! all its fields including the previous entry's hash, so changing, removing or
//! reordering any stored entry breaks the chain at that point.

use protocol::TenantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accounts::{AccountResult, AccountStore};

/// Domain tag mixed into every entry hash so no other SHA-256 use collides with it.
const DOMAIN: &[u8] = b"vigil-audit-v1\0";

/// `prev_hash` of a tenant's first entry.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// What the caller supplies; the store fills in sequence, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// When it happened, ms since the epoch.
    pub time_ms: u64,
    /// Who did it (`user:<email>`, `api-key:<id>`, `cli`).
    pub actor: String,
    /// What was done (`agent.revoke`, `token.create`, ...).
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Further facts, JSON (never secrets).
    pub details: serde_json::Value,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Tenant whose log it belongs to.
    pub tenant: TenantId,
    /// Position in the tenant's log, from 1.
    pub seq: u64,
    /// When it happened, ms since the epoch.
    pub time_ms: u64,
    /// Who did it.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Further facts as compact JSON text; hashed exactly as stored.
    pub details: String,
    /// Hash of the previous entry, hex ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// Hash of this entry, hex.
    pub hash: String,
}

fn put_field(h: &mut Sha256, bytes: &[u8]) {
    // Length prefixes keep field boundaries unambiguous ("ab"+"c" ≠ "a"+"bc").
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The chain hash of an entry's content given the previous hash.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    tenant: &TenantId,
    seq: u64,
    time_ms: u64,
    actor: &str,
    action: &str,
    target: &str,
    details: &str,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    put_field(&mut h, tenant.as_str().as_bytes());
    h.update(seq.to_be_bytes());
    h.update(time_ms.to_be_bytes());
    put_field(&mut h, actor.as_bytes());
    put_field(&mut h, action.as_bytes());
    put_field(&mut h, target.as_bytes());
    put_field(&mut h, details.as_bytes());
    h.update(prev_hash);
    h.finalize().into()
}

impl AuditEntry {
    /// Builds the entry following `prev` (`(seq, hash)` of the newest entry).
    pub fn chain(tenant: &TenantId, prev: Option<(u64, [u8; 32])>, d: AuditDraft) -> Self {
        let (seq, prev_hash) = match prev {
            Some((s, h)) => (s + 1, h),
            None => (1, GENESIS),
        };
        // serde_json's map is ordered by key, so this text is canonical for a value.
        let details = d.details.to_string();
        let hash = entry_hash(
            tenant, seq, d.time_ms, &d.actor, &d.action, &d.target, &details, &prev_hash,
        );
        Self {
            tenant: tenant.clone(),
            seq,
            time_ms: d.time_ms,
            actor: d.actor,
            action: d.action,
            target: d.target,
            details,
            prev_hash: hex::encode(prev_hash),
            hash: hex::encode(hash),
        }
    }

    /// Recomputes this entry's hash from its stored fields.
    pub fn recompute(&self) -> Option<[u8; 32]> {
        let prev: [u8; 32] = hex::decode(&self.prev_hash).ok()?.try_into().ok()?;
        Some(entry_hash(
            &self.tenant,
            self.seq,
            self.time_ms,
            &self.actor,
            &self.action,
            &self.target,
            &self.details,
            &prev,
        ))
    }
}

/// The first place a tenant's chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenLink {
    /// Sequence number where verification failed.
    pub seq: u64,
    /// What was wrong.
    pub reason: String,
}

/// Outcome of verifying one tenant's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Tenant verified.
    pub tenant: TenantId,
    /// Entries checked before stopping.
    pub entries: u64,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// Whether the whole chain is intact.
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Page size while walking a log, so verification never loads it whole.
const PAGE: usize = 1024;

/// Walks a tenant's log from the first entry and reports the first broken link:
/// a gap or reordering in sequence numbers, a `prev_hash` that is not the
/// previous entry's hash, a hash that does not match the content, or a head
/// record that disagrees with the last entry (truncation).
pub fn verify(store: &dyn AccountStore, tenant: &TenantId) -> AccountResult<VerifyReport> {
    let mut prev: [u8; 32] = GENESIS;
    let mut expected = 1u64;
    let broken = |seq, reason: String| BrokenLink { seq, reason };
    loop {
        let page = store.audit_entries(tenant, expected, PAGE)?;
        let n = page.len();
        for e in page {
            let fail = if e.seq != expected {
                Some(format!("expected entry {expected}, found {}", e.seq))
            } else if &e.tenant != tenant {
                Some(format!("entry belongs to tenant {}", e.tenant))
            } else if e.prev_hash != hex::encode(prev) {
                Some("prev_hash does not match the previous entry's hash".to_string())
            } else {
                match e.recompute() {
                    Some(h) if hex::encode(h) == e.hash => {
                        prev = h;
                        None
                    }
                    _ => Some("hash does not match the entry's content".to_string()),
                }
            };
            if let Some(reason) = fail {
                return Ok(VerifyReport {
                    tenant: tenant.clone(),
                    entries: expected - 1,
                    broken: Some(broken(expected, reason)),
                });
            }
            expected += 1;
        }
        if n < PAGE {
            break;
        }
    }
    let last = expected - 1;
    let head_ok = match store.audit_head(tenant)? {
        None => last == 0,
        Some((seq, hash)) => seq == last && hash == prev,
    };
    Ok(VerifyReport {
        tenant: tenant.clone(),
        entries: last,
        broken: (!head_ok).then(|| {
            broken(
                last + 1,
                "log ends before its recorded head: entries were removed".to_string(),
            )
        }),
    })
}
