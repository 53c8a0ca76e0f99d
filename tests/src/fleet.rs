//! Fleet simulator: many enrolled agents on one collector, streaming signed
//! batches of realistic observations plus heartbeats, with ack latency,
//! throughput and collector CPU/RSS measured.
//!
//! Every simulated agent enrols through the real token path (its own TLS key,
//! certificate and Ed25519 signing key) and then speaks the wire protocol
//! itself over a *shared* quinn client endpoint: quinn multiplexes any number
//! of connections on one UDP socket, so 10,000 agents need not mean 10,000
//! sockets. Batches are signed in memory rather than spooled to disk: the
//! agent's spool is covered by its own tests, and here it would only measure
//! this machine's fsync rate instead of the collector.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::AgentState;
use agent::enroll::EnrollOptions;
use collector::Collector;
use collector::admin::{AdminRequest, AgentSummary, CreatedToken};
use collector::findings::requests::FindingsRequest;
use protocol::{
    BatchBody, CertificateInfo, DmarcRecord, DnsObservation, Heartbeat, HttpObservation, Message,
    Observation, PortObservation, PortState, Record, SpfRecord, TenantId, TlsObservation,
    TlsVersion, WeakCipher, WeakCipherClass,
};
use thiserror::Error;
use tokio::sync::{Semaphore, watch};

/// Failures of a fleet run.
#[derive(Debug, Error)]
pub enum FleetError {
    /// Enrolment or a connection failed.
    #[error("agent {index}: {source}")]
    Agent {
        /// Which simulated agent.
        index: usize,
        /// What went wrong.
        source: agent::AgentError,
    },
    /// The collector's admin interface failed.
    #[error("collector admin: {0}")]
    Admin(String),
    /// The simulator's local setup failed (sockets, directories, encoding).
    #[error("fleet setup: {0}")]
    Setup(String),
    /// The collector did not do what the protocol promises.
    #[error("protocol violation by collector for agent {index}: {message}")]
    Violation {
        /// Which simulated agent.
        index: usize,
        /// What was wrong.
        message: String,
    },
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Simulated agents.
    pub agents: usize,
    /// Tenants the agents are spread over (round-robin).
    pub tenants: usize,
    /// Records in each batch.
    pub records_per_batch: usize,
    /// Batches each agent sends; 0 streams until `duration` ends.
    pub batches_per_agent: u64,
    /// How long agents stay connected after all are up (heartbeating once
    /// their batches are acked); zero leaves as soon as every batch is acked.
    pub duration: Duration,
    /// Pause between an agent's batches (zero: as fast as the window allows).
    pub batch_interval: Duration,
    /// Batches in flight per agent, at most.
    pub window: u64,
    /// Heartbeat interval; `None` uses the one the collector's Welcome asks for.
    pub heartbeat: Option<Duration>,
    /// Concurrent enrolments.
    pub enroll_parallel: usize,
    /// Concurrent connection handshakes.
    pub connect_parallel: usize,
    /// Client UDP sockets (quinn endpoints) the agents share, round-robin.
    pub sockets: usize,
    /// Where the agents' enrolled identities are written.
    pub state_dir: PathBuf,
    /// Findings searches per second issued while streaming and until the
    /// pipeline caught up (0: none), through the collector's findings API.
    pub search_rate: f64,
}

impl FleetOptions {
    /// Defaults for `agents` agents keeping their state under `state_dir`.
    pub fn new(agents: usize, state_dir: &Path) -> Self {
        Self {
            agents,
            tenants: 4,
            records_per_batch: 100,
            batches_per_agent: 20,
            duration: Duration::ZERO,
            batch_interval: Duration::ZERO,
            window: 8,
            heartbeat: None,
            enroll_parallel: 8,
            connect_parallel: 64,
            sockets: 1,
            state_dir: state_dir.to_path_buf(),
            search_rate: 0.0,
        }
    }
}

/// The collector under test.
pub enum Target<'a> {
    /// Running in this process (CPU and RSS then include the simulator).
    InProcess(&'a Collector),
    /// A separate collector process.
    External {
        /// Its QUIC address.
        addr: SocketAddr,
        /// TLS server name to use.
        server_name: String,
        /// Its admin socket (tokens, statistics, per-agent delivery).
        admin_socket: PathBuf,
        /// Its process id, for CPU and RSS.
        pid: Option<u32>,
        /// Its Prometheus endpoint (`http://127.0.0.1:9464/metrics`), for processing counters.
        metrics_url: Option<String>,
    },
}

/// Collector-side counters sampled before and after the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CollectorCounters {
    /// Records verified and durably stored.
    pub records_stored: u64,
    /// Batches verified and stored.
    pub batches_stored: u64,
    /// Batches dropped as replays.
    pub batches_duplicate: Option<u64>,
    /// Records evaluated by the findings pipeline.
    pub records_processed: Option<u64>,
    /// Connections the collector holds open.
    pub connections_active: Option<u64>,
}

/// CPU time and resident memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` (CPU) and `/proc/<pid>/status` (RSS); `None` for self.
pub fn proc_sample(pid: Option<u32>) -> Option<ProcSample> {
    let base = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".into(),
    };
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // The command name may contain spaces; fields are counted after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line, 11 and 12 after ')'.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(ProcSample {
        cpu: Duration::from_millis(ticks * 1000 / hz),
        rss_bytes: rss_kb * 1024,
    })
}

impl Target<'_> {
    fn addr(&self) -> SocketAddr {
        match self {
            Target::InProcess(c) => c.local_addr(),
            Target::External { addr, .. } => *addr,
        }
    }

    fn server_name(&self) -> &str {
        match self {
            Target::InProcess(_) => "localhost",
            Target::External { server_name, .. } => server_name,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Target::InProcess(_) => None,
            Target::External { pid, .. } => *pid,
        }
    }

    async fn admin(&self, req: &AdminRequest) -> Result<serde_json::Value, FleetError> {
        match self {
            Target::InProcess(c) => {
                let admin = c.admin();
                let req = req.clone();
                tokio::task::spawn_blocking(move || admin.handle(req))
                    .await
                    .map_err(|e| FleetError::Admin(e.to_string()))?
                    .map_err(|e| FleetError::Admin(e.to_string()))
            }
            Target::External { admin_socket, .. } => {
                collector::admin_socket::request(admin_socket, req)
                    .await
                    .map_err(|e| FleetError::Admin(e.to_string()))?
                    .ok_or_else(|| {
                        FleetError::Admin(format!("nothing listens on {}", admin_socket.display()))
                    })
            }
        }
    }

    async fn create_token(&self, tenant: &TenantId) -> Result<CreatedToken, FleetError> {
        let v = self
            .admin(&AdminRequest::CreateToken {
                tenant: tenant.clone(),
                ttl_secs: Some(3600),
            })
            .await?;
        serde_json::from_value(v).map_err(|e| FleetError::Admin(format!("token reply: {e}")))
    }

    /// Per-agent delivery as the collector stores it.
    pub async fn agents(&self) -> Result<Vec<AgentSummary>, FleetError> {
        let v = self
            .admin(&AdminRequest::ListAgents { tenant: None })
            .await?;
        serde_json::from_value(v).map_err(|e| FleetError::Admin(format!("agent list: {e}")))
    }

    /// Current collector counters.
    pub async fn counters(&self) -> Result<CollectorCounters, FleetError> {
        match self {
            Target::InProcess(c) => {
                let m = c.metrics();
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                Ok(CollectorCounters {
                    records_stored: get(&m.records_stored),
                    batches_stored: get(&m.batches_stored),
                    batches_duplicate: Some(get(&m.batches_duplicate)),
                    records_processed: Some(get(&m.findings_records_evaluated)),
                    connections_active: Some(get(&m.connections_active)),
                })
            }
            Target::External { metrics_url, .. } => {
                let stats = self.admin(&AdminRequest::Stats).await?;
                let sum = |field: &str| {
                    stats
                        .as_object()
                        .map(|o| o.values().filter_map(|t| t[field].as_u64()).sum())
                        .unwrap_or(0)
                };
                let mut c = CollectorCounters {
                    records_stored: sum("records"),
                    batches_stored: sum("batches"),
                    ..CollectorCounters::default()
                };
                if let Some(url) = metrics_url {
                    let text = http_get(url).await?;
                    let metric = |name: &str| {
                        text.lines()
                            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                            .and_then(|v| v.trim().parse::<f64>().ok())
                            .map(|v| v as u64)
                    };
                    c.batches_duplicate = metric("vigil_batches_duplicate_total");
                    c.records_processed = metric("vigil_findings_records_evaluated_total");
                    c.connections_active = metric("vigil_connections_active");
                }
                Ok(c)
            }
        }
    }
}

/// A minimal HTTP/1.0 GET for the collector's metrics page.
async fn http_get(url: &str) -> Result<String, FleetError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bad = |m: String| FleetError::Setup(format!("metrics {url}: {m}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs".into()))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| bad(e.to_string()))?;
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| bad(e.to_string()))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| bad(e.to_string()))?;
    Ok(body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// Enrols `opts.agents` agents through the real token path, `enroll_parallel` at a time.
pub async fn enroll_fleet(
    target: &Target<'_>,
    opts: &FleetOptions,
) -> Result<Vec<AgentState>, FleetError> {
    let sem = Arc::new(Semaphore::new(opts.enroll_parallel.max(1)));
    let mut tasks = Vec::with_capacity(opts.agents);
    for i in 0..opts.agents {
        let tenant = TenantId::new(format!("fleet-{}", i % opts.tenants.max(1)))
            .map_err(|e| FleetError::Setup(e.to_string()))?;
        let token = target.create_token(&tenant).await?;
        let options = EnrollOptions {
            collector: target.addr().to_string(),
            token: token.token,
            ca_fingerprint: token.ca_fingerprint,
            state_dir: opts.state_dir.join(format!("agent-{i:05}")),
            hostname: format!("sim-{i:05}.fleet.example"),
        };
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            agent::enroll::enroll(&options)
                .await
                .map_err(|source| FleetError::Agent { index: i, source })
        }));
    }
    let mut states = Vec::with_capacity(opts.agents);
    for t in tasks {
        states.push(t.await.map_err(|e| FleetError::Setup(e.to_string()))??);
    }
    Ok(states)
}

/// Deterministic xorshift, so every run sends the same mix of observations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True once in `n` draws on average.
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }
}

/// Realistic observations of one simulated agent's network: ports with
/// service banners, TLS endpoints (some weak or expiring), HTTP security
/// headers and mail-security DNS records, each about one of 254 hosts.
pub fn realistic_records(agent: usize, sequence: u64, n: usize, now_ms: u64) -> Vec<Record> {
    let mut rng = Rng(((agent as u64) << 32 | sequence).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let net = (agent % 250) + 1;
    (0..n)
        .map(|i| {
            let host = (rng.next() % 254) + 1;
            let ip = format!("10.{}.{}.{host}", net / 256, net % 256);
            let name = format!("host{host}.site{agent}.example.net");
            let observation = match rng.next() % 10 {
                0..=5 => {
                    let (port, service, product, banner) = match rng.next() % 6 {
                        0 => (
                            22,
                            "ssh",
                            "OpenSSH_9.6p1",
                            "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13",
                        ),
                        1 => (80, "http", "nginx/1.24.0", "HTTP/1.1 301 Moved Permanently"),
                        2 => (443, "tls", "nginx/1.24.0", ""),
                        3 => (3389, "rdp", "", ""),
                        4 => (445, "smb", "", ""),
                        _ => (
                            6379,
                            "redis",
                            "redis 7.2.4",
                            "-NOAUTH Authentication required.",
                        ),
                    };
                    let state = match rng.next() % 8 {
                        0 => PortState::Closed,
                        1 => PortState::Filtered,
                        _ => PortState::Open,
                    };
                    let open = state == PortState::Open;
                    let opt = |s: &str| (open && !s.is_empty()).then(|| s.to_string());
                    Observation::Port(PortObservation {
                        ip: ip.clone(),
                        port,
                        state,
                        service: opt(service),
                        product: opt(product),
                        banner: opt(banner),
                        tls: open && port == 443,
                    })
                }
                6 | 7 => {
                    let days_left = (rng.next() % 400) as i64 - 30;
                    let not_after_ms = now_ms as i64 + days_left * 86_400_000;
                    let legacy = rng.one_in(4);
                    let mut protocols = vec![TlsVersion::Tls12, TlsVersion::Tls13];
                    let mut weak_ciphers = Vec::new();
                    if legacy {
                        protocols.insert(0, TlsVersion::Tls10);
                        weak_ciphers.push(WeakCipher {
                            version: TlsVersion::Tls10,
                            name: "TLS_RSA_WITH_3DES_EDE_CBC_SHA".into(),
                            code: 0x000a,
                            classes: vec![
                                WeakCipherClass::TripleDes,
                                WeakCipherClass::CbcSha1,
                                WeakCipherClass::StaticRsa,
                            ],
                        });
                    }
                    let self_signed = rng.one_in(10);
                    Observation::Tls(TlsObservation {
                        ip: ip.clone(),
                        port: 443,
                        server_name: name.clone(),
                        certificate: Some(CertificateInfo {
                            subject: format!("CN={name}"),
                            issuer: if self_signed {
                                format!("CN={name}")
                            } else {
                                "C=US, O=Let's Encrypt, CN=R11".into()
                            },
                            sans: vec![name.clone()],
                            not_before_ms: not_after_ms - 90 * 86_400_000,
                            not_after_ms,
                            days_left,
                            key_type: rng.pick(&["rsa", "ec"]).into(),
                            key_bits: if legacy { 1024 } else { 2048 },
                            signature_algorithm: "sha256WithRSAEncryption".into(),
                            self_signed,
                            fingerprint_sha256: format!("{:016x}{:048x}", rng.next(), i),
                            serial: format!("{:x}", rng.next()),
                        }),
                        chain_length: if self_signed { 1 } else { 2 },
                        chain_valid: !self_signed && days_left > 0,
                        validation_error: (self_signed || days_left <= 0)
                            .then(|| "certificate not trusted or expired".into()),
                        name_matches: true,
                        protocols,
                        weak_ciphers,
                    })
                }
                8 => {
                    let hsts = !rng.one_in(3);
                    Observation::Http(HttpObservation {
                        url: format!("https://{name}/"),
                        status: 200,
                        hsts: hsts.then(|| "max-age=31536000; includeSubDomains".into()),
                        hsts_max_age: hsts.then_some(31_536_000),
                        hsts_include_subdomains: hsts,
                        csp: rng.one_in(2).then(|| "default-src 'self'".into()),
                        x_frame_options: Some("DENY".into()),
                        x_content_type_options: Some("nosniff".into()),
                        referrer_policy: None,
                        permissions_policy: None,
                        server: Some("nginx/1.24.0".into()),
                        x_powered_by: rng.one_in(4).then(|| "PHP/8.1.2".into()),
                        redirects_to_https: None,
                    })
                }
                _ => {
                    let domain = format!("site{agent}.example.net");
                    let qualifier = rng.pick(&["-", "~", "?"]);
                    Observation::Dns(DnsObservation {
                        spf: Some(SpfRecord {
                            raw: format!("v=spf1 mx include:_spf.google.com {qualifier}all"),
                            all_qualifier: Some(qualifier.into()),
                            dns_lookups: 2,
                        }),
                        spf_count: 1,
                        dmarc: Some(DmarcRecord {
                            raw: "v=DMARC1; p=none; rua=mailto:dmarc@example.net".into(),
                            policy: Some(rng.pick(&["none", "quarantine", "reject"]).into()),
                            pct: 100,
                            has_rua: true,
                        }),
                        caa: vec!["0 issue \"letsencrypt.org\"".into()],
                        mx: vec![format!("10 mx1.{domain}")],
                        dnssec_signed: rng.one_in(2),
                        domain,
                    })
                }
            };
            Record {
                asset: match &observation {
                    Observation::Dns(d) => d.domain.clone(),
                    Observation::Http(_) | Observation::Tls(_) => name,
                    Observation::Port(_) => ip,
                },
                job_id: "fleet-sim".into(),
                observed_ms: now_ms + i as u64,
                observation,
            }
        })
        .collect()
}

/// Outcome of one simulated agent.
#[derive(Debug, Default)]
struct AgentRun {
    batches_sent: u64,
    batches_acked: u64,
    records_acked: u64,
    heartbeats_sent: u64,
    heartbeats_answered: u64,
    /// Ack latency of every batch, microseconds; one entry per batch.
    latencies_us: Vec<u32>,
}

/// What a fleet run measured.
#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    /// Agents enrolled.
    pub agents_enrolled: usize,
    /// Wall time of enrolment.
    pub enroll_time: Duration,
    /// Agents that were connected at the same time (all handshakes done).
    pub agents_connected: usize,
    /// Wall time until every agent was connected.
    pub connect_time: Duration,
    /// Collector's own count of open connections once all were up, when known.
    pub collector_connections: Option<u64>,
    /// Agents whose session failed (with the first error).
    pub failures: Vec<String>,
    /// Batches sent.
    pub batches_sent: u64,
    /// Batches acknowledged (each counted once).
    pub batches_acked: u64,
    /// Records in acknowledged batches.
    pub records_acked: u64,
    /// Heartbeats sent and answered.
    pub heartbeats: (u64, u64),
    /// Streaming phase wall time (from start signal until the last ack).
    pub stream_time: Duration,
    /// Acknowledged records per second over the streaming phase.
    pub records_per_sec: f64,
    /// Collector-counted records stored per second over the streaming phase.
    pub stored_per_sec: f64,
    /// Findings-pipeline records evaluated per second over the streaming phase, when known.
    pub processed_per_sec: Option<f64>,
    /// Extra time until the findings pipeline had evaluated every stored record.
    pub processing_catch_up: Option<Duration>,
    /// Ack latency percentiles (p50, p99, max).
    pub ack_latency: (Duration, Duration, Duration),
    /// Collector CPU during streaming, in cores (1.0 = one core busy).
    pub cpu_cores: Option<f64>,
    /// Collector RSS at the end of streaming.
    pub rss_bytes: Option<u64>,
    /// Whether CPU/RSS include the simulator (in-process collector).
    pub cpu_includes_simulator: bool,
    /// Record size encoded, bytes (average over a sample batch).
    pub record_bytes: usize,
    /// Searches issued while ingesting, with latency percentiles (p50, p99, max) and failures.
    pub searches: Option<SearchLoad>,
}

/// Searches issued at a steady rate while the collector ingests and indexes.
#[derive(Debug, Clone, Default)]
pub struct SearchLoad {
    /// Searches answered.
    pub answered: u64,
    /// Searches that failed (with the first error).
    pub failed: Vec<String>,
    /// Latency percentiles (p50, p99, max).
    pub latency: (Duration, Duration, Duration),
    /// Mean documents matched per search.
    pub mean_matches: f64,
}

/// Query mix of the search load: broad facetted queries like the console's.
const SEARCH_MIX: &[&str] = &[
    "severity:>=high -state:resolved",
    "port:3389",
    "rule:tls.* sort:-last_seen",
    "framework:nis2",
    "seen:>now-7d sort:-last_seen",
    "days_left:<14",
    "",
];

/// Issues searches at `rate` per second round-robin over tenants and the
/// query mix until `stop` fires; the collector answers each through the same
/// findings request handler the console API uses.
async fn search_load(
    target: &Target<'_>,
    tenants: usize,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> SearchLoad {
    let mut load = SearchLoad::default();
    let mut lat = Vec::new();
    let mut matches = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let Ok(tenant) = TenantId::new(format!("fleet-{}", i % tenants.max(1))) else {
            break;
        };
        let req = AdminRequest::Findings(FindingsRequest::Search {
            tenant,
            query: SEARCH_MIX[i % SEARCH_MIX.len()].to_string(),
            limit: Some(20),
            offset: None,
            facets: true,
        });
        i += 1;
        let t = Instant::now();
        match target.admin(&req).await {
            Ok(v) => {
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                load.answered += 1;
                matches += v.get("total").and_then(|t| t.as_u64()).unwrap_or(0);
            }
            Err(e) => load.failed.push(e.to_string()),
        }
    }
    lat.sort_unstable();
    load.latency = (
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    load.mean_matches = matches as f64 / load.answered.max(1) as f64;
    load
}

/// A client endpoint like an agent's, but with a receive buffer sized for
/// thousands of connections' acks and heartbeats on one socket.
fn client_endpoint(remote: SocketAddr) -> Result<quinn::Endpoint, FleetError> {
    let setup = |e: &dyn std::fmt::Display| FleetError::Setup(e.to_string());
    let bind: SocketAddr = if remote.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| setup(&e))?;
    collector::udp_buffer::grow_receive_buffer(&socket, 8 << 20);
    let runtime = quinn::default_runtime().ok_or_else(|| setup(&"no async runtime"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
        .map_err(|e| setup(&e))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_micros(u64::from(sorted[idx.min(sorted.len() - 1)]))
}

/// Runs the fleet against an already enrolled set of agents.
pub async fn run_fleet(
    target: &Target<'_>,
    opts: &FleetOptions,
    states: Vec<AgentState>,
) -> Result<FleetReport, FleetError> {
    let mut endpoints = Vec::new();
    for _ in 0..opts.sockets.max(1) {
        endpoints.push(client_endpoint(target.addr())?);
    }
    let connected = Arc::new(AtomicU64::new(0));
    let (start_tx, start_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(opts.connect_parallel.max(1)));
    let first_error: Arc<Mutex<Vec<String>>> = Arc::default();
    let agents = states.len();
    let t_connect = Instant::now();
    let mut tasks = Vec::with_capacity(agents);
    for (i, state) in states.into_iter().enumerate() {
        let sim = SimAgent {
            index: i,
            state,
            endpoint: endpoints[i % endpoints.len()].clone(),
            addr: target.addr(),
            server_name: target.server_name().to_string(),
            opts: opts.clone(),
        };
        let (sem, connected, start, stop, errors) = (
            sem.clone(),
            connected.clone(),
            start_rx.clone(),
            stop_rx.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = sim.run(sem, connected, start, stop).await;
            if let Err(e) = &r
                && let Ok(mut v) = errors.lock()
            {
                v.push(e.to_string());
            }
            r
        }));
    }
    // All agents connect first, then stream together.
    loop {
        let up = connected.load(Ordering::Relaxed) as usize;
        let failed = first_error.lock().map(|v| v.len()).unwrap_or(0);
        if up + failed >= agents {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_time = t_connect.elapsed();
    let agents_connected = connected.load(Ordering::Relaxed) as usize;
    let mut report = FleetReport {
        agents_connected,
        connect_time,
        cpu_includes_simulator: matches!(target, Target::InProcess(_)),
        record_bytes: protocol::encode_value(&realistic_records(0, 1, 100, now_ms()))
            .map(|b| b.len() / 100)
            .unwrap_or(0),
        ..FleetReport::default()
    };
    // Give the collector a moment to register the last sessions.
    tokio::time::sleep(Duration::from_millis(200)).await;
    report.collector_connections = target.counters().await?.connections_active;

    let before = target.counters().await?;
    let cpu_before = proc_sample(target.pid());
    let t_stream = Instant::now();
    start_tx.send_replace(true);
    let (search_stop, search_stopped) = watch::channel(false);
    let searches = async {
        if opts.search_rate > 0.0 {
            Some(search_load(target, opts.tenants, opts.search_rate, search_stopped).await)
        } else {
            None
        }
    };
    let streaming = async {
        let r = async {
            // The sender lives until every agent is done, so `stop.changed()` only
            // ever fires on a real stop.
            let stop_tx = Arc::new(stop_tx);
            let stopper = (opts.duration > Duration::ZERO).then(|| {
                let (d, stop_tx) = (opts.duration, stop_tx.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    stop_tx.send_replace(true);
                })
            });
            let mut runs = Vec::with_capacity(agents);
            let mut last_ack = t_stream;
            for t in tasks {
                match t.await {
                    Ok(Ok((run, at))) => {
                        last_ack = last_ack.max(at);
                        runs.push(run);
                    }
                    Ok(Err(_)) => {}
                    Err(e) => first_error
                        .lock()
                        .map(|mut v| v.push(e.to_string()))
                        .unwrap_or(()),
                }
            }
            if let Some(s) = stopper {
                s.abort();
            }
            drop(stop_tx);
            // Throughput is measured up to the last ack, not including idle heartbeat time.
            let stream_time = if opts.batches_per_agent == 0 {
                opts.duration
            } else {
                last_ack.duration_since(t_stream)
            }
            .max(Duration::from_millis(1));
            let after = target.counters().await?;
            let cpu_after = proc_sample(target.pid());
            let secs = stream_time.as_secs_f64();
            let mut lat = Vec::new();
            for r in &runs {
                report.batches_sent += r.batches_sent;
                report.batches_acked += r.batches_acked;
                report.records_acked += r.records_acked;
                report.heartbeats.0 += r.heartbeats_sent;
                report.heartbeats.1 += r.heartbeats_answered;
                lat.extend_from_slice(&r.latencies_us);
            }
            lat.sort_unstable();
            report.ack_latency = (
                percentile(&lat, 0.50),
                percentile(&lat, 0.99),
                percentile(&lat, 1.0),
            );
            report.stream_time = stream_time;
            report.records_per_sec = report.records_acked as f64 / secs;
            report.stored_per_sec =
                after.records_stored.saturating_sub(before.records_stored) as f64 / secs;
            if let (Some(a), Some(b)) = (after.records_processed, before.records_processed) {
                report.processed_per_sec = Some(a.saturating_sub(b) as f64 / secs);
                // How long the findings pipeline needs to catch up with ingest (bounded wait).
                let t = Instant::now();
                let target_records = after.records_stored;
                let deadline = t + Duration::from_secs(120);
                loop {
                    let c = target.counters().await?;
                    if c.records_processed.unwrap_or(0) >= target_records {
                        report.processing_catch_up = Some(t.elapsed());
                        break;
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok::<_, FleetError>((cpu_after, secs))
        }
        .await;
        search_stop.send_replace(true);
        r
    };
    let (streamed, searched) = tokio::join!(streaming, searches);
    let (cpu_after, secs) = streamed?;
    report.searches = searched;
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        report.cpu_cores = Some(a.cpu.abs_diff(b.cpu).as_secs_f64() / secs);
        report.rss_bytes = Some(b.rss_bytes);
    }
    report.failures = first_error.lock().map(|v| v.clone()).unwrap_or_default();
    for e in endpoints {
        e.close(0u32.into(), b"fleet done");
        let _ = tokio::time::timeout(Duration::from_secs(2), e.wait_idle()).await;
    }
    Ok(report)
}

struct SimAgent {
    index: usize,
    state: AgentState,
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    server_name: String,
    opts: FleetOptions,
}

type Pending = Arc<Mutex<VecDeque<(u64, Instant, u64)>>>;

impl SimAgent {
    fn err(&self, source: agent::AgentError) -> FleetError {
        FleetError::Agent {
            index: self.index,
            source,
        }
    }

    /// Connects, waits for the start signal, streams, heartbeats; returns
    /// what happened and when the last ack arrived.
    async fn run(
        self,
        sem: Arc<Semaphore>,
        connected: Arc<AtomicU64>,
        mut start: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(AgentRun, Instant), FleetError> {
        let permit = sem.acquire_owned().await;
        let st = &self.state;
        let config = agent::tls::client_config(
            &st.server_ca_der().map_err(|e| self.err(e.into()))?,
            Some((
                st.cert_der().map_err(|e| self.err(e.into()))?,
                st.key_der().map_err(|e| self.err(e.into()))?,
            )),
        )
        .map_err(|e| self.err(e.into()))?;
        let (conn, mut send, mut reader) =
            agent::link::open(&self.endpoint, config, self.addr, &self.server_name)
                .await
                .map_err(|e| self.err(e))?;
        agent::link::write(&mut send, &agent::link::hello())
            .await
            .map_err(|e| self.err(e))?;
        let welcome = match reader.first().await.map_err(|e| self.err(e))? {
            Message::Welcome(w) => w,
            other => {
                return Err(FleetError::Violation {
                    index: self.index,
                    message: format!("expected Welcome, got {other:?}"),
                });
            }
        };
        drop(permit);
        connected.fetch_add(1, Ordering::Relaxed);
        let heartbeat = self
            .opts
            .heartbeat
            .unwrap_or(Duration::from_millis(welcome.heartbeat_interval_ms.max(1)));

        let pending: Pending = Arc::default();
        let (acked_tx, mut acked_rx) = watch::channel(welcome.last_acked);
        let receiver = tokio::spawn(receive(
            self.index,
            reader,
            pending.clone(),
            acked_tx,
            welcome.last_acked,
        ));
        let _ = start.wait_for(|s| *s).await;

        let mut run = AgentRun::default();
        let mut next = welcome.last_acked + 1;
        let last = match self.opts.batches_per_agent {
            0 => u64::MAX,
            n => welcome.last_acked + n,
        };
        let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let mut pace =
            tokio::time::interval(self.opts.batch_interval.max(Duration::from_micros(1)));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        let result: Result<(), FleetError> = async {
            loop {
                let acked = *acked_rx.borrow_and_update();
                if stopping || (next > last && acked >= last && self.opts.duration.is_zero()) {
                    break;
                }
                let can_send = !stopping && next <= last && next - acked <= self.opts.window;
                tokio::select! {
                    _ = pace.tick(), if can_send => {
                        let records = realistic_records(self.index, next, self.opts.records_per_batch, now_ms());
                        let n = records.len() as u64;
                        let body = BatchBody {
                            tenant: st.meta.tenant.clone(),
                            agent: st.meta.agent.clone(),
                            sequence: next,
                            created_ms: now_ms(),
                            records,
                        };
                        let signed = protocol::sign_batch(&st.signing_key, &body)
                            .map_err(|e| self.err(e.into()))?;
                        if let Ok(mut p) = pending.lock() {
                            p.push_back((next, Instant::now(), n));
                        }
                        agent::link::write(&mut send, &Message::Batch(signed))
                            .await
                            .map_err(|e| self.err(e))?;
                        run.batches_sent += 1;
                        next += 1;
                    }
                    r = acked_rx.changed() => {
                        if r.is_err() {
                            // The receiver ended: the connection is gone.
                            break;
                        }
                    }
                    _ = hb.tick() => {
                        agent::link::write(&mut send, &Message::Heartbeat(Heartbeat { sent_ms: now_ms() }))
                            .await
                            .map_err(|e| self.err(e))?;
                        run.heartbeats_sent += 1;
                    }
                    _ = stop.changed() => stopping = true,
                }
            }
            Ok(())
        }
        .await;
        // Let in-flight batches be acknowledged before leaving (bounded).
        let sent_up_to = next - 1;
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            acked_rx.wait_for(|a| *a >= sent_up_to),
        )
        .await;
        let _ = send.finish();
        let outcome = tokio::time::timeout(Duration::from_secs(10), receiver).await;
        conn.close(0u32.into(), b"simulation over");
        result?;
        let recv = match outcome {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => return Err(FleetError::Setup(e.to_string())),
            Err(_) => {
                return Err(FleetError::Violation {
                    index: self.index,
                    message: "collector did not close the stream after we finished".into(),
                });
            }
        };
        run.batches_acked = recv.batches_acked;
        run.records_acked = recv.records_acked;
        run.heartbeats_answered = recv.heartbeats;
        run.latencies_us = recv.latencies_us;
        if recv.last_acked != sent_up_to {
            return Err(FleetError::Violation {
                index: self.index,
                message: format!(
                    "sent batches up to {sent_up_to} but the last ack was {}",
                    recv.last_acked
                ),
            });
        }
        Ok((run, recv.last_ack_at))
    }
}

struct Received {
    batches_acked: u64,
    records_acked: u64,
    heartbeats: u64,
    latencies_us: Vec<u32>,
    last_acked: u64,
    last_ack_at: Instant,
}

async fn receive(
    index: usize,
    mut reader: agent::link::FrameReader,
    pending: Pending,
    acked_tx: watch::Sender<u64>,
    mut last_acked: u64,
) -> Result<Received, FleetError> {
    let mut r = Received {
        batches_acked: 0,
        records_acked: 0,
        heartbeats: 0,
        latencies_us: Vec::new(),
        last_acked,
        last_ack_at: Instant::now(),
    };
    let violation = |message: String| FleetError::Violation { index, message };
    while let Some(msg) = reader
        .next()
        .await
        .map_err(|source| FleetError::Agent { index, source })?
    {
        match msg {
            Message::Ack(a) => {
                if a.sequence < last_acked {
                    return Err(violation(format!(
                        "ack went backwards: {} after {last_acked}",
                        a.sequence
                    )));
                }
                let now = Instant::now();
                let mut p = pending.lock().map_err(|_| violation("lock".into()))?;
                if a.sequence > last_acked && p.back().map(|(s, _, _)| *s).unwrap_or(0) < a.sequence
                {
                    return Err(violation(format!(
                        "ack {} for a batch never sent",
                        a.sequence
                    )));
                }
                while let Some(&(seq, sent, n)) = p.front() {
                    if seq > a.sequence {
                        break;
                    }
                    p.pop_front();
                    r.batches_acked += 1;
                    r.records_acked += n;
                    r.latencies_us
                        .push(now.duration_since(sent).as_micros().min(u32::MAX as u128) as u32);
                }
                drop(p);
                last_acked = a.sequence;
                r.last_acked = last_acked;
                r.last_ack_at = now;
                acked_tx.send_replace(last_acked);
            }
            Message::Heartbeat(_) => r.heartbeats += 1,
            Message::Jobs(_) | Message::RunJob(_) => {}
            Message::Error(e) => {
                return Err(FleetError::Agent {
                    index,
                    source: agent::link::refused(e),
                });
            }
            other => return Err(violation(format!("unexpected {other:?}"))),
        }
    }
    Ok(r)
}

impl FleetReport {
    /// Human-readable summary.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let _ = writeln!(
            s,
            "agents enrolled: {} in {:.1} s ({:.0}/s)",
            self.agents_enrolled,
            self.enroll_time.as_secs_f64(),
            self.agents_enrolled as f64 / self.enroll_time.as_secs_f64().max(1e-9)
        );
        let _ = writeln!(
            s,
            "agents connected: {} in {:.1} s (collector counts {} open connections)",
            self.agents_connected,
            self.connect_time.as_secs_f64(),
            self.collector_connections
                .map_or("?".into(), |c| c.to_string())
        );
        let _ = writeln!(
            s,
            "batches sent/acked: {}/{}  records acked: {}  (~{} bytes/record encoded)",
            self.batches_sent, self.batches_acked, self.records_acked, self.record_bytes
        );
        let _ = writeln!(
            s,
            "heartbeats sent/answered: {}/{}",
            self.heartbeats.0, self.heartbeats.1
        );
        let _ = writeln!(
            s,
            "streaming: {:.2} s  acked {:.0} records/s  stored (collector count) {:.0} records/s",
            self.stream_time.as_secs_f64(),
            self.records_per_sec,
            self.stored_per_sec
        );
        if let Some(p) = self.processed_per_sec {
            let _ = writeln!(
                s,
                "findings pipeline: {p:.0} records/s evaluated during streaming; caught up {}",
                self.processing_catch_up
                    .map_or("not within 120 s".into(), |d| format!(
                        "{:.1} s after the last ack",
                        d.as_secs_f64()
                    ))
            );
        }
        let _ = writeln!(
            s,
            "ack latency: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            ms(self.ack_latency.0),
            ms(self.ack_latency.1),
            ms(self.ack_latency.2)
        );
        let who = if self.cpu_includes_simulator {
            "process (collector + simulator)"
        } else {
            "collector"
        };
        match (self.cpu_cores, self.rss_bytes) {
            (Some(c), Some(r)) => {
                let _ = writeln!(
                    s,
                    "{who} CPU: {:.0}% of one core  RSS: {:.0} MiB",
                    c * 100.0,
                    r as f64 / 1048576.0
                );
            }
            _ => {
                let _ = writeln!(s, "{who} CPU/RSS: unavailable");
            }
        }
        if let Some(q) = &self.searches {
            let _ = writeln!(
                s,
                "searches while ingesting: {} answered, {} failed; p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms; {:.0} matches on average",
                q.answered,
                q.failed.len(),
                ms(q.latency.0),
                ms(q.latency.1),
                ms(q.latency.2),
                q.mean_matches
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(
                s,
                "FAILED agents: {} (first: {})",
                self.failures.len(),
                self.failures[0]
            );
        }
        s
    }
}
