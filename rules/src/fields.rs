//! The field vocabulary: how a `protocol::Record` is flattened into typed values.
//!
//! Paths are resolved to a [`FieldId`] once, when a rule is compiled; evaluation
//! then reads the observation through [`value`] without any lookup by name or
//! allocation.

use protocol::{Observation, PortState, Record, TlsVersion, WeakCipher, WeakCipherClass};
use serde::{Deserialize, Serialize};

/// Observation kind a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `Observation::Port`.
    Port,
    /// `Observation::Tls`.
    Tls,
    /// `Observation::Http`.
    Http,
    /// `Observation::Dns`.
    Dns,
}

impl Kind {
    /// All kinds, in index order.
    pub const ALL: [Kind; 4] = [Kind::Port, Kind::Tls, Kind::Http, Kind::Dns];

    /// Lowercase name, as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Port => "port",
            Kind::Tls => "tls",
            Kind::Http => "http",
            Kind::Dns => "dns",
        }
    }

    /// Kind of an observation.
    pub fn of(obs: &Observation) -> Kind {
        match obs {
            Observation::Port(_) => Kind::Port,
            Observation::Tls(_) => Kind::Tls,
            Observation::Http(_) => Kind::Http,
            Observation::Dns(_) => Kind::Dns,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Static type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// 64-bit signed integer.
    Int,
    /// UTF-8 string.
    Str,
    /// Boolean.
    Bool,
    /// List of strings.
    StrList,
    /// A nested record (`tls.certificate`, `dns.spf`, `dns.dmarc`): only presence can be tested.
    Object,
}

impl FieldType {
    /// Name with its indefinite article, for error messages.
    pub fn a_name(self) -> &'static str {
        match self {
            FieldType::Int => "an integer",
            FieldType::Str => "a string",
            FieldType::Bool => "a boolean",
            FieldType::StrList => "a list of strings",
            FieldType::Object => "a record",
        }
    }

    /// Name used in error messages and docs.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Int => "integer",
            FieldType::Str => "string",
            FieldType::Bool => "boolean",
            FieldType::StrList => "list of strings",
            FieldType::Object => "record",
        }
    }
}

/// Pre-resolved field accessor.
#[allow(missing_docs)] // each variant is documented by its path in FIELDS
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldId {
    RecordAsset,
    RecordJobId,
    RecordObservedMs,
    PortIp,
    PortPort,
    PortState,
    PortService,
    PortProduct,
    PortBanner,
    PortTls,
    TlsIp,
    TlsPort,
    TlsServerName,
    TlsCertificate,
    TlsCertSubject,
    TlsCertIssuer,
    TlsCertSans,
    TlsCertNotBeforeMs,
    TlsCertNotAfterMs,
    TlsCertDaysLeft,
    TlsCertValidityDays,
    TlsCertKeyType,
    TlsCertKeyBits,
    TlsCertSignatureAlgorithm,
    TlsCertSelfSigned,
    TlsCertFingerprint,
    TlsCertSerial,
    TlsChainLength,
    TlsChainValid,
    TlsValidationError,
    TlsNameMatches,
    TlsProtocols,
    TlsWeakCiphers,
    TlsWeakCipherClasses,
    TlsWeakCiphersOf(WeakCipherClass),
    HttpUrl,
    HttpScheme,
    HttpStatus,
    HttpHsts,
    HttpHstsMaxAge,
    HttpHstsIncludeSubdomains,
    HttpCsp,
    HttpXFrameOptions,
    HttpXContentTypeOptions,
    HttpReferrerPolicy,
    HttpPermissionsPolicy,
    HttpServer,
    HttpXPoweredBy,
    HttpRedirectsToHttps,
    DnsDomain,
    DnsSpf,
    DnsSpfRaw,
    DnsSpfAllQualifier,
    DnsSpfDnsLookups,
    DnsSpfCount,
    DnsDmarc,
    DnsDmarcRaw,
    DnsDmarcPolicy,
    DnsDmarcPct,
    DnsDmarcHasRua,
    DnsCaa,
    DnsMx,
    DnsDnssecSigned,
}

/// Description of one field path.
#[derive(Debug, Clone, Copy)]
pub struct FieldInfo {
    /// Dotted path as written in conditions and templates.
    pub path: &'static str,
    /// Kind it belongs to; `None` for `record.*` fields, valid for every kind.
    pub kind: Option<Kind>,
    /// Value type.
    pub ty: FieldType,
    /// Whether the value can be absent.
    pub optional: bool,
    /// For enumerated strings (or list elements): every possible value.
    pub values: &'static [&'static str],
    /// Accessor.
    pub id: FieldId,
    /// One-line meaning.
    pub doc: &'static str,
}

const PORT_STATES: &[&str] = &["open", "closed", "filtered"];
const TLS_VERSIONS: &[&str] = &["SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
const CIPHER_CLASSES: &[&str] = &[
    "null",
    "anonymous",
    "rc4",
    "triple_des",
    "export",
    "cbc_sha1",
    "static_rsa",
];
const SCHEMES: &[&str] = &["http", "https"];
const SPF_QUALIFIERS: &[&str] = &["+", "-", "~", "?"];

macro_rules! f {
    ($path:literal, $kind:expr, $ty:ident, $opt:literal, $values:expr, $id:expr, $doc:literal) => {
        FieldInfo {
            path: $path,
            kind: $kind,
            ty: FieldType::$ty,
            optional: $opt,
            values: $values,
            id: $id,
            doc: $doc,
        }
    };
}

const P: Option<Kind> = Some(Kind::Port);
const T: Option<Kind> = Some(Kind::Tls);
const H: Option<Kind> = Some(Kind::Http);
const D: Option<Kind> = Some(Kind::Dns);
const NONE: &[&str] = &[];

use FieldId as F;

/// Every field path the language knows.
pub static FIELDS: &[FieldInfo] = &[
    f!(
        "record.asset",
        None,
        Str,
        false,
        NONE,
        F::RecordAsset,
        "Asset the observation is about"
    ),
    f!(
        "record.job_id",
        None,
        Str,
        false,
        NONE,
        F::RecordJobId,
        "Job that produced it (empty for one-shot scans)"
    ),
    f!(
        "record.observed_ms",
        None,
        Int,
        false,
        NONE,
        F::RecordObservedMs,
        "Observation time, ms since the Unix epoch"
    ),
    f!(
        "port.ip",
        P,
        Str,
        false,
        NONE,
        F::PortIp,
        "Address connected to"
    ),
    f!("port.port", P, Int, false, NONE, F::PortPort, "TCP port"),
    f!(
        "port.state",
        P,
        Str,
        false,
        PORT_STATES,
        F::PortState,
        "Connect result"
    ),
    f!(
        "port.service",
        P,
        Str,
        true,
        NONE,
        F::PortService,
        "Identified service (ssh, http, redis, rdp, smb, tls...)"
    ),
    f!(
        "port.product",
        P,
        Str,
        true,
        NONE,
        F::PortProduct,
        "Product/version parsed from the banner"
    ),
    f!(
        "port.banner",
        P,
        Str,
        true,
        NONE,
        F::PortBanner,
        "First printable bytes the service sent"
    ),
    f!(
        "port.tls",
        P,
        Bool,
        false,
        NONE,
        F::PortTls,
        "The port completed a TLS handshake"
    ),
    f!(
        "tls.ip",
        T,
        Str,
        false,
        NONE,
        F::TlsIp,
        "Address connected to"
    ),
    f!("tls.port", T, Int, false, NONE, F::TlsPort, "TCP port"),
    f!(
        "tls.server_name",
        T,
        Str,
        false,
        NONE,
        F::TlsServerName,
        "SNI name checked against the certificate"
    ),
    f!(
        "tls.certificate",
        T,
        Object,
        true,
        NONE,
        F::TlsCertificate,
        "Leaf certificate (absent when no handshake completed)"
    ),
    f!(
        "tls.certificate.subject",
        T,
        Str,
        true,
        NONE,
        F::TlsCertSubject,
        "Subject DN"
    ),
    f!(
        "tls.certificate.issuer",
        T,
        Str,
        true,
        NONE,
        F::TlsCertIssuer,
        "Issuer DN"
    ),
    f!(
        "tls.certificate.sans",
        T,
        StrList,
        true,
        NONE,
        F::TlsCertSans,
        "Subject alternative names"
    ),
    f!(
        "tls.certificate.not_before_ms",
        T,
        Int,
        true,
        NONE,
        F::TlsCertNotBeforeMs,
        "Start of validity, ms since the epoch"
    ),
    f!(
        "tls.certificate.not_after_ms",
        T,
        Int,
        true,
        NONE,
        F::TlsCertNotAfterMs,
        "End of validity, ms since the epoch"
    ),
    f!(
        "tls.certificate.days_left",
        T,
        Int,
        true,
        NONE,
        F::TlsCertDaysLeft,
        "Whole days until expiry (negative once expired)"
    ),
    f!(
        "tls.certificate.validity_days",
        T,
        Int,
        true,
        NONE,
        F::TlsCertValidityDays,
        "Total validity period in whole days (not_after - not_before)"
    ),
    f!(
        "tls.certificate.key_type",
        T,
        Str,
        true,
        NONE,
        F::TlsCertKeyType,
        "Key algorithm: rsa, ec, ed25519..."
    ),
    f!(
        "tls.certificate.key_bits",
        T,
        Int,
        true,
        NONE,
        F::TlsCertKeyBits,
        "Key size in bits (curve size for EC)"
    ),
    f!(
        "tls.certificate.signature_algorithm",
        T,
        Str,
        true,
        NONE,
        F::TlsCertSignatureAlgorithm,
        "Signature algorithm, e.g. sha256WithRSAEncryption"
    ),
    f!(
        "tls.certificate.self_signed",
        T,
        Bool,
        true,
        NONE,
        F::TlsCertSelfSigned,
        "Subject equals issuer and the self-signature verifies"
    ),
    f!(
        "tls.certificate.fingerprint_sha256",
        T,
        Str,
        true,
        NONE,
        F::TlsCertFingerprint,
        "SHA-256 of the DER certificate, lowercase hex"
    ),
    f!(
        "tls.certificate.serial",
        T,
        Str,
        true,
        NONE,
        F::TlsCertSerial,
        "Serial number, lowercase hex"
    ),
    f!(
        "tls.chain_length",
        T,
        Int,
        false,
        NONE,
        F::TlsChainLength,
        "Number of certificates the server sent"
    ),
    f!(
        "tls.chain_valid",
        T,
        Bool,
        false,
        NONE,
        F::TlsChainValid,
        "The chain validates against the root store"
    ),
    f!(
        "tls.validation_error",
        T,
        Str,
        true,
        NONE,
        F::TlsValidationError,
        "Why validation failed"
    ),
    f!(
        "tls.name_matches",
        T,
        Bool,
        false,
        NONE,
        F::TlsNameMatches,
        "The certificate covers server_name"
    ),
    f!(
        "tls.protocols",
        T,
        StrList,
        false,
        TLS_VERSIONS,
        F::TlsProtocols,
        "Protocol versions accepted"
    ),
    f!(
        "tls.weak_ciphers",
        T,
        StrList,
        false,
        NONE,
        F::TlsWeakCiphers,
        "IANA names of all weak suites accepted"
    ),
    f!(
        "tls.weak_cipher_classes",
        T,
        StrList,
        false,
        CIPHER_CLASSES,
        F::TlsWeakCipherClasses,
        "Weakness classes present among accepted suites (distinct)"
    ),
    f!(
        "tls.weak_ciphers.null",
        T,
        StrList,
        false,
        NONE,
        F::TlsWeakCiphersOf(WeakCipherClass::Null),
        "Accepted suites without encryption"
    ),
    f!(
        "tls.weak_ciphers.anonymous",
        T,
        StrList,
        false,
        NONE,
        F::TlsWeakCiphersOf(WeakCipherClass::Anonymous),
        "Accepted suites without server authentication"
    ),
    f!(
        "tls.weak_ciphers.rc4",
        T,
        StrList,
        false,
        NONE,
        F::TlsWeakCiphersOf(WeakCipherClass::Rc4),
        "Accepted RC4 suites"
    ),
    f!(
        "tls.weak_ciphers.triple_des",
        T,
        StrList,
        false,
        NONE,
        F::TlsWeakCiphersOf(WeakCipherClass::TripleDes),
        "Accepted 3DES suites"
    ),
    f!(
        "tls.weak_ciphers.export",
        T,
        StrList,
        false,
        NONE,
        F::TlsWeakCiphersOf(WeakCipherClass::Export),
        "Accepted export-grade or single-DES suites"
    ),
    f!(
        "tls.weak_ciphers.cbc_sha1",
        T,
        StrList,
        false,
        NONE,
        F::TlsWeakCiphersOf(WeakCipherClass::CbcSha1),
        "Accepted CBC suites with a SHA-1 MAC"
    ),
    f!(
        "tls.weak_ciphers.static_rsa",
        T,
        StrList,
        false,
        NONE,
        F::TlsWeakCiphersOf(WeakCipherClass::StaticRsa),
        "Accepted static-RSA key exchange suites"
    ),
    f!("http.url", H, Str, false, NONE, F::HttpUrl, "URL fetched"),
    f!(
        "http.scheme",
        H,
        Str,
        false,
        SCHEMES,
        F::HttpScheme,
        "Scheme of the URL, lowercase"
    ),
    f!(
        "http.status",
        H,
        Int,
        false,
        NONE,
        F::HttpStatus,
        "HTTP status code"
    ),
    f!(
        "http.hsts",
        H,
        Str,
        true,
        NONE,
        F::HttpHsts,
        "Raw Strict-Transport-Security header"
    ),
    f!(
        "http.hsts_max_age",
        H,
        Int,
        true,
        NONE,
        F::HttpHstsMaxAge,
        "Parsed HSTS max-age in seconds"
    ),
    f!(
        "http.hsts_include_subdomains",
        H,
        Bool,
        false,
        NONE,
        F::HttpHstsIncludeSubdomains,
        "HSTS includeSubDomains present"
    ),
    f!(
        "http.csp",
        H,
        Str,
        true,
        NONE,
        F::HttpCsp,
        "Content-Security-Policy header"
    ),
    f!(
        "http.x_frame_options",
        H,
        Str,
        true,
        NONE,
        F::HttpXFrameOptions,
        "X-Frame-Options header"
    ),
    f!(
        "http.x_content_type_options",
        H,
        Str,
        true,
        NONE,
        F::HttpXContentTypeOptions,
        "X-Content-Type-Options header"
    ),
    f!(
        "http.referrer_policy",
        H,
        Str,
        true,
        NONE,
        F::HttpReferrerPolicy,
        "Referrer-Policy header"
    ),
    f!(
        "http.permissions_policy",
        H,
        Str,
        true,
        NONE,
        F::HttpPermissionsPolicy,
        "Permissions-Policy header"
    ),
    f!(
        "http.server",
        H,
        Str,
        true,
        NONE,
        F::HttpServer,
        "Server header"
    ),
    f!(
        "http.x_powered_by",
        H,
        Str,
        true,
        NONE,
        F::HttpXPoweredBy,
        "X-Powered-By header"
    ),
    f!(
        "http.redirects_to_https",
        H,
        Bool,
        true,
        NONE,
        F::HttpRedirectsToHttps,
        "Plain-HTTP URL redirects to HTTPS (absent for https URLs)"
    ),
    f!(
        "dns.domain",
        D,
        Str,
        false,
        NONE,
        F::DnsDomain,
        "Domain queried"
    ),
    f!(
        "dns.spf",
        D,
        Object,
        true,
        NONE,
        F::DnsSpf,
        "SPF record, when exactly one exists"
    ),
    f!(
        "dns.spf.raw",
        D,
        Str,
        true,
        NONE,
        F::DnsSpfRaw,
        "SPF TXT record text"
    ),
    f!(
        "dns.spf.all_qualifier",
        D,
        Str,
        true,
        SPF_QUALIFIERS,
        F::DnsSpfAllQualifier,
        "Qualifier of the final all mechanism"
    ),
    f!(
        "dns.spf.dns_lookups",
        D,
        Int,
        true,
        NONE,
        F::DnsSpfDnsLookups,
        "DNS-querying mechanisms (RFC 7208 limit: 10)"
    ),
    f!(
        "dns.spf_count",
        D,
        Int,
        false,
        NONE,
        F::DnsSpfCount,
        "Number of SPF records published"
    ),
    f!(
        "dns.dmarc",
        D,
        Object,
        true,
        NONE,
        F::DnsDmarc,
        "DMARC record at _dmarc.<domain>"
    ),
    f!(
        "dns.dmarc.raw",
        D,
        Str,
        true,
        NONE,
        F::DnsDmarcRaw,
        "DMARC TXT record text"
    ),
    f!(
        "dns.dmarc.policy",
        D,
        Str,
        true,
        NONE,
        F::DnsDmarcPolicy,
        "p= policy (none, quarantine, reject)"
    ),
    f!(
        "dns.dmarc.pct",
        D,
        Int,
        true,
        NONE,
        F::DnsDmarcPct,
        "pct= value (100 when absent from the record)"
    ),
    f!(
        "dns.dmarc.has_rua",
        D,
        Bool,
        true,
        NONE,
        F::DnsDmarcHasRua,
        "rua= aggregate report address present"
    ),
    f!(
        "dns.caa",
        D,
        StrList,
        false,
        NONE,
        F::DnsCaa,
        "CAA records as `flags tag value`"
    ),
    f!(
        "dns.mx",
        D,
        StrList,
        false,
        NONE,
        F::DnsMx,
        "MX records as `pref host`"
    ),
    f!(
        "dns.dnssec_signed",
        D,
        Bool,
        false,
        NONE,
        F::DnsDnssecSigned,
        "Zone answers with validated DNSSEC signatures"
    ),
];

/// Looks a dotted path up in the vocabulary.
pub fn lookup(path: &str) -> Option<&'static FieldInfo> {
    FIELDS.iter().find(|f| f.path == path)
}

/// A field's value, borrowed from the record.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Optional field not present.
    Absent,
    /// Integer.
    Int(i64),
    /// String.
    Str(&'a str),
    /// Boolean.
    Bool(bool),
    /// List of strings.
    List(ListRef<'a>),
    /// A nested record that is present.
    Object,
}

/// A list of strings viewed without copying.
#[derive(Debug, Clone, Copy)]
pub enum ListRef<'a> {
    /// Plain strings.
    Strs(&'a [String]),
    /// TLS versions, shown by protocol name.
    Versions(&'a [TlsVersion]),
    /// Names of weak suites, optionally only those of one class.
    CipherNames(&'a [WeakCipher], Option<WeakCipherClass>),
    /// Distinct weakness classes of the accepted suites.
    CipherClasses(&'a [WeakCipher]),
}

/// Protocol name of a TLS version, as in the wire format.
pub fn version_name(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Ssl3 => "SSLv3",
        TlsVersion::Tls10 => "TLSv1.0",
        TlsVersion::Tls11 => "TLSv1.1",
        TlsVersion::Tls12 => "TLSv1.2",
        TlsVersion::Tls13 => "TLSv1.3",
    }
}

const CLASS_ORDER: [WeakCipherClass; 7] = [
    WeakCipherClass::Null,
    WeakCipherClass::Anonymous,
    WeakCipherClass::Rc4,
    WeakCipherClass::TripleDes,
    WeakCipherClass::Export,
    WeakCipherClass::CbcSha1,
    WeakCipherClass::StaticRsa,
];

/// Snake-case name of a weakness class, as in the wire format.
pub fn class_name(c: WeakCipherClass) -> &'static str {
    match c {
        WeakCipherClass::Null => "null",
        WeakCipherClass::Anonymous => "anonymous",
        WeakCipherClass::Rc4 => "rc4",
        WeakCipherClass::TripleDes => "triple_des",
        WeakCipherClass::Export => "export",
        WeakCipherClass::CbcSha1 => "cbc_sha1",
        WeakCipherClass::StaticRsa => "static_rsa",
    }
}

fn class_bit(c: WeakCipherClass) -> u8 {
    1 << (CLASS_ORDER.iter().position(|x| *x == c).unwrap_or(0) as u8)
}

impl<'a> ListRef<'a> {
    /// Calls `f` on each element until it returns true; returns whether it did.
    pub fn any(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        match *self {
            ListRef::Strs(v) => v.iter().any(|s| f(s)),
            ListRef::Versions(v) => v.iter().any(|x| f(version_name(*x))),
            ListRef::CipherNames(v, None) => v.iter().any(|c| f(&c.name)),
            ListRef::CipherNames(v, Some(class)) => {
                v.iter().any(|c| c.classes.contains(&class) && f(&c.name))
            }
            ListRef::CipherClasses(v) => {
                let mask = Self::class_mask(v);
                CLASS_ORDER
                    .iter()
                    .any(|c| mask & class_bit(*c) != 0 && f(class_name(*c)))
            }
        }
    }

    fn class_mask(v: &[WeakCipher]) -> u8 {
        v.iter()
            .flat_map(|c| c.classes.iter())
            .fold(0u8, |m, c| m | class_bit(*c))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match *self {
            ListRef::Strs(v) => v.len(),
            ListRef::Versions(v) => v.len(),
            ListRef::CipherNames(v, None) => v.len(),
            ListRef::CipherNames(v, Some(class)) => {
                v.iter().filter(|c| c.classes.contains(&class)).count()
            }
            ListRef::CipherClasses(v) => Self::class_mask(v).count_ones() as usize,
        }
    }

    /// Whether the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn opt_str(s: &Option<String>) -> Value<'_> {
    s.as_deref().map_or(Value::Absent, Value::Str)
}

fn scheme(url: &str) -> &str {
    // Only the two schemes the HTTP scanner fetches are reported; anything else
    // is shown as written so a rule can still match it with `matches`.
    match url.find("://") {
        Some(i) if url[..i].eq_ignore_ascii_case("https") => "https",
        Some(i) if url[..i].eq_ignore_ascii_case("http") => "http",
        Some(i) => &url[..i],
        None => "",
    }
}

/// Reads field `id` from `rec`; `Absent` when the field belongs to another kind.
pub fn value(id: FieldId, rec: &Record) -> Value<'_> {
    use Value as V;
    match id {
        F::RecordAsset => return V::Str(&rec.asset),
        F::RecordJobId => return V::Str(&rec.job_id),
        F::RecordObservedMs => return V::Int(i64::try_from(rec.observed_ms).unwrap_or(i64::MAX)),
        _ => {}
    }
    match &rec.observation {
        Observation::Port(p) => match id {
            F::PortIp => V::Str(&p.ip),
            F::PortPort => V::Int(p.port.into()),
            F::PortState => V::Str(match p.state {
                PortState::Open => "open",
                PortState::Closed => "closed",
                PortState::Filtered => "filtered",
            }),
            F::PortService => opt_str(&p.service),
            F::PortProduct => opt_str(&p.product),
            F::PortBanner => opt_str(&p.banner),
            F::PortTls => V::Bool(p.tls),
            _ => V::Absent,
        },
        Observation::Tls(t) => {
            let cert = t.certificate.as_ref();
            let c = |f: fn(&protocol::CertificateInfo) -> Value<'_>| cert.map_or(V::Absent, f);
            match id {
                F::TlsIp => V::Str(&t.ip),
                F::TlsPort => V::Int(t.port.into()),
                F::TlsServerName => V::Str(&t.server_name),
                F::TlsCertificate => cert.map_or(V::Absent, |_| V::Object),
                F::TlsCertSubject => c(|c| V::Str(&c.subject)),
                F::TlsCertIssuer => c(|c| V::Str(&c.issuer)),
                F::TlsCertSans => c(|c| V::List(ListRef::Strs(&c.sans))),
                F::TlsCertNotBeforeMs => c(|c| V::Int(c.not_before_ms)),
                F::TlsCertNotAfterMs => c(|c| V::Int(c.not_after_ms)),
                F::TlsCertDaysLeft => c(|c| V::Int(c.days_left)),
                F::TlsCertValidityDays => {
                    c(|c| V::Int(c.not_after_ms.saturating_sub(c.not_before_ms) / 86_400_000))
                }
                F::TlsCertKeyType => c(|c| V::Str(&c.key_type)),
                F::TlsCertKeyBits => c(|c| V::Int(c.key_bits.into())),
                F::TlsCertSignatureAlgorithm => c(|c| V::Str(&c.signature_algorithm)),
                F::TlsCertSelfSigned => c(|c| V::Bool(c.self_signed)),
                F::TlsCertFingerprint => c(|c| V::Str(&c.fingerprint_sha256)),
                F::TlsCertSerial => c(|c| V::Str(&c.serial)),
                F::TlsChainLength => V::Int(t.chain_length.into()),
                F::TlsChainValid => V::Bool(t.chain_valid),
                F::TlsValidationError => opt_str(&t.validation_error),
                F::TlsNameMatches => V::Bool(t.name_matches),
                F::TlsProtocols => V::List(ListRef::Versions(&t.protocols)),
                F::TlsWeakCiphers => V::List(ListRef::CipherNames(&t.weak_ciphers, None)),
                F::TlsWeakCipherClasses => V::List(ListRef::CipherClasses(&t.weak_ciphers)),
                F::TlsWeakCiphersOf(class) => {
                    V::List(ListRef::CipherNames(&t.weak_ciphers, Some(class)))
                }
                _ => V::Absent,
            }
        }
        Observation::Http(h) => match id {
            F::HttpUrl => V::Str(&h.url),
            F::HttpScheme => V::Str(scheme(&h.url)),
            F::HttpStatus => V::Int(h.status.into()),
            F::HttpHsts => opt_str(&h.hsts),
            F::HttpHstsMaxAge => h
                .hsts_max_age
                .map_or(V::Absent, |a| V::Int(i64::try_from(a).unwrap_or(i64::MAX))),
            F::HttpHstsIncludeSubdomains => V::Bool(h.hsts_include_subdomains),
            F::HttpCsp => opt_str(&h.csp),
            F::HttpXFrameOptions => opt_str(&h.x_frame_options),
            F::HttpXContentTypeOptions => opt_str(&h.x_content_type_options),
            F::HttpReferrerPolicy => opt_str(&h.referrer_policy),
            F::HttpPermissionsPolicy => opt_str(&h.permissions_policy),
            F::HttpServer => opt_str(&h.server),
            F::HttpXPoweredBy => opt_str(&h.x_powered_by),
            F::HttpRedirectsToHttps => h.redirects_to_https.map_or(V::Absent, V::Bool),
            _ => V::Absent,
        },
        Observation::Dns(d) => {
            let spf = d.spf.as_ref();
            let dmarc = d.dmarc.as_ref();
            match id {
                F::DnsDomain => V::Str(&d.domain),
                F::DnsSpf => spf.map_or(V::Absent, |_| V::Object),
                F::DnsSpfRaw => spf.map_or(V::Absent, |s| V::Str(&s.raw)),
                F::DnsSpfAllQualifier => spf.map_or(V::Absent, |s| opt_str(&s.all_qualifier)),
                F::DnsSpfDnsLookups => spf.map_or(V::Absent, |s| V::Int(s.dns_lookups.into())),
                F::DnsSpfCount => V::Int(d.spf_count.into()),
                F::DnsDmarc => dmarc.map_or(V::Absent, |_| V::Object),
                F::DnsDmarcRaw => dmarc.map_or(V::Absent, |m| V::Str(&m.raw)),
                F::DnsDmarcPolicy => dmarc.map_or(V::Absent, |m| opt_str(&m.policy)),
                F::DnsDmarcPct => dmarc.map_or(V::Absent, |m| V::Int(m.pct.into())),
                F::DnsDmarcHasRua => dmarc.map_or(V::Absent, |m| V::Bool(m.has_rua)),
                F::DnsCaa => V::List(ListRef::Strs(&d.caa)),
                F::DnsMx => V::List(ListRef::Strs(&d.mx)),
                F::DnsDnssecSigned => V::Bool(d.dnssec_signed),
                _ => V::Absent,
            }
        }
    }
}

/// Appends a human-readable rendering of `v` (lists comma-separated, absent as `-`).
pub fn render(v: Value<'_>, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Absent => out.push('-'),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Str(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::Object => out.push_str("present"),
        Value::List(l) => {
            if l.is_empty() {
                out.push_str("(none)");
                return;
            }
            let mut first = true;
            l.any(|s| {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                out.push_str(s);
                false
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_paths_are_unique_and_well_formed() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert!(
                FIELDS[i + 1..].iter().all(|g| g.path != f.path),
                "duplicate {}",
                f.path
            );
            let prefix = f.kind.map_or("record", Kind::as_str);
            assert!(f.path.starts_with(&format!("{prefix}.")), "{}", f.path);
            assert_eq!(lookup(f.path).map(|g| g.id), Some(f.id));
        }
    }

    #[test]
    fn cipher_classes_are_distinct_and_ordered() {
        use protocol::TlsVersion;
        let ciphers = vec![
            WeakCipher {
                version: TlsVersion::Tls12,
                name: "TLS_RSA_WITH_3DES_EDE_CBC_SHA".into(),
                code: 0x000a,
                classes: vec![WeakCipherClass::TripleDes, WeakCipherClass::StaticRsa],
            },
            WeakCipher {
                version: TlsVersion::Tls12,
                name: "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
                code: 0x002f,
                classes: vec![WeakCipherClass::CbcSha1, WeakCipherClass::StaticRsa],
            },
        ];
        let l = ListRef::CipherClasses(&ciphers);
        assert_eq!(l.len(), 3);
        let mut out = String::new();
        render(Value::List(l), &mut out);
        assert_eq!(out, "triple_des, cbc_sha1, static_rsa");
        let only = ListRef::CipherNames(&ciphers, Some(WeakCipherClass::CbcSha1));
        assert_eq!(only.len(), 1);
        assert!(only.any(|n| n == "TLS_RSA_WITH_AES_128_CBC_SHA"));
        assert!(!only.any(|n| n == "TLS_RSA_WITH_3DES_EDE_CBC_SHA"));
    }
}
