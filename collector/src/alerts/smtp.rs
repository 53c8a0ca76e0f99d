//! A minimal SMTP client (RFC 5321) for email channels: EHLO, optional
//! STARTTLS (RFC 3207, required when enabled), optional AUTH PLAIN, MAIL FROM,
//! RCPT TO, DATA with dot-stuffing, QUIT.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::AlertError;
use super::config::SmtpConfig;

/// Longest reply line accepted from the server.
const MAX_LINE: u64 = 4096;

/// One message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Recipients (envelope and `To:`).
    pub to: Vec<String>,
    /// Subject line (any text; encoded when not ASCII).
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// Stable id, used for `Message-ID` and `X-Vigil-Idempotency-Key`.
    pub idempotency_key: String,
}

fn err(msg: impl Into<String>) -> AlertError {
    AlertError::Send(msg.into())
}

/// Standard base64 with padding (RFC 4648), for AUTH PLAIN and encoded words.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `addr` is a plain mailbox that is safe inside `<...>` and headers.
pub fn valid_address(addr: &str) -> bool {
    let Some((local, domain)) = addr.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && addr.len() <= 254
        && addr
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | ',' | '"' | '(' | ')'))
}

/// A header value: CR/LF removed, RFC 2047 encoded when not ASCII.
fn header_text(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.is_ascii() {
        flat
    } else {
        format!("=?UTF-8?B?{}?=", base64(flat.as_bytes()))
    }
}

/// The RFC 5322 message, CRLF line endings, dot-stuffed and terminated for DATA.
pub fn message(from: &str, mail: &Mail, date: &str) -> String {
    let domain = from.split_once('@').map_or("localhost", |(_, d)| d);
    let mut m = String::new();
    m.push_str(&format!("From: vigil <{from}>\r\n"));
    m.push_str(&format!("To: {}\r\n", mail.to.join(", ")));
    m.push_str(&format!("Subject: {}\r\n", header_text(&mail.subject)));
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!(
        "Message-ID: <{}@{domain}>\r\n",
        header_text(&mail.idempotency_key)
    ));
    m.push_str(&format!(
        "X-Vigil-Idempotency-Key: {}\r\n",
        header_text(&mail.idempotency_key)
    ));
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    m.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
    for line in mail.body.replace("\r\n", "\n").split('\n') {
        // Dot-stuffing (RFC 5321 4.5.2): a leading dot is doubled.
        if line.starts_with('.') {
            m.push('.');
        }
        m.push_str(line.trim_end_matches('\r'));
        m.push_str("\r\n");
    }
    m.push_str(".\r\n");
    m
}

struct Conn<S> {
    s: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(s: S) -> Self {
        Self {
            s: BufReader::new(s),
        }
    }

    /// Reads one (possibly multi-line) reply: code and text lines.
    async fn reply(&mut self) -> Result<(u16, Vec<String>), AlertError> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = (&mut self.s)
                .take(MAX_LINE)
                .read_line(&mut line)
                .await
                .map_err(|e| err(format!("SMTP read: {e}")))?;
            if n == 0 {
                return Err(err("SMTP server closed the connection"));
            }
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| err(format!("SMTP: malformed reply {line:?}")))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok((code, lines));
            }
        }
    }

    async fn write(&mut self, data: &str) -> Result<(), AlertError> {
        let w = self.s.get_mut();
        w.write_all(data.as_bytes())
            .await
            .map_err(|e| err(format!("SMTP write: {e}")))?;
        w.flush().await.map_err(|e| err(format!("SMTP write: {e}")))
    }

    /// Sends `line` and expects a reply code in `ok`.
    async fn cmd(&mut self, line: &str, ok: &[u16]) -> Result<Vec<String>, AlertError> {
        self.write(&format!("{line}\r\n")).await?;
        self.expect(line.split(':').next().unwrap_or(line), ok)
            .await
    }

    async fn expect(&mut self, what: &str, ok: &[u16]) -> Result<Vec<String>, AlertError> {
        let (code, text) = self.reply().await?;
        if ok.contains(&code) {
            Ok(text)
        } else {
            // Never echo AUTH arguments into errors.
            let what = if what.starts_with("AUTH") {
                "AUTH"
            } else {
                what
            };
            Err(err(format!("SMTP {what}: {code} {}", text.join(" "))))
        }
    }

    /// EHLO; returns the extension lines.
    async fn ehlo(&mut self, cfg: &SmtpConfig) -> Result<Vec<String>, AlertError> {
        self.cmd(&format!("EHLO {}", cfg.helo), &[250]).await
    }

    /// AUTH, envelope, DATA and QUIT after a successful EHLO.
    async fn transact(
        &mut self,
        cfg: &SmtpConfig,
        ext: &[String],
        mail: &Mail,
    ) -> Result<(), AlertError> {
        let has = |name: &str| {
            ext.iter().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case(name))
            })
        };
        if !cfg.username.is_empty() {
            let token = base64(format!("\0{}\0{}", cfg.username, cfg.password).as_bytes());
            self.cmd(&format!("AUTH PLAIN {token}"), &[235]).await?;
        }
        let body8 = if has("8BITMIME") {
            " BODY=8BITMIME"
        } else {
            ""
        };
        self.cmd(&format!("MAIL FROM:<{}>{body8}", cfg.from), &[250])
            .await?;
        for to in &mail.to {
            self.cmd(&format!("RCPT TO:<{to}>"), &[250, 251]).await?;
        }
        self.cmd("DATA", &[354]).await?;
        let date = chrono::Utc::now().to_rfc2822();
        self.write(&message(&cfg.from, mail, &date)).await?;
        self.expect("DATA", &[250]).await?;
        // The message is accepted; a failing QUIT must not turn that into a retry.
        let _ = self.cmd("QUIT", &[221]).await;
        Ok(())
    }
}

/// TLS settings for STARTTLS: the CAs in `ca_file` (PEM) when set, else the
/// built-in web PKI roots.
fn tls_config(cfg: &SmtpConfig) -> Result<Arc<rustls::ClientConfig>, AlertError> {
    let mut roots = rustls::RootCertStore::empty();
    if cfg.ca_file.is_empty() {
        roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    } else {
        let certs = CertificateDer::pem_file_iter(&cfg.ca_file)
            .map_err(|e| err(format!("alerts.smtp.ca_file {}: {e}", cfg.ca_file)))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("alerts.smtp.ca_file {}: {e}", cfg.ca_file)))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(err(format!(
                "alerts.smtp.ca_file {}: no certificate",
                cfg.ca_file
            )));
        }
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Sends `mail` through the relay in `cfg`; the caller bounds the time taken.
pub async fn send(cfg: &SmtpConfig, mail: &Mail) -> Result<(), AlertError> {
    if cfg.server.is_empty() {
        return Err(err("email is not configured (alerts.smtp.server is empty)"));
    }
    if mail.to.is_empty() || !mail.to.iter().all(|a| valid_address(a)) {
        return Err(err("invalid recipient address"));
    }
    let stream = TcpStream::connect(cfg.server.as_str())
        .await
        .map_err(|e| err(format!("SMTP connect {}: {e}", cfg.server)))?;
    let mut c = Conn::new(stream);
    c.expect("greeting", &[220]).await?;
    let ext = c.ehlo(cfg).await?;
    if !cfg.starttls {
        return c.transact(cfg, &ext, mail).await;
    }
    let offered = ext
        .iter()
        .any(|l| l.trim().eq_ignore_ascii_case("STARTTLS"));
    if !offered {
        return Err(err(
            "SMTP relay does not offer STARTTLS (alerts.smtp.starttls = true)",
        ));
    }
    c.cmd("STARTTLS", &[220]).await?;
    let name = ServerName::try_from(host_of(&cfg.server).to_string())
        .map_err(|e| err(format!("SMTP server name {}: {e}", cfg.server)))?;
    let tls = tokio_rustls::TlsConnector::from(tls_config(cfg)?)
        .connect(name, c.s.into_inner())
        .await
        .map_err(|e| err(format!("SMTP STARTTLS handshake: {e}")))?;
    let mut c = Conn::new(tls);
    // RFC 3207: forget what was learnt before TLS and greet again.
    let ext = c.ehlo(cfg).await?;
    c.transact(cfg, &ext, mail).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("mail.example.org:587"), "mail.example.org");
        assert_eq!(host_of("127.0.0.1:25"), "127.0.0.1");
        assert_eq!(host_of("[::1]:25"), "::1");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn message_is_dot_stuffed_and_headers_cannot_be_injected() {
        let mail = Mail {
            to: vec!["a@example.org".into(), "b@example.org".into()],
            subject: "hi\r\nBcc: evil@example.org".into(),
            body: "line one\n.leading dot\n..two\nend".into(),
            idempotency_key: "d1".into(),
        };
        let m = message("vigil@example.org", &mail, "Mon, 1 Jan 2024 00:00:00 +0000");
        assert!(
            m.contains("\r\nSubject: hi  Bcc: evil@example.org\r\n"),
            "{m}"
        );
        assert!(!m.contains("\r\nBcc:"));
        assert!(m.contains("\r\n..leading dot\r\n...two\r\nend\r\n.\r\n"));
        assert!(m.contains("Message-ID: <d1@example.org>\r\n"));
        assert!(m.ends_with("\r\n.\r\n"));
        assert!(valid_address("ops@example.org"));
        for bad in ["", "x", "a@b@c", "a b@c", "a@b>", "a@b\r\n"] {
            assert!(!valid_address(bad), "{bad:?}");
        }
    }
}
