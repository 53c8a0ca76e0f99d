//! Loopback servers for the scanner integration tests. Every listener binds
//! 127.0.0.1 on an OS-assigned port; nothing here ever touches another address.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub mod dns_server;

/// Port 2024 on loopback belongs to the machine and is never scanned by tests.
pub const RESERVED_PORT: u16 = 2024;

pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let a = l.local_addr().expect("local addr");
    assert_ne!(a.port(), RESERVED_PORT);
    (l, a)
}

/// Reads until the end of an HTTP request head or 2 s pass.
async fn read_head(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

/// A service that greets first (SSH, SMTP...) then waits for the client to leave.
pub async fn banner_server(banner: &'static [u8]) -> SocketAddr {
    let (l, a) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(banner).await;
                let mut buf = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
            });
        }
    });
    a
}

/// An HTTP/1.1 server answering every request with `response` (status line, headers, blank line, body).
pub async fn http_server(response: String) -> SocketAddr {
    let (l, a) = listener().await;
    let response = Arc::new(response);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                if head.starts_with(b"GET ") || head.starts_with(b"HEAD ") {
                    let _ = s.write_all(response.as_bytes()).await;
                } else if !head.is_empty() {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    a
}

/// A Redis-protocol server: PING, INFO, and errors for anything else.
pub async fn redis_server(require_auth: bool) -> SocketAddr {
    let (l, a) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 512];
                loop {
                    let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(pos) = buf.iter().position(|&c| c == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        let cmd = String::from_utf8_lossy(&line).trim().to_ascii_uppercase();
                        let reply: Vec<u8> = if require_auth {
                            b"-NOAUTH Authentication required.\r\n".to_vec()
                        } else if cmd == "PING" {
                            b"+PONG\r\n".to_vec()
                        } else if cmd.starts_with("INFO") {
                            let body =
                                "# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n";
                            format!("${}\r\n{}\r\n", body.len(), body).into_bytes()
                        } else {
                            b"-ERR unknown command\r\n".to_vec()
                        };
                        if s.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    a
}

/// Answers an X.224 Connection Request with a Connection Confirm selecting TLS, like RDP servers.
pub async fn rdp_server() -> SocketAddr {
    let (l, a) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = [0u8; 19];
                let ok = tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut req)).await;
                if matches!(ok, Ok(Ok(_))) && req[0] == 3 && req[5] == 0xe0 {
                    let cc = [
                        0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02,
                        0x1f, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00,
                    ];
                    let _ = s.write_all(&cc).await;
                }
            });
        }
    });
    a
}

/// Answers an SMB NEGOTIATE (NetBIOS framed, SMB1 header) with an SMB2 response header, like Samba.
pub async fn smb_server() -> SocketAddr {
    let (l, a) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 8];
                let ok =
                    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut head)).await;
                if matches!(ok, Ok(Ok(_))) && head[0] == 0 && &head[4..8] == b"\xffSMB" {
                    let mut resp = vec![0u8, 0, 0, 64];
                    let mut smb2 = vec![0xfe, b'S', b'M', b'B', 64, 0];
                    smb2.resize(64, 0);
                    resp.extend_from_slice(&smb2);
                    let _ = s.write_all(&resp).await;
                }
            });
        }
    });
    a
}

/// A certificate and its key for a rustls server.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

/// rustls server config for `identity`, restricted to `versions`.
pub fn server_config(
    identity: &Identity,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            identity.chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone())),
        )
        .expect("server cert");
    Arc::new(cfg)
}

/// A rustls TLS server; answers HTTP requests with `http_response` once the handshake is done.
pub async fn tls_server(config: Arc<rustls::ServerConfig>, http_response: String) -> SocketAddr {
    let (l, a) = listener().await;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let response = Arc::new(http_response);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, response) = (acceptor.clone(), response.clone());
            tokio::spawn(async move {
                let Ok(Ok(mut tls)) =
                    tokio::time::timeout(Duration::from_secs(5), acceptor.accept(s)).await
                else {
                    return;
                };
                let head = read_head(&mut tls).await;
                if !head.is_empty() {
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    a
}

/// A port with nothing listening (bound, then released).
pub async fn closed_port() -> u16 {
    let (l, a) = listener().await;
    drop(l);
    a.port()
}

/// Waits until something accepts connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) -> bool {
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the `openssl` binary is available.
pub fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Generates an RSA key of `bits` and a self-signed certificate for `cn` with `openssl req`.
pub fn openssl_self_signed(
    dir: &std::path::Path,
    cn: &str,
    bits: u32,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            &format!("rsa:{bits}"),
            "-nodes",
            "-days",
            "30",
        ])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl req");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// Starts `openssl s_server` on a free loopback port with extra `args`.
pub async fn openssl_server(
    cert: &std::path::Path,
    key: &std::path::Path,
    args: &[&str],
) -> (ChildGuard, SocketAddr) {
    let port = closed_port().await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new("openssl")
        .arg("s_server")
        .args([
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-naccept",
            "1000",
            "-quiet",
        ])
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl s_server");
    let guard = ChildGuard(child);
    assert!(wait_listening(addr).await, "openssl s_server did not start");
    (guard, addr)
}
