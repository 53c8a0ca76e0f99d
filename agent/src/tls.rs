//! QUIC client configurations: pinned-fingerprint trust for enrolment, the
//! server CA plus a client certificate afterwards. TLS 1.3 only, ring provider.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// TLS setup failures.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The fingerprint is not 64 hex digits.
    #[error("CA fingerprint must be 64 hex digits (SHA-256), got {0:?}")]
    BadFingerprint(String),
    /// A certificate or key is unusable.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a SHA-256 fingerprint, accepting `aa:bb:..` and upper case.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], TlsError> {
    let clean: String = s.chars().filter(|c| *c != ':').collect();
    hex::decode(clean.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| TlsError::BadFingerprint(s.to_string()))
}

/// Implements a verifier's handshake-signature methods with `self.provider`'s
/// algorithms: only certificate trust differs between our verifiers.
macro_rules! provider_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}
pub(crate) use provider_signature_checks;

/// Trusts the server only if its chain contains the CA with the pinned fingerprint
/// and the leaf validates against that CA for the server name.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| <[u8; 32]>::from(Sha256::digest(c.as_ref())) == self.pin)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    crate::tls::provider_signature_checks!();
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(20)).expect("20s is a valid idle timeout"),
    ))
    .keep_alive_interval(Some(Duration::from_secs(5)))
    .stream_receive_window((4u32 * 1024 * 1024).into())
    .send_window(32 * 1024 * 1024);
    Arc::new(t)
}

fn finish(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = tls;
    tls.alpn_protocols = vec![protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// Enrolment: no client certificate, server trusted through the pinned CA fingerprint.
pub fn enrolment_config(pin: [u8; 32]) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier { pin, provider }))
        .with_no_client_auth();
    finish(tls)
}

/// Normal operation: server CA as the only root, optional client certificate.
pub fn client_config(
    server_ca_der: &[u8],
    client: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca_der.to_vec()))
        .map_err(|e| TlsError::Config(format!("server CA: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let tls = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(cert)],
                PrivateKeyDer::Pkcs8(key.into()),
            )
            .map_err(|e| TlsError::Config(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    finish(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_common_spellings() {
        let hex64 = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&hex64).unwrap(), [0xab; 32]);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
