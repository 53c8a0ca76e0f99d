//! TLS endpoint analysis: accepted protocol versions, weak cipher suites per
//! version, and the served certificate chain.

pub mod cert;
pub mod ciphers;
pub mod hello;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{TlsObservation, TlsVersion, WeakCipher};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;

pub use cert::{RootStore, RootStoreError};
use hello::{HelloOutcome, HelloSpec, ProbeError};

/// Why a TLS endpoint could not be analysed at all.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The port could not be reached.
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The port answers, but not with TLS in any version.
    #[error("{0} does not speak TLS")]
    NotTls(SocketAddr),
    /// The server's messages were malformed.
    #[error("TLS probe of {0} failed: {1}")]
    Probe(SocketAddr, ProbeError),
}

/// Settings of the TLS scanner.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Roots the served chain is validated against.
    pub roots: Arc<RootStore>,
    /// Budget for one probe connection (connect + first flight).
    pub io_timeout: Duration,
    /// Enumerate accepted weak cipher suites (one extra connection per accepted suite).
    pub weak_ciphers: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            roots: Arc::new(RootStore::mozilla()),
            io_timeout: Duration::from_secs(5),
            weak_ciphers: true,
        }
    }
}

/// Versions probed, oldest first.
const VERSIONS: [TlsVersion; 5] = [
    TlsVersion::Ssl3,
    TlsVersion::Tls10,
    TlsVersion::Tls11,
    TlsVersion::Tls12,
    TlsVersion::Tls13,
];

fn suites_for(version: TlsVersion) -> Vec<u16> {
    ciphers::SUITES
        .iter()
        .filter(|s| version >= TlsVersion::Tls12 || s.pre_tls12())
        .map(|s| s.code)
        .collect()
}

/// SNI is only sent for host names (RFC 6066 forbids literal addresses).
fn sni_for(server_name: &str) -> Option<&str> {
    server_name
        .parse::<IpAddr>()
        .is_err()
        .then_some(server_name)
}

/// Analyses the TLS endpoint `ip:port`, presenting `server_name` (a host name or the address itself).
pub async fn analyze(
    ip: IpAddr,
    port: u16,
    server_name: &str,
    opts: &TlsOptions,
) -> Result<TlsObservation, TlsError> {
    let addr = SocketAddr::new(ip, port);
    let sni = sni_for(server_name);
    let mut protocols = Vec::new();
    let mut native_chain: Vec<Vec<u8>> = Vec::new();
    let mut spoke_tls = false;
    for version in VERSIONS {
        let suites = if version == TlsVersion::Tls13 {
            Vec::new()
        } else {
            suites_for(version)
        };
        let spec = HelloSpec {
            version,
            suites: &suites,
            sni,
            want_certificates: version != TlsVersion::Tls13,
        };
        match hello::probe(addr, &spec, opts.io_timeout).await {
            Ok(HelloOutcome::Accepted {
                version: got,
                certificates,
                ..
            }) => {
                spoke_tls = true;
                if got == version {
                    protocols.push(version);
                    if !certificates.is_empty() {
                        native_chain = certificates;
                    }
                }
            }
            Ok(HelloOutcome::Rejected { alert }) => {
                spoke_tls |= alert.is_some();
                tracing::debug!(%addr, ?version, ?alert, "version refused");
            }
            Err(ProbeError::Connect(a, e)) => return Err(TlsError::Connect(a, e)),
            Err(ProbeError::NotTls) => return Err(TlsError::NotTls(addr)),
            Err(e) => {
                tracing::debug!(%addr, ?version, error = %e, "version probe failed");
            }
        }
    }
    if !spoke_tls {
        return Err(TlsError::NotTls(addr));
    }

    let chain = if native_chain.is_empty() {
        fetch_chain_rustls(addr, server_name, opts.io_timeout)
            .await
            .unwrap_or_default()
    } else {
        native_chain
    };

    let mut weak_ciphers = Vec::new();
    if opts.weak_ciphers {
        for version in protocols
            .iter()
            .copied()
            .filter(|v| *v != TlsVersion::Tls13)
        {
            weak_ciphers.extend(enumerate_weak(addr, version, sni, opts.io_timeout).await?);
        }
    }

    let now = UnixTime::now();
    let now_ms = i64::try_from(now.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let certificate = chain
        .first()
        .and_then(|der| match cert::describe(der, now_ms) {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "unparseable leaf certificate");
                None
            }
        });
    let validation = cert::validate(&chain, server_name, &opts.roots, now);
    Ok(TlsObservation {
        ip: ip.to_string(),
        port,
        server_name: server_name.to_string(),
        certificate,
        chain_length: chain.len() as u32,
        chain_valid: validation.chain_valid,
        validation_error: validation.error,
        name_matches: validation.name_matches,
        protocols,
        weak_ciphers,
    })
}

/// Finds every weak suite accepted under `version`: offer all weak suites,
/// note the server's pick, withdraw it and repeat until the server refuses.
async fn enumerate_weak(
    addr: SocketAddr,
    version: TlsVersion,
    sni: Option<&str>,
    io_timeout: Duration,
) -> Result<Vec<WeakCipher>, TlsError> {
    let mut offered: Vec<u16> = ciphers::weak_suites()
        .filter(|s| version >= TlsVersion::Tls12 || s.pre_tls12())
        .map(|s| s.code)
        .collect();
    let mut found = Vec::new();
    while !offered.is_empty() {
        let spec = HelloSpec {
            version,
            suites: &offered,
            sni,
            want_certificates: false,
        };
        match hello::probe(addr, &spec, io_timeout).await {
            Ok(HelloOutcome::Accepted {
                version: got,
                cipher,
                ..
            }) if got == version => {
                let Some(pos) = offered.iter().position(|c| *c == cipher) else {
                    // A server picking a suite we did not offer is broken; stop rather than loop.
                    tracing::warn!(%addr, cipher, "server selected a suite that was not offered");
                    break;
                };
                offered.remove(pos);
                if let Some(suite) = ciphers::by_code(cipher) {
                    found.push(WeakCipher {
                        version,
                        name: suite.name.to_string(),
                        code: cipher,
                        classes: suite.classes(),
                    });
                }
            }
            Ok(_) => break,
            Err(ProbeError::Connect(a, e)) => return Err(TlsError::Connect(a, e)),
            Err(e) => {
                tracing::debug!(%addr, ?version, error = %e, "weak-suite probe failed");
                break;
            }
        }
    }
    Ok(found)
}

/// Completes a rustls handshake (TLS 1.2/1.3) only to capture the served chain;
/// needed when the server speaks TLS 1.3 only, whose Certificate is encrypted.
async fn fetch_chain_rustls(
    addr: SocketAddr,
    server_name: &str,
    io_timeout: Duration,
) -> Option<Vec<Vec<u8>>> {
    let (config, capture) = capturing_client_config();
    let name = ServerName::try_from(server_name.to_string()).ok()?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        // The handshake result does not matter: the verifier has seen the chain by then.
        let _ = connector.connect(name, tcp).await;
        capture.chain()
    };
    tokio::time::timeout(io_timeout, attempt)
        .await
        .ok()
        .flatten()
}

/// A rustls client config that accepts any certificate and records the chain;
/// used where the scanner needs to talk to a server whatever its certificate.
pub(crate) fn capturing_client_config() -> (Arc<rustls::ClientConfig>, Arc<CapturingVerifier>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(CapturingVerifier {
        chain: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(capture.clone())
                .with_no_client_auth()
        });
    let config = match config {
        Ok(c) => c,
        // The ring provider always supports the default versions; keep a usable fallback anyway.
        Err(_) => rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(capture.clone())
            .with_no_client_auth(),
    };
    (Arc::new(config), capture)
}

/// Certificate verifier that trusts everything and remembers what it saw.
#[derive(Debug)]
pub(crate) struct CapturingVerifier {
    chain: Mutex<Option<Vec<Vec<u8>>>>,
    provider: Arc<CryptoProvider>,
}

impl CapturingVerifier {
    /// The chain seen in the last handshake, leaf first.
    pub(crate) fn chain(&self) -> Option<Vec<Vec<u8>>> {
        self.chain.lock().ok().and_then(|c| c.clone())
    }
}

impl ServerCertVerifier for CapturingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        if let Ok(mut slot) = self.chain.lock() {
            *slot = Some(chain);
        }
        Ok(ServerCertVerified::assertion())
    }

    crate::tls::provider_signature_checks!();
}
