//! `agent` command line: enrol, run, inspect, and one-shot scans.

use std::path::PathBuf;
use std::sync::Arc;

use agent::config::AgentConfig;
use agent::enroll::{EnrollOptions, enroll};
use agent::scan::ScanOptions;
use agent::{AgentState, Spool, Uplink};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "agent",
    version,
    about = "vigil agent: scans and streams signed results"
)]
struct Cli {
    /// Configuration file (TOML); built-in defaults apply when absent.
    #[arg(long, short, env = "VIGIL_AGENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Identity directory, overriding the configuration.
    #[arg(long, env = "VIGIL_AGENT_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol with a collector using a token from `collector token create`.
    Enroll {
        /// Collector address, HOST:PORT.
        #[arg(long)]
        collector: String,
        /// Single-use enrolment token.
        #[arg(long, env = "VIGIL_ENROLL_TOKEN")]
        token: String,
        /// SHA-256 fingerprint of the collector's server CA.
        #[arg(long)]
        ca_fingerprint: String,
        /// Name shown in the collector's inventory (default: this host's name).
        #[arg(long)]
        hostname: Option<String>,
    },
    /// Connect to the collector, run its jobs and stream results.
    Run,
    /// Show identity, certificate expiry and spool backlog.
    Status,
    /// Scan one target locally and print the observations (no collector involved).
    Scan(agent::scan::cli::ScanArgs),
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "agent".into())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    if let Some(dir) = cli.state_dir {
        config.state_dir = dir;
    }
    match cli.command {
        Command::Scan(args) => agent::scan::cli::run(args).await?,
        Command::Enroll {
            collector,
            token,
            ca_fingerprint,
            hostname,
        } => {
            let state = enroll(&EnrollOptions {
                collector,
                token,
                ca_fingerprint,
                state_dir: config.state_dir.clone(),
                hostname: hostname.unwrap_or_else(host_name),
            })
            .await
            .context("enrolment failed")?;
            println!(
                "enrolled as agent {} of tenant {}; identity saved in {}",
                state.meta.agent,
                state.meta.tenant,
                config.state_dir.display()
            );
        }
        Command::Run => {
            let uplink_config = config.uplink()?;
            let state = AgentState::load(&config.state_dir)?;
            let spool = Arc::new(Spool::open(
                &config.spool_dir(),
                state.identity(),
                state.signing_key.clone(),
            )?);
            tracing::info!(
                "agent {} starting; {} batch(es) waiting in the spool",
                state.identity(),
                spool.pending()
            );
            let opts = ScanOptions {
                nameserver: config.nameserver()?,
                ..ScanOptions::default()
            };
            let mut uplink = Uplink::spawn(state, spool.clone(), uplink_config);
            // Collector-scheduled runs; the pushed job list is followed by `run_jobs`.
            let run_executor = uplink.take_run_requests().map(|requests| {
                tokio::spawn(agent::runner::run_requests(
                    requests,
                    uplink.run_reporter(),
                    spool.clone(),
                    config.batch_records,
                    opts.clone(),
                ))
            });
            let runner = tokio::spawn(agent::runner::run_jobs(
                uplink.jobs.clone(),
                spool,
                config.batch_records,
                opts,
            ));
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let stop = async {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            };
            let stopper = uplink.stop_handle();
            let join = uplink.join();
            tokio::pin!(stop, join);
            let result = tokio::select! {
                _ = &mut stop => {
                    tracing::info!("stopping");
                    runner.abort();
                    if let Some(t) = &run_executor {
                        t.abort();
                    }
                    stopper.stop();
                    join.await
                }
                r = &mut join => r,
            };
            result?;
        }
        Command::Status => {
            let state = AgentState::load(&config.state_dir)?;
            let validity = agent::cert::validity(&state.cert_der()?)?;
            let spool = Spool::open(
                &config.spool_dir(),
                state.identity(),
                state.signing_key.clone(),
            )?;
            println!("agent:       {}", state.identity());
            println!("collector:   {}", state.meta.collector);
            println!(
                "certificate: valid until {}",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(validity.not_after.max(0) as u64)
                )
            );
            println!(
                "spool:       {} pending (last sequence {}, acknowledged {})",
                spool.pending(),
                spool.last(),
                spool.acked()
            );
        }
    }
    Ok(())
}
