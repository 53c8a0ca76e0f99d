//! Helpers of the alerting tests: a loopback HTTP receiver that records every
//! request and can be told to fail, and a minimal client for the console API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use collector::Collector;
use console::Role;
use console::accounts::{ApiKeyRecord, secret_hash};
use protocol::TenantId;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Request line path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
    /// Status the receiver answered.
    pub status: u16,
}

impl Captured {
    /// Value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// An HTTP/1.1 receiver on loopback: answers 500 to the first `fail_first`
/// requests (and to every request while failing), 200 otherwise.
pub struct Receiver {
    /// Bound address.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Captured>>>,
    failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

async fn read_request(s: &mut TcpStream) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 || buf.len() > 65_536 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, body))
}

impl Receiver {
    /// Listens on `addr` (port 0 picks one).
    pub async fn start(addr: SocketAddr, fail_first: usize) -> Self {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_reuseaddr(true).unwrap();
        sock.bind(addr).unwrap();
        let listener: TcpListener = sock.listen(64).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 2024, "port 2024 belongs to the machine");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let remaining = Arc::new(AtomicUsize::new(fail_first));
        let (r, f) = (requests.clone(), failing.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (r, f, remaining) = (r.clone(), f.clone(), remaining.clone());
                tokio::spawn(async move {
                    let Some((path, headers, body)) = read_request(&mut s).await else {
                        return;
                    };
                    let fail = f.load(Ordering::SeqCst)
                        || remaining
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                    let status = if fail { 500 } else { 200 };
                    r.lock().unwrap().push(Captured {
                        path,
                        headers,
                        body,
                        status,
                    });
                    let reply = format!(
                        "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        if fail { "Internal Server Error" } else { "OK" }
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self {
            addr,
            requests,
            failing,
            task,
        }
    }

    /// Makes every request fail (true) or succeed (false).
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests answered 200.
    pub fn accepted(&self) -> Vec<Captured> {
        self.requests()
            .into_iter()
            .filter(|c| c.status == 200)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates an API key of `role` in `tenant` and returns the presented form.
pub fn api_key(c: &Collector, tenant: &str, role: Role) -> String {
    let raw = console::accounts::random_bytes::<16>().unwrap();
    let id = format!("k-{}", hex::encode(&raw[..8]));
    let secret = hex::encode(&raw[8..]);
    c.accounts()
        .expect("console accounts")
        .put_api_key(&ApiKeyRecord {
            id: id.clone(),
            tenant: TenantId::new(tenant).unwrap(),
            role,
            name: "alerts-test".into(),
            secret_sha256: hex::encode(secret_hash(&secret)),
            created_by: "test".into(),
            created_ms: 1,
            expires_ms: None,
        })
        .unwrap();
    format!("vgk_{id}_{secret}")
}

/// One console API call over plain HTTP/1.1; returns status and JSON body (Null when empty).
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} /api/v1{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
    };
    (status, body)
}
