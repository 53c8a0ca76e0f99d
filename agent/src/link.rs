//! Low-level pieces of a collector connection: address resolution, endpoint,
//! frame reading and writing, and turning handshake failures into clear errors.

use std::net::SocketAddr;
use std::time::Duration;

use protocol::{DEFAULT_MAX_FRAME, ErrorCode, FrameDecoder, Message};

use crate::error::AgentError;

/// TLS alert `certificate_revoked` as carried in a QUIC CRYPTO_ERROR.
const ALERT_CERTIFICATE_REVOKED: u8 = 44;
/// TLS alert `certificate_expired`.
const ALERT_CERTIFICATE_EXPIRED: u8 = 45;

/// Resolves `host:port` (or `[v6]:port`) to an address and the TLS server name.
pub async fn resolve(collector: &str) -> Result<(SocketAddr, String), AgentError> {
    let (host, _) = collector
        .rsplit_once(':')
        .ok_or_else(|| AgentError::Resolve(format!("{collector} (expected HOST:PORT)")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host(collector)
        .await
        .map_err(|e| AgentError::Resolve(format!("{collector}: {e}")))?
        .next()
        .ok_or_else(|| AgentError::Resolve(collector.to_string()))?;
    Ok((addr, host))
}

/// A client endpoint of the right address family.
pub fn endpoint(remote: SocketAddr) -> Result<quinn::Endpoint, AgentError> {
    let bind: SocketAddr = if remote.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    quinn::Endpoint::client(bind).map_err(|e| AgentError::Connection(format!("local socket: {e}")))
}

/// Connects and opens the session stream.
pub async fn open(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
) -> Result<(quinn::Connection, quinn::SendStream, FrameReader), AgentError> {
    let connecting = endpoint
        .connect_with(config, addr, server_name)
        .map_err(|e| AgentError::Connection(e.to_string()))?;
    let conn = tokio::time::timeout(Duration::from_secs(15), connecting)
        .await
        .map_err(|_| AgentError::Timeout("handshake"))?
        .map_err(classify)?;
    let (send, recv) = conn.open_bi().await.map_err(classify)?;
    Ok((conn, send, FrameReader::new(recv)))
}

/// Maps a connection error to the most helpful agent error.
pub fn classify(e: quinn::ConnectionError) -> AgentError {
    use quinn::ConnectionError as C;
    match &e {
        // The collector closed the handshake: it refused our certificate.
        C::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::crypto(ALERT_CERTIFICATE_REVOKED) =>
        {
            AgentError::Revoked
        }
        // Renewal needs a live connection, so the operator must act: say so.
        C::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::crypto(ALERT_CERTIFICATE_EXPIRED) =>
        {
            AgentError::CertificateExpired(e.to_string())
        }
        C::ConnectionClosed(c) if is_crypto(c.error_code) => {
            AgentError::CertificateRejected(e.to_string())
        }
        // Our own TLS stack failed the handshake: we do not trust the collector.
        C::TransportError(t) if is_crypto(t.code) => AgentError::ServerUntrusted(e.to_string()),
        _ => AgentError::Connection(e.to_string()),
    }
}

fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    let v = u64::from(code);
    (0x100..0x200).contains(&v)
}

/// Turns an error reply into an agent error.
pub fn refused(e: protocol::ErrorMessage) -> AgentError {
    if e.code == ErrorCode::Revoked {
        return AgentError::Revoked;
    }
    AgentError::Refused {
        code: e.code,
        message: e.message,
    }
}

/// Writes one message as a frame.
pub async fn write(send: &mut quinn::SendStream, msg: &Message) -> Result<(), AgentError> {
    let frame = protocol::encode_frame(msg, DEFAULT_MAX_FRAME)?;
    send.write_all(&frame)
        .await
        .map_err(|e| AgentError::Connection(e.to_string()))
}

/// Reads whole messages from the receive half of the session stream.
pub struct FrameReader {
    recv: quinn::RecvStream,
    dec: FrameDecoder,
}

impl FrameReader {
    fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            dec: FrameDecoder::new(DEFAULT_MAX_FRAME),
        }
    }

    /// The next message, `None` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Message>, AgentError> {
        loop {
            if let Some(m) = self.dec.next_message()? {
                return Ok(Some(m));
            }
            match self.recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => self.dec.push(&chunk.bytes),
                Ok(None) => {
                    self.dec.finish()?;
                    return Ok(None);
                }
                Err(quinn::ReadError::ConnectionLost(e)) => return Err(classify(e)),
                Err(e) => return Err(AgentError::Connection(e.to_string())),
            }
        }
    }

    /// The first reply: the collector's acceptance of the connection.
    pub async fn first(&mut self) -> Result<Message, AgentError> {
        match tokio::time::timeout(Duration::from_secs(15), self.next()).await {
            Err(_) => Err(AgentError::Timeout("first reply")),
            Ok(Ok(Some(Message::Error(e)))) => Err(refused(e)),
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(AgentError::Connection(
                "collector closed the stream without answering".into(),
            )),
            Ok(Err(e)) => Err(e),
        }
    }
}

/// Our Hello.
pub fn hello() -> Message {
    Message::Hello(protocol::Hello {
        min_version: protocol::PROTOCOL_VERSION_MIN,
        max_version: protocol::PROTOCOL_VERSION_MAX,
        software: format!("vigil-agent {}", env!("CARGO_PKG_VERSION")),
    })
}
