//! The agent's scanners: scope enforcement, TCP ports and services, TLS,
//! HTTP security headers and DNS/mail records.
//!
//! [`run_job`] is the entry point the agent runtime calls for every job the
//! collector pushes; the one-shot `agent scan` command ([`cli`]) drives the
//! same code with an implicit scope made of the target the user named.

pub mod banner;
pub mod cli;
pub mod dns;
pub mod http;
pub mod ports;
pub mod scope;
pub mod tls;
pub mod top_ports;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocol::{
    CheckKind, JobSpec, Observation, PortObservation, PortRange, PortState, Record, Scope,
};

pub use ports::{ConnectOptions, PortSelection};
pub use scope::{ParsedTarget, ScopeError, ScopePolicy, TargetSpec};
pub use tls::{RootStore, TlsOptions};

/// Why a job (or one-shot scan) could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A target, port or the scope itself was refused.
    #[error("target {target:?} refused: {source}")]
    Scope {
        /// Target as written in the job.
        target: String,
        /// Why it was refused.
        source: ScopeError,
    },
    /// The scope is malformed.
    #[error("invalid scope: {0}")]
    InvalidScope(ScopeError),
    /// A host name did not resolve.
    #[error("cannot resolve {name}: {reason}")]
    Resolve {
        /// Name that was looked up.
        name: String,
        /// Resolver error.
        reason: String,
    },
    /// The job has nothing to do (no targets or no checks).
    #[error("job {0:?} names no targets or no checks")]
    EmptyJob(String),
    /// The DNS check could not be configured.
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
}

/// Everything a scan needs besides the job and scope.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Connect-scan limits.
    pub connect: ConnectOptions,
    /// Ports when the job names none.
    pub default_ports: PortSelection,
    /// Identify services on open ports.
    pub banners: bool,
    /// Per-probe budget for banner grabbing.
    pub banner_timeout: Duration,
    /// Open ports identified concurrently.
    pub banner_concurrency: usize,
    /// TLS scanner settings.
    pub tls: TlsOptions,
    /// Budget for one HTTP request.
    pub http_timeout: Duration,
    /// Nameserver for the DNS check and for resolving targets; `None` resolves
    /// targets with the operating system and skips the DNS check.
    pub nameserver: Option<SocketAddr>,
    /// Budget for one DNS query.
    pub dns_timeout: Duration,
    /// Incremented once per probed port, for progress reporting.
    pub progress: Option<Arc<AtomicU64>>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            connect: ConnectOptions::default(),
            default_ports: PortSelection::Top1000,
            banners: true,
            banner_timeout: Duration::from_secs(2),
            banner_concurrency: 32,
            tls: TlsOptions::default(),
            http_timeout: Duration::from_secs(10),
            nameserver: None,
            dns_timeout: Duration::from_secs(3),
            progress: None,
        }
    }
}

/// A target that passed both scope checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedTarget {
    /// The target as written (asset name in records).
    pub asset: String,
    /// Host name, when the target was a name (used for SNI, Host and DNS checks).
    pub hostname: Option<String>,
    /// In-scope addresses to probe.
    pub addrs: Vec<IpAddr>,
    /// Explicit port from `host:port`.
    pub port: Option<u16>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Resolves a host name with the configured nameserver, or the OS resolver when none is set.
pub async fn resolve_host(name: &str, opts: &ScanOptions) -> Result<Vec<IpAddr>, ScanError> {
    let err = |reason: String| ScanError::Resolve {
        name: name.to_string(),
        reason,
    };
    let mut addrs: Vec<IpAddr> = match opts.nameserver {
        Some(ns) => dns::resolve_ips(name, ns, opts.dns_timeout)
            .await
            .map_err(|e| err(e.to_string()))?,
        None => tokio::net::lookup_host((name, 0))
            .await
            .map_err(|e| err(e.to_string()))?
            .map(|sa| sa.ip())
            .collect(),
    };
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(err("no addresses".into()));
    }
    Ok(addrs)
}

/// Checks a target against the scope, resolves it, and checks every address again.
pub async fn authorize(
    raw: &str,
    policy: &ScopePolicy,
    opts: &ScanOptions,
) -> Result<AuthorizedTarget, ScanError> {
    let refused = |source| ScanError::Scope {
        target: raw.to_string(),
        source,
    };
    let parsed = ParsedTarget::parse(raw).map_err(refused)?;
    policy.check_target(&parsed).map_err(refused)?;
    let (hostname, addrs) = match &parsed.spec {
        TargetSpec::Ip(ip) => (None, vec![*ip]),
        TargetSpec::Net(net) => (None, scope::expand_net(net)),
        TargetSpec::Host(h) => {
            let resolved = resolve_host(h, opts).await?;
            let allowed = policy.check_resolved(h, &resolved).map_err(refused)?;
            (Some(h.clone()), allowed)
        }
    };
    Ok(AuthorizedTarget {
        asset: raw.trim().to_string(),
        hostname,
        addrs,
        port: parsed.port,
    })
}

/// Runs one job inside `scope` and returns its observations.
///
/// Every target is authorised (literal form, then resolved addresses) before
/// any probe is sent; one refused target refuses the whole job, so a
/// mis-scoped job never half-runs.
pub async fn run_job(
    spec: &JobSpec,
    scope: &Scope,
    opts: &ScanOptions,
) -> Result<Vec<Record>, ScanError> {
    let policy = ScopePolicy::new(scope).map_err(ScanError::InvalidScope)?;
    if spec.targets.is_empty() || spec.checks.is_empty() {
        return Err(ScanError::EmptyJob(spec.job_id.clone()));
    }
    for r in &spec.ports {
        for port in r.start..=r.end {
            policy.check_port(port).map_err(|source| ScanError::Scope {
                target: format!("ports {}-{}", r.start, r.end),
                source,
            })?;
        }
    }
    let mut targets = Vec::with_capacity(spec.targets.len());
    for raw in &spec.targets {
        targets.push(authorize(raw, &policy, opts).await?);
    }
    let ports = if spec.ports.is_empty() {
        None
    } else {
        Some(spec.ports.as_slice())
    };
    let mut records = Vec::new();
    for target in &targets {
        records.extend(scan_target(target, &spec.checks, ports, &policy, opts, &spec.job_id).await);
    }
    Ok(records)
}

/// Runs `checks` on one authorised target. Ports outside the policy are never probed.
pub async fn scan_target(
    target: &AuthorizedTarget,
    checks: &[CheckKind],
    ports: Option<&[PortRange]>,
    policy: &ScopePolicy,
    opts: &ScanOptions,
    job_id: &str,
) -> Vec<Record> {
    let record = |observation| Record {
        asset: target.asset.clone(),
        job_id: job_id.to_string(),
        observed_ms: now_ms(),
        observation,
    };
    let mut records = Vec::new();
    let in_scope = |p: &u16| policy.allows_port(*p);
    let port_list: Vec<u16> = match (target.port, ports) {
        (Some(p), _) => vec![p],
        (None, Some(r)) => PortSelection::Ranges(r.to_vec()).ports(),
        (None, None) => opts.default_ports.ports(),
    }
    .into_iter()
    .filter(in_scope)
    .collect();

    // Ports discovered by the port check drive the TLS and HTTP checks.
    let mut discovered: Option<Vec<PortObservation>> = None;
    if checks.contains(&CheckKind::Ports) {
        let obs = scan_ports(&target.addrs, &port_list, opts).await;
        records.extend(obs.iter().cloned().map(|o| record(Observation::Port(o))));
        discovered = Some(obs);
    }

    // A job that names ports but skips the port check still only gets TLS/HTTP
    // probes on ports that are open: a quick connect sweep finds them first.
    let wants_endpoints = checks.contains(&CheckKind::Tls) || checks.contains(&CheckKind::Http);
    let job_open: Option<Vec<SocketAddr>> =
        if discovered.is_none() && wants_endpoints && target.port.is_none() && ports.is_some() {
            match ports::connect_scan(&target.addrs, &port_list, &opts.connect, None).await {
                Ok(found) => Some(
                    found
                        .into_iter()
                        .filter(|r| r.state == PortState::Open)
                        .map(|r| r.addr)
                        .collect(),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "port sweep for TLS/HTTP checks failed");
                    Some(Vec::new())
                }
            }
        } else {
            None
        };

    let server_name = |ip: &IpAddr| target.hostname.clone().unwrap_or_else(|| ip.to_string());

    if checks.contains(&CheckKind::Tls) {
        let endpoints: Vec<SocketAddr> = match &discovered {
            Some(obs) => obs
                .iter()
                .filter(|o| o.tls)
                .filter_map(|o| Some(SocketAddr::new(o.ip.parse().ok()?, o.port)))
                .collect(),
            None => match &job_open {
                Some(open) => open.clone(),
                None => endpoints_for(target, &[443], policy),
            },
        };
        for ep in endpoints {
            match tls::analyze(ep.ip(), ep.port(), &server_name(&ep.ip()), &opts.tls).await {
                Ok(obs) => records.push(record(Observation::Tls(obs))),
                Err(e) => tracing::info!(endpoint = %ep, error = %e, "TLS check skipped"),
            }
        }
    }

    if checks.contains(&CheckKind::Http) {
        let urls: Vec<(SocketAddr, bool)> = match &discovered {
            Some(obs) => obs
                .iter()
                .filter(|o| matches!(o.service.as_deref(), Some("http" | "https")))
                .filter_map(|o| {
                    Some((
                        SocketAddr::new(o.ip.parse().ok()?, o.port),
                        o.service.as_deref() == Some("https"),
                    ))
                })
                .collect(),
            None => {
                let mut v = Vec::new();
                let explicit = target.port.is_some() || job_open.is_some();
                let candidates = match &job_open {
                    Some(open) => open.clone(),
                    None => endpoints_for(target, &[80, 443], policy),
                };
                for ep in candidates {
                    let https = if explicit {
                        http::speaks_tls(ep, opts.http_timeout).await
                    } else {
                        ep.port() == 443
                    };
                    v.push((ep, https));
                }
                v
            }
        };
        for (ep, https) in urls {
            let host = server_name(&ep.ip());
            match http::check(ep, &host, https, opts.http_timeout).await {
                Ok(obs) => records.push(record(Observation::Http(obs))),
                Err(e) => tracing::info!(endpoint = %ep, error = %e, "HTTP check skipped"),
            }
        }
    }

    if checks.contains(&CheckKind::Dns) {
        match (&target.hostname, opts.nameserver) {
            (Some(domain), Some(ns)) => match dns::check(domain, ns, opts.dns_timeout).await {
                Ok(obs) => records.push(record(Observation::Dns(obs))),
                Err(e) => tracing::warn!(%domain, error = %e, "DNS check failed"),
            },
            (None, _) => tracing::info!(asset = %target.asset, "DNS check needs a host name"),
            (Some(domain), None) => {
                tracing::warn!(%domain, "DNS check needs an explicit nameserver")
            }
        }
    }
    records
}

/// `host:port` endpoints for checks that run without a port scan.
fn endpoints_for(
    target: &AuthorizedTarget,
    defaults: &[u16],
    policy: &ScopePolicy,
) -> Vec<SocketAddr> {
    let ports: Vec<u16> = match target.port {
        Some(p) => vec![p],
        None => defaults.to_vec(),
    };
    target
        .addrs
        .iter()
        .flat_map(|ip| ports.iter().map(move |p| SocketAddr::new(*ip, *p)))
        .filter(|ep| policy.allows_port(ep.port()))
        .collect()
}

/// Connect scan plus service identification of the open ports.
pub async fn scan_ports(
    addrs: &[IpAddr],
    ports: &[u16],
    opts: &ScanOptions,
) -> Vec<PortObservation> {
    let found = match ports::connect_scan(addrs, ports, &opts.connect, opts.progress.clone()).await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "port scan failed");
            return Vec::new();
        }
    };
    let open: Vec<SocketAddr> = found
        .iter()
        .filter(|r| r.state == PortState::Open)
        .map(|r| r.addr)
        .collect();
    let mut infos = std::collections::HashMap::new();
    if opts.banners && !open.is_empty() {
        let sem = Arc::new(tokio::sync::Semaphore::new(opts.banner_concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for addr in open {
            let (sem, wait) = (sem.clone(), opts.banner_timeout);
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.ok();
                (addr, banner::identify(addr, wait).await)
            });
        }
        while let Some(res) = set.join_next().await {
            match res {
                Ok((addr, info)) => {
                    infos.insert(addr, info);
                }
                Err(e) => tracing::error!(error = %e, "banner task failed"),
            }
        }
    }
    // Filtered ports are not reported: on a firewalled host they would be thousands of non-facts.
    found
        .into_iter()
        .filter(|r| r.state == PortState::Open)
        .map(|r| {
            let info = infos.remove(&r.addr).unwrap_or_default();
            PortObservation {
                ip: r.addr.ip().to_string(),
                port: r.addr.port(),
                state: r.state,
                service: info.service,
                product: info.product,
                banner: info.banner,
                tls: info.tls,
            }
        })
        .collect()
}

/// Unique checks in canonical order (ports first: its results drive TLS and HTTP).
pub fn normalize_checks(checks: &[CheckKind]) -> Vec<CheckKind> {
    [
        CheckKind::Ports,
        CheckKind::Tls,
        CheckKind::Http,
        CheckKind::Dns,
    ]
    .into_iter()
    .filter(|c| checks.contains(c))
    .collect()
}
