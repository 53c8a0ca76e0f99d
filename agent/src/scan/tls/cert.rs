//! Certificate analysis: leaf facts (x509-parser), chain validation and name
//! matching (webpki against a configurable root store), self-signature (ring).

use std::path::Path;

use protocol::CertificateInfo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Why a root store could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RootStoreError {
    /// The PEM file could not be read or parsed.
    #[error("cannot read root certificates from {path}: {reason}")]
    Pem {
        /// File that was read.
        path: String,
        /// Parser or I/O error.
        reason: String,
    },
    /// A certificate is not usable as a trust anchor.
    #[error("certificate {index} is not a valid trust anchor: {reason}")]
    Anchor {
        /// Position in the input.
        index: usize,
        /// webpki's reason.
        reason: String,
    },
    /// The input held no certificate at all.
    #[error("no root certificates found")]
    Empty,
}

/// Trust anchors the chain of a scanned server is validated against.
#[derive(Clone)]
pub struct RootStore {
    anchors: Vec<TrustAnchor<'static>>,
}

impl std::fmt::Debug for RootStore {
    // Printing every anchor would flood logs that include scan options.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootStore")
            .field("anchors", &self.anchors.len())
            .finish()
    }
}

impl RootStore {
    /// The Mozilla root program, as shipped by `webpki-root-certs`.
    pub fn mozilla() -> Self {
        let anchors = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter_map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .ok()
                    .map(|a| a.to_owned())
            })
            .collect();
        Self { anchors }
    }

    /// Roots from DER certificates (e.g. a private CA).
    pub fn from_der(certs: &[CertificateDer<'_>]) -> Result<Self, RootStoreError> {
        if certs.is_empty() {
            return Err(RootStoreError::Empty);
        }
        let anchors = certs
            .iter()
            .enumerate()
            .map(|(index, c)| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| RootStoreError::Anchor {
                        index,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { anchors })
    }

    /// Roots from a PEM bundle file.
    pub fn from_pem_file(path: &Path) -> Result<Self, RootStoreError> {
        let pem_err = |reason: String| RootStoreError::Pem {
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| pem_err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(e.to_string()))?;
        Self::from_der(&certs)
    }

    /// Number of trust anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether the store has no anchors (nothing would validate).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// Result of validating a served chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Chain builds to a trust anchor, within validity, for server authentication.
    pub chain_valid: bool,
    /// webpki's reason when it does not.
    pub error: Option<String>,
    /// The leaf covers the server name.
    pub name_matches: bool,
}

/// Validates `chain` (leaf first) for `server_name` at `now`.
pub fn validate(
    chain: &[Vec<u8>],
    server_name: &str,
    roots: &RootStore,
    now: UnixTime,
) -> Validation {
    let Some(leaf_der) = chain.first() else {
        return Validation {
            chain_valid: false,
            error: Some("server sent no certificate".into()),
            name_matches: false,
        };
    };
    let leaf_der = CertificateDer::from(leaf_der.as_slice());
    let leaf = match webpki::EndEntityCert::try_from(&leaf_der) {
        Ok(l) => l,
        Err(e) => {
            return Validation {
                chain_valid: false,
                error: Some(format!("unparseable leaf certificate: {e}")),
                name_matches: false,
            };
        }
    };
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let chain_result = leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &roots.anchors,
        &intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    );
    let name_matches = ServerName::try_from(server_name.to_string())
        .ok()
        .is_some_and(|n| leaf.verify_is_valid_for_subject_name(&n).is_ok());
    Validation {
        chain_valid: chain_result.is_ok(),
        error: chain_result.err().map(|e| e.to_string()),
        name_matches,
    }
}

/// Why a certificate could not be described.
#[derive(Debug, thiserror::Error)]
#[error("cannot parse certificate: {0}")]
pub struct CertParseError(String);

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_DSA: &str = "1.2.840.10040.4.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";

/// Extracts the leaf facts reported in [`CertificateInfo`].
pub fn describe(der: &[u8], now_ms: i64) -> Result<CertificateInfo, CertParseError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertParseError(e.to_string()))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push((*d).to_string()),
                GeneralName::IPAddress(b) => {
                    if let Some(ip) = ip_from_bytes(b) {
                        sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let not_before_ms = cert.validity().not_before.timestamp().saturating_mul(1000);
    let not_after_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
    let (key_type, key_bits) = key_facts(&cert);
    let sig_oid = &cert.signature_algorithm.algorithm;
    let signature_algorithm =
        x509_parser::objects::oid2sn(sig_oid, x509_parser::objects::oid_registry())
            .map(str::to_string)
            .unwrap_or_else(|_| sig_oid.to_id_string());
    let self_signed =
        cert.subject().as_raw() == cert.issuer().as_raw() && verifies_with_own_key(&cert);
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_before_ms,
        not_after_ms,
        days_left: not_after_ms.saturating_sub(now_ms).div_euclid(86_400_000),
        key_type,
        key_bits,
        signature_algorithm,
        self_signed,
        fingerprint_sha256: hex::encode(Sha256::digest(der)),
        serial: cert
            .raw_serial_as_string()
            .replace(':', "")
            .to_ascii_lowercase(),
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// Bit length of a big-endian unsigned integer.
fn bit_len(mut b: &[u8]) -> u32 {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    match b.first() {
        None => 0,
        Some(first) => (b.len() as u32 - 1) * 8 + (8 - first.leading_zeros()),
    }
}

fn key_facts(cert: &X509Certificate<'_>) -> (String, u32) {
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_RSA | OID_RSA_PSS => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => bit_len(rsa.modulus),
                _ => 0,
            };
            ("rsa".into(), bits)
        }
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let bits = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => 256,
                Some("1.3.132.0.34") => 384,
                Some("1.3.132.0.35") => 521,
                Some("1.3.132.0.10") => 256,
                _ => spki.parsed().map(|k| k.key_size() as u32).unwrap_or(0),
            };
            ("ec".into(), bits)
        }
        OID_ED25519 => ("ed25519".into(), 256),
        OID_ED448 => ("ed448".into(), 456),
        OID_DSA => (
            "dsa".into(),
            spki.parsed().map(|k| k.key_size() as u32).unwrap_or(0),
        ),
        other => (other.to_string(), 0),
    }
}

/// Checks the certificate's signature with its own key; ring's legacy
/// algorithms are included on purpose so weak self-signed keys are still recognised.
fn verifies_with_own_key(cert: &X509Certificate<'_>) -> bool {
    use ring::signature as s;
    let algs: &[&'static dyn s::VerificationAlgorithm] =
        match cert.signature_algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.5" => &[&s::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY],
            "1.2.840.113549.1.1.11" => &[&s::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY],
            "1.2.840.113549.1.1.12" => &[&s::RSA_PKCS1_2048_8192_SHA384],
            "1.2.840.113549.1.1.13" => &[&s::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY],
            "1.2.840.113549.1.1.10" => &[
                &s::RSA_PSS_2048_8192_SHA256,
                &s::RSA_PSS_2048_8192_SHA384,
                &s::RSA_PSS_2048_8192_SHA512,
            ],
            "1.2.840.10045.4.3.2" => &[&s::ECDSA_P256_SHA256_ASN1, &s::ECDSA_P384_SHA256_ASN1],
            "1.2.840.10045.4.3.3" => &[&s::ECDSA_P384_SHA384_ASN1, &s::ECDSA_P256_SHA384_ASN1],
            OID_ED25519 => &[&s::ED25519],
            _ => &[],
        };
    let key = cert.public_key().subject_public_key.data.as_ref();
    let sig = cert.signature_value.data.as_ref();
    let msg = cert.tbs_certificate.as_ref();
    algs.iter().any(|alg| {
        s::UnparsedPublicKey::new(*alg, key)
            .verify(msg, sig)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length() {
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01, 0x00]), 9);
        assert_eq!(bit_len(&[0, 0]), 0);
    }

    #[test]
    fn describes_self_signed_ec_cert() {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("self-sign");
        let info = describe(cert.der(), 0).expect("describe");
        assert_eq!(info.key_type, "ec");
        assert_eq!(info.key_bits, 256);
        assert!(info.self_signed);
        assert_eq!(info.sans, vec!["a.test".to_string()]);
        assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
        let v = validate(
            &[cert.der().to_vec()],
            "a.test",
            &RootStore::mozilla(),
            UnixTime::now(),
        );
        assert!(!v.chain_valid);
        assert!(v.name_matches);
        let roots = RootStore::from_der(&[cert.der().clone()]).expect("roots");
        let v = validate(&[cert.der().to_vec()], "b.test", &roots, UnixTime::now());
        assert!(v.chain_valid, "{v:?}");
        assert!(!v.name_matches);
    }
}
