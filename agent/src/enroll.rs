//! Enrolment: exchange a single-use token and a CSR for a tenant certificate.

use std::path::PathBuf;

use protocol::{AgentIdentity, EnrollRequest, Message, SigningKey};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use sha2::{Digest, Sha256};

use crate::error::AgentError;
use crate::link;
use crate::state::{AgentMeta, AgentState, TlsIdentity};
use crate::tls;

/// What `agent enroll` needs.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// Collector `host:port`.
    pub collector: String,
    /// Enrolment token from `collector token create`.
    pub token: String,
    /// SHA-256 fingerprint of the collector's server CA.
    pub ca_fingerprint: String,
    /// Where to keep the identity.
    pub state_dir: PathBuf,
    /// Name reported to the collector's inventory.
    pub hostname: String,
}

/// A fresh TLS key and a CSR for it.
pub fn new_tls_key_and_csr(common_name: &str) -> Result<(KeyPair, Vec<u8>), AgentError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| AgentError::Keygen(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AgentError::Keygen(e.to_string()))?;
    Ok((key, csr.der().to_vec()))
}

/// A new random Ed25519 batch-signing key.
pub fn new_signing_key() -> Result<SigningKey, AgentError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AgentError::Keygen(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Enrols with the collector and saves the identity in `opts.state_dir`.
pub async fn enroll(opts: &EnrollOptions) -> Result<AgentState, AgentError> {
    if opts.state_dir.join("agent.json").exists() {
        return Err(AgentError::Unexpected(format!(
            "{} already holds an enrolled agent; use another --state-dir or remove it",
            opts.state_dir.display()
        )));
    }
    let pin = tls::parse_fingerprint(&opts.ca_fingerprint)?;
    let (tls_key, csr_der) = new_tls_key_and_csr(&opts.hostname)?;
    let signing_key = new_signing_key()?;
    let (addr, server_name) = link::resolve(&opts.collector).await?;
    let endpoint = link::endpoint(addr)?;
    let (conn, mut send, mut reader) =
        link::open(&endpoint, tls::enrolment_config(pin)?, addr, &server_name).await?;
    link::write(&mut send, &link::hello()).await?;
    match reader.first().await? {
        Message::Welcome(_) => {}
        other => return Err(AgentError::Unexpected(format!("{other:?}"))),
    }
    link::write(
        &mut send,
        &Message::Enroll(EnrollRequest {
            token: opts.token.trim().to_string(),
            csr_der,
            signing_key: signing_key.verifying_key().to_bytes(),
            hostname: opts.hostname.clone(),
        }),
    )
    .await?;
    let resp = match reader.first().await? {
        Message::Enrolled(r) => r,
        other => return Err(AgentError::Unexpected(format!("{other:?}"))),
    };
    let _ = send.finish();
    conn.close(0u32.into(), b"enrolled");
    endpoint.wait_idle().await;

    // The CA we are told to trust from now on must be the one we pinned.
    if <[u8; 32]>::from(Sha256::digest(&resp.server_ca_der)) != pin {
        return Err(AgentError::Unexpected(
            "collector returned a server CA that does not match the pinned fingerprint".into(),
        ));
    }
    let expected = AgentIdentity {
        tenant: resp.tenant.clone(),
        agent: resp.agent.clone(),
    };
    let named = crate::cert::identity(&resp.certificate_der)?;
    if named != expected {
        return Err(AgentError::Unexpected(format!(
            "certificate names {named} but the collector said {expected}"
        )));
    }
    let state = AgentState {
        dir: opts.state_dir.clone(),
        meta: AgentMeta {
            tenant: resp.tenant,
            agent: resp.agent,
            collector: opts.collector.clone(),
            server_ca_hex: hex::encode(&resp.server_ca_der),
            tenant_ca_hex: hex::encode(&resp.tenant_ca_der),
        },
        tls: TlsIdentity {
            cert_hex: hex::encode(&resp.certificate_der),
            key_hex: hex::encode(tls_key.serialize_der()),
        },
        signing_key,
    };
    state.save_new()?;
    Ok(state)
}
