//! The agent's enrolled identity on disk: who it is, its keys and trust anchor.

use std::path::{Path, PathBuf};

use protocol::{AgentId, AgentIdentity, SigningKey, TenantId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fsutil::{create_private_dir, write_atomic};

/// Problems reading or writing the agent state.
#[derive(Debug, Error)]
pub enum StateError {
    /// The agent has not been enrolled yet.
    #[error("{0} holds no enrolled agent: run `agent enroll` first")]
    NotEnrolled(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file exists but is damaged.
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

const META: &str = "agent.json";
const TLS: &str = "tls-identity.json";
const SIGNING: &str = "signing.key";

/// Non-secret facts about the enrolment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentMeta {
    /// Tenant the agent belongs to.
    pub tenant: TenantId,
    /// The agent's id.
    pub agent: AgentId,
    /// Collector address as given at enrolment (`host:port`).
    pub collector: String,
    /// Server CA certificate (hex DER): the only trust anchor for the collector.
    pub server_ca_hex: String,
    /// Tenant CA certificate (hex DER).
    pub tenant_ca_hex: String,
}

/// The TLS client key and certificate; replaced together on renewal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsIdentity {
    /// Client certificate, hex DER.
    pub cert_hex: String,
    /// Private key, hex PKCS#8 DER.
    pub key_hex: String,
}

/// Everything the agent needs to connect and sign.
#[derive(Clone)]
pub struct AgentState {
    /// State directory.
    pub dir: PathBuf,
    /// Enrolment facts.
    pub meta: AgentMeta,
    /// Current TLS identity.
    pub tls: TlsIdentity,
    /// Batch signing key.
    pub signing_key: SigningKey,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl ToString) -> StateError {
    StateError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Decodes a hex field, naming the file on failure.
pub fn unhex(path: &Path, s: &str) -> Result<Vec<u8>, StateError> {
    hex::decode(s).map_err(|e| corrupt(path, e))
}

impl AgentState {
    /// Loads an enrolled agent from `dir`.
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let meta_path = dir.join(META);
        if !meta_path.exists() {
            return Err(StateError::NotEnrolled(dir.to_path_buf()));
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(io(&p))
        };
        let meta: AgentMeta =
            serde_json::from_slice(&read(META)?).map_err(|e| corrupt(&meta_path, e))?;
        let tls_path = dir.join(TLS);
        let tls: TlsIdentity =
            serde_json::from_slice(&read(TLS)?).map_err(|e| corrupt(&tls_path, e))?;
        let seed: [u8; 32] = read(SIGNING)?
            .try_into()
            .map_err(|_| corrupt(&dir.join(SIGNING), "signing key must be 32 bytes"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            tls,
            signing_key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes a complete state (after enrolment).
    pub fn save_new(&self) -> Result<(), StateError> {
        create_private_dir(&self.dir).map_err(io(&self.dir))?;
        let p = self.dir.join(SIGNING);
        write_atomic(&p, &self.signing_key.to_bytes(), true).map_err(io(&p))?;
        self.save_tls()?;
        // Written last: its presence marks a complete enrolment.
        let p = self.dir.join(META);
        let meta = serde_json::to_vec_pretty(&self.meta).map_err(|e| corrupt(&p, e))?;
        write_atomic(&p, &meta, false).map_err(io(&p))
    }

    /// Replaces the TLS identity (after renewal).
    pub fn save_tls(&self) -> Result<(), StateError> {
        let p = self.dir.join(TLS);
        let data = serde_json::to_vec(&self.tls).map_err(|e| corrupt(&p, e))?;
        write_atomic(&p, &data, true).map_err(io(&p))
    }

    /// Tenant and agent.
    pub fn identity(&self) -> AgentIdentity {
        AgentIdentity {
            tenant: self.meta.tenant.clone(),
            agent: self.meta.agent.clone(),
        }
    }

    /// Server CA certificate DER.
    pub fn server_ca_der(&self) -> Result<Vec<u8>, StateError> {
        unhex(&self.dir.join(META), &self.meta.server_ca_hex)
    }

    /// Client certificate DER.
    pub fn cert_der(&self) -> Result<Vec<u8>, StateError> {
        unhex(&self.dir.join(TLS), &self.tls.cert_hex)
    }

    /// Client private key DER (PKCS#8).
    pub fn key_der(&self) -> Result<Vec<u8>, StateError> {
        unhex(&self.dir.join(TLS), &self.tls.key_hex)
    }
}
