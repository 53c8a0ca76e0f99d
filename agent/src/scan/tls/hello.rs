//! Native ClientHello prober.
//!
//! rustls refuses to speak TLS 1.0/1.1 or offer weak suites, which is exactly
//! what a scanner must test, so this module hand-builds a ClientHello for a
//! chosen version and suite list, sends it over a plain TCP stream and reads
//! the server's first flight in clear text: ServerHello (negotiated version
//! and suite), the Certificate message for TLS <= 1.2, or an alert. No key
//! exchange is ever completed.

use std::net::SocketAddr;
use std::time::Duration;

use protocol::TlsVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::ciphers::TLS13_SUITES;

/// SHA-256("HelloRetryRequest"): the ServerHello random that marks a TLS 1.3 retry request.
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// Upper bound on the server flight we buffer; certificate chains are far smaller.
const MAX_FLIGHT: usize = 256 * 1024;

/// Why a probe could not reach a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// TCP connect failed or timed out.
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The peer answered with something that is not TLS.
    #[error("peer does not speak TLS")]
    NotTls,
    /// The server's TLS messages could not be parsed.
    #[error("malformed TLS response: {0}")]
    Malformed(&'static str),
    /// Reading or writing failed mid-way.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What the server answered to one ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloOutcome {
    /// The server sent a ServerHello.
    Accepted {
        /// Negotiated protocol version.
        version: TlsVersion,
        /// Suite the server picked.
        cipher: u16,
        /// DER certificates from the Certificate message (TLS <= 1.2 only, when asked for).
        certificates: Vec<Vec<u8>>,
    },
    /// The server refused (alert, or closed the connection without a ServerHello).
    Rejected {
        /// Alert description code, when an alert was received.
        alert: Option<u8>,
    },
}

/// One ClientHello to send.
#[derive(Debug, Clone)]
pub struct HelloSpec<'a> {
    /// Highest version offered (the only one, for TLS 1.3 probes).
    pub version: TlsVersion,
    /// Cipher suites offered (TLS 1.3 suites are added automatically for 1.3 probes).
    pub suites: &'a [u16],
    /// Host name for SNI; `None` for address targets.
    pub sni: Option<&'a str>,
    /// Keep reading after the ServerHello to collect the certificate chain.
    pub want_certificates: bool,
}

fn wire_version(v: TlsVersion) -> u16 {
    match v {
        TlsVersion::Ssl3 => 0x0300,
        TlsVersion::Tls10 => 0x0301,
        TlsVersion::Tls11 => 0x0302,
        TlsVersion::Tls12 | TlsVersion::Tls13 => 0x0303,
    }
}

fn version_from_wire(v: u16) -> Option<TlsVersion> {
    Some(match v {
        0x0300 => TlsVersion::Ssl3,
        0x0301 => TlsVersion::Tls10,
        0x0302 => TlsVersion::Tls11,
        0x0303 => TlsVersion::Tls12,
        0x0304 => TlsVersion::Tls13,
        _ => return None,
    })
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn push_u24(out: &mut Vec<u8>, v: usize) {
    let b = (v as u32).to_be_bytes();
    out.extend_from_slice(&b[1..]);
}

fn push_ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    push_u16(out, kind);
    push_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // A predictable random only weakens a handshake we never finish; keep probing even if the OS RNG fails.
    if getrandom::fill(&mut b).is_err() {
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
    }
    b
}

/// Builds the full ClientHello record.
pub fn build_client_hello(spec: &HelloSpec<'_>) -> Vec<u8> {
    let v = spec.version;
    let mut body = Vec::with_capacity(512);
    push_u16(&mut body, wire_version(v));
    body.extend_from_slice(&random_bytes::<32>());
    if v == TlsVersion::Ssl3 {
        body.push(0);
    } else {
        // A 32-byte legacy session id keeps TLS 1.3 middlebox-compatibility paths happy.
        body.push(32);
        body.extend_from_slice(&random_bytes::<32>());
    }
    let mut suites: Vec<u16> = Vec::new();
    if v == TlsVersion::Tls13 {
        suites.extend(TLS13_SUITES);
    }
    suites.extend(spec.suites.iter().copied());
    // Renegotiation SCSV: some stacks abort handshakes of clients that do not signal it.
    suites.push(0x00FF);
    push_u16(&mut body, (suites.len() * 2) as u16);
    for s in &suites {
        push_u16(&mut body, *s);
    }
    body.extend_from_slice(&[1, 0]);

    if v != TlsVersion::Ssl3 {
        let mut ext = Vec::new();
        if let Some(name) = spec.sni {
            let mut sni = Vec::new();
            push_u16(&mut sni, (name.len() + 3) as u16);
            sni.push(0);
            push_u16(&mut sni, name.len() as u16);
            sni.extend_from_slice(name.as_bytes());
            push_ext(&mut ext, 0x0000, &sni);
        }
        // x25519, secp256r1, secp384r1, secp521r1, ffdhe2048, ffdhe3072.
        let groups: [u16; 6] = [0x001d, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101];
        let mut g = Vec::new();
        push_u16(&mut g, (groups.len() * 2) as u16);
        for x in groups {
            push_u16(&mut g, x);
        }
        push_ext(&mut ext, 0x000a, &g);
        push_ext(&mut ext, 0x000b, &[1, 0]);
        if v >= TlsVersion::Tls12 {
            let algs: [u16; 14] = [
                0x0403, 0x0503, 0x0603, 0x0807, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601,
                0x0201, 0x0203, 0x0402, 0x0202,
            ];
            let mut a = Vec::new();
            push_u16(&mut a, (algs.len() * 2) as u16);
            for x in algs {
                push_u16(&mut a, x);
            }
            push_ext(&mut ext, 0x000d, &a);
        }
        push_ext(&mut ext, 0x0017, &[]);
        push_ext(&mut ext, 0xff01, &[0]);
        if v == TlsVersion::Tls13 {
            push_ext(&mut ext, 0x002b, &[2, 0x03, 0x04]);
            push_ext(&mut ext, 0x002d, &[1, 1]);
            let mut ks = Vec::new();
            push_u16(&mut ks, 36);
            push_u16(&mut ks, 0x001d);
            push_u16(&mut ks, 32);
            // Any 32 bytes form an X25519 public key; the handshake is abandoned before it matters.
            let mut key = random_bytes::<32>();
            key[31] &= 0x7f;
            ks.extend_from_slice(&key);
            push_ext(&mut ext, 0x0033, &ks);
        }
        push_u16(&mut body, ext.len() as u16);
        body.extend_from_slice(&ext);
    }

    let mut hs = Vec::with_capacity(body.len() + 4);
    hs.push(1);
    push_u24(&mut hs, body.len());
    hs.extend_from_slice(&body);

    let mut rec = Vec::with_capacity(hs.len() + 5);
    rec.push(0x16);
    push_u16(
        &mut rec,
        if v == TlsVersion::Ssl3 {
            0x0300
        } else {
            0x0301
        },
    );
    push_u16(&mut rec, hs.len() as u16);
    rec.extend_from_slice(&hs);
    rec
}

/// A parsed ServerHello.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerHello {
    version: u16,
    cipher: u16,
    retry_request: bool,
}

fn parse_server_hello(b: &[u8]) -> Result<ServerHello, ProbeError> {
    let bad = ProbeError::Malformed("short ServerHello");
    if b.len() < 38 {
        return Err(bad);
    }
    let legacy = u16::from_be_bytes([b[0], b[1]]);
    let retry_request = b[2..34] == HRR_RANDOM;
    let sid_len = b[34] as usize;
    let mut p = 35 + sid_len;
    if b.len() < p + 3 {
        return Err(bad);
    }
    let cipher = u16::from_be_bytes([b[p], b[p + 1]]);
    p += 3;
    let mut version = legacy;
    if b.len() >= p + 2 {
        let ext_len = u16::from_be_bytes([b[p], b[p + 1]]) as usize;
        p += 2;
        let end = (p + ext_len).min(b.len());
        while p + 4 <= end {
            let kind = u16::from_be_bytes([b[p], b[p + 1]]);
            let len = u16::from_be_bytes([b[p + 2], b[p + 3]]) as usize;
            p += 4;
            if kind == 0x002b && len == 2 && p + 2 <= end {
                version = u16::from_be_bytes([b[p], b[p + 1]]);
            }
            p += len;
        }
    }
    Ok(ServerHello {
        version,
        cipher,
        retry_request,
    })
}

fn parse_certificate_list(b: &[u8]) -> Result<Vec<Vec<u8>>, ProbeError> {
    let bad = ProbeError::Malformed("bad Certificate message");
    if b.len() < 3 {
        return Err(bad);
    }
    let total = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
    let list = b
        .get(3..3 + total)
        .ok_or(ProbeError::Malformed("bad Certificate message"))?;
    let mut out = Vec::new();
    let mut p = 0;
    while p + 3 <= list.len() {
        let len = u32::from_be_bytes([0, list[p], list[p + 1], list[p + 2]]) as usize;
        p += 3;
        let der = list
            .get(p..p + len)
            .ok_or(ProbeError::Malformed("bad certificate entry"))?;
        out.push(der.to_vec());
        p += len;
    }
    Ok(out)
}

/// Sends one ClientHello to `addr` and classifies the answer.
pub async fn probe(
    addr: SocketAddr,
    spec: &HelloSpec<'_>,
    io_timeout: Duration,
) -> Result<HelloOutcome, ProbeError> {
    let deadline = Instant::now() + io_timeout;
    let mut stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ProbeError::Connect(addr, e)),
        Err(_) => {
            return Err(ProbeError::Connect(
                addr,
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            ));
        }
    };
    stream.write_all(&build_client_hello(spec)).await?;
    read_server_flight(&mut stream, deadline, spec).await
}

/// Reads records until the ServerHello (and, if wanted, the Certificate) is complete.
async fn read_server_flight(
    stream: &mut TcpStream,
    deadline: Instant,
    spec: &HelloSpec<'_>,
) -> Result<HelloOutcome, ProbeError> {
    let mut raw: Vec<u8> = Vec::new();
    let mut handshake: Vec<u8> = Vec::new();
    let mut hello: Option<ServerHello> = None;
    let mut certificates = Vec::new();
    let mut buf = [0u8; 8192];
    let mut consumed = 0usize;
    loop {
        // Drain complete records already buffered.
        while raw.len() >= consumed + 5 {
            let h = &raw[consumed..consumed + 5];
            let (ctype, major, len) = (h[0], h[1], u16::from_be_bytes([h[3], h[4]]) as usize);
            if major != 3 || !(20..=24).contains(&ctype) || len > 18432 {
                return if hello.is_some() {
                    Err(ProbeError::Malformed("bad record header"))
                } else {
                    Err(ProbeError::NotTls)
                };
            }
            if raw.len() < consumed + 5 + len {
                break;
            }
            let payload = raw[consumed + 5..consumed + 5 + len].to_vec();
            consumed += 5 + len;
            match ctype {
                21 if hello.is_none() => {
                    return Ok(HelloOutcome::Rejected {
                        alert: payload.get(1).copied(),
                    });
                }
                22 => handshake.extend_from_slice(&payload),
                // ChangeCipherSpec or encrypted data: nothing more to read in clear text.
                _ if hello.is_some() => return finish(hello, certificates),
                _ => {
                    return Err(ProbeError::Malformed(
                        "unexpected record before ServerHello",
                    ));
                }
            }
            // Parse complete handshake messages.
            while handshake.len() >= 4 {
                let mlen =
                    u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
                if handshake.len() < 4 + mlen {
                    break;
                }
                let msg: Vec<u8> = handshake.drain(..4 + mlen).collect();
                match msg[0] {
                    2 => {
                        let sh = parse_server_hello(&msg[4..])?;
                        let modern = sh.version == 0x0304 || sh.retry_request;
                        hello = Some(sh);
                        if modern || !spec.want_certificates {
                            return finish(hello, certificates);
                        }
                    }
                    11 if hello.is_some() => {
                        certificates = parse_certificate_list(&msg[4..])?;
                        return finish(hello, certificates);
                    }
                    // ServerHelloDone without Certificate: anonymous suite.
                    14 => return finish(hello, certificates),
                    _ if hello.is_none() => {
                        return Err(ProbeError::Malformed("handshake before ServerHello"));
                    }
                    _ => {}
                }
            }
        }
        if raw.len() > MAX_FLIGHT {
            return Err(ProbeError::Malformed("server flight too large"));
        }
        let n = match timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            // A reset after our hello is how some stacks refuse a version.
            Ok(Err(e)) if hello.is_none() && is_reset(&e) => 0,
            Ok(Err(e)) => return Err(ProbeError::Io(e)),
            Err(_) => 0,
        };
        if n == 0 {
            return match hello {
                Some(_) => finish(hello, certificates),
                None => Ok(HelloOutcome::Rejected { alert: None }),
            };
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
    )
}

fn finish(
    hello: Option<ServerHello>,
    certificates: Vec<Vec<u8>>,
) -> Result<HelloOutcome, ProbeError> {
    let sh = hello.ok_or(ProbeError::Malformed("no ServerHello"))?;
    let version = if sh.retry_request {
        TlsVersion::Tls13
    } else {
        version_from_wire(sh.version).ok_or(ProbeError::Malformed("unknown version"))?
    };
    Ok(HelloOutcome::Accepted {
        version,
        cipher: sh.cipher,
        certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_layout() {
        let spec = HelloSpec {
            version: TlsVersion::Tls10,
            suites: &[0x000A, 0xC013],
            sni: Some("a.test"),
            want_certificates: false,
        };
        let rec = build_client_hello(&spec);
        assert_eq!(rec[0], 0x16);
        assert_eq!(&rec[1..3], &[3, 1]);
        assert_eq!(u16::from_be_bytes([rec[3], rec[4]]) as usize, rec.len() - 5);
        assert_eq!(rec[5], 1);
        assert_eq!(&rec[9..11], &[3, 1]);
        // suites start after random (32) + sid len (1) + sid (32)
        let p = 11 + 32 + 1 + 32;
        assert_eq!(u16::from_be_bytes([rec[p], rec[p + 1]]), 6);
        assert_eq!(&rec[p + 2..p + 8], &[0x00, 0x0A, 0xC0, 0x13, 0x00, 0xFF]);
        assert!(rec.windows(6).any(|w| w == b"a.test"));
    }

    #[test]
    fn parses_server_hello_with_supported_versions() {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[7u8; 32]);
        b.push(0);
        b.extend_from_slice(&[0x13, 0x01, 0]);
        b.extend_from_slice(&[0, 6, 0x00, 0x2b, 0, 2, 3, 4]);
        let sh = parse_server_hello(&b).expect("parse");
        assert_eq!(sh.version, 0x0304);
        assert_eq!(sh.cipher, 0x1301);
        assert!(!sh.retry_request);
        assert!(parse_server_hello(&b[..20]).is_err());
    }
}
