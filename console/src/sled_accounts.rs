//! [`AccountStore`] on sled trees inside the collector's database, so one
//! database (and one flush) holds ingest state and accounts alike.

use protocol::TenantId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::accounts::{
    AccountError, AccountResult, AccountStore, ApiKeyRecord, Membership, Role, Session, Tenant,
    User,
};
use crate::audit::{AuditDraft, AuditEntry};

/// Accounts, sessions and audit log in sled trees named `console_*`.
#[derive(Clone)]
pub struct SledAccounts {
    db: sled::Db,
    tenants: sled::Tree,
    users: sled::Tree,
    emails: sled::Tree,
    // Both directions of the membership relation, so "members of a tenant" and
    // "tenants of a user" are prefix scans.
    by_tenant: sled::Tree,
    by_user: sled::Tree,
    api_keys: sled::Tree,
    sessions: sled::Tree,
    audit: sled::Tree,
    audit_heads: sled::Tree,
}

fn backend(e: impl std::fmt::Display) -> AccountError {
    AccountError::Backend(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> AccountResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(backend)
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> AccountResult<T> {
    serde_json::from_slice(bytes).map_err(|e| AccountError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn pair(a: &str, b: &str) -> Vec<u8> {
    // Identifiers never contain NUL, so it separates the two parts unambiguously.
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn prefix(a: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(0);
    k
}

fn audit_key(tenant: &TenantId, seq: u64) -> Vec<u8> {
    let mut k = prefix(tenant.as_str());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Name of the sled tree holding audit entries (tests tamper with it directly).
pub const AUDIT_TREE: &str = "console_audit";

impl SledAccounts {
    /// Opens (creating) the console trees in an open sled database.
    pub fn open(db: &sled::Db) -> AccountResult<Self> {
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        Ok(Self {
            db: db.clone(),
            tenants: tree("console_tenants")?,
            users: tree("console_users")?,
            emails: tree("console_user_emails")?,
            by_tenant: tree("console_members_by_tenant")?,
            by_user: tree("console_members_by_user")?,
            api_keys: tree("console_api_keys")?,
            sessions: tree("console_sessions")?,
            audit: tree(AUDIT_TREE)?,
            audit_heads: tree("console_audit_heads")?,
        })
    }

    fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> AccountResult<Option<T>> {
        match tree.get(key).map_err(backend)? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(tree: &sled::Tree, p: &[u8]) -> AccountResult<Vec<T>> {
        let mut out = Vec::new();
        for kv in tree.scan_prefix(p) {
            let (k, v) = kv.map_err(backend)?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }
}

impl AccountStore for SledAccounts {
    fn ensure_tenant(&self, tenant: &TenantId, now_ms: u64) -> AccountResult<bool> {
        let rec = encode(&Tenant {
            id: tenant.clone(),
            created_ms: now_ms,
        })?;
        let prev = self
            .tenants
            .compare_and_swap(tenant.as_str(), None as Option<&[u8]>, Some(rec))
            .map_err(backend)?;
        Ok(prev.is_ok())
    }

    fn tenant_exists(&self, tenant: &TenantId) -> AccountResult<bool> {
        self.tenants.contains_key(tenant.as_str()).map_err(backend)
    }

    fn tenants(&self) -> AccountResult<Vec<Tenant>> {
        Self::scan(&self.tenants, b"")
    }

    fn insert_user(&self, user: &User) -> AccountResult<()> {
        let rec = encode(user)?;
        // Email uniqueness and the user record are written together.
        let r = (&self.emails, &self.users).transaction(|(emails, users)| {
            if emails.get(user.email.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(()));
            }
            emails.insert(user.email.as_bytes(), user.id.as_bytes())?;
            users.insert(user.id.as_bytes(), rec.clone())?;
            Ok(())
        });
        match r {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(())) => Err(AccountError::UserExists(user.email.clone())),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }

    fn user_by_email(&self, email: &str) -> AccountResult<Option<User>> {
        match self.emails.get(email.as_bytes()).map_err(backend)? {
            Some(id) => Self::get(&self.users, &id),
            None => Ok(None),
        }
    }

    fn user(&self, id: &str) -> AccountResult<Option<User>> {
        Self::get(&self.users, id.as_bytes())
    }

    fn set_password_hash(&self, user_id: &str, phc: &str) -> AccountResult<()> {
        let mut user: User = Self::get(&self.users, user_id.as_bytes())?
            .ok_or_else(|| AccountError::UnknownUser(user_id.to_string()))?;
        user.password_hash = phc.to_string();
        self.users
            .insert(user_id.as_bytes(), encode(&user)?)
            .map_err(backend)?;
        Ok(())
    }

    fn users(&self) -> AccountResult<Vec<User>> {
        Self::scan(&self.users, b"")
    }

    fn set_membership(&self, m: &Membership) -> AccountResult<()> {
        let rec = encode(m)?;
        let (kt, ku) = (
            pair(m.tenant.as_str(), &m.user_id),
            pair(&m.user_id, m.tenant.as_str()),
        );
        (&self.by_tenant, &self.by_user)
            .transaction(|(t, u)| {
                t.insert(kt.as_slice(), rec.clone())?;
                u.insert(ku.as_slice(), rec.clone())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| backend(format!("{e:?}")))
    }

    fn membership(&self, user_id: &str, tenant: &TenantId) -> AccountResult<Option<Role>> {
        let m: Option<Membership> = Self::get(&self.by_user, &pair(user_id, tenant.as_str()))?;
        Ok(m.map(|m| m.role))
    }

    fn memberships_of(&self, user_id: &str) -> AccountResult<Vec<Membership>> {
        Self::scan(&self.by_user, &prefix(user_id))
    }

    fn members(&self, tenant: &TenantId) -> AccountResult<Vec<Membership>> {
        Self::scan(&self.by_tenant, &prefix(tenant.as_str()))
    }

    fn remove_membership(
        &self,
        user_id: &str,
        tenant: &TenantId,
    ) -> AccountResult<Option<Membership>> {
        let (kt, ku) = (
            pair(tenant.as_str(), user_id),
            pair(user_id, tenant.as_str()),
        );
        let old = (&self.by_tenant, &self.by_user)
            .transaction(|(t, u)| {
                let old = t.remove(kt.as_slice())?;
                u.remove(ku.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(old)
            })
            .map_err(|e| backend(format!("{e:?}")))?;
        old.map(|v| decode(&kt, &v)).transpose()
    }

    fn put_api_key(&self, key: &ApiKeyRecord) -> AccountResult<()> {
        self.api_keys
            .insert(key.id.as_bytes(), encode(key)?)
            .map_err(backend)?;
        Ok(())
    }

    fn api_key(&self, id: &str) -> AccountResult<Option<ApiKeyRecord>> {
        Self::get(&self.api_keys, id.as_bytes())
    }

    fn api_keys(&self, tenant: &TenantId) -> AccountResult<Vec<ApiKeyRecord>> {
        let all: Vec<ApiKeyRecord> = Self::scan(&self.api_keys, b"")?;
        Ok(all.into_iter().filter(|k| &k.tenant == tenant).collect())
    }

    fn delete_api_key(&self, tenant: &TenantId, id: &str) -> AccountResult<Option<ApiKeyRecord>> {
        let Some(rec) = self.api_key(id)? else {
            return Ok(None);
        };
        if &rec.tenant != tenant {
            return Ok(None);
        }
        self.api_keys.remove(id.as_bytes()).map_err(backend)?;
        Ok(Some(rec))
    }

    fn put_session(&self, id_hash: [u8; 32], s: &Session) -> AccountResult<()> {
        self.sessions.insert(id_hash, encode(s)?).map_err(backend)?;
        Ok(())
    }

    fn session(&self, id_hash: [u8; 32]) -> AccountResult<Option<Session>> {
        Self::get(&self.sessions, &id_hash)
    }

    fn delete_session(&self, id_hash: [u8; 32]) -> AccountResult<()> {
        self.sessions.remove(id_hash).map_err(backend)?;
        Ok(())
    }

    fn prune_sessions(&self, now_ms: u64) -> AccountResult<usize> {
        let mut n = 0;
        for kv in self.sessions.iter() {
            let (k, v) = kv.map_err(backend)?;
            // An unreadable session can never authenticate; drop it too.
            let expired = decode::<Session>(&k, &v).map_or(true, |s| s.expires_ms <= now_ms);
            if expired {
                self.sessions.remove(&k).map_err(backend)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn delete_user_sessions(&self, user_id: &str) -> AccountResult<usize> {
        let mut n = 0;
        for kv in self.sessions.iter() {
            let (k, v) = kv.map_err(backend)?;
            if decode::<Session>(&k, &v).is_ok_and(|s| s.user_id == user_id) {
                self.sessions.remove(&k).map_err(backend)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn append_audit(&self, tenant: &TenantId, draft: AuditDraft) -> AccountResult<AuditEntry> {
        let head_key = tenant.as_str().as_bytes();
        // Head and entry are written in one transaction, so concurrent appends
        // serialise and the chain never forks.
        let r = (&self.audit, &self.audit_heads).transaction(|(log, heads)| {
            let prev = match heads.get(head_key)? {
                Some(v) => {
                    let (seq, hash): (u64, String) = serde_json::from_slice(&v)
                        .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
                    let hash: [u8; 32] = hex::decode(&hash)
                        .ok()
                        .and_then(|h| h.try_into().ok())
                        .ok_or_else(|| {
                            ConflictableTransactionError::Abort("bad audit head hash".into())
                        })?;
                    Some((seq, hash))
                }
                None => None,
            };
            let entry = AuditEntry::chain(tenant, prev, draft.clone());
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
            let head = serde_json::to_vec(&(entry.seq, &entry.hash))
                .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
            log.insert(audit_key(tenant, entry.seq), bytes)?;
            heads.insert(head_key, head)?;
            Ok(entry)
        });
        match r {
            Ok(e) => Ok(e),
            Err(TransactionError::Abort(reason)) => Err(AccountError::Corrupt {
                key: format!("audit head of {tenant}"),
                reason,
            }),
            Err(TransactionError::Storage(e)) => Err(backend(e)),
        }
    }

    fn audit_entries(
        &self,
        tenant: &TenantId,
        from: u64,
        limit: usize,
    ) -> AccountResult<Vec<AuditEntry>> {
        let start = audit_key(tenant, from);
        let end = audit_key(tenant, u64::MAX);
        let mut out = Vec::new();
        for kv in self.audit.range(start..=end).take(limit) {
            let (k, v) = kv.map_err(backend)?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    fn audit_head(&self, tenant: &TenantId) -> AccountResult<Option<(u64, [u8; 32])>> {
        let key = tenant.as_str().as_bytes();
        let Some(v) = self.audit_heads.get(key).map_err(backend)? else {
            return Ok(None);
        };
        let (seq, hash): (u64, String) = decode(key, &v)?;
        let hash = hex::decode(&hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| AccountError::Corrupt {
                key: format!("audit head of {tenant}"),
                reason: "hash is not 32 hex bytes".into(),
            })?;
        Ok(Some((seq, hash)))
    }

    fn audit_tenants(&self) -> AccountResult<Vec<TenantId>> {
        let mut out = Vec::new();
        for k in self.audit_heads.iter().keys() {
            let k = k.map_err(backend)?;
            let t = String::from_utf8_lossy(&k).into_owned();
            out.push(TenantId::new(t.clone()).map_err(|e| AccountError::Corrupt {
                key: t,
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    fn flush(&self) -> AccountResult<()> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}
