//! Accounts: users, tenants, memberships with roles, API keys and sessions,
//! behind the backend-neutral [`AccountStore`] trait.

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use protocol::TenantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::audit::{AuditDraft, AuditEntry};

/// Failures of the account store and of credential handling.
#[derive(Debug, Error)]
pub enum AccountError {
    /// The storage backend failed.
    #[error("account storage: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt account record under {key}: {reason}")]
    Corrupt {
        /// Where the record lives.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
    /// A user with this email already exists.
    #[error("a user with email {0} already exists")]
    UserExists(String),
    /// No such user.
    #[error("no user with email {0}")]
    UnknownUser(String),
    /// Malformed input (email, password, role).
    #[error("{0}")]
    Invalid(String),
    /// Password hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
}

/// Result alias for account operations.
pub type AccountResult<T> = Result<T, AccountError>;

/// What a member may do inside one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read-only access to the tenant's data.
    Viewer,
    /// Read access plus the audit log and exports.
    Auditor,
    /// Everything, including tokens, revocation, members and API keys.
    Admin,
}

impl Role {
    /// Lower-case name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "auditor" => Ok(Self::Auditor),
            "admin" => Ok(Self::Admin),
            other => Err(AccountError::Invalid(format!(
                "unknown role {other:?} (admin, auditor or viewer)"
            ))),
        }
    }
}

/// A person who can log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable identifier (`u-` + 16 hex digits).
    pub id: String,
    /// Login name, stored lower-cased.
    pub email: String,
    /// Argon2id PHC string; never leaves the store through the API.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub password_hash: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
}

/// A tenant as known to the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Tenant identifier (same as the collector's).
    pub id: TenantId,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
}

/// A user's role in one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The user.
    pub user_id: String,
    /// The tenant.
    pub tenant: TenantId,
    /// The role.
    pub role: Role,
}

/// An API key as stored: only the SHA-256 of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier (`k-` + 16 hex digits), part of the presented key.
    pub id: String,
    /// Tenant the key acts in.
    pub tenant: TenantId,
    /// Role the key acts with.
    pub role: Role,
    /// Free-text label.
    pub name: String,
    /// SHA-256 of the secret part, hex.
    pub secret_sha256: String,
    /// Who created it.
    pub created_by: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Expiry, ms since the epoch; never when absent.
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

/// A console login session, stored under the SHA-256 of its cookie value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Logged-in user.
    pub user_id: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Expiry, ms since the epoch.
    pub expires_ms: u64,
}

/// Backend-neutral storage of accounts, sessions and the audit log.
pub trait AccountStore: Send + Sync + 'static {
    /// Creates a tenant unless it exists; returns whether it was created.
    fn ensure_tenant(&self, tenant: &TenantId, now_ms: u64) -> AccountResult<bool>;
    /// Whether the tenant exists.
    fn tenant_exists(&self, tenant: &TenantId) -> AccountResult<bool>;
    /// All tenants.
    fn tenants(&self) -> AccountResult<Vec<Tenant>>;

    /// Inserts a new user; fails if the email is taken.
    fn insert_user(&self, user: &User) -> AccountResult<()>;
    /// Looks a user up by (lower-cased) email.
    fn user_by_email(&self, email: &str) -> AccountResult<Option<User>>;
    /// Looks a user up by id.
    fn user(&self, id: &str) -> AccountResult<Option<User>>;
    /// Replaces a user's password hash.
    fn set_password_hash(&self, user_id: &str, phc: &str) -> AccountResult<()>;
    /// All users.
    fn users(&self) -> AccountResult<Vec<User>>;

    /// Sets (or replaces) a user's role in a tenant.
    fn set_membership(&self, m: &Membership) -> AccountResult<()>;
    /// A user's role in a tenant, if a member.
    fn membership(&self, user_id: &str, tenant: &TenantId) -> AccountResult<Option<Role>>;
    /// Every tenant a user belongs to.
    fn memberships_of(&self, user_id: &str) -> AccountResult<Vec<Membership>>;
    /// Every member of a tenant.
    fn members(&self, tenant: &TenantId) -> AccountResult<Vec<Membership>>;
    /// Removes a user from a tenant; returns the membership if there was one.
    fn remove_membership(
        &self,
        user_id: &str,
        tenant: &TenantId,
    ) -> AccountResult<Option<Membership>>;

    /// Stores a new API key.
    fn put_api_key(&self, key: &ApiKeyRecord) -> AccountResult<()>;
    /// Looks an API key up by id.
    fn api_key(&self, id: &str) -> AccountResult<Option<ApiKeyRecord>>;
    /// A tenant's API keys.
    fn api_keys(&self, tenant: &TenantId) -> AccountResult<Vec<ApiKeyRecord>>;
    /// Deletes an API key of a tenant; returns it if it existed there.
    fn delete_api_key(&self, tenant: &TenantId, id: &str) -> AccountResult<Option<ApiKeyRecord>>;

    /// Stores a session under the SHA-256 of its id.
    fn put_session(&self, id_hash: [u8; 32], s: &Session) -> AccountResult<()>;
    /// A session by the SHA-256 of its id.
    fn session(&self, id_hash: [u8; 32]) -> AccountResult<Option<Session>>;
    /// Deletes a session.
    fn delete_session(&self, id_hash: [u8; 32]) -> AccountResult<()>;
    /// Deletes every session expired at `now_ms`; returns how many.
    fn prune_sessions(&self, now_ms: u64) -> AccountResult<usize>;
    /// Deletes every session of a user; returns how many.
    fn delete_user_sessions(&self, user_id: &str) -> AccountResult<usize>;

    /// Appends to a tenant's hash-chained audit log atomically; returns the entry.
    fn append_audit(&self, tenant: &TenantId, draft: AuditDraft) -> AccountResult<AuditEntry>;
    /// A tenant's audit entries with `seq >= from`, in order, at most `limit`.
    fn audit_entries(
        &self,
        tenant: &TenantId,
        from: u64,
        limit: usize,
    ) -> AccountResult<Vec<AuditEntry>>;
    /// The sequence and hash of a tenant's newest audit entry, if any.
    fn audit_head(&self, tenant: &TenantId) -> AccountResult<Option<(u64, [u8; 32])>>;
    /// Tenants that have an audit log.
    fn audit_tenants(&self) -> AccountResult<Vec<TenantId>>;

    /// Makes everything written so far durable.
    fn flush(&self) -> AccountResult<()>;
}

/// Fills a buffer from the operating system's random source.
pub fn random_bytes<const N: usize>() -> AccountResult<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| AccountError::Random(e.to_string()))?;
    Ok(b)
}

/// SHA-256 of a secret (session ids, API key secrets): only this is stored.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Normalises and checks an email address (lower-cased, one `@`, no spaces).
pub fn normalize_email(email: &str) -> AccountResult<String> {
    let e = email.trim().to_ascii_lowercase();
    let valid = e.len() <= 254
        && e.split('@').count() == 2
        && e.split('@').all(|p| !p.is_empty())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(AccountError::Invalid(format!(
            "{email:?} is not an email address"
        )))
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Hashes a password with argon2id (default parameters, random salt).
pub fn hash_password(password: &str) -> AccountResult<String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AccountError::Invalid(format!(
            "password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let salt_bytes: [u8; 16] = random_bytes()?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| AccountError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC string; false on any mismatch or malformed hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A PHC string that verifies no password; checked against for unknown users so
/// a login takes as long whether or not the account exists.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::encode_b64(&[7u8; 16]).ok();
        salt.and_then(|s| {
            argon2::Argon2::default()
                .hash_password(b"no user has this password", &s)
                .ok()
                .map(|h| h.to_string())
        })
        .unwrap_or_default()
    })
}

/// Creates a user (or reuses one with the same email, checking nothing about its
/// password) and gives it `role` in `tenant`, creating the tenant on first use.
/// Returns the user and whether it was newly created.
pub fn create_user_with_membership(
    store: &dyn AccountStore,
    email: &str,
    password: Option<&str>,
    tenant: &TenantId,
    role: Role,
    now_ms: u64,
) -> AccountResult<(User, bool)> {
    let email = normalize_email(email)?;
    store.ensure_tenant(tenant, now_ms)?;
    let (user, created) = match store.user_by_email(&email)? {
        Some(u) => (u, false),
        None => {
            let password = password.ok_or_else(|| {
                AccountError::Invalid("a password is required for a new user".into())
            })?;
            let id = format!("u-{}", hex::encode(random_bytes::<8>()?));
            let user = User {
                id,
                email,
                password_hash: hash_password(password)?,
                created_ms: now_ms,
            };
            store.insert_user(&user)?;
            (user, true)
        }
    };
    store.set_membership(&Membership {
        user_id: user.id.clone(),
        tenant: tenant.clone(),
        role,
    })?;
    Ok((user, created))
}

/// Sets a new password for a user, ends all of their sessions, and records
/// `user.password_set` in the audit log of every tenant they belong to.
pub fn set_password(
    store: &dyn AccountStore,
    user: &User,
    new_password: &str,
    actor: &str,
    now_ms: u64,
) -> AccountResult<usize> {
    let phc = hash_password(new_password)?;
    store.set_password_hash(&user.id, &phc)?;
    let ended = store.delete_user_sessions(&user.id)?;
    for m in store.memberships_of(&user.id)? {
        store.append_audit(
            &m.tenant,
            AuditDraft {
                time_ms: now_ms,
                actor: actor.to_string(),
                action: "user.password_set".into(),
                target: user.email.clone(),
                details: serde_json::json!({ "sessions_ended": ended }),
            },
        )?;
    }
    Ok(ended)
}
