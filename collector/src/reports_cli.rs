//! `collector report` subcommands (part of the binary): through the admin
//! socket of a running collector, or directly on the database when none runs
//! (then the report is generated in this process before the command returns).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use collector::admin::AdminRequest;
use collector::admin_socket;
use collector::compliance_api::{Compliance, ReportRequest};
use collector::config::CollectorConfig;
use collector::reports::service::report_path;
use collector::reports::{ReportFormat, ReportMeta, ReportStatus};
use collector::store::{SledStore, Store};
use collector::time::SystemClock;
use protocol::TenantId;

/// Report operations.
#[derive(Subcommand)]
pub enum ReportCommand {
    /// Queue a compliance report (generated at once when no collector runs).
    Create {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Framework key: nis2, nis2_ir, iso27001, soc2, cis.
        #[arg(long)]
        framework: String,
        /// pdf, json, csv, ocsf or sarif.
        #[arg(long, default_value = "pdf")]
        format: String,
        /// Copy the finished report here (implies --wait).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Wait until the report is done.
        #[arg(long)]
        wait: bool,
    },
    /// Reports of a tenant.
    List {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
    },
}

/// Longest `--wait`.
const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// Runs a report command.
pub async fn run(config: CollectorConfig, command: ReportCommand) -> Result<()> {
    match command {
        ReportCommand::Create {
            tenant,
            framework,
            format,
            out,
            wait,
        } => {
            let format = ReportFormat::parse(&format)?;
            let req = ReportRequest::Create {
                tenant: tenant.clone(),
                framework,
                format,
            };
            let sock = admin_socket::socket_path(&config.data_dir);
            let mut meta: ReportMeta =
                match admin_socket::request(&sock, &AdminRequest::Report(req.clone())).await? {
                    Some(v) => serde_json::from_value(v)?,
                    None => offline_create(&config, req).await?,
                };
            eprintln!("report {} {:?}", meta.id, meta.status);
            if wait || out.is_some() {
                let started = Instant::now();
                while matches!(meta.status, ReportStatus::Queued | ReportStatus::Running) {
                    if started.elapsed() > WAIT_LIMIT {
                        bail!("report {} not done after {WAIT_LIMIT:?}", meta.id);
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let get = AdminRequest::Report(ReportRequest::Get {
                        tenant: tenant.clone(),
                        id: meta.id.clone(),
                    });
                    let v = admin_socket::request(&sock, &get)
                        .await?
                        .context("the collector stopped while the report was generated")?;
                    meta = serde_json::from_value(v)?;
                }
                if meta.status == ReportStatus::Failed {
                    bail!(
                        "report {} failed: {}",
                        meta.id,
                        meta.error.unwrap_or_default()
                    );
                }
            }
            if let Some(out) = out {
                let src = report_path(&config.data_dir.join("reports"), &meta);
                std::fs::copy(&src, &out)
                    .with_context(|| format!("copying {} to {}", src.display(), out.display()))?;
                eprintln!(
                    "wrote {} ({} bytes)",
                    out.display(),
                    meta.size_bytes.unwrap_or(0)
                );
            }
            println!("{}", serde_json::to_string_pretty(&meta)?);
        }
        ReportCommand::List { tenant } => {
            let req = ReportRequest::List { tenant };
            let sock = admin_socket::socket_path(&config.data_dir);
            let v = match admin_socket::request(&sock, &AdminRequest::Report(req.clone())).await? {
                Some(v) => v,
                None => {
                    let (c, _store) = open_offline(&config).await?;
                    collector::compliance_api::handle(&c.reports, req)?
                }
            };
            let list: Vec<ReportMeta> = serde_json::from_value(v)?;
            println!(
                "{:<20} {:<10} {:<6} {:<8} {:>4}% {:>10}",
                "ID", "FRAMEWORK", "FORMAT", "STATUS", "", "BYTES"
            );
            for m in list {
                println!(
                    "{:<20} {:<10} {:<6} {:<8} {:>4}% {:>10}",
                    m.id,
                    m.framework,
                    m.format.as_str(),
                    format!("{:?}", m.status).to_lowercase(),
                    m.progress,
                    m.size_bytes.map_or("-".into(), |b| b.to_string())
                );
            }
        }
    }
    Ok(())
}

async fn open_offline(config: &CollectorConfig) -> Result<(Compliance, Arc<dyn Store>)> {
    let settings = config.clone().validate()?;
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&settings.raw.data_dir.join("db")).context(
            "no collector answers on the admin socket and the database cannot be opened",
        )?);
    let db = store.sled_db().context("reports need the sled store")?;
    let rules = settings.load_rules()?;
    let pipeline = collector::findings::pipeline::Pipeline::open(
        &settings.raw.data_dir,
        store.clone(),
        Arc::new(rules),
        Arc::new(collector::metrics::Metrics::default()),
        collector::findings::pipeline::PipelineOptions::default(),
    )?;
    // Bring findings up to date with the stored batches first.
    let pipeline =
        tokio::task::spawn_blocking(move || pipeline.catch_up().map(|_| pipeline)).await??;
    let c = Compliance::open(&settings, &db, Arc::new(pipeline), Arc::new(SystemClock))
        .map_err(anyhow::Error::msg)?;
    Ok((c, store))
}

async fn offline_create(config: &CollectorConfig, req: ReportRequest) -> Result<ReportMeta> {
    let (c, store) = open_offline(config).await?;
    let ReportRequest::Create { tenant, .. } = &req else {
        bail!("not a create request");
    };
    let tenant = tenant.clone();
    let reports = c.reports.clone();
    let t = tenant.clone();
    let meta: ReportMeta = tokio::task::spawn_blocking(move || -> Result<ReportMeta> {
        let v = collector::compliance_api::handle(&reports, req)?;
        let meta: ReportMeta = serde_json::from_value(v)?;
        // No worker runs offline: generate everything queued, this report included.
        while reports.process_next()? {}
        Ok(reports.get(&t, &meta.id)?)
    })
    .await??;
    if let Some(accounts) = collector::console_api::account_store(store.as_ref()).transpose()? {
        collector::console_api::audit_cli(
            accounts.as_ref(),
            &tenant,
            "report.create",
            &meta.id,
            serde_json::json!({ "framework": meta.framework, "format": meta.format }),
        )?;
    }
    store.flush()?;
    Ok(meta)
}
