//! Banner grabbing and simple service identification on open ports.
//!
//! Each probe uses a fresh connection: first listen for a greeting (SSH, SMTP,
//! FTP, POP3, IMAP, MySQL speak first), then try active probes — TLS, Redis,
//! HTTP, RDP, SMB — ordered by what the port number suggests.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::tls::hello::{self, HelloOutcome, HelloSpec};
use protocol::TlsVersion;

/// Longest banner kept in observations.
const MAX_BANNER: usize = 160;

/// What could be learned about the service on a port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `ssh`, `http`, `https`, `redis`, `rdp`, `smb`, `tls`, ...
    pub service: Option<String>,
    /// Product/version, e.g. `OpenSSH_9.6p1`, `nginx/1.25.3`, `Redis/7.2.4`.
    pub product: Option<String>,
    /// First printable bytes received.
    pub banner: Option<String>,
    /// The port answered a TLS ClientHello with a ServerHello.
    pub tls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Tls,
    Redis,
    Http,
    Rdp,
    Smb,
}

fn probe_order(port: u16) -> [Probe; 5] {
    use Probe::*;
    match port {
        3389 => [Rdp, Tls, Http, Redis, Smb],
        139 | 445 => [Smb, Tls, Http, Redis, Rdp],
        6379 | 6380 => [Redis, Tls, Http, Smb, Rdp],
        _ => [Tls, Redis, Http, Rdp, Smb],
    }
}

/// Identifies the service on an open port; `wait` bounds each probe.
pub async fn identify(addr: SocketAddr, wait: Duration) -> ServiceInfo {
    if let Some(info) = passive(addr, wait).await {
        return info;
    }
    for probe in probe_order(addr.port()) {
        let found = match probe {
            Probe::Tls => probe_tls(addr, wait).await,
            Probe::Redis => probe_redis(addr, wait).await,
            Probe::Http => probe_http(addr, wait).await,
            Probe::Rdp => probe_rdp(addr, wait).await,
            Probe::Smb => probe_smb(addr, wait).await,
        };
        if let Some(info) = found {
            return info;
        }
    }
    ServiceInfo::default()
}

/// Connects, optionally sends `request`, and reads what arrives before `wait` elapses
/// or `enough` says the answer is complete.
async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    wait: Duration,
    enough: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut s = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    if !request.is_empty() {
        timeout_at(deadline, s.write_all(request))
            .await
            .ok()?
            .ok()?;
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 16 * 1024 {
        match timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if enough(&out) {
                    break;
                }
            }
            Ok(Err(_)) => break,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Printable rendering of the first bytes of a response.
pub fn printable(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .take(MAX_BANNER)
        .map(|&c| match c {
            b'\r' => ' ',
            b'\n' => ' ',
            0x20..=0x7e => c as char,
            _ => '.',
        })
        .collect();
    s.trim().to_string()
}

fn first_line(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    printable(&b[..end])
}

fn has_line(b: &[u8]) -> bool {
    b.contains(&b'\n')
}

async fn passive(addr: SocketAddr, wait: Duration) -> Option<ServiceInfo> {
    let data = exchange(addr, b"", wait, has_line).await?;
    let line = first_line(&data);
    let info = |service: &str, product: Option<String>| ServiceInfo {
        service: Some(service.to_string()),
        product,
        banner: Some(line.clone()),
        tls: false,
    };
    if let Some(rest) = line.strip_prefix("SSH-") {
        // "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13": software version follows the protocol version.
        let product = rest
            .split_once('-')
            .map(|(_, sw)| sw.split_whitespace().next().unwrap_or(sw).to_string())
            .filter(|p| !p.is_empty());
        return Some(info("ssh", product));
    }
    if line.starts_with("220") {
        let upper = line.to_ascii_uppercase();
        let service = if upper.contains("FTP") {
            "ftp"
        } else if upper.contains("SMTP") {
            "smtp"
        } else {
            "unknown"
        };
        return Some(info(service, None));
    }
    if line.starts_with("+OK") {
        return Some(info("pop3", None));
    }
    if line.starts_with("* OK") {
        return Some(info("imap", None));
    }
    if line.starts_with("RFB ") {
        return Some(info("vnc", Some(line.clone())));
    }
    // MySQL greeting: 3-byte length, sequence 0, protocol 10, NUL-terminated version.
    if data.len() > 6 && data[3] == 0 && data[4] == 10 {
        let v: Vec<u8> = data[5..].iter().take_while(|&&c| c != 0).copied().collect();
        let version = String::from_utf8_lossy(&v).to_string();
        return Some(ServiceInfo {
            service: Some("mysql".into()),
            product: Some(format!("MySQL/{version}")),
            banner: Some(printable(&data)),
            tls: false,
        });
    }
    Some(ServiceInfo {
        service: None,
        product: None,
        banner: Some(printable(&data)),
        tls: false,
    })
}

async fn probe_tls(addr: SocketAddr, wait: Duration) -> Option<ServiceInfo> {
    let suites: Vec<u16> = super::tls::ciphers::SUITES.iter().map(|s| s.code).collect();
    let spec = HelloSpec {
        version: TlsVersion::Tls13,
        suites: &suites,
        sni: None,
        want_certificates: false,
    };
    let mut accepted = matches!(
        hello::probe(addr, &spec, wait).await,
        Ok(HelloOutcome::Accepted { .. })
    );
    if !accepted {
        // A TLS 1.0-only stack may reject the 1.3-style hello outright.
        let spec = HelloSpec {
            version: TlsVersion::Tls10,
            suites: &suites,
            ..spec
        };
        accepted = matches!(
            hello::probe(addr, &spec, wait).await,
            Ok(HelloOutcome::Accepted { .. })
        );
    }
    if !accepted {
        return None;
    }
    let mut info = https_server_header(addr, wait)
        .await
        .unwrap_or(ServiceInfo {
            service: Some("tls".into()),
            ..ServiceInfo::default()
        });
    info.tls = true;
    Some(info)
}

/// Speaks HTTP/1.0 over TLS to tell HTTPS apart from other TLS services.
async fn https_server_header(addr: SocketAddr, wait: Duration) -> Option<ServiceInfo> {
    let (config, _) = super::tls::capturing_client_config();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let deadline = Instant::now() + wait;
    let tcp = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut tls = timeout_at(deadline, connector.connect(name, tcp))
        .await
        .ok()?
        .ok()?;
    let req = format!(
        "GET / HTTP/1.0\r\nHost: {}\r\nUser-Agent: vigil-agent\r\n\r\n",
        addr
    );
    timeout_at(deadline, tls.write_all(req.as_bytes()))
        .await
        .ok()?
        .ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 16 * 1024 && !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match timeout_at(deadline, tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    if !out.starts_with(b"HTTP/") {
        return None;
    }
    Some(ServiceInfo {
        service: Some("https".into()),
        product: header_value(&out, "server"),
        banner: Some(first_line(&out)),
        tls: true,
    })
}

fn header_value(resp: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(resp);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

async fn probe_redis(addr: SocketAddr, wait: Duration) -> Option<ServiceInfo> {
    let data = exchange(addr, b"PING\r\n", wait, has_line).await?;
    if data.starts_with(b"HTTP/") {
        return probe_http(addr, wait).await;
    }
    let line = first_line(&data);
    let is_redis = line.starts_with("+PONG")
        || line.starts_with("-NOAUTH")
        || (line.starts_with("-ERR") && line.to_ascii_lowercase().contains("auth"))
        || line.starts_with("-DENIED");
    if !is_redis {
        return None;
    }
    let mut product = None;
    if line.starts_with("+PONG") {
        let info = exchange(addr, b"INFO server\r\n", wait, |b| {
            b.windows(14).any(|w| w == b"redis_version:") && b.ends_with(b"\r\n\r\n")
        })
        .await;
        product = info.and_then(|i| {
            let text = String::from_utf8_lossy(&i).to_string();
            text.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(|v| format!("Redis/{}", v.trim()))
        });
    }
    Some(ServiceInfo {
        service: Some("redis".into()),
        product,
        banner: Some(line),
        tls: false,
    })
}

async fn probe_http(addr: SocketAddr, wait: Duration) -> Option<ServiceInfo> {
    let req = format!("GET / HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: vigil-agent\r\n\r\n");
    let data = exchange(addr, req.as_bytes(), wait, |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    })
    .await?;
    if !data.starts_with(b"HTTP/") {
        return None;
    }
    Some(ServiceInfo {
        service: Some("http".into()),
        product: header_value(&data, "server"),
        banner: Some(first_line(&data)),
        tls: false,
    })
}

/// X.224 Connection Request carrying an RDP negotiation request (TLS | CredSSP).
const RDP_CR: [u8; 19] = [
    0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x03,
    0x00, 0x00, 0x00,
];

async fn probe_rdp(addr: SocketAddr, wait: Duration) -> Option<ServiceInfo> {
    let data = exchange(addr, &RDP_CR, wait, |b| b.len() >= 11).await?;
    // TPKT version 3, then an X.224 Connection Confirm (0xD0).
    if data.len() >= 6 && data[0] == 0x03 && data[1] == 0x00 && data[5] == 0xd0 {
        return Some(ServiceInfo {
            service: Some("rdp".into()),
            product: None,
            banner: None,
            tls: false,
        });
    }
    None
}

/// NetBIOS session message carrying an SMB1 NEGOTIATE that also offers SMB2 dialects,
/// which every SMB server from Windows 2000 to Samba 4 answers.
fn smb_negotiate() -> Vec<u8> {
    let mut smb = vec![
        0xff, b'S', b'M', b'B', 0x72, 0, 0, 0, 0, 0x18, 0x01, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0xff, 0xfe, 0, 0, 0, 0,
    ];
    let mut dialects = Vec::new();
    for d in ["NT LM 0.12", "SMB 2.002", "SMB 2.???"] {
        dialects.push(0x02);
        dialects.extend_from_slice(d.as_bytes());
        dialects.push(0);
    }
    smb.push(0);
    smb.extend_from_slice(&(dialects.len() as u16).to_le_bytes());
    smb.extend_from_slice(&dialects);
    let mut out = vec![0u8];
    let len = smb.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&smb);
    out
}

async fn probe_smb(addr: SocketAddr, wait: Duration) -> Option<ServiceInfo> {
    let data = exchange(addr, &smb_negotiate(), wait, |b| b.len() >= 8).await?;
    if data.len() >= 8 && data[0] == 0 && (&data[4..8] == b"\xffSMB" || &data[4..8] == b"\xfeSMB") {
        let dialect = if data[4] == 0xfe { "SMB2+" } else { "SMB1" };
        return Some(ServiceInfo {
            service: Some("smb".into()),
            product: Some(dialect.into()),
            banner: None,
            tls: false,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_is_case_insensitive() {
        let resp = b"HTTP/1.1 200 OK\r\nSERVER: nginx/1.25.3\r\nX: y\r\n\r\nbody";
        assert_eq!(header_value(resp, "server"), Some("nginx/1.25.3".into()));
        assert_eq!(header_value(resp, "x-powered-by"), None);
    }

    #[test]
    fn smb_packet_length_matches() {
        let p = smb_negotiate();
        let len = u32::from_be_bytes([0, p[1], p[2], p[3]]) as usize;
        assert_eq!(len + 4, p.len());
        assert_eq!(&p[4..8], b"\xffSMB");
    }

    #[test]
    fn printable_replaces_control_bytes() {
        assert_eq!(printable(b"ab\x00\x01c\r\n"), "ab..c");
    }
}
