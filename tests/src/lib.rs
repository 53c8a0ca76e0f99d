//! Shared helpers for the end-to-end tests: an in-process or out-of-process
//! collector on loopback, enrolled agents and a raw protocol client.

pub mod alerts;
pub mod fleet;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent::enroll::EnrollOptions;
use agent::link::FrameReader;
use agent::{AgentError, AgentState};
use collector::admin::{AdminRequest, CreatedToken};
use collector::{Collector, CollectorConfig, Settings};
use protocol::{Message, Observation, PortObservation, PortState, Record, TenantId};

/// Installs the ring provider and a test log subscriber (idempotent).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Collector settings for a test: loopback only, no metrics listener.
pub fn settings(data_dir: &Path, listen: SocketAddr) -> Settings {
    CollectorConfig {
        listen,
        data_dir: data_dir.to_path_buf(),
        metrics_listen: String::new(),
        console_listen: String::new(),
        ..CollectorConfig::default()
    }
    .validate()
    .expect("test settings are valid")
}

/// Starts an in-process collector on an ephemeral loopback port.
pub async fn start_collector(data_dir: &Path) -> Collector {
    Collector::start(settings(data_dir, "127.0.0.1:0".parse().unwrap()))
        .await
        .expect("collector starts")
}

/// Creates a token for `tenant` and enrols a new agent into `state_dir`.
pub async fn enroll(
    collector: &Collector,
    tenant: &str,
    state_dir: &Path,
) -> Result<AgentState, AgentError> {
    let token = collector
        .admin()
        .create_token(&TenantId::new(tenant).unwrap(), None)
        .expect("token");
    enroll_with(collector.local_addr(), &token, state_dir).await
}

/// Enrols using an existing token.
pub async fn enroll_with(
    addr: SocketAddr,
    token: &CreatedToken,
    state_dir: &Path,
) -> Result<AgentState, AgentError> {
    agent::enroll::enroll(&EnrollOptions {
        collector: addr.to_string(),
        token: token.token.clone(),
        ca_fingerprint: token.ca_fingerprint.clone(),
        state_dir: state_dir.to_path_buf(),
        hostname: "test-host".into(),
    })
    .await
}

/// `n` distinct port observations; `tag` makes them unique across batches.
pub fn records(tag: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            asset: "127.0.0.1".into(),
            job_id: "e2e".into(),
            observed_ms: 1_700_000_000_000 + i as u64,
            observation: Observation::Port(PortObservation {
                ip: "127.0.0.1".into(),
                port: (i % 65_000) as u16 + 1,
                state: PortState::Open,
                service: Some("http".into()),
                product: Some("nginx/1.25.3".into()),
                banner: Some(format!("{tag}/{i}")),
                tls: false,
            }),
        })
        .collect()
}

/// A hand-driven protocol client, for sending what a well-behaved agent would not.
pub struct RawClient {
    /// The connection.
    pub conn: quinn::Connection,
    /// Our half of the session stream.
    pub send: quinn::SendStream,
    /// Their half.
    pub reader: FrameReader,
    _endpoint: quinn::Endpoint,
}

impl RawClient {
    /// Connects with `config`, says Hello and returns the collector's first reply.
    pub async fn connect(
        addr: SocketAddr,
        config: quinn::ClientConfig,
    ) -> Result<(Self, Message), AgentError> {
        let endpoint = agent::link::endpoint(addr)?;
        let (conn, mut send, mut reader) =
            agent::link::open(&endpoint, config, addr, "localhost").await?;
        agent::link::write(&mut send, &agent::link::hello()).await?;
        let first = reader.first().await?;
        Ok((
            Self {
                conn,
                send,
                reader,
                _endpoint: endpoint,
            },
            first,
        ))
    }

    /// Connects as an enrolled agent.
    pub async fn as_agent(
        addr: SocketAddr,
        state: &AgentState,
    ) -> Result<(Self, Message), AgentError> {
        let config = agent::tls::client_config(
            &state.server_ca_der()?,
            Some((state.cert_der()?, state.key_der()?)),
        )?;
        Self::connect(addr, config).await
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &Message) -> Result<(), AgentError> {
        agent::link::write(&mut self.send, msg).await
    }

    /// Next message that is not a job push or heartbeat, with a timeout.
    pub async fn next_reply(&mut self) -> Result<Option<Message>, AgentError> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.reader.next())
                .await
                .map_err(|_| AgentError::Timeout("reply"))??;
            match m {
                Some(Message::Jobs(_)) | Some(Message::Heartbeat(_)) => continue,
                other => return Ok(other),
            }
        }
    }
}

/// A free UDP port on loopback (bound and released; good enough for tests).
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = s.local_addr().expect("addr").port();
    assert_ne!(port, 2024, "port 2024 belongs to the machine");
    port
}

/// Path of a workspace binary built next to this test (built on demand).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf();
    let bin = profile_dir.join(name);
    if !bin.exists() {
        let release = profile_dir.ends_with("release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", name, "--bin", name]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo build");
        assert!(status.success(), "building {name} failed");
    }
    bin
}

/// A collector running as a separate process, so it can be SIGKILLed.
pub struct CollectorProcess {
    /// The child process.
    pub child: Child,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its QUIC address.
    pub addr: SocketAddr,
}

impl CollectorProcess {
    /// Starts `collector serve` and waits until its admin socket answers.
    pub async fn start(data_dir: &Path, addr: SocketAddr) -> Self {
        // Fixed-port listeners (metrics, console) would collide with other
        // collectors on the machine: a config file turns them off.
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, "metrics_listen = \"\"\nconsole_listen = \"\"\n")
            .expect("write collector config");
        let child = Command::new(workspace_bin("collector"))
            .arg("--config")
            .arg(&config)
            .args(["--data-dir"])
            .arg(data_dir)
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--metrics-listen",
                "",
            ])
            .env(
                "RUST_LOG",
                std::env::var("VIGIL_TEST_COLLECTOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn collector");
        let p = Self {
            child,
            data_dir: data_dir.to_path_buf(),
            addr,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while p.admin(&AdminRequest::Fingerprint).await.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "collector did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    /// Sends an admin request over the socket; `None` while it is not up.
    pub async fn admin(&self, req: &AdminRequest) -> Option<serde_json::Value> {
        let sock = collector::admin_socket::socket_path(&self.data_dir);
        collector::admin_socket::request(&sock, req)
            .await
            .ok()
            .flatten()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback UDP relay between agents and a collector that can drop every
/// packet on demand, to simulate a network partition without touching either side.
pub struct UdpProxy {
    addr: SocketAddr,
    partitioned: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpProxy {
    /// Relays datagrams arriving on a fresh loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        use std::collections::HashMap;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        assert_ne!(addr.port(), 2024, "port 2024 belongs to the machine");
        let partitioned = Arc::new(AtomicBool::new(false));
        let cut = partitioned.clone();
        let task = tokio::spawn(async move {
            // One upstream socket per client address, so replies find their way back.
            let mut routes: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, client)) = front.recv_from(&mut buf).await {
                if cut.load(Ordering::Relaxed) {
                    continue;
                }
                let up = match routes.get(&client) {
                    Some(s) => s.clone(),
                    None => {
                        let Ok(s) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
                            continue;
                        };
                        if s.connect(upstream).await.is_err() {
                            continue;
                        }
                        let s = Arc::new(s);
                        let (back, front, cut) = (s.clone(), front.clone(), cut.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok(n) = back.recv(&mut buf).await {
                                if !cut.load(Ordering::Relaxed) {
                                    let _ = front.send_to(&buf[..n], client).await;
                                }
                            }
                        });
                        routes.insert(client, s.clone());
                        s
                    }
                };
                let _ = up.send(&buf[..n]).await;
            }
        });
        Ok(Self {
            addr,
            partitioned,
            task,
        })
    }

    /// Where agents should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops (`true`) or relays (`false`) every datagram from now on.
    pub fn partition(&self, on: bool) {
        self.partitioned
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a real ports + HTTP scan of 127.0.0.1 on `ports` (the scope allows
/// exactly those) and returns the agent's records.
pub async fn scan_loopback_web(ports: &[u16]) -> Vec<Record> {
    assert!(!ports.contains(&2024), "port 2024 belongs to the machine");
    let ranges: Vec<protocol::PortRange> = ports
        .iter()
        .map(|&p| protocol::PortRange { start: p, end: p })
        .collect();
    let job = protocol::JobSpec {
        job_id: "web".into(),
        targets: vec!["127.0.0.1".into()],
        ports: ranges.clone(),
        checks: vec![protocol::CheckKind::Ports, protocol::CheckKind::Http],
        every_secs: None,
    };
    let scope = protocol::Scope {
        cidrs: vec!["127.0.0.1/32".into()],
        hostnames: vec![],
        ports: ranges,
    };
    let opts = agent::scan::ScanOptions {
        banner_timeout: Duration::from_millis(500),
        http_timeout: Duration::from_secs(3),
        ..agent::scan::ScanOptions::default()
    };
    agent::scan::run_job(&job, &scope, &opts)
        .await
        .expect("loopback scan")
}
