//! Client-certificate verification against the CA of the tenant the
//! certificate claims, plus revocation.
//!
//! A client certificate is optional at the TLS layer so that agents without one
//! can enrol; every other request requires one (enforced by the session).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::TenantId;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::pki::{Pki, identity_from_cert};
use crate::store::Store;

/// Verifies agent certificates per tenant and refuses revoked agents.
pub struct AgentCertVerifier {
    pki: Arc<Pki>,
    store: Arc<dyn Store>,
    provider: Arc<CryptoProvider>,
    per_tenant: Mutex<HashMap<TenantId, Arc<dyn ClientCertVerifier>>>,
}

impl std::fmt::Debug for AgentCertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCertVerifier").finish_non_exhaustive()
    }
}

fn other(msg: impl Into<String>) -> rustls::Error {
    #[derive(Debug)]
    struct Msg(String);
    impl std::fmt::Display for Msg {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Msg {}
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Msg(
        msg.into()
    )))))
}

impl AgentCertVerifier {
    /// A verifier backed by the collector's CAs and agent records.
    pub fn new(pki: Arc<Pki>, store: Arc<dyn Store>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pki,
            store,
            provider,
            per_tenant: Mutex::new(HashMap::new()),
        }
    }

    fn tenant_verifier(
        &self,
        tenant: &TenantId,
    ) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        let mut cache = self
            .per_tenant
            .lock()
            .map_err(|_| other("verifier cache poisoned"))?;
        if let Some(v) = cache.get(tenant) {
            return Ok(v.clone());
        }
        // A tenant without a CA has never enrolled anyone: nothing can chain to it.
        let ca = self
            .pki
            .existing_tenant_ca(tenant)
            .map_err(|e| other(e.to_string()))?
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der))
            .map_err(|e| other(format!("tenant CA unusable: {e}")))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| other(format!("tenant verifier: {e}")))?;
        cache.insert(tenant.clone(), verifier.clone());
        Ok(verifier)
    }
}

impl ClientCertVerifier for AgentCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let identity = identity_from_cert(end_entity).map_err(other)?;
        self.tenant_verifier(&identity.tenant)?.verify_client_cert(
            end_entity,
            intermediates,
            now,
        )?;
        let record = self
            .store
            .agent(&identity.agent)
            .map_err(|e| other(e.to_string()))?
            .ok_or_else(|| other(format!("unknown agent {identity}")))?;
        if record.tenant != identity.tenant {
            return Err(other(format!(
                "agent {} belongs to another tenant",
                identity.agent
            )));
        }
        if record.revoked_ms.is_some() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
