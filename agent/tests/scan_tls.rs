//! TLS analysis against loopback servers: rustls servers with crafted rcgen
//! certificates, and `openssl s_server` for TLS 1.0 and weak suites.

mod scan_support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use agent::scan::tls::{self, RootStore, TlsOptions};
use protocol::{TlsVersion, WeakCipherClass};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use scan_support::*;

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params
        .distinguished_name
        .push(DnType::CommonName, "vigil test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("ca cert");
    let issuer = rcgen::Issuer::new(params, key);
    Ca { cert, issuer }
}

fn leaf(ca: &Ca, names: &[&str], expired: bool) -> Identity {
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).expect("sign leaf");
    Identity {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    }
}

fn opts_with_root(ca: &Ca) -> TlsOptions {
    TlsOptions {
        roots: Arc::new(RootStore::from_der(&[ca.cert.der().clone()]).expect("roots")),
        io_timeout: Duration::from_secs(5),
        weak_ciphers: true,
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

#[tokio::test]
async fn valid_chain_modern_server() {
    init_crypto();
    let ca = ca();
    let id = leaf(&ca, &["localhost"], false);
    let addr = tls_server(server_config(&id, rustls::ALL_VERSIONS), OK.into()).await;
    let obs = tls::analyze(LOOPBACK, addr.port(), "localhost", &opts_with_root(&ca))
        .await
        .expect("analyze");
    assert!(obs.chain_valid, "{obs:?}");
    assert_eq!(obs.validation_error, None);
    assert!(obs.name_matches);
    assert_eq!(obs.protocols, vec![TlsVersion::Tls12, TlsVersion::Tls13]);
    assert!(obs.weak_ciphers.is_empty(), "{:?}", obs.weak_ciphers);
    assert_eq!(obs.chain_length, 1);
    let cert = obs.certificate.expect("leaf info");
    assert_eq!(cert.key_type, "ec");
    assert_eq!(cert.key_bits, 256);
    assert!(!cert.self_signed);
    assert!(cert.days_left > 300, "{}", cert.days_left);
    assert!(cert.issuer.contains("vigil test CA"));
    assert_eq!(cert.sans, vec!["localhost".to_string()]);

    // The same server judged against the public roots is untrusted.
    let public = TlsOptions {
        weak_ciphers: false,
        ..TlsOptions::default()
    };
    let obs = tls::analyze(LOOPBACK, addr.port(), "localhost", &public)
        .await
        .expect("analyze");
    assert!(!obs.chain_valid);
    assert!(
        obs.validation_error
            .is_some_and(|e| e.contains("UnknownIssuer"))
    );
}

#[tokio::test]
async fn expired_certificate() {
    init_crypto();
    let ca = ca();
    let id = leaf(&ca, &["localhost"], true);
    let addr = tls_server(server_config(&id, rustls::DEFAULT_VERSIONS), OK.into()).await;
    let obs = tls::analyze(LOOPBACK, addr.port(), "localhost", &opts_with_root(&ca))
        .await
        .expect("analyze");
    assert!(!obs.chain_valid);
    let err = obs.validation_error.expect("error");
    assert!(err.contains("Expired"), "{err}");
    assert!(obs.certificate.expect("leaf").days_left < -1000);
}

#[tokio::test]
async fn wrong_name_and_tls13_only() {
    init_crypto();
    let ca = ca();
    let id = leaf(&ca, &["other.test"], false);
    let addr = tls_server(server_config(&id, &[&rustls::version::TLS13]), OK.into()).await;
    let obs = tls::analyze(LOOPBACK, addr.port(), "localhost", &opts_with_root(&ca))
        .await
        .expect("analyze");
    assert_eq!(obs.protocols, vec![TlsVersion::Tls13]);
    // TLS 1.3 encrypts the Certificate: it must come from the rustls handshake.
    assert_eq!(obs.chain_length, 1);
    assert!(obs.chain_valid, "{obs:?}");
    assert!(!obs.name_matches);
    assert!(obs.weak_ciphers.is_empty());
}

#[tokio::test]
async fn self_signed_certificate() {
    init_crypto();
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let id = Identity {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    };
    let addr = tls_server(server_config(&id, rustls::DEFAULT_VERSIONS), OK.into()).await;
    let obs = tls::analyze(LOOPBACK, addr.port(), "localhost", &TlsOptions::default())
        .await
        .expect("analyze");
    let info = obs.certificate.expect("leaf");
    assert!(info.self_signed);
    assert!(!obs.chain_valid);
    assert!(obs.name_matches);
}

#[tokio::test]
async fn plain_tcp_is_not_tls() {
    let addr = http_server(OK.into()).await;
    let err = tls::analyze(LOOPBACK, addr.port(), "127.0.0.1", &TlsOptions::default()).await;
    assert!(matches!(err, Err(tls::TlsError::NotTls(_))), "{err:?}");
    let closed = closed_port().await;
    let err = tls::analyze(LOOPBACK, closed, "127.0.0.1", &TlsOptions::default()).await;
    assert!(matches!(err, Err(tls::TlsError::Connect(..))), "{err:?}");
}

#[tokio::test]
async fn legacy_openssl_server_tls10_weak_suites_rsa1024() {
    if !have_openssl() {
        eprintln!("SKIPPED: the openssl binary is not installed; cannot start a TLS 1.0 server");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = openssl_self_signed(dir.path(), "localhost", 1024);
    let (_server, addr) =
        openssl_server(&cert, &key, &["-tls1", "-cipher", "ALL:@SECLEVEL=0"]).await;
    let obs = tls::analyze(LOOPBACK, addr.port(), "localhost", &TlsOptions::default())
        .await
        .expect("analyze");
    assert_eq!(obs.protocols, vec![TlsVersion::Tls10], "{obs:?}");
    let info = obs
        .certificate
        .as_ref()
        .expect("leaf from the TLS 1.0 Certificate message");
    assert_eq!(info.key_type, "rsa");
    assert_eq!(info.key_bits, 1024);
    assert!(info.self_signed);
    assert_eq!(info.signature_algorithm, "sha256WithRSAEncryption");
    assert!(!obs.chain_valid);
    assert!(obs.name_matches);

    assert!(
        obs.weak_ciphers
            .iter()
            .all(|w| w.version == TlsVersion::Tls10)
    );
    // Exactly the weak suites this OpenSSL build enables for TLS 1.0 with an RSA key.
    let mut expected = openssl_rsa_suites("ALL:@SECLEVEL=0", TlsVersion::Tls10);
    let weak: std::collections::BTreeSet<u16> = agent::scan::tls::ciphers::weak_suites()
        .map(|s| s.code)
        .collect();
    expected.retain(|c| weak.contains(c));
    let found: std::collections::BTreeSet<u16> = obs.weak_ciphers.iter().map(|w| w.code).collect();
    assert_eq!(found, expected, "{:?}", obs.weak_ciphers);
    let has = |class| obs.weak_ciphers.iter().any(|w| w.classes.contains(&class));
    assert!(has(WeakCipherClass::Anonymous));
    assert!(has(WeakCipherClass::StaticRsa));
    assert!(has(WeakCipherClass::CbcSha1));
    let names: Vec<&str> = obs.weak_ciphers.iter().map(|w| w.name.as_str()).collect();
    for name in [
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_DH_anon_WITH_AES_128_CBC_SHA",
        "TLS_ECDH_anon_WITH_AES_256_CBC_SHA",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

/// Code points `openssl ciphers` enables for `spec` that a server with an RSA
/// key can select under `version` (PSK/SRP need credentials the server does not have).
fn openssl_rsa_suites(spec: &str, version: TlsVersion) -> std::collections::BTreeSet<u16> {
    let out = std::process::Command::new("openssl")
        .args(["ciphers", "-V", spec])
        .output()
        .expect("openssl ciphers");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut codes = std::collections::BTreeSet::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // 0xC0,0x14 - ECDHE-RSA-AES256-SHA TLSv1 Kx=ECDH Au=RSA Enc=AES(256) Mac=SHA1
        let [code, _, _, proto, kx, au, ..] = cols.as_slice() else {
            continue;
        };
        let tls10 = match version {
            TlsVersion::Tls12 => matches!(*proto, "SSLv3" | "TLSv1" | "TLSv1.2"),
            _ => matches!(*proto, "SSLv3" | "TLSv1"),
        };
        let usable =
            matches!(*au, "Au=RSA" | "Au=None") && !kx.contains("PSK") && !kx.contains("SRP");
        let hex: String = code.replace("0x", "").replace(',', "");
        if let (true, true, Ok(c)) = (tls10, usable, u16::from_str_radix(&hex, 16)) {
            codes.insert(c);
        }
    }
    codes
}

#[tokio::test]
async fn openssl_server_tls12_only_strong_suites() {
    if !have_openssl() {
        eprintln!("SKIPPED: the openssl binary is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = openssl_self_signed(dir.path(), "localhost", 2048);
    let (_server, addr) = openssl_server(
        &cert,
        &key,
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
        ],
    )
    .await;
    let obs = tls::analyze(LOOPBACK, addr.port(), "localhost", &TlsOptions::default())
        .await
        .expect("analyze");
    assert_eq!(obs.protocols, vec![TlsVersion::Tls12]);
    assert!(obs.weak_ciphers.is_empty(), "{:?}", obs.weak_ciphers);
    assert_eq!(obs.certificate.expect("leaf").key_bits, 2048);
}

#[tokio::test]
async fn openssl_server_null_suites_tls12() {
    if !have_openssl() {
        eprintln!("SKIPPED: the openssl binary is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = openssl_self_signed(dir.path(), "localhost", 2048);
    let (_server, addr) =
        openssl_server(&cert, &key, &["-tls1_2", "-cipher", "eNULL:@SECLEVEL=0"]).await;
    let obs = tls::analyze(LOOPBACK, addr.port(), "localhost", &TlsOptions::default())
        .await
        .expect("analyze");
    assert_eq!(obs.protocols, vec![TlsVersion::Tls12]);
    let mut expected = openssl_rsa_suites("eNULL:@SECLEVEL=0", TlsVersion::Tls12);
    let weak: std::collections::BTreeSet<u16> = agent::scan::tls::ciphers::weak_suites()
        .map(|s| s.code)
        .collect();
    expected.retain(|c| weak.contains(c));
    assert!(!expected.is_empty());
    let found: std::collections::BTreeSet<u16> = obs.weak_ciphers.iter().map(|w| w.code).collect();
    assert_eq!(found, expected, "{:?}", obs.weak_ciphers);
    assert!(
        obs.weak_ciphers
            .iter()
            .all(|w| w.classes.contains(&WeakCipherClass::Null) && w.version == TlsVersion::Tls12)
    );
    let names: Vec<&str> = obs.weak_ciphers.iter().map(|w| w.name.as_str()).collect();
    assert!(names.contains(&"TLS_RSA_WITH_NULL_SHA256"), "{names:?}");
    assert!(names.contains(&"TLS_ECDH_anon_WITH_NULL_SHA"), "{names:?}");
}
