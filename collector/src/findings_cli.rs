//! `collector findings|changes|posture|index` subcommands (part of the binary).

use anyhow::Result;
use clap::Subcommand;
use collector::admin::AdminRequest;
use collector::config::parse_duration;
use collector::findings::changes::ChangeEvent;
use collector::findings::posture::{ControlStatus, PostureSnapshot};
use collector::findings::requests::FindingsRequest;
use collector::findings::{FindingRecord, SuppressionKind};
use collector::search::SearchResults;
use protocol::TenantId;

/// Findings operations.
#[derive(Subcommand)]
pub enum FindingsCommand {
    /// Search findings and change events (query language: docs/search.md).
    Search {
        /// Tenant to search (mandatory filter).
        #[arg(long)]
        tenant: TenantId,
        /// Query, e.g. 'severity:high port:3389 sort:-last_seen'.
        #[arg(default_value = "")]
        query: String,
        /// Hits to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one finding in full (JSON).
    Show {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Finding id.
        id: String,
    },
    /// Suppress a finding (or accept its risk) with a reason, owner and expiry.
    Suppress {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Finding id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Who is accountable.
        #[arg(long)]
        owner: String,
        /// Lifetime, e.g. 90d (required for --accept-risk).
        #[arg(long)]
        expires: Option<String>,
        /// Record an accepted risk instead of a suppression.
        #[arg(long)]
        accept_risk: bool,
    },
    /// Remove a suppression.
    Unsuppress {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Finding id.
        id: String,
    },
}

/// Change events and baselines.
#[derive(Subcommand)]
pub enum ChangesCommand {
    /// Change events, newest first.
    List {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Only this asset.
        #[arg(long)]
        asset: Option<String>,
        /// Events to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accept an asset's current snapshot as its baseline.
    Accept {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Asset name.
        asset: String,
    },
}

/// Search index maintenance.
#[derive(Subcommand)]
pub enum IndexCommand {
    /// Drop the search index and rebuild it from the stored findings and changes.
    Rebuild,
}

fn fmt_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn print_change(e: &ChangeEvent) {
    println!(
        "{:<20} {:<20} {:<24} {:<40} {} → {}",
        fmt_ms(e.detected_ms),
        e.change.as_str(),
        short(&e.asset, 24),
        short(&e.subject, 40),
        e.before.as_deref().unwrap_or("-"),
        e.after.as_deref().unwrap_or("-")
    );
}

/// Builds the request of a findings subcommand.
pub fn findings_request(cmd: FindingsCommand) -> Result<(FindingsRequest, bool)> {
    Ok(match cmd {
        FindingsCommand::Search {
            tenant,
            query,
            limit,
            json,
        } => (
            FindingsRequest::Search {
                tenant,
                query,
                limit: Some(limit),
                offset: None,
                facets: true,
            },
            json,
        ),
        FindingsCommand::Show { tenant, id } => (FindingsRequest::Show { tenant, id }, true),
        FindingsCommand::Suppress {
            tenant,
            id,
            reason,
            owner,
            expires,
            accept_risk,
        } => {
            let expires_ms = expires
                .map(|e| parse_duration("--expires", &e))
                .transpose()?
                .map(|d| collector::time::now_ms().saturating_add(d.as_millis() as u64));
            let kind = if accept_risk {
                SuppressionKind::AcceptedRisk
            } else {
                SuppressionKind::Suppressed
            };
            (
                FindingsRequest::Suppress {
                    tenant,
                    id,
                    kind,
                    reason,
                    owner,
                    expires_ms,
                },
                true,
            )
        }
        FindingsCommand::Unsuppress { tenant, id } => {
            (FindingsRequest::Unsuppress { tenant, id }, true)
        }
    })
}

/// Prints a search answer as a table.
pub fn print_search(v: serde_json::Value) -> Result<()> {
    let r: SearchResults = serde_json::from_value(v)?;
    println!("{} matches ({} µs)", r.total, r.took_us);
    for (facet, values) in &r.facets {
        let list: Vec<String> = values
            .iter()
            .take(8)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!("  {facet:<9} {}", list.join("  "));
    }
    println!(
        "{:<32} {:<9} {:<9} {:<24} {:<34} {:<28} {:<20}",
        "ID", "SEVERITY", "STATE", "ASSET", "RULE / CHANGE", "LOCATION / SUBJECT", "LAST SEEN"
    );
    for h in r.hits {
        if h.kind == "change" {
            let e: ChangeEvent = serde_json::from_value(h.doc)?;
            println!(
                "{:<32} {:<9} {:<9} {:<24} {:<34} {:<28} {:<20}",
                e.id,
                "-",
                "change",
                short(&e.asset, 24),
                e.change.as_str(),
                short(&e.subject, 28),
                fmt_ms(e.detected_ms)
            );
        } else {
            let f: FindingRecord = serde_json::from_value(h.doc)?;
            let state = if f.suppressed(collector::time::now_ms()) {
                "suppr."
            } else {
                f.state.as_str()
            };
            println!(
                "{:<32} {:<9} {:<9} {:<24} {:<34} {:<28} {:<20}",
                f.id,
                f.severity.as_str(),
                state,
                short(&f.asset, 24),
                short(&f.rule_id, 34),
                short(&f.location, 28),
                fmt_ms(f.last_seen_ms)
            );
        }
    }
    Ok(())
}

/// Prints change events.
pub fn print_changes(v: serde_json::Value) -> Result<()> {
    let events: Vec<ChangeEvent> = serde_json::from_value(v)?;
    for e in &events {
        print_change(e);
    }
    Ok(())
}

/// Prints a posture answer.
pub fn print_posture(v: serde_json::Value) -> Result<()> {
    let p: collector::findings::posture::Posture = serde_json::from_value(v["posture"].clone())?;
    let history: Vec<PostureSnapshot> = serde_json::from_value(v["history"].clone())?;
    println!(
        "{} — {} ({}): {} pass, {} fail, {} not assessed",
        p.tenant, p.framework_name, p.framework, p.pass, p.fail, p.not_assessed
    );
    for c in &p.controls {
        let s = match c.status {
            ControlStatus::Pass => "pass",
            ControlStatus::Fail => "FAIL",
            ControlStatus::NotAssessed => "n/a",
        };
        println!(
            "  {:<5} {:<12} {:>5}  {}",
            s,
            c.control,
            c.active_findings,
            short(&c.title, 80)
        );
    }
    if !history.is_empty() {
        println!("history (newest first):");
        for h in history {
            println!(
                "  {}  pass {:>3}  fail {:>3}  n/a {:>3}  active findings {}",
                fmt_ms(h.at_ms),
                h.pass,
                h.fail,
                h.not_assessed,
                h.active_findings
            );
        }
    }
    Ok(())
}

/// Shorthand for wrapping a findings request.
pub fn req(r: FindingsRequest) -> AdminRequest {
    AdminRequest::Findings(r)
}
