//! Concurrent TCP connect scan.
//!
//! A fixed pool of worker tasks pulls (address, port) pairs from a shared
//! cursor, so memory stays flat for a full 1-65535 sweep and the number of
//! sockets in flight never exceeds the configured concurrency.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use protocol::{PortRange, PortState};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::top_ports::TOP_PORTS;

/// Which ports to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelection {
    /// The 1000 most common TCP ports (see [`TOP_PORTS`]).
    Top1000,
    /// Every port 1-65535.
    All,
    /// Explicit ranges.
    Ranges(Vec<PortRange>),
}

impl PortSelection {
    /// Expands to a sorted, de-duplicated port list.
    pub fn ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = match self {
            Self::Top1000 => TOP_PORTS.to_vec(),
            Self::All => (1..=u16::MAX).collect(),
            Self::Ranges(r) => r.iter().flat_map(|r| r.start.max(1)..=r.end).collect(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Parses `top`, `all`/`-`, or a list like `22,80,8000-8100`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "top" | "top1000" | "default" => return Some(Self::Top1000),
            "all" | "-" | "1-65535" => return Some(Self::All),
            _ => {}
        }
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let start: u16 = a.trim().parse().ok()?;
            let end: u16 = b.trim().parse().ok()?;
            if start == 0 || end < start {
                return None;
            }
            ranges.push(PortRange { start, end });
        }
        (!ranges.is_empty()).then_some(Self::Ranges(ranges))
    }
}

/// Limits of a connect scan.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Sockets in flight at once.
    pub concurrency: usize,
    /// Connect attempts per second across the scan; `None` is unlimited.
    pub rate_per_sec: Option<u32>,
    /// How long to wait for a handshake before calling the port filtered.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            concurrency: 1000,
            rate_per_sec: None,
            connect_timeout: Duration::from_millis(1500),
        }
    }
}

/// One probed port that was not closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortResult {
    /// Address and port.
    pub addr: SocketAddr,
    /// Open or filtered.
    pub state: PortState,
}

/// Spaces connect attempts evenly to honour a rate limit.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Transient local resource exhaustion: retry instead of misreporting the port.
fn is_local_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 99 | 105))
}

async fn probe_port(addr: SocketAddr, connect_timeout: Duration) -> PortState {
    for attempt in 0..20u32 {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => return PortState::Open,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return PortState::Closed;
            }
            Ok(Err(e)) if is_local_exhaustion(&e) => {
                tracing::debug!(%addr, error = %e, attempt, "local socket exhaustion, retrying");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt + 1))).await;
            }
            // Unreachable hosts/networks are indistinguishable from a dropping firewall.
            Ok(Err(_)) | Err(_) => return PortState::Filtered,
        }
    }
    PortState::Filtered
}

/// Connect-scans every `port` on every address; returns open and filtered ports sorted by address and port.
///
/// `progress` is incremented once per probed port so a caller can report advancement.
pub async fn connect_scan(
    addrs: &[IpAddr],
    ports: &[u16],
    opts: &ConnectOptions,
    progress: Option<Arc<AtomicU64>>,
) -> Vec<PortResult> {
    let total = addrs.len() * ports.len();
    if total == 0 {
        return Vec::new();
    }
    let addrs: Arc<[IpAddr]> = addrs.into();
    let ports: Arc<[u16]> = ports.into();
    let cursor = Arc::new(AtomicUsize::new(0));
    let pacer = opts.rate_per_sec.filter(|r| *r > 0).map(|r| {
        Arc::new(Pacer {
            interval: Duration::from_secs(1) / r,
            next: Mutex::new(Instant::now()),
        })
    });
    let workers = opts.concurrency.clamp(1, total);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (addrs, ports, cursor, pacer, progress) = (
            addrs.clone(),
            ports.clone(),
            cursor.clone(),
            pacer.clone(),
            progress.clone(),
        );
        let timeout = opts.connect_timeout;
        handles.push(tokio::spawn(async move {
            let mut found = Vec::new();
            loop {
                let i = cursor.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                // Port-major order spreads consecutive probes across hosts.
                let addr = SocketAddr::new(addrs[i % addrs.len()], ports[i / addrs.len()]);
                if let Some(p) = &pacer {
                    p.wait().await;
                }
                let state = probe_port(addr, timeout).await;
                if state != PortState::Closed {
                    found.push(PortResult { addr, state });
                }
                if let Some(p) = &progress {
                    p.fetch_add(1, Ordering::Relaxed);
                }
            }
            found
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        match h.await {
            Ok(found) => results.extend(found),
            Err(e) => tracing::error!(error = %e, "port-scan worker failed"),
        }
    }
    results.sort_by_key(|r| (r.addr.ip(), r.addr.port()));
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_selections() {
        assert_eq!(PortSelection::parse("top"), Some(PortSelection::Top1000));
        assert_eq!(PortSelection::parse("-"), Some(PortSelection::All));
        assert_eq!(
            PortSelection::parse("22, 80-82").map(|s| s.ports()),
            Some(vec![22, 80, 81, 82])
        );
        assert_eq!(PortSelection::parse("0"), None);
        assert_eq!(PortSelection::parse("90-80"), None);
        assert_eq!(PortSelection::parse("x"), None);
        assert_eq!(PortSelection::All.ports().len(), 65535);
        let top = PortSelection::Top1000.ports();
        assert_eq!(top.len(), 1000);
        for p in [22, 80, 443, 445, 3389, 6379, 8080, 27017, 9200] {
            assert!(top.contains(&p), "top ports must include {p}");
        }
    }
}
