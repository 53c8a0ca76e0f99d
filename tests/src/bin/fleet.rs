//! Fleet simulator: N enrolled agents stream realistic signed results and
//! heartbeats to one collector; prints agents connected, records/s, ack
//! latency percentiles and collector CPU/RSS.
//!
//! In-process collector (default): `fleet --agents 1000 --batches-per-agent 20`.
//! External collector: `fleet --collector 127.0.0.1:14433 --admin-socket
//! DATA/admin.sock --collector-pid PID --metrics-url http://127.0.0.1:9464/metrics`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use e2e::fleet::{FleetOptions, Target, enroll_fleet, run_fleet};

#[derive(Parser, Debug)]
#[command(about = "Simulate a fleet of vigil agents against one collector")]
struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Tenants the agents are spread over.
    #[arg(long, default_value_t = 4)]
    tenants: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 100)]
    records_per_batch: usize,
    /// Batches per agent; 0 streams until --duration ends.
    #[arg(long, default_value_t = 20)]
    batches_per_agent: u64,
    /// How long agents stay connected once all are up (e.g. `60s`); 0 leaves after the last ack.
    #[arg(long, default_value = "0s")]
    duration: humantime::Duration,
    /// Pause between an agent's batches (e.g. `1s`); 0 sends as fast as the window allows.
    #[arg(long, default_value = "0s")]
    batch_interval: humantime::Duration,
    /// Unacknowledged batches per agent, at most.
    #[arg(long, default_value_t = 8)]
    window: u64,
    /// Heartbeat interval; default: what the collector's Welcome says.
    #[arg(long)]
    heartbeat: Option<humantime::Duration>,
    /// Concurrent enrolments.
    #[arg(long, default_value_t = 8)]
    enroll_parallel: usize,
    /// Concurrent connection handshakes.
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    /// Client UDP sockets shared by the agents (quinn multiplexes connections on each).
    #[arg(long, default_value_t = 1)]
    sockets: usize,
    /// External collector `HOST:PORT`; without it a collector runs in this process.
    #[arg(long, requires = "admin_socket")]
    collector: Option<String>,
    /// Admin socket of the external collector (`<data_dir>/admin.sock`).
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// Process id of the external collector, for its CPU and RSS.
    #[arg(long)]
    collector_pid: Option<u32>,
    /// Prometheus URL of the external collector, for findings-pipeline counters.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Directory for agent identities (and the in-process collector's data); a temporary one by default.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Findings searches per second while streaming and until the pipeline caught up (0: none).
    #[arg(long, default_value_t = 0.0)]
    search_rate: f64,
    /// Worker threads of the simulator's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.batches_per_agent == 0 && Duration::from(args.duration).is_zero() {
        bail!("--batches-per-agent 0 streams until --duration ends: give a --duration");
    }
    // Each connection holds a few descriptors on the collector side only; the
    // simulator itself needs one per enrolment in flight.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tmp;
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut opts = FleetOptions::new(args.agents, &work.join("agents"));
    opts.tenants = args.tenants;
    opts.records_per_batch = args.records_per_batch;
    opts.batches_per_agent = args.batches_per_agent;
    opts.duration = args.duration.into();
    opts.batch_interval = args.batch_interval.into();
    opts.window = args.window;
    opts.heartbeat = args.heartbeat.map(Into::into);
    opts.enroll_parallel = args.enroll_parallel;
    opts.connect_parallel = args.connect_parallel;
    opts.sockets = args.sockets;
    opts.search_rate = args.search_rate;

    let in_process = match &args.collector {
        Some(_) => None,
        None => Some(
            collector::Collector::start(e2e::settings(
                &work.join("collector"),
                "127.0.0.1:0".parse()?,
            ))
            .await?,
        ),
    };
    let target = match (&args.collector, &in_process) {
        (Some(c), _) => {
            let (addr, server_name) = agent::link::resolve(c).await?;
            Target::External {
                addr,
                server_name,
                admin_socket: args.admin_socket.clone().context("--admin-socket")?,
                pid: args.collector_pid,
                metrics_url: args.metrics_url.clone(),
            }
        }
        (None, Some(c)) => Target::InProcess(c),
        (None, None) => bail!("no collector"),
    };
    println!(
        "fleet: {} agents over {} tenants, {} batches x {} records each, window {}, {} socket(s)",
        opts.agents,
        opts.tenants,
        opts.batches_per_agent,
        opts.records_per_batch,
        opts.window,
        opts.sockets
    );
    let t = Instant::now();
    let states = enroll_fleet(&target, &opts).await?;
    let enroll_time = t.elapsed();
    eprintln!(
        "enrolled {} agents in {:.1} s",
        states.len(),
        enroll_time.as_secs_f64()
    );
    let mut report = run_fleet(&target, &opts, states).await?;
    report.agents_enrolled = opts.agents;
    report.enroll_time = enroll_time;
    print!("{}", report.render());

    // Cross-check with what the collector stored: every acked batch once.
    let agents = target.agents().await?;
    let stored: u64 = agents.iter().map(|a| a.delivery.batches).sum();
    let gaps = agents
        .iter()
        .filter(|a| a.delivery.batches != a.delivery.last_sequence)
        .count();
    println!(
        "collector holds {stored} batches from {} agents ({gaps} with gaps or duplicates)",
        agents.len()
    );
    drop(target);
    if let Some(c) = in_process {
        c.shutdown().await;
    }
    if !report.failures.is_empty() || gaps > 0 || stored < report.batches_acked {
        bail!("fleet run found failures");
    }
    Ok(())
}
