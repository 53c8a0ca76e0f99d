//! Typed observations produced by the agent's scanners.
//!
//! Observations are facts ("port 443 is open", "HSTS max-age is 300"), never
//! verdicts: the collector's rules turn them into findings. New fields and
//! variants are appended at the end so older collectors keep decoding.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// One result: what was observed, on which asset, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub struct Record {
    /// The asset the observation is about (host name or address as targeted).
    pub asset: String,
    /// Job that produced the observation (empty for one-shot scans).
    pub job_id: String,
    /// When it was observed, milliseconds since the Unix epoch.
    pub observed_ms: u64,
    /// The observation itself.
    pub observation: Observation,
}

/// A typed observation from one scanner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Encode, Decode)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// TCP port state and service identification.
    Port(PortObservation),
    /// TLS endpoint: certificate, protocols and cipher suites.
    Tls(TlsObservation),
    /// HTTP security headers of one URL.
    Http(HttpObservation),
    /// DNS and mail security records of one domain.
    Dns(DnsObservation),
}

/// State of a TCP port after a connect attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    /// The handshake completed.
    Open,
    /// The host answered with a reset.
    Closed,
    /// No answer before the timeout.
    Filtered,
}

/// Result of probing one TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct PortObservation {
    /// Address that was connected to.
    pub ip: String,
    /// TCP port.
    pub port: u16,
    /// Connect result.
    pub state: PortState,
    /// Identified service (`ssh`, `http`, `redis`, `rdp`, `smb`, `tls`...), if any.
    pub service: Option<String>,
    /// Product/version string parsed from the banner (`OpenSSH_9.6`, `nginx/1.25.3`).
    pub product: Option<String>,
    /// First printable bytes the service sent or answered, truncated.
    pub banner: Option<String>,
    /// Whether the port completed a TLS handshake.
    pub tls: bool,
}

/// A TLS protocol version.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
pub enum TlsVersion {
    /// SSL 3.0.
    #[serde(rename = "SSLv3")]
    Ssl3,
    /// TLS 1.0.
    #[serde(rename = "TLSv1.0")]
    Tls10,
    /// TLS 1.1.
    #[serde(rename = "TLSv1.1")]
    Tls11,
    /// TLS 1.2.
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

/// Why a cipher suite is considered weak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "snake_case")]
pub enum WeakCipherClass {
    /// No encryption.
    Null,
    /// No server authentication.
    Anonymous,
    /// RC4 stream cipher.
    Rc4,
    /// Triple DES (Sweet32).
    TripleDes,
    /// Export-grade or single DES.
    Export,
    /// CBC mode with SHA-1 MAC.
    CbcSha1,
    /// Static RSA key exchange (no forward secrecy).
    StaticRsa,
}

/// A cipher suite the server accepted that is considered weak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct WeakCipher {
    /// Protocol version it was accepted under.
    pub version: TlsVersion,
    /// IANA name, e.g. `TLS_RSA_WITH_3DES_EDE_CBC_SHA`.
    pub name: String,
    /// IANA code point.
    pub code: u16,
    /// Every weakness class that applies.
    pub classes: Vec<WeakCipherClass>,
}

/// Leaf certificate facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct CertificateInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS and IP subject alternative names.
    pub sans: Vec<String>,
    /// Start of validity, milliseconds since the Unix epoch.
    pub not_before_ms: i64,
    /// End of validity, milliseconds since the Unix epoch.
    pub not_after_ms: i64,
    /// Whole days until expiry (negative once expired).
    pub days_left: i64,
    /// Key algorithm: `rsa`, `ec`, `ed25519`...
    pub key_type: String,
    /// Key size in bits (curve size for EC).
    pub key_bits: u32,
    /// Signature algorithm, e.g. `sha256WithRSAEncryption`.
    pub signature_algorithm: String,
    /// Subject equals issuer and the signature verifies with its own key.
    pub self_signed: bool,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
    /// Serial number, lowercase hex.
    pub serial: String,
}

/// Result of analysing one TLS endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct TlsObservation {
    /// Address connected to.
    pub ip: String,
    /// TCP port.
    pub port: u16,
    /// Server name sent in SNI and checked against the certificate.
    pub server_name: String,
    /// Leaf certificate, when a handshake completed.
    pub certificate: Option<CertificateInfo>,
    /// Number of certificates the server sent.
    pub chain_length: u32,
    /// The chain validates against the configured root store.
    pub chain_valid: bool,
    /// Why validation failed, when it did.
    pub validation_error: Option<String>,
    /// The certificate covers `server_name`.
    pub name_matches: bool,
    /// Protocol versions the server accepted.
    pub protocols: Vec<TlsVersion>,
    /// Weak cipher suites the server accepted, per version.
    pub weak_ciphers: Vec<WeakCipher>,
}

/// Result of fetching one URL and reading its security headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct HttpObservation {
    /// URL fetched.
    pub url: String,
    /// HTTP status code.
    pub status: u16,
    /// Raw Strict-Transport-Security header.
    pub hsts: Option<String>,
    /// Parsed HSTS max-age in seconds.
    pub hsts_max_age: Option<u64>,
    /// HSTS includeSubDomains directive present.
    pub hsts_include_subdomains: bool,
    /// Content-Security-Policy header.
    pub csp: Option<String>,
    /// X-Frame-Options header.
    pub x_frame_options: Option<String>,
    /// X-Content-Type-Options header.
    pub x_content_type_options: Option<String>,
    /// Referrer-Policy header.
    pub referrer_policy: Option<String>,
    /// Permissions-Policy header.
    pub permissions_policy: Option<String>,
    /// Server header.
    pub server: Option<String>,
    /// X-Powered-By header.
    pub x_powered_by: Option<String>,
    /// For plain-HTTP URLs: whether the server redirects to HTTPS.
    pub redirects_to_https: Option<bool>,
}

/// SPF policy of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct SpfRecord {
    /// The TXT record text.
    pub raw: String,
    /// Qualifier of the final `all` mechanism (`+`, `~`, `-`, `?`), if present.
    pub all_qualifier: Option<String>,
    /// DNS-querying mechanisms counted toward the RFC 7208 limit of 10.
    pub dns_lookups: u32,
}

/// DMARC policy of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct DmarcRecord {
    /// The TXT record text.
    pub raw: String,
    /// `p=` policy: `none`, `quarantine` or `reject`.
    pub policy: Option<String>,
    /// `pct=` value, 100 when absent.
    pub pct: u32,
    /// `rua=` aggregate report address present.
    pub has_rua: bool,
}

/// DNS and mail security facts of one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct DnsObservation {
    /// Domain queried.
    pub domain: String,
    /// SPF record, when exactly one exists.
    pub spf: Option<SpfRecord>,
    /// Number of SPF records found (more than one is an error).
    pub spf_count: u32,
    /// DMARC record at `_dmarc.<domain>`.
    pub dmarc: Option<DmarcRecord>,
    /// CAA records, as `flags tag value`.
    pub caa: Vec<String>,
    /// MX hosts with preference, as `pref host`.
    pub mx: Vec<String>,
    /// The zone answers with validated DNSSEC signatures.
    pub dnssec_signed: bool,
}
