//! `agent scan`: one-shot local scan of a single target, no collector involved.
//!
//! The scope is exactly the target on the command line (and the addresses its
//! name resolves to) with the selected ports: the user named it explicitly.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use protocol::{CheckKind, Observation, PortRange, Record};
use serde::Serialize;

use super::{
    AuthorizedTarget, ParsedTarget, PortSelection, RootStore, ScanOptions, ScopePolicy, TargetSpec,
    normalize_checks, now_ms, resolve_host, scan_target,
};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON document (schema in docs/scan-json.md).
    Json,
    /// Human-readable lines.
    Table,
}

/// Arguments of `agent scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// Host name or address to scan, optionally with a port (`example.com:443`, `[::1]:8443`).
    #[arg(long)]
    pub target: String,
    /// Checks to run, comma-separated: ports, tls, http, dns.
    #[arg(long, value_delimiter = ',', default_value = "ports,tls,http")]
    pub checks: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Ports: `top` (1000 most common), `all` (1-65535) or a list like `22,80,8000-8100`.
    /// Defaults to the target's port if given, else `top`.
    #[arg(long)]
    pub ports: Option<String>,
    /// Nameserver (IP:PORT) for the DNS check and for resolving the target.
    #[arg(long)]
    pub nameserver: Option<SocketAddr>,
    /// Sockets in flight during the port scan.
    #[arg(long, default_value_t = 1000)]
    pub concurrency: usize,
    /// Maximum connect attempts per second (unlimited when absent).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Connect timeout in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub connect_timeout_ms: u64,
    /// Skip banner grabbing and service identification.
    #[arg(long)]
    pub no_banners: bool,
    /// PEM bundle of trusted roots for certificate validation (default: Mozilla roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Skip weak cipher-suite enumeration.
    #[arg(long)]
    pub no_weak_ciphers: bool,
}

fn parse_checks(raw: &[String]) -> anyhow::Result<Vec<CheckKind>> {
    let mut out = Vec::new();
    for c in raw.iter().map(|c| c.trim().to_ascii_lowercase()) {
        out.push(match c.as_str() {
            "ports" | "port" => CheckKind::Ports,
            "tls" => CheckKind::Tls,
            "http" => CheckKind::Http,
            "dns" => CheckKind::Dns,
            "" => continue,
            other => bail!("unknown check {other:?} (expected ports, tls, http, dns)"),
        });
    }
    if out.is_empty() {
        bail!("no checks selected");
    }
    Ok(normalize_checks(&out))
}

/// The JSON document printed by `agent scan --format json`.
#[derive(Debug, Serialize)]
pub struct ScanReport {
    /// Target as given.
    pub target: String,
    /// Checks that ran.
    pub checks: Vec<CheckKind>,
    /// Start, milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// End, milliseconds since the Unix epoch.
    pub finished_ms: u64,
    /// Observations.
    pub records: Vec<Record>,
    /// Verdicts of the builtin compliance rules on those observations, most severe first.
    pub findings: Vec<rules::Finding>,
}

/// Runs a one-shot scan and prints the result on stdout.
pub async fn run(args: ScanArgs) -> anyhow::Result<()> {
    let checks = parse_checks(&args.checks)?;
    let target = ParsedTarget::parse(&args.target)?;
    if matches!(target.spec, TargetSpec::Net(_)) {
        bail!("agent scan takes one host or address; use a job for address blocks");
    }
    if checks.contains(&CheckKind::Dns) && args.nameserver.is_none() {
        bail!(
            "the dns check needs --nameserver IP:PORT (the system resolver is never used for it)"
        );
    }
    if checks.contains(&CheckKind::Dns) && !matches!(target.spec, TargetSpec::Host(_)) {
        bail!("the dns check needs a host name target");
    }
    let selection = match (&args.ports, target.port) {
        (Some(p), _) => {
            PortSelection::parse(p).with_context(|| format!("invalid --ports {p:?}"))?
        }
        (None, Some(p)) => PortSelection::Ranges(vec![PortRange { start: p, end: p }]),
        (None, None) => PortSelection::Top1000,
    };
    let port_list = selection.ports();
    let mut scope_ports = ranges_of(&port_list);
    // The TLS/HTTP checks without a port scan use their well-known ports.
    if target.port.is_none() && !checks.contains(&CheckKind::Ports) {
        scope_ports.extend([80, 443].map(|p| PortRange { start: p, end: p }));
    }

    let mut opts = ScanOptions::default();
    opts.connect.concurrency = args.concurrency.max(1);
    opts.connect.rate_per_sec = args.rate;
    opts.connect.connect_timeout = Duration::from_millis(args.connect_timeout_ms.max(1));
    opts.banners = !args.no_banners;
    opts.nameserver = args.nameserver;
    opts.tls.weak_ciphers = !args.no_weak_ciphers;
    opts.default_ports = selection;
    if let Some(ca) = &args.ca_file {
        opts.tls.roots = Arc::new(RootStore::from_pem_file(ca)?);
    }

    let mut policy = ScopePolicy::for_explicit_target(&target, &scope_ports);
    policy.check_target(&target)?;
    let (hostname, addrs) = match &target.spec {
        TargetSpec::Host(h) => {
            let addrs = resolve_host(h, &opts).await?;
            policy.allow_addresses(&addrs);
            (Some(h.clone()), addrs)
        }
        TargetSpec::Ip(ip) => (None, vec![*ip]),
        TargetSpec::Net(_) => unreachable!("rejected above"),
    };
    let authorized = AuthorizedTarget {
        asset: args.target.trim().to_string(),
        hostname,
        addrs: if checks == [CheckKind::Dns] {
            Vec::new()
        } else {
            addrs
        },
        port: target.port,
    };

    let total = (authorized.addrs.len() * port_list.len()) as u64;
    let progress = Arc::new(AtomicU64::new(0));
    opts.progress = Some(progress.clone());
    let ticker = (checks.contains(&CheckKind::Ports) && total > 100).then(|| {
        let progress = progress.clone();
        let tty = std::io::stderr().is_terminal();
        tokio::spawn(async move {
            let mut last = u64::MAX;
            loop {
                tokio::time::sleep(Duration::from_millis(if tty { 250 } else { 2000 })).await;
                let done = progress.load(Ordering::Relaxed);
                if done != last {
                    let sep = if tty { "\r" } else { "\n" };
                    eprint!("{sep}scanned {done}/{total} ports");
                    let _ = std::io::stderr().flush();
                    last = done;
                }
            }
        })
    });

    let started_ms = now_ms();
    let records = scan_target(&authorized, &checks, None, &policy, &opts, "").await;
    if let Some(t) = ticker {
        t.abort();
        eprintln!(
            "\rscanned {}/{total} ports",
            progress.load(Ordering::Relaxed)
        );
    }
    let ruleset = rules::RuleSet::builtin().context("builtin rules do not compile")?;
    let mut findings: Vec<rules::Finding> =
        records.iter().flat_map(|r| ruleset.evaluate(r)).collect();
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule_id.cmp(&b.rule_id))
            .then_with(|| a.location.cmp(&b.location))
    });
    let report = ScanReport {
        target: args.target.clone(),
        checks,
        started_ms,
        finished_ms: now_ms(),
        records,
        findings,
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Table => write_table(&mut out, &report)?,
    }
    Ok(())
}

/// Compresses a sorted port list into ranges so scope checks stay cheap for full sweeps.
fn ranges_of(ports: &[u16]) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = Vec::new();
    for &p in ports {
        match out.last_mut() {
            Some(r) if r.end.checked_add(1) == Some(p) => r.end = p,
            _ => out.push(PortRange { start: p, end: p }),
        }
    }
    out
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

/// Human-readable rendering, one block per observation.
pub fn write_table(out: &mut impl Write, report: &ScanReport) -> std::io::Result<()> {
    writeln!(
        out,
        "target {}  ({} observations)",
        report.target,
        report.records.len()
    )?;
    for r in &report.records {
        match &r.observation {
            Observation::Port(p) => writeln!(
                out,
                "port  {:<39} {:>5}/tcp {:<8} {:<8} {:<20} {}",
                p.ip,
                p.port,
                format!("{:?}", p.state).to_ascii_lowercase(),
                opt(&p.service),
                opt(&p.product),
                if p.tls { "tls" } else { "" }
            )?,
            Observation::Tls(t) => {
                writeln!(out, "tls   {}:{} ({})", t.ip, t.port, t.server_name)?;
                let versions: Vec<String> = t.protocols.iter().map(|v| format!("{v:?}")).collect();
                writeln!(out, "      protocols    {}", versions.join(" "))?;
                writeln!(
                    out,
                    "      chain        valid={} length={} name_matches={} {}",
                    t.chain_valid,
                    t.chain_length,
                    t.name_matches,
                    t.validation_error.as_deref().unwrap_or("")
                )?;
                if let Some(c) = &t.certificate {
                    writeln!(out, "      subject      {}", c.subject)?;
                    writeln!(out, "      issuer       {}", c.issuer)?;
                    writeln!(
                        out,
                        "      key          {} {} bits, {}, self_signed={}, days_left={}",
                        c.key_type, c.key_bits, c.signature_algorithm, c.self_signed, c.days_left
                    )?;
                }
                for w in &t.weak_ciphers {
                    let classes: Vec<String> = w.classes.iter().map(|c| format!("{c:?}")).collect();
                    writeln!(
                        out,
                        "      weak         {:?} {} [{}]",
                        w.version,
                        w.name,
                        classes.join(",")
                    )?;
                }
            }
            Observation::Http(h) => {
                writeln!(out, "http  {} status={}", h.url, h.status)?;
                writeln!(
                    out,
                    "      hsts={} max_age={} include_subdomains={} redirects_to_https={}",
                    opt(&h.hsts),
                    h.hsts_max_age
                        .map(|m| m.to_string())
                        .as_deref()
                        .unwrap_or("-"),
                    h.hsts_include_subdomains,
                    h.redirects_to_https
                        .map(|b| b.to_string())
                        .as_deref()
                        .unwrap_or("-")
                )?;
                writeln!(
                    out,
                    "      csp={} xfo={} xcto={} referrer={} permissions={}",
                    opt(&h.csp),
                    opt(&h.x_frame_options),
                    opt(&h.x_content_type_options),
                    opt(&h.referrer_policy),
                    opt(&h.permissions_policy)
                )?;
                writeln!(
                    out,
                    "      server={} x_powered_by={}",
                    opt(&h.server),
                    opt(&h.x_powered_by)
                )?;
            }
            Observation::Dns(d) => {
                writeln!(out, "dns   {} dnssec_signed={}", d.domain, d.dnssec_signed)?;
                match &d.spf {
                    Some(s) => writeln!(
                        out,
                        "      spf          all={} lookups={} ({})",
                        s.all_qualifier.as_deref().unwrap_or("-"),
                        s.dns_lookups,
                        s.raw
                    )?,
                    None => writeln!(
                        out,
                        "      spf          none usable ({} records)",
                        d.spf_count
                    )?,
                }
                match &d.dmarc {
                    Some(m) => writeln!(
                        out,
                        "      dmarc        p={} pct={} rua={}",
                        m.policy.as_deref().unwrap_or("-"),
                        m.pct,
                        m.has_rua
                    )?,
                    None => writeln!(out, "      dmarc        none")?,
                }
                writeln!(out, "      caa          {}", d.caa.join("; "))?;
                writeln!(out, "      mx           {}", d.mx.join("; "))?;
            }
        }
    }
    writeln!(out, "findings ({})", report.findings.len())?;
    for f in &report.findings {
        writeln!(
            out,
            "  [{}] {} {}: {}",
            f.severity, f.rule_id, f.location, f.title
        )?;
        if !f.evidence.is_empty() {
            writeln!(out, "        evidence: {}", f.evidence)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_parse() {
        let c = parse_checks(&["tls".into(), "PORTS".into(), "tls".into()]).expect("checks");
        assert_eq!(c, vec![CheckKind::Ports, CheckKind::Tls]);
        assert!(parse_checks(&["smtp".into()]).is_err());
        assert!(parse_checks(&[]).is_err());
    }

    #[test]
    fn port_lists_compress_to_ranges() {
        let r = ranges_of(&[1, 2, 3, 5, 65534, 65535]);
        let pairs: Vec<(u16, u16)> = r.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(pairs, vec![(1, 3), (5, 5), (65534, 65535)]);
    }
}
