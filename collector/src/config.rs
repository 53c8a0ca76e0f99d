//! Collector configuration: TOML file with defaults, validated before use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{CheckKind, JobPush, JobSpec, PortRange, Scope, TenantId};

use crate::schedule::{JobSchedule, ScheduledJob, parse_cron, parse_offset, parse_windows};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Invalid or unreadable configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or malformed.
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Parses a human duration such as `30d`, `15s` or `1h 30m`.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|e| invalid(key, format!("{value:?}: {e}")))
}

/// Parses `80`, `8000-8100` or a comma-separated list of those.
pub fn parse_ports(key: &str, value: &str) -> Result<Vec<PortRange>, ConfigError> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid(key, format!("{part:?} is not a port or port range")))
        };
        let (start, end) = (parse(a)?, parse(b)?);
        if start > end {
            return Err(invalid(key, format!("{part:?}: range runs backwards")));
        }
        out.push(PortRange { start, end });
    }
    if out.is_empty() {
        return Err(invalid(key, "no ports given"));
    }
    Ok(out)
}

/// The whole collector configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// UDP address the QUIC endpoint listens on.
    pub listen: SocketAddr,
    /// Directory holding the database and the admin socket.
    pub data_dir: PathBuf,
    /// Names and addresses agents use to reach the collector (server certificate SANs).
    pub server_names: Vec<String>,
    /// Where to serve Prometheus metrics over HTTP; empty string disables.
    pub metrics_listen: String,
    /// Where to serve the console HTTP API (`/api/v1`); empty string disables.
    pub console_listen: String,
    /// Reverse proxies in front of the console whose `X-Forwarded-For` is believed.
    pub console_trusted_proxies: Vec<String>,
    /// Lifetime of agent certificates.
    pub agent_cert_lifetime: String,
    /// Default lifetime of enrolment tokens.
    pub token_ttl: String,
    /// Interval at which idle agents send heartbeats.
    pub heartbeat_interval: String,
    /// Connection idle timeout.
    pub idle_timeout: String,
    /// Largest frame accepted from an agent, in bytes.
    pub max_frame_bytes: usize,
    /// A dispatched scheduled run with no report after this long is marked failed.
    pub run_timeout: String,
    /// Finished scan runs older than this are deleted from the run history.
    pub run_retention: String,
    /// Directory of additional rule files (`*.toml`) loaded after the shipped
    /// rules; empty means the shipped rules only.
    pub rules_dir: String,
    /// Evaluate rules, track findings and changes and index them while ingesting;
    /// `false` runs an ingest-only collector that catches up when re-enabled.
    pub findings_pipeline: bool,
    /// Compliance report generation and retention (`[reports]`).
    pub reports: crate::reports::config::ReportsConfig,
    /// NIS2 incident deadline reminders (`[incidents]`).
    pub incidents: crate::reports::config::IncidentsConfig,
    /// Alert dispatcher and SMTP relay (`[alerts]`).
    pub alerts: crate::alerts::AlertsConfig,
    /// Storage backend: embedded (default) or scale-out (`docs/scaleout.md`).
    pub backend: crate::backend::BackendConfig,
    /// Receive buffer requested for the QUIC UDP socket, in bytes (0: the OS default).
    pub udp_receive_buffer: usize,
    /// Batches verified and stored at once (0: one per CPU); more wait, unread.
    pub ingest_concurrency: usize,
    /// Per-tenant scope and jobs.
    pub tenants: BTreeMap<String, TenantConfig>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
            data_dir: PathBuf::from("vigil-data/collector"),
            server_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            metrics_listen: "127.0.0.1:9464".into(),
            console_listen: "127.0.0.1:8080".into(),
            console_trusted_proxies: Vec::new(),
            rules_dir: String::new(),
            findings_pipeline: true,
            udp_receive_buffer: 8 * 1024 * 1024,
            ingest_concurrency: 0,
            agent_cert_lifetime: "30d".into(),
            token_ttl: "24h".into(),
            heartbeat_interval: "15s".into(),
            idle_timeout: "30s".into(),
            max_frame_bytes: protocol::DEFAULT_MAX_FRAME,
            run_timeout: "6h".into(),
            run_retention: "30d".into(),
            reports: Default::default(),
            incidents: Default::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            backend: crate::backend::BackendConfig::default(),
            tenants: BTreeMap::new(),
        }
    }
}

/// Scope and scan jobs of one tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// What agents of this tenant may scan.
    pub scope: ScopeConfig,
    /// Jobs pushed to every agent of the tenant.
    pub jobs: Vec<JobConfig>,
}

/// Authorised scope as written in the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeConfig {
    /// CIDR blocks.
    pub cidrs: Vec<String>,
    /// Host names, `*.example.com` for subdomains.
    pub hostnames: Vec<String>,
    /// Port list such as `"1-1024,3389"`.
    pub ports: String,
}

/// One scan job as written in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Job identifier, unique within the tenant.
    pub id: String,
    /// Targets: host names, addresses or CIDRs inside the scope.
    pub targets: Vec<String>,
    /// Ports to probe, e.g. `"22,80,443"`.
    #[serde(default)]
    pub ports: Option<String>,
    /// Checks to run.
    pub checks: Vec<CheckKind>,
    /// Repeat interval such as `"10m"`, run by the agent on its own clock;
    /// absent (and no `schedule`) runs once per connection.
    #[serde(default)]
    pub every: Option<String>,
    /// Cron expression, seconds field first (`"0 0 */6 * * *"`): the collector
    /// schedules the job and sends each run to the tenant's agents.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Allowed start windows of scheduled runs, e.g. `"Mon-Fri 22:00-06:00"`.
    #[serde(default)]
    pub windows: Vec<String>,
    /// Fixed UTC offset (`"+02:00"`) the schedule and windows are read in; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// Validated settings derived from [`CollectorConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The raw configuration.
    pub raw: CollectorConfig,
    /// Parsed metrics address.
    pub metrics_listen: Option<SocketAddr>,
    /// Parsed console API address.
    pub console_listen: Option<SocketAddr>,
    /// Parsed trusted proxy addresses of the console.
    pub console_trusted_proxies: Vec<std::net::IpAddr>,
    /// Parsed agent certificate lifetime.
    pub agent_cert_lifetime: Duration,
    /// Parsed token lifetime.
    pub token_ttl: Duration,
    /// Parsed heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Parsed idle timeout.
    pub idle_timeout: Duration,
    /// Job push per tenant (the jobs agents run on their own: `every` or once).
    pub jobs: BTreeMap<TenantId, JobPush>,
    /// Collector-scheduled jobs per tenant (`schedule`).
    pub schedules: BTreeMap<TenantId, Vec<ScheduledJob>>,
    /// Parsed run timeout.
    pub run_timeout: Duration,
    /// Parsed run retention.
    pub run_retention: Duration,
    /// Directory of user rule files, if configured.
    pub rules_dir: Option<PathBuf>,
    /// Parsed alert dispatcher settings.
    pub alerts: crate::alerts::AlertSettings,
}

impl Settings {
    /// The shipped rules plus any in `rules_dir`; errors name file, line and column.
    pub fn load_rules(&self) -> Result<rules::RuleSet, rules::RuleError> {
        match &self.rules_dir {
            Some(dir) => rules::RuleSet::builtin_plus_dir(dir),
            None => rules::RuleSet::builtin(),
        }
    }
}

impl CollectorConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks every value and derives the typed settings.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let metrics_listen = match self.metrics_listen.trim() {
            "" => None,
            s => Some(
                s.parse()
                    .map_err(|e| invalid("metrics_listen", format!("{s:?}: {e}")))?,
            ),
        };
        let console_listen = match self.console_listen.trim() {
            "" => None,
            s => Some(
                s.parse()
                    .map_err(|e| invalid("console_listen", format!("{s:?}: {e}")))?,
            ),
        };
        let console_trusted_proxies = self
            .console_trusted_proxies
            .iter()
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|e| invalid("console_trusted_proxies", format!("{s:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let agent_cert_lifetime = parse_duration("agent_cert_lifetime", &self.agent_cert_lifetime)?;
        if agent_cert_lifetime < Duration::from_secs(60) {
            return Err(invalid("agent_cert_lifetime", "must be at least 1m"));
        }
        let token_ttl = parse_duration("token_ttl", &self.token_ttl)?;
        let heartbeat_interval = parse_duration("heartbeat_interval", &self.heartbeat_interval)?;
        let idle_timeout = parse_duration("idle_timeout", &self.idle_timeout)?;
        if idle_timeout <= heartbeat_interval {
            return Err(invalid(
                "idle_timeout",
                "must be longer than heartbeat_interval",
            ));
        }
        if self.server_names.is_empty() {
            return Err(invalid("server_names", "at least one name is required"));
        }
        if self.ingest_concurrency > 1024 {
            return Err(invalid("ingest_concurrency", "must be at most 1024"));
        }
        if self.max_frame_bytes < 64 * 1024 {
            return Err(invalid("max_frame_bytes", "must be at least 65536"));
        }
        let run_timeout = parse_duration("run_timeout", &self.run_timeout)?;
        if run_timeout < Duration::from_secs(1) {
            return Err(invalid("run_timeout", "must be at least 1s"));
        }
        let run_retention = parse_duration("run_retention", &self.run_retention)?;
        self.reports.validate()?;
        self.incidents.validate()?;
        self.backend.validate()?;
        let mut jobs = BTreeMap::new();
        let mut schedules = BTreeMap::new();
        for (name, tenant) in &self.tenants {
            let id = TenantId::new(name.as_str())
                .map_err(|e| invalid(format!("tenants.{name}"), e.to_string()))?;
            let (push, scheduled) = tenant.job_push(name, &id)?;
            jobs.insert(id.clone(), push);
            if !scheduled.is_empty() {
                schedules.insert(id, scheduled);
            }
        }
        let rules_dir = match self.rules_dir.trim() {
            "" => None,
            d => {
                let dir = PathBuf::from(d);
                if !dir.is_dir() {
                    return Err(invalid("rules_dir", format!("{d:?} is not a directory")));
                }
                Some(dir)
            }
        };
        let alerts = self.alerts.validate()?;
        Ok(Settings {
            alerts,
            rules_dir,
            metrics_listen,
            console_listen,
            console_trusted_proxies,
            agent_cert_lifetime,
            token_ttl,
            heartbeat_interval,
            idle_timeout,
            jobs,
            schedules,
            run_timeout,
            run_retention,
            raw: self,
        })
    }
}

impl TenantConfig {
    /// Splits the tenant's jobs into the push agents run themselves and the
    /// collector-scheduled ones.
    fn job_push(
        &self,
        tenant: &str,
        tenant_id: &TenantId,
    ) -> Result<(JobPush, Vec<ScheduledJob>), ConfigError> {
        let key = |k: &str| format!("tenants.{tenant}.{k}");
        for cidr in &self.scope.cidrs {
            cidr.parse::<ipnet::IpNet>()
                .map_err(|e| invalid(key("scope.cidrs"), format!("{cidr:?}: {e}")))?;
        }
        let ports = if self.scope.ports.trim().is_empty() {
            Vec::new()
        } else {
            parse_ports(&key("scope.ports"), &self.scope.ports)?
        };
        let scope = Scope {
            cidrs: self.scope.cidrs.clone(),
            hostnames: self.scope.hostnames.clone(),
            ports,
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut jobs = Vec::new();
        let mut scheduled = Vec::new();
        for job in &self.jobs {
            if !seen.insert(job.id.clone()) {
                return Err(invalid(
                    key("jobs"),
                    format!("duplicate job id {:?}", job.id),
                ));
            }
            if job.targets.is_empty() || job.checks.is_empty() {
                return Err(invalid(
                    key(&format!("jobs.{}", job.id)),
                    "needs at least one target and one check",
                ));
            }
            let ports = match &job.ports {
                Some(p) => parse_ports(&key(&format!("jobs.{}.ports", job.id)), p)?,
                None => Vec::new(),
            };
            let every_secs = job
                .every
                .as_deref()
                .map(|e| parse_duration(&key(&format!("jobs.{}.every", job.id)), e))
                .transpose()?
                .map(|d| d.as_secs().max(1));
            let spec = JobSpec {
                job_id: job.id.clone(),
                targets: job.targets.clone(),
                ports,
                checks: job.checks.clone(),
                every_secs,
            };
            match &job.schedule {
                Some(expr) => {
                    let jkey = |k: &str| key(&format!("jobs.{}.{k}", job.id));
                    if job.every.is_some() {
                        return Err(invalid(
                            jkey("every"),
                            "a job has either `every` (agent-timed) or `schedule` (collector-scheduled), not both",
                        ));
                    }
                    // Each part is parsed on its own so the error names the setting at fault.
                    let cron =
                        parse_cron(expr).map_err(|e| invalid(jkey("schedule"), e.to_string()))?;
                    let windows = parse_windows(&job.windows)
                        .map_err(|e| invalid(jkey("windows"), e.to_string()))?;
                    let offset = parse_offset(job.timezone.as_deref().unwrap_or("UTC"))
                        .map_err(|e| invalid(jkey("timezone"), e.to_string()))?;
                    let schedule = JobSchedule::new(cron, windows, offset)
                        .map_err(|e| invalid(jkey("schedule"), e.to_string()))?;
                    scheduled.push(ScheduledJob {
                        tenant: tenant_id.clone(),
                        spec,
                        schedule,
                    });
                }
                None => {
                    if !job.windows.is_empty() || job.timezone.is_some() {
                        return Err(invalid(
                            key(&format!("jobs.{}.windows", job.id)),
                            "windows and timezone apply to collector-scheduled jobs only; add a `schedule`",
                        ));
                    }
                    jobs.push(spec);
                }
            }
        }
        Ok((JobPush { scope, jobs }, scheduled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let s = CollectorConfig::default().validate().unwrap();
        assert_eq!(s.agent_cert_lifetime, Duration::from_secs(30 * 86400));
        assert!(s.metrics_listen.is_some());
    }

    #[test]
    fn example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.toml");
        let s = CollectorConfig::load(&path).unwrap().validate().unwrap();
        assert!(!s.jobs.is_empty());
        // The example documents collector-scheduled jobs too.
        assert!(
            s.schedules
                .values()
                .flatten()
                .any(|j| j.schedule.windows().len() == 2)
        );
    }

    fn job_error(extra: &str) -> String {
        let text = format!(
            r#"
            [tenants.acme.scope]
            cidrs = ["10.0.0.0/24"]
            ports = "1-1024"
            [[tenants.acme.jobs]]
            id = "nightly"
            targets = ["10.0.0.1"]
            checks = ["ports"]
            {extra}
            "#
        );
        let c: CollectorConfig = toml::from_str(&text).unwrap();
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn scheduled_jobs_are_kept_out_of_the_push() {
        let c: CollectorConfig = toml::from_str(
            r#"
            [tenants.acme.scope]
            cidrs = ["10.0.0.0/24"]
            ports = "1-1024"
            [[tenants.acme.jobs]]
            id = "agent-timed"
            targets = ["10.0.0.1"]
            checks = ["ports"]
            every = "10m"
            [[tenants.acme.jobs]]
            id = "nightly"
            targets = ["10.0.0.2"]
            checks = ["tls"]
            schedule = "0 0 2 * * *"
            windows = ["Mon-Fri 22:00-06:00", "Sat-Sun 00:00-24:00"]
            timezone = "+02:00"
            "#,
        )
        .unwrap();
        let s = c.validate().unwrap();
        let acme = TenantId::new("acme").unwrap();
        let pushed: Vec<&str> = s.jobs[&acme]
            .jobs
            .iter()
            .map(|j| j.job_id.as_str())
            .collect();
        assert_eq!(pushed, ["agent-timed"]);
        let scheduled = &s.schedules[&acme];
        assert_eq!(scheduled.len(), 1);
        assert_eq!(scheduled[0].spec.job_id, "nightly");
        assert_eq!(scheduled[0].spec.every_secs, None);
        assert_eq!(scheduled[0].schedule.offset().local_minus_utc(), 7200);
        assert_eq!(scheduled[0].schedule.windows().len(), 2);
        assert_eq!(s.run_timeout, Duration::from_secs(6 * 3600));
    }

    #[test]
    fn bad_schedule_settings_name_the_setting() {
        let e = job_error(r#"schedule = "0 */6 * * *""#);
        assert!(
            e.contains("tenants.acme.jobs.nightly.schedule") && e.contains("seconds field first"),
            "{e}"
        );
        let e = job_error("schedule = \"@daily\"\nevery = \"1h\"");
        assert!(
            e.contains("tenants.acme.jobs.nightly.every") && e.contains("not both"),
            "{e}"
        );
        let e = job_error("schedule = \"@daily\"\nwindows = [\"Mon-Fri 22:00\"]");
        assert!(e.contains("tenants.acme.jobs.nightly.windows"), "{e}");
        let e = job_error("schedule = \"@daily\"\ntimezone = \"Europe/Berlin\"");
        assert!(
            e.contains("tenants.acme.jobs.nightly.timezone") && e.contains("UTC offset"),
            "{e}"
        );
        let e = job_error(r#"windows = ["Mon 01:00-02:00"]"#);
        assert!(
            e.contains("tenants.acme.jobs.nightly.windows") && e.contains("add a `schedule`"),
            "{e}"
        );
        let c = CollectorConfig {
            run_timeout: "0s".into(),
            ..CollectorConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("run_timeout")
        );
    }

    #[test]
    fn user_rules_directory_is_loaded_and_its_errors_located() {
        let dir = tempfile::tempdir().unwrap();
        let rule = r#"[[rule]]
id = "custom.http.server-header"
title = "Server header present"
severity = "info"
applies_to = "http"
condition = 'exists(http.server)'
evidence = "{http.url} sends Server: {http.server}"
description = "House rule: no Server header at all."
remediation = "Remove the Server header."

[rule.mappings]
iso27001 = ["A.8.9"]
"#;
        std::fs::write(dir.path().join("house.toml"), rule).unwrap();
        let settings = CollectorConfig {
            rules_dir: dir.path().display().to_string(),
            ..CollectorConfig::default()
        }
        .validate()
        .unwrap();
        let set = settings.load_rules().unwrap();
        let builtin = rules::RuleSet::builtin().unwrap().rules().len();
        assert_eq!(set.rules().len(), builtin + 1);
        assert!(set.rule("custom.http.server-header").is_some());

        std::fs::write(
            dir.path().join("broken.toml"),
            rule.replace("custom.http.server-header", "custom.other")
                .replace("exists(http.server)", "http.servr == absent"),
        )
        .unwrap();
        let err = settings.load_rules().unwrap_err().to_string();
        assert!(err.contains("broken.toml:6:"), "{err}");
        let missing = CollectorConfig {
            rules_dir: dir.path().join("nope").display().to_string(),
            ..CollectorConfig::default()
        };
        assert!(
            missing
                .validate()
                .unwrap_err()
                .to_string()
                .contains("rules_dir")
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let c: CollectorConfig = toml::from_str(
            r#"
            [tenants.acme.scope]
            cidrs = ["10.0.0.0/33"]
            "#,
        )
        .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("tenants.acme.scope.cidrs"), "{err}");
        assert!(toml::from_str::<CollectorConfig>("listen = 5").is_err());
        assert!(toml::from_str::<CollectorConfig>("bogus = 1").is_err());
        assert!(parse_ports("p", "10-5").is_err());
        assert!(parse_ports("p", "0").is_err());
        assert_eq!(
            parse_ports("p", "22, 80-81").unwrap(),
            vec![
                PortRange { start: 22, end: 22 },
                PortRange { start: 80, end: 81 }
            ]
        );
    }
}
