//! Certificate authorities: the collector's server CA and one CA per tenant.
//!
//! Both are created on first use and kept in the store, so a restarted
//! collector keeps its identity and every agent certificate stays valid.

use std::sync::Arc;
use std::time::Duration;

use protocol::{AgentId, AgentIdentity, TenantId};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

use crate::store::{Store, StoreError, StoredCa};

/// Failures creating or using certificate authorities.
#[derive(Debug, Error)]
pub enum PkiError {
    /// Certificate generation or signing failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The agent's certificate request is unusable.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(String),
    /// A server name in the configuration is not a valid DNS name or IP.
    #[error("invalid server name {0:?}")]
    BadServerName(String),
}

/// SHA-256 fingerprint of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // getrandom only fails when the OS has no entropy source at all.
    getrandom::fill(&mut bytes).expect("operating system random source");
    bytes[0] &= 0x7f; // keep the serial positive
    SerialNumber::from(bytes.to_vec())
}

fn new_ca(common_name: &str) -> Result<StoredCa, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "vigil");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(10 * 365 * 24 * 3600);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    Ok(StoredCa {
        cert_der: cert.der().to_vec(),
        key_pkcs8: key.serialize_der(),
    })
}

fn issuer(ca: &StoredCa) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::try_from(ca.key_pkcs8.as_slice())?;
    Ok(Issuer::from_ca_cert_der(
        &CertificateDer::from(ca.cert_der.as_slice()),
        key,
    )?)
}

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its expiry, ms since the epoch.
    pub not_after_ms: u64,
}

/// The collector's certificate authorities.
pub struct Pki {
    store: Arc<dyn Store>,
    server_ca: StoredCa,
}

impl Pki {
    /// Loads the server CA, creating it on first start.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, PkiError> {
        let server_ca = match store.server_ca()? {
            Some(ca) => ca,
            None => store.init_server_ca(new_ca("vigil collector CA")?)?,
        };
        Ok(Self { store, server_ca })
    }

    /// The server CA certificate (DER): the trust anchor agents pin.
    pub fn server_ca_der(&self) -> &[u8] {
        &self.server_ca.cert_der
    }

    /// Fingerprint agents pass as `--ca-fingerprint`.
    pub fn server_ca_fingerprint(&self) -> String {
        fingerprint(&self.server_ca.cert_der)
    }

    /// A fresh server certificate for `names`, with the chain to present.
    pub fn server_identity(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| PkiError::BadServerName(n.clone())),
            })
            .collect::<Result<_, _>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "vigil collector");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + Duration::from_secs(90 * 24 * 3600);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer(&self.server_ca)?)?;
        let chain = vec![
            CertificateDer::from(cert.der().to_vec()),
            CertificateDer::from(self.server_ca.cert_der.clone()),
        ];
        let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        Ok((chain, key))
    }

    /// The tenant's CA, created on first use.
    pub fn tenant_ca(&self, tenant: &TenantId) -> Result<StoredCa, PkiError> {
        if let Some(ca) = self.store.tenant_ca(tenant)? {
            return Ok(ca);
        }
        let ca = new_ca(&format!("vigil tenant CA {tenant}"))?;
        Ok(self.store.init_tenant_ca(tenant, ca)?)
    }

    /// The tenant's CA certificate if the tenant has one (never creates it).
    pub fn existing_tenant_ca(&self, tenant: &TenantId) -> Result<Option<StoredCa>, PkiError> {
        Ok(self.store.tenant_ca(tenant)?)
    }

    /// Checks that a CSR parses and its self-signature verifies.
    pub fn check_csr(&self, csr_der: &[u8]) -> Result<(), PkiError> {
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
            .map(|_| ())
            .map_err(|e| PkiError::BadCsr(e.to_string()))
    }

    /// Signs an agent's CSR with its tenant's CA; the collector, not the CSR,
    /// decides every name and extension in the certificate.
    pub fn issue_agent_cert(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        csr_der: &[u8],
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let identity = AgentIdentity {
            tenant: tenant.clone(),
            agent: agent.clone(),
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, tenant.as_str());
        dn.push(DnType::CommonName, agent.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(identity.to_uri().try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        // Backdating absorbs small clock skew; short lifetimes get proportionally less
        // so the agent's renewal margin keeps its meaning.
        params.not_before = now - Duration::from_secs(300).min(lifetime / 10);
        let not_after = now + lifetime;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&issuer(&self.tenant_ca(tenant)?)?)?;
        Ok(IssuedCert {
            der: signed.der().to_vec(),
            not_after_ms: (not_after.unix_timestamp_nanos() / 1_000_000).max(0) as u64,
        })
    }
}

/// The agent identity named in a client certificate's SAN URI.
pub fn identity_from_cert(der: &[u8]) -> Result<AgentIdentity, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("unparsable: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad SAN extension: {e}"))?
        .ok_or("certificate has no subject alternative name")?;
    let mut found = None;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name
            && uri.starts_with(protocol::identity::AGENT_URI_PREFIX)
        {
            if found.is_some() {
                return Err("certificate names more than one agent".into());
            }
            found = Some(AgentIdentity::from_uri(uri).map_err(|e| e.to_string())?);
        }
    }
    found.ok_or_else(|| "certificate names no agent".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[test]
    fn issued_cert_names_the_agent_and_ignores_csr_names() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let pki = Pki::open(store.clone()).unwrap();
        let tenant = TenantId::new("acme").unwrap();
        let agent = AgentId::new("ag-1").unwrap();
        let key = KeyPair::generate().unwrap();
        // The CSR asks for another tenant's identity; the collector must not honour it.
        let csr = CertificateParams::new(vec!["urn:vigil:agent:evil:ag-9".to_string()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let issued = pki
            .issue_agent_cert(&tenant, &agent, csr.der(), Duration::from_secs(3600))
            .unwrap();
        let id = identity_from_cert(&issued.der).unwrap();
        assert_eq!(id.tenant, tenant);
        assert_eq!(id.agent, agent);
        // Same CA after reopening.
        let fp = pki.server_ca_fingerprint();
        assert_eq!(Pki::open(store).unwrap().server_ca_fingerprint(), fp);
    }

    #[test]
    fn garbage_csr_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let pki = Pki::open(store).unwrap();
        let r = pki.issue_agent_cert(
            &TenantId::new("acme").unwrap(),
            &AgentId::new("ag-1").unwrap(),
            b"not a csr",
            Duration::from_secs(60),
        );
        assert!(matches!(r, Err(PkiError::BadCsr(_))));
    }
}
