//! Signed webhook delivery over HTTP(S).

use std::time::Duration;

use super::AlertError;
use super::model::Delivery;
use super::sign::{
    EVENT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature,
};

/// The HTTP client of every alert channel: no redirects, no proxy from the
/// environment, rustls with the process-wide (ring) provider.
pub fn http_client() -> Result<reqwest::Client, AlertError> {
    // Idempotent: the binary installs it at start, tests may not have.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("vigil-collector/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AlertError::Send(format!("HTTP client: {e}")))
}

/// Posts `body` as JSON and maps any non-2xx answer to an error.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<(), AlertError> {
    let mut req = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| AlertError::Send(format!("POST failed: {}", error_chain(&e))))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(AlertError::Send(format!("receiver answered {status}")))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Sends `d` to a webhook, signed with `secret` at `timestamp` (Unix seconds).
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    d: &Delivery,
    timestamp: u64,
    timeout: Duration,
) -> Result<(), AlertError> {
    let body = serde_json::to_vec(&d.payload())
        .map_err(|e| AlertError::Send(format!("encoding payload: {e}")))?;
    let headers = [
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (
            SIGNATURE_HEADER,
            signature(secret.as_bytes(), timestamp, &body),
        ),
        (IDEMPOTENCY_HEADER, d.id.clone()),
        (EVENT_HEADER, d.event.kind.as_str().to_string()),
    ];
    post_json(client, url, body, &headers, timeout).await
}
