//! `collector` command line: run the server and administer tokens and agents.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use collector::admin::{
    Admin, AdminRequest, AgentSummary, CreatedToken, RecentRecord, TenantStats,
};
use collector::config::{CollectorConfig, parse_duration};
use collector::findings::requests::FindingsRequest;
use collector::pki::Pki;
use collector::scheduler::{ScheduleSummary, Schedules};
use collector::store::{RunRecord, SledStore, Store};
use collector::time::SystemClock;
use collector::{Collector, admin_socket};
use protocol::{AgentId, TenantId};

mod accounts_cli;

mod findings_cli;

mod reports_cli;

use findings_cli::{ChangesCommand, FindingsCommand, IndexCommand};

#[derive(Parser)]
#[command(
    name = "collector",
    version,
    about = "vigil collector: enrolment, ingest and storage"
)]
struct Cli {
    /// Configuration file (TOML); built-in defaults apply when absent.
    #[arg(long, short, env = "VIGIL_COLLECTOR_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory, overriding the configuration.
    #[arg(long, env = "VIGIL_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compliance findings: search, show, suppress.
    Findings {
        #[command(subcommand)]
        command: FindingsCommand,
    },
    /// Change events against the accepted per-asset baselines.
    Changes {
        #[command(subcommand)]
        command: ChangesCommand,
    },
    /// Compliance posture of a tenant against a framework, with history.
    Posture {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Framework key: nis2, nis2_ir, iso27001, soc2, cis.
        #[arg(long)]
        framework: String,
        /// History entries to show.
        #[arg(long, default_value_t = 10)]
        history: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The findings search index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Compliance reports (PDF, JSON, CSV, OCSF, SARIF).
    Report {
        #[command(subcommand)]
        command: reports_cli::ReportCommand,
    },
    /// Console users (first-run bootstrap: create an admin).
    User {
        #[command(subcommand)]
        command: accounts_cli::UserCommand,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: accounts_cli::AuditCommand,
    },
    /// Run the collector.
    Serve {
        /// UDP address for QUIC, overriding the configuration.
        #[arg(long, env = "VIGIL_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Metrics HTTP address ("" disables), overriding the configuration.
        #[arg(long, env = "VIGIL_METRICS_LISTEN")]
        metrics_listen: Option<String>,
    },
    /// Scale-out worker: consume verified batches from NATS JetStream into
    /// PostgreSQL and derive findings (needs `[backend] kind = "scaleout"`).
    Worker,
    /// Enrolment tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrolled agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Stored batches and records per tenant.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The newest stored results of a tenant.
    Records {
        /// Tenant to read.
        #[arg(long)]
        tenant: TenantId,
        /// How many records.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The server CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Scheduled scan runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Collector-scheduled jobs (`schedule` in the tenant configuration).
    Schedules {
        #[command(subcommand)]
        command: SchedulesCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a single-use enrolment token.
    Create {
        /// Tenant the agent will belong to.
        #[arg(long)]
        tenant: TenantId,
        /// Token lifetime, e.g. 24h or 30m.
        #[arg(long)]
        ttl: Option<String>,
        /// Print only the token.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// List agents with their delivery counters.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent: it is refused at its next handshake and disconnected now.
    Revoke {
        /// Agent id (see `agent list`).
        id: AgentId,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// List runs, newest first, with status and duration.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Only this agent.
        #[arg(long)]
        agent: Option<AgentId>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue a run of a scheduled job now on every agent of the tenant
    /// (the job's windows still apply).
    Start {
        /// The tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The scheduled job's id.
        #[arg(long)]
        job: String,
    },
}

#[derive(Subcommand)]
enum SchedulesCommand {
    /// List scheduled jobs with their next due time.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Print the SHA-256 fingerprint agents pass as --ca-fingerprint.
    Fingerprint,
}

fn load_config(cli: &Cli) -> Result<CollectorConfig> {
    let mut config = match &cli.config {
        Some(path) => CollectorConfig::load(path)?,
        None => CollectorConfig::default(),
    };
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

/// Runs an admin request on the running collector, or directly on the database when none runs.
async fn admin_request(config: CollectorConfig, req: AdminRequest) -> Result<serde_json::Value> {
    let sock = admin_socket::socket_path(&config.data_dir);
    if let Some(v) = admin_socket::request(&sock, &req).await? {
        return Ok(v);
    }
    let settings = config.validate()?;
    let db = settings.raw.data_dir.join("db");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&db).with_context(|| {
        format!(
            "no collector answers on {} and the database cannot be opened",
            sock.display()
        )
    })?);
    let pki = Arc::new(Pki::open(store.clone())?);
    let admin = Admin::new(store.clone(), pki, settings.token_ttl, None).with_schedules(
        Arc::new(Schedules::from_settings(&settings)),
        Arc::new(SystemClock),
    );
    // Offline CLI actions reach the console accounts and audit log in the same database.
    let admin = match collector::console_api::account_store(store.as_ref()).transpose()? {
        Some(accounts) => admin.with_accounts(accounts),
        None => admin,
    };
    let admin = if matches!(req, AdminRequest::Findings(_)) {
        // Offline: bring findings up to date with the stored batches first.
        let rules = settings.load_rules()?;
        let pipeline = collector::findings::pipeline::Pipeline::open(
            &settings.raw.data_dir,
            store.clone(),
            Arc::new(rules),
            Arc::new(collector::metrics::Metrics::default()),
            collector::findings::pipeline::PipelineOptions::default(),
        )?;
        let pipeline =
            tokio::task::spawn_blocking(move || pipeline.catch_up().map(|_| pipeline)).await??;
        admin.with_findings(Arc::new(pipeline))
    } else {
        admin
    };
    let value = tokio::task::spawn_blocking(move || admin.handle(req)).await??;
    store.flush()?;
    Ok(value)
}

fn fmt_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn,sled=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let config = load_config(&cli)?;
    match cli.command {
        Command::Serve {
            listen,
            metrics_listen,
        } => {
            let mut config = config;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(m) = metrics_listen {
                config.metrics_listen = m;
            }
            let settings = config.validate()?;
            let collector = Collector::start(settings)
                .await
                .context("starting the collector")?;
            tracing::info!(
                "collector listening on {} (QUIC); server CA fingerprint {}",
                collector.local_addr(),
                collector.ca_fingerprint()
            );
            if let Some(m) = collector.metrics_addr() {
                tracing::info!("metrics on http://{m}/metrics");
            }
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
            collector.shutdown().await;
        }
        Command::Worker => {
            let settings = config.validate()?;
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let stats = Arc::new(collector::nats::worker::WorkerStats::default());
            let mut worker = tokio::spawn(collector::nats::worker::run(
                settings,
                stats.clone(),
                stop_rx,
            ));
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let finished = tokio::select! {
                r = &mut worker => Some(r),
                _ = tokio::signal::ctrl_c() => None,
                _ = term.recv() => None,
            };
            let result = match finished {
                Some(r) => r,
                None => {
                    let _ = stop_tx.send(true);
                    worker.await
                }
            };
            result?.context("worker")?;
            tracing::info!(
                "worker stopped: {} batches ({} records) stored, {} duplicates",
                stats.batches.load(std::sync::atomic::Ordering::Relaxed),
                stats.records.load(std::sync::atomic::Ordering::Relaxed),
                stats.duplicates.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        Command::Token {
            command: TokenCommand::Create { tenant, ttl, quiet },
        } => {
            let ttl_secs = ttl
                .map(|t| parse_duration("--ttl", &t))
                .transpose()?
                .map(|d| d.as_secs());
            if ttl_secs == Some(0) {
                bail!("--ttl must be at least one second");
            }
            let v = admin_request(config, AdminRequest::CreateToken { tenant, ttl_secs }).await?;
            let t: CreatedToken = serde_json::from_value(v)?;
            if quiet {
                println!("{}", t.token);
            } else {
                println!("token:          {}", t.token);
                println!("tenant:         {}", t.tenant);
                println!("expires:        {}", fmt_ms(t.expires_ms));
                println!("ca fingerprint: {}", t.ca_fingerprint);
                println!();
                println!(
                    "enrol with: agent enroll --collector HOST:PORT --token {} --ca-fingerprint {}",
                    t.token, t.ca_fingerprint
                );
            }
        }
        Command::Agent {
            command: AgentCommand::List { tenant, json },
        } => {
            let v = admin_request(config, AdminRequest::ListAgents { tenant }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let agents: Vec<AgentSummary> = serde_json::from_value(v)?;
                println!(
                    "{:<20} {:<16} {:<20} {:<8} {:>10} {:>12} {:<20}",
                    "AGENT", "TENANT", "HOST", "STATUS", "BATCHES", "RECORDS", "LAST SEEN"
                );
                for a in agents {
                    let status = if a.record.revoked_ms.is_some() {
                        "revoked"
                    } else if a.online {
                        "online"
                    } else {
                        "offline"
                    };
                    println!(
                        "{:<20} {:<16} {:<20} {:<8} {:>10} {:>12} {:<20}",
                        a.record.agent,
                        a.record.tenant,
                        a.record.hostname,
                        status,
                        a.delivery.batches,
                        a.delivery.records,
                        fmt_ms(a.record.last_seen_ms)
                    );
                }
            }
        }
        Command::Agent {
            command: AgentCommand::Revoke { id },
        } => {
            admin_request(config, AdminRequest::RevokeAgent { agent: id.clone() }).await?;
            println!("agent {id} revoked");
        }
        Command::Stats { json } => {
            let v = admin_request(config, AdminRequest::Stats).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let stats: std::collections::BTreeMap<TenantId, TenantStats> =
                    serde_json::from_value(v)?;
                println!(
                    "{:<16} {:>7} {:>8} {:>10} {:>12}",
                    "TENANT", "AGENTS", "REVOKED", "BATCHES", "RECORDS"
                );
                for (t, s) in stats {
                    println!(
                        "{:<16} {:>7} {:>8} {:>10} {:>12}",
                        t, s.agents, s.revoked, s.batches, s.records
                    );
                }
            }
        }
        Command::Records {
            tenant,
            limit,
            json,
        } => {
            let v = admin_request(config, AdminRequest::Records { tenant, limit }).await?;
            let rows: Vec<RecentRecord> = serde_json::from_value(v)?;
            for r in rows {
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    let obs = serde_json::to_string(&r.record.observation)?;
                    println!(
                        "{}  {}#{}  {}  {}",
                        fmt_ms(r.received_ms),
                        r.agent,
                        r.sequence,
                        r.record.asset,
                        obs
                    );
                }
            }
        }
        Command::User { command } => {
            let (req, json) = accounts_cli::user_request(command)?;
            let v = admin_request(config, req).await?;
            accounts_cli::print_user(v, json)?;
        }
        Command::Audit { command } => {
            let (req, json) = accounts_cli::audit_request(command);
            let v = admin_request(config, req).await?;
            accounts_cli::print_audit(v, json)?;
        }
        Command::Runs {
            command:
                RunsCommand::List {
                    tenant,
                    agent,
                    limit,
                    json,
                },
        } => {
            let req = AdminRequest::ListRuns {
                tenant,
                agent,
                limit: Some(limit),
            };
            let v = admin_request(config, req).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let runs: Vec<RunRecord> = serde_json::from_value(v)?;
                println!(
                    "{:<30} {:<12} {:<20} {:<20} {:<9} {:<20} {:>9} {:>8}  ERROR",
                    "RUN", "TENANT", "AGENT", "JOB", "STATUS", "DUE", "DURATION", "RECORDS"
                );
                for r in runs {
                    let duration = r
                        .duration_ms()
                        .map(|d| format!("{:.1}s", d as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:<30} {:<12} {:<20} {:<20} {:<9} {:<20} {:>9} {:>8}  {}",
                        r.run_id,
                        r.tenant,
                        r.agent,
                        r.job_id,
                        r.status.as_str(),
                        fmt_ms(r.scheduled_ms),
                        duration,
                        r.observations,
                        r.error.unwrap_or_default()
                    );
                }
            }
        }
        Command::Runs {
            command: RunsCommand::Start { tenant, job },
        } => {
            let v = admin_request(
                config,
                AdminRequest::StartRun {
                    tenant,
                    job_id: job,
                },
            )
            .await?;
            let runs: Vec<RunRecord> = serde_json::from_value(v)?;
            for r in &runs {
                println!("queued {} on agent {}", r.run_id, r.agent);
            }
        }
        Command::Schedules {
            command: SchedulesCommand::List { tenant, json },
        } => {
            let v = admin_request(config, AdminRequest::ListSchedules { tenant }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let schedules: Vec<ScheduleSummary> = serde_json::from_value(v)?;
                println!(
                    "{:<12} {:<20} {:<18} {:<7} {:<20} {:<20} {:>7}  WINDOWS",
                    "TENANT", "JOB", "SCHEDULE", "TZ", "NEXT DUE", "NEXT START", "PENDING"
                );
                let when = |ms: Option<u64>| ms.map(fmt_ms).unwrap_or_else(|| "never".into());
                for s in schedules {
                    println!(
                        "{:<12} {:<20} {:<18} {:<7} {:<20} {:<20} {:>7}  {}",
                        s.tenant,
                        s.job_id,
                        s.schedule,
                        s.timezone,
                        when(s.next_due_ms),
                        when(s.next_start_ms),
                        s.pending_runs,
                        if s.windows.is_empty() {
                            "any time".to_string()
                        } else {
                            s.windows.join(", ")
                        }
                    );
                }
            }
        }
        Command::Report { command } => reports_cli::run(config, command).await?,
        Command::Findings { command } => {
            let search = matches!(command, FindingsCommand::Search { .. });
            let (r, json) = findings_cli::findings_request(command)?;
            let v = admin_request(config, findings_cli::req(r)).await?;
            if json || !search {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                findings_cli::print_search(v)?;
            }
        }
        Command::Changes {
            command:
                ChangesCommand::List {
                    tenant,
                    asset,
                    limit,
                    json,
                },
        } => {
            let r = FindingsRequest::Changes {
                tenant,
                asset,
                limit: Some(limit),
            };
            let v = admin_request(config, findings_cli::req(r)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                findings_cli::print_changes(v)?;
            }
        }
        Command::Changes {
            command: ChangesCommand::Accept { tenant, asset },
        } => {
            let r = FindingsRequest::AcceptBaseline {
                tenant,
                asset: asset.clone(),
            };
            let v = admin_request(config, findings_cli::req(r)).await?;
            let cleared = v["drift"].as_array().map_or(0, Vec::len);
            println!("baseline of {asset} accepted ({cleared} pending changes cleared)");
        }
        Command::Posture {
            tenant,
            framework,
            history,
            json,
        } => {
            let r = FindingsRequest::Posture {
                tenant,
                framework,
                history: Some(history),
            };
            let v = admin_request(config, findings_cli::req(r)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                findings_cli::print_posture(v)?;
            }
        }
        Command::Index {
            command: IndexCommand::Rebuild,
        } => {
            let v = admin_request(config, findings_cli::req(FindingsRequest::RebuildIndex)).await?;
            println!("search index rebuilt: {} documents", v["documents"]);
        }
        Command::Ca {
            command: CaCommand::Fingerprint,
        } => {
            let v = admin_request(config, AdminRequest::Fingerprint).await?;
            println!("{}", v.as_str().unwrap_or_default());
        }
    }
    Ok(())
}
