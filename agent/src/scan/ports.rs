//! Concurrent TCP connect scan.
//!
//! Sweep threads pull (address, port) pairs from a shared cursor, so memory
//! stays flat for a full 1-65535 sweep and the number of sockets in flight
//! never exceeds the configured concurrency.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use protocol::{PortRange, PortState};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

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
    /// Takes the next slot if it is due, else says when it will be.
    fn try_acquire(&self) -> Result<(), Instant> {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if *next > now {
            return Err(*next);
        }
        *next = now + self.interval;
        Ok(())
    }
}

/// Transient local resource exhaustion: retry instead of misreporting the port.
fn is_local_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 99 | 105))
}

/// State shared by every sweep thread of one scan.
struct Sweep {
    addrs: Vec<IpAddr>,
    ports: Vec<u16>,
    total: usize,
    cursor: AtomicUsize,
    pacer: Option<Pacer>,
    progress: Option<Arc<AtomicU64>>,
    timeout: Duration,
}

impl Sweep {
    /// Claims the next (address, port); port-major order spreads consecutive probes across hosts.
    fn next(&self) -> Option<SocketAddr> {
        let i = self.cursor.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then(|| {
            let n = self.addrs.len();
            SocketAddr::new(self.addrs[i % n], self.ports[i / n])
        })
    }

    fn done(&self) {
        if let Some(p) = &self.progress {
            p.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A connect in flight.
struct Pending {
    stream: mio::net::TcpStream,
    addr: SocketAddr,
    generation: u64,
}

/// How a finished non-blocking connect ended, or `None` if it is still in progress.
fn classify(stream: &mio::net::TcpStream) -> Option<PortState> {
    match stream.take_error() {
        Ok(Some(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(PortState::Closed),
        // Unreachable hosts/networks are indistinguishable from a dropping firewall.
        Ok(Some(_)) | Err(_) => Some(PortState::Filtered),
        Ok(None) => match stream.peer_addr() {
            // TCP simultaneous open: on loopback the kernel can pick the target
            // port as our source port and the socket connects to itself, which
            // says nothing about a listener.
            Ok(peer) if stream.local_addr().is_ok_and(|local| local == peer) => {
                Some(PortState::Closed)
            }
            Ok(_) => Some(PortState::Open),
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => None,
            Err(_) => Some(PortState::Filtered),
        },
    }
}

/// One sweep thread: keeps up to `slots` non-blocking connects in flight on
/// its own epoll instance until the shared cursor is exhausted.
fn sweep_thread(sweep: &Sweep, slots: usize) -> std::io::Result<Vec<PortResult>> {
    use mio::{Events, Interest, Poll, Token};
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(slots.clamp(16, 1024));
    let mut table: Vec<Option<Pending>> = (0..slots).map(|_| None).collect();
    let mut free: Vec<usize> = (0..slots).rev().collect();
    // The timeout is the same for every connect, so deadlines expire in insertion order.
    let mut expiry: VecDeque<(usize, u64, Instant)> = VecDeque::new();
    let mut retry: VecDeque<(SocketAddr, u32)> = VecDeque::new();
    let mut generation = 0u64;
    let mut found = Vec::new();
    let mut exhausted = false;
    let mut record = |addr, state| {
        if state != PortState::Closed {
            found.push(PortResult { addr, state });
        }
        sweep.done();
    };
    loop {
        let mut wake_at: Option<Instant> = None;
        let mut backoff = false;
        while !free.is_empty() && !backoff {
            if let Some(p) = &sweep.pacer
                && let Err(at) = p.try_acquire()
            {
                wake_at = Some(at);
                break;
            }
            let (addr, attempts) = match retry.pop_front() {
                Some(r) => r,
                None if exhausted => break,
                None => match sweep.next() {
                    Some(a) => (a, 0),
                    None => {
                        exhausted = true;
                        break;
                    }
                },
            };
            match mio::net::TcpStream::connect(addr) {
                Ok(mut stream) => {
                    let Some(idx) = free.pop() else { break };
                    generation += 1;
                    if let Err(e) =
                        poll.registry()
                            .register(&mut stream, Token(idx), Interest::WRITABLE)
                    {
                        free.push(idx);
                        return Err(e);
                    }
                    table[idx] = Some(Pending {
                        stream,
                        addr,
                        generation,
                    });
                    expiry.push_back((idx, generation, Instant::now() + sweep.timeout));
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    record(addr, PortState::Closed)
                }
                Err(e) if is_local_exhaustion(&e) && attempts < 50 => {
                    tracing::debug!(%addr, error = %e, "local socket exhaustion, retrying");
                    retry.push_back((addr, attempts + 1));
                    backoff = true;
                }
                Err(_) => record(addr, PortState::Filtered),
            }
        }
        if exhausted && retry.is_empty() && free.len() == slots {
            break;
        }
        let now = Instant::now();
        let mut deadline = expiry.front().map(|e| e.2);
        if let Some(w) = wake_at {
            deadline = Some(deadline.map_or(w, |d| d.min(w)));
        }
        let mut wait = deadline.map(|d| d.saturating_duration_since(now));
        if backoff {
            wait = Some(wait.map_or(Duration::from_millis(10), |w| {
                w.min(Duration::from_millis(10))
            }));
        }
        match poll.poll(&mut events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let idx = ev.token().0;
            let Some(state) = table
                .get(idx)
                .and_then(|p| p.as_ref())
                .and_then(|p| classify(&p.stream))
            else {
                continue;
            };
            if let Some(p) = table[idx].take() {
                record(p.addr, state);
                free.push(idx);
            }
        }
        let now = Instant::now();
        while let Some(&(idx, generation, at)) = expiry.front() {
            if at > now {
                break;
            }
            expiry.pop_front();
            if table[idx]
                .as_ref()
                .is_some_and(|p| p.generation == generation)
                && let Some(p) = table[idx].take()
            {
                record(p.addr, PortState::Filtered);
                free.push(idx);
            }
        }
    }
    Ok(found)
}

/// Connect-scans every `port` on every address; returns open and filtered ports sorted by address and port.
///
/// A connect scan is pure syscall churn, so it runs outside the async runtime:
/// one thread per CPU, each driving its share of the in-flight connects on its
/// own epoll instance (as nmap does), which keeps per-port overhead at
/// socket/connect/register/close. `progress` is incremented once per probed
/// port so a caller can report advancement.
pub async fn connect_scan(
    addrs: &[IpAddr],
    ports: &[u16],
    opts: &ConnectOptions,
    progress: Option<Arc<AtomicU64>>,
) -> std::io::Result<Vec<PortResult>> {
    let total = addrs.len() * ports.len();
    if total == 0 {
        return Ok(Vec::new());
    }
    let sweep = Arc::new(Sweep {
        addrs: addrs.to_vec(),
        ports: ports.to_vec(),
        total,
        cursor: AtomicUsize::new(0),
        pacer: opts.rate_per_sec.filter(|r| *r > 0).map(|r| Pacer {
            interval: Duration::from_secs(1) / r,
            next: Mutex::new(Instant::now()),
        }),
        progress,
        timeout: opts.connect_timeout,
    });
    let slots = opts.concurrency.clamp(1, total);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, slots);
    let joined = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let share = slots / threads + usize::from(t < slots % threads);
                    let sweep = &sweep;
                    scope.spawn(move || sweep_thread(sweep, share))
                })
                .collect();
            let mut results = Vec::new();
            for h in handles {
                match h.join() {
                    Ok(r) => results.extend(r?),
                    Err(_) => return Err(std::io::Error::other("port-scan thread panicked")),
                }
            }
            Ok(results)
        })
    })
    .await
    .map_err(std::io::Error::other)?;
    let mut results = joined?;
    results.sort_by_key(|r| (r.addr.ip(), r.addr.port()));
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn self_connected_socket_is_not_an_open_port() {
        // Bind a free loopback port, then connect the same socket to it: Linux
        // completes a TCP simultaneous open with itself.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(addr).expect("bind");
        let Ok(stream) = sock.connect(addr).await else {
            eprintln!("SKIPPED: this kernel refuses TCP self-connect");
            return;
        };
        let std_stream = stream.into_std().expect("into std");
        let mio_stream = mio::net::TcpStream::from_std(std_stream);
        assert_eq!(classify(&mio_stream), Some(PortState::Closed));
    }

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
