//! HTTP security-header check with a minimal HTTP/1.1 client.
//!
//! One `GET /` per URL, redirects never followed: for a plain-HTTP URL the
//! redirect itself is what is being checked. HTTPS uses a certificate-agnostic
//! rustls client because certificate problems are the TLS check's business.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use protocol::HttpObservation;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Why a URL could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// TCP connect failed.
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// No complete response head before the timeout.
    #[error("timed out")]
    Timeout,
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    /// The response is not HTTP/1.x.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// First value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header joined with `, ` (how repeated headers combine).
    pub fn joined(&self, name: &str) -> Option<String> {
        let v: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!v.is_empty()).then(|| v.join(", "))
    }
}

/// Parses a response head (status line and headers, up to the blank line).
pub fn parse_head(raw: &[u8]) -> Result<ResponseHead, HttpError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(HttpError::Malformed("incomplete head"))?;
    let text = String::from_utf8_lossy(&raw[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(HttpError::Malformed("empty"))?;
    let mut parts = status_line.splitn(3, ' ');
    let proto = parts.next().unwrap_or("");
    if !proto.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(HttpError::Malformed("bad status code"))?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    Ok(ResponseHead { status, headers })
}

/// Parsed `Strict-Transport-Security`: (max-age, includeSubDomains).
pub fn parse_hsts(value: &str) -> (Option<u64>, bool) {
    let mut max_age = None;
    let mut include_sub = false;
    for directive in value.split(';').map(str::trim) {
        let (name, val) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("max-age") {
            max_age = val.trim().trim_matches('"').parse::<u64>().ok();
        } else if name.eq_ignore_ascii_case("includesubdomains") {
            include_sub = true;
        }
    }
    (max_age, include_sub)
}

fn url_for(host: &str, port: u16, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    let default = if https { 443 } else { 80 };
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    };
    if port == default {
        format!("{scheme}://{host}/")
    } else {
        format!("{scheme}://{host}:{port}/")
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, HttpError> {
    match timeout_at(deadline, stream.write_all(request)).await {
        Ok(r) => r.map_err(HttpError::Io)?,
        Err(_) => return Err(HttpError::Timeout),
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        if out.len() > MAX_HEAD {
            return Err(HttpError::Malformed("response head too large"));
        }
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(HttpError::Io(e)),
            Err(_) => return Err(HttpError::Timeout),
        }
    }
    Ok(out)
}

/// Fetches `GET /` from `ep` (presenting `host`) and returns the head.
pub async fn fetch_head(
    ep: SocketAddr,
    host: &str,
    https: bool,
    timeout: Duration,
) -> Result<ResponseHead, HttpError> {
    let deadline = Instant::now() + timeout;
    let tcp = match timeout_at(deadline, TcpStream::connect(ep)).await {
        Ok(r) => r.map_err(HttpError::Connect)?,
        Err(_) => return Err(HttpError::Timeout),
    };
    let default = if https { 443 } else { 80 };
    let host_header = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    };
    let host_header = if ep.port() == default {
        host_header
    } else {
        format!("{host_header}:{}", ep.port())
    };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: vigil-agent/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let raw = if https {
        let (config, _) = super::tls::capturing_client_config();
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| HttpError::Malformed("invalid host name"))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let mut tls = match timeout_at(deadline, connector.connect(name, tcp)).await {
            Ok(r) => r.map_err(HttpError::Tls)?,
            Err(_) => return Err(HttpError::Timeout),
        };
        exchange(&mut tls, request.as_bytes(), deadline).await?
    } else {
        let mut tcp = tcp;
        exchange(&mut tcp, request.as_bytes(), deadline).await?
    };
    parse_head(&raw)
}

/// Checks the security headers of `http(s)://host:port/` served at `ep`.
pub async fn check(
    ep: SocketAddr,
    host: &str,
    https: bool,
    timeout: Duration,
) -> Result<HttpObservation, HttpError> {
    let head = fetch_head(ep, host, https, timeout).await?;
    Ok(observe(&head, url_for(host, ep.port(), https), https))
}

/// Builds the observation from a response head.
pub fn observe(head: &ResponseHead, url: String, https: bool) -> HttpObservation {
    let hsts = head.get("strict-transport-security").map(str::to_string);
    let (hsts_max_age, hsts_include_subdomains) =
        hsts.as_deref().map(parse_hsts).unwrap_or((None, false));
    let redirects_to_https = (!https).then(|| {
        (300..400).contains(&head.status)
            && head
                .get("location")
                .is_some_and(|l| l.trim().to_ascii_lowercase().starts_with("https://"))
    });
    HttpObservation {
        url,
        status: head.status,
        hsts,
        hsts_max_age,
        hsts_include_subdomains,
        csp: head.joined("content-security-policy"),
        x_frame_options: head.get("x-frame-options").map(str::to_string),
        x_content_type_options: head.get("x-content-type-options").map(str::to_string),
        referrer_policy: head.get("referrer-policy").map(str::to_string),
        permissions_policy: head.joined("permissions-policy"),
        server: head.get("server").map(str::to_string),
        x_powered_by: head.get("x-powered-by").map(str::to_string),
        redirects_to_https,
    }
}

/// Whether `ep` completes a TLS handshake (to pick the scheme for an explicit port).
pub async fn speaks_tls(ep: SocketAddr, timeout: Duration) -> bool {
    let (config, _) = super::tls::capturing_client_config();
    let connector = tokio_rustls::TlsConnector::from(config);
    let attempt = async {
        let tcp = TcpStream::connect(ep).await.ok()?;
        connector
            .connect(ServerName::IpAddress(ep.ip().into()), tcp)
            .await
            .ok()
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hsts_directives() {
        assert_eq!(
            parse_hsts("max-age=31536000; includeSubDomains; preload"),
            (Some(31536000), true)
        );
        assert_eq!(parse_hsts("MAX-AGE=\"300\""), (Some(300), false));
        assert_eq!(parse_hsts("includesubdomains"), (None, true));
        assert_eq!(parse_hsts("max-age=abc"), (None, false));
    }

    #[test]
    fn parses_heads_and_redirects() {
        let head = parse_head(
            b"HTTP/1.1 301 Moved\r\nLocation: HTTPS://a.test/\r\nServer: nginx/1.25.3\r\n\r\n",
        )
        .expect("head");
        let obs = observe(&head, "http://a.test/".into(), false);
        assert_eq!(obs.redirects_to_https, Some(true));
        assert_eq!(obs.server.as_deref(), Some("nginx/1.25.3"));
        let head = parse_head(b"HTTP/1.1 302 Found\r\nLocation: /login\r\n\r\n").expect("head");
        assert_eq!(
            observe(&head, String::new(), false).redirects_to_https,
            Some(false)
        );
        assert_eq!(observe(&head, String::new(), true).redirects_to_https, None);
        assert!(parse_head(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn urls_omit_default_ports() {
        assert_eq!(url_for("a.test", 443, true), "https://a.test/");
        assert_eq!(url_for("::1", 8080, false), "http://[::1]:8080/");
    }
}
