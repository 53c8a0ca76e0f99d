//! Administrative operations: tokens, agents, revocation and statistics.
//!
//! The same operations serve the in-process API, the running collector's admin
//! socket and the offline CLI (which opens the database directly when no
//! collector is running).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use console::AccountStore;
use protocol::{AgentId, TenantId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::console_api::{self, AccountRequest};
use crate::findings::FindingError;
use crate::findings::pipeline::Pipeline;
use crate::findings::requests::FindingsRequest;
use crate::pki::{Pki, PkiError};
use crate::scheduler::{RunNowError, ScheduleSummary, Scheduler, Schedules};
use crate::store::{
    AgentRecord, DeliveryCounts, RunFilter, RunRecord, Store, StoreError, TokenRecord,
};
use crate::time::{Clock, now_ms};

/// Failures of administrative operations.
#[derive(Debug, Error)]
pub enum AdminError {
    /// Storage failed or the subject does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// CA creation failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The admin socket could not be reached or answered nonsense.
    #[error("admin socket: {0}")]
    Socket(String),
    /// The running collector refused the request.
    #[error("{0}")]
    Refused(String),
    /// A findings, change, posture or search operation failed.
    #[error(transparent)]
    Findings(#[from] FindingError),
    /// An on-demand run could not be started.
    #[error(transparent)]
    RunNow(#[from] RunNowError),
}

/// SHA-256 of an enrolment token: only this is stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// A freshly created enrolment token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The secret to hand to the agent (shown once, never stored).
    pub token: String,
    /// Tenant it enrols into.
    pub tenant: TenantId,
    /// Expiry, ms since the epoch.
    pub expires_ms: u64,
    /// Server CA fingerprint the agent must pin.
    pub ca_fingerprint: String,
}

/// An agent with its delivery counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSummary {
    /// The stored agent record.
    #[serde(flatten)]
    pub record: AgentRecord,
    /// Delivery counters.
    pub delivery: DeliveryCounts,
    /// Whether it is connected right now (only known to a running collector).
    pub online: bool,
}

/// A stored record with where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecentRecord {
    /// Agent that sent it.
    pub agent: AgentId,
    /// Sequence of its batch.
    pub sequence: u64,
    /// When the collector received the batch, ms since the epoch.
    pub received_ms: u64,
    /// The record.
    pub record: protocol::Record,
}

/// Totals for one tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantStats {
    /// Enrolled agents.
    pub agents: u64,
    /// Revoked agents.
    pub revoked: u64,
    /// Batches stored.
    pub batches: u64,
    /// Records stored.
    pub records: u64,
}

/// A request to the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Create an enrolment token.
    CreateToken {
        /// Tenant to enrol into.
        tenant: TenantId,
        /// Lifetime in seconds; the configured default when absent.
        ttl_secs: Option<u64>,
    },
    /// List agents.
    ListAgents {
        /// Only this tenant's agents.
        tenant: Option<TenantId>,
    },
    /// Revoke an agent.
    RevokeAgent {
        /// The agent.
        agent: AgentId,
    },
    /// Per-tenant totals.
    Stats,
    /// The newest stored records of a tenant.
    Records {
        /// Tenant to read.
        tenant: TenantId,
        /// How many records at most.
        limit: usize,
    },
    /// The server CA fingerprint.
    Fingerprint,
    /// Scheduled scan runs, newest first.
    ListRuns {
        /// Only this tenant's runs.
        tenant: Option<TenantId>,
        /// Only this agent's runs.
        agent: Option<AgentId>,
        /// At most this many.
        limit: Option<usize>,
    },
    /// Scheduled jobs with their next due time.
    ListSchedules {
        /// Only this tenant's schedules.
        tenant: Option<TenantId>,
    },
    /// Queue a run of a scheduled job now on every agent of the tenant.
    StartRun {
        /// The tenant.
        tenant: TenantId,
        /// The scheduled job.
        job_id: String,
    },
    /// Findings search, suppression, change events, baselines, posture and the index.
    Findings(FindingsRequest),
    /// Console accounts and the audit log.
    Accounts(AccountRequest),
    /// Compliance reports.
    Report(crate::compliance_api::ReportRequest),
}

/// Connections of agents currently online, so revocation can cut them at once.
#[derive(Default)]
pub struct LiveAgents {
    conns: Mutex<HashMap<AgentId, quinn::Connection>>,
}

impl LiveAgents {
    /// Registers an agent's connection, replacing an older one.
    pub fn insert(&self, agent: AgentId, conn: quinn::Connection) {
        if let Ok(mut m) = self.conns.lock()
            && let Some(old) = m.insert(agent, conn)
        {
            old.close(0u32.into(), b"superseded by a newer connection");
        }
    }

    /// Forgets an agent's connection if it is still this one.
    pub fn remove(&self, agent: &AgentId, conn: &quinn::Connection) {
        if let Ok(mut m) = self.conns.lock()
            && m.get(agent)
                .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            m.remove(agent);
        }
    }

    /// Whether the agent is connected.
    pub fn is_online(&self, agent: &AgentId) -> bool {
        self.conns
            .lock()
            .map(|m| m.contains_key(agent))
            .unwrap_or(false)
    }

    /// Closes the agent's connection, if any.
    pub fn disconnect(&self, agent: &AgentId, reason: &[u8]) {
        if let Ok(mut m) = self.conns.lock()
            && let Some(c) = m.remove(agent)
        {
            c.close(1u32.into(), reason);
        }
    }
}

/// Administrative operations over the collector state.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
    pki: Arc<Pki>,
    default_ttl: Duration,
    live: Option<Arc<LiveAgents>>,
    schedules: Option<(Arc<Schedules>, Arc<dyn Clock>)>,
    scheduler: Option<Arc<Scheduler>>,
    findings: Option<Arc<Pipeline>>,
    accounts: Option<Arc<dyn AccountStore>>,
    reports: Option<Arc<crate::reports::ReportService>>,
}

impl Admin {
    /// Operations over `store`; `live` is present inside a running collector.
    pub fn new(
        store: Arc<dyn Store>,
        pki: Arc<Pki>,
        default_ttl: Duration,
        live: Option<Arc<LiveAgents>>,
    ) -> Self {
        Self {
            store,
            pki,
            default_ttl,
            live,
            schedules: None,
            scheduler: None,
            findings: None,
            accounts: None,
            reports: None,
        }
    }

    /// Adds the console account store for `Accounts` requests and CLI audit entries.
    pub fn with_accounts(mut self, accounts: Arc<dyn AccountStore>) -> Self {
        self.accounts = Some(accounts);
        self
    }

    /// Records a CLI action in the tenant's audit log when accounts are attached.
    fn audit_cli(
        &self,
        tenant: &TenantId,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), AdminError> {
        match &self.accounts {
            Some(a) => console_api::audit_cli(a.as_ref(), tenant, action, target, details),
            None => Ok(()),
        }
    }

    /// Adds the report service for `Report` requests.
    pub fn with_reports(mut self, reports: Arc<crate::reports::ReportService>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// Adds the findings pipeline for `Findings` requests.
    pub fn with_findings(mut self, findings: Arc<Pipeline>) -> Self {
        self.findings = Some(findings);
        self
    }

    /// Adds the schedule table, read as of `clock`, for `ListSchedules`.
    pub fn with_schedules(mut self, schedules: Arc<Schedules>, clock: Arc<dyn Clock>) -> Self {
        self.schedules = Some((schedules, clock));
        self
    }

    /// Adds the running scheduler, for on-demand runs (and its schedule table).
    pub fn with_scheduler(self, scheduler: Arc<Scheduler>) -> Self {
        let mut admin = self.with_schedules(scheduler.schedules(), scheduler.clock());
        admin.scheduler = Some(scheduler);
        admin
    }

    /// Queues a run of a scheduled job now; needs a running collector.
    pub fn start_run(&self, tenant: &TenantId, job_id: &str) -> Result<Vec<RunRecord>, AdminError> {
        match &self.scheduler {
            Some(s) => Ok(s.run_now(tenant, job_id)?),
            None => Err(AdminError::Refused(
                "on-demand runs need a running collector".into(),
            )),
        }
    }

    /// Scheduled scan runs matching `filter`, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, AdminError> {
        Ok(self.store.runs(filter)?)
    }

    /// Scheduled jobs with their next due time (none when no schedule table was given).
    pub fn list_schedules(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<ScheduleSummary>, AdminError> {
        match &self.schedules {
            Some((s, clock)) => Ok(s.summaries(self.store.as_ref(), tenant, clock.now_ms())?),
            None => Ok(Vec::new()),
        }
    }

    /// Creates a single-use enrolment token (and the tenant CA on first use).
    pub fn create_token(
        &self,
        tenant: &TenantId,
        ttl: Option<Duration>,
    ) -> Result<CreatedToken, AdminError> {
        self.pki.tenant_ca(tenant)?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| AdminError::Socket(e.to_string()))?;
        let token = format!("vgt_{}", hex::encode(secret));
        let now = now_ms();
        let ttl = ttl.unwrap_or(self.default_ttl);
        let record = TokenRecord {
            tenant: tenant.clone(),
            created_ms: now,
            expires_ms: now.saturating_add(ttl.as_millis() as u64),
        };
        self.store.put_token(token_hash(&token), &record)?;
        self.store.flush()?;
        Ok(CreatedToken {
            token,
            tenant: tenant.clone(),
            expires_ms: record.expires_ms,
            ca_fingerprint: self.pki.server_ca_fingerprint(),
        })
    }

    /// Agents with their delivery counters.
    pub fn list_agents(&self, tenant: Option<&TenantId>) -> Result<Vec<AgentSummary>, AdminError> {
        let mut out = Vec::new();
        for record in self.store.agents(tenant)? {
            let delivery = self.store.delivery(&record.tenant, &record.agent)?;
            let online = self
                .live
                .as_ref()
                .is_some_and(|l| l.is_online(&record.agent));
            out.push(AgentSummary {
                record,
                delivery,
                online,
            });
        }
        Ok(out)
    }

    /// Revokes an agent: refused at its next handshake, and disconnected now.
    pub fn revoke_agent(&self, agent: &AgentId) -> Result<AgentRecord, AdminError> {
        let rec = self.store.revoke_agent(agent, now_ms())?;
        if let Some(live) = &self.live {
            live.disconnect(agent, b"agent revoked");
        }
        Ok(rec)
    }

    /// Totals per tenant.
    pub fn stats(&self) -> Result<BTreeMap<TenantId, TenantStats>, AdminError> {
        let mut out: BTreeMap<TenantId, TenantStats> = BTreeMap::new();
        for rec in self.store.agents(None)? {
            let s = out.entry(rec.tenant.clone()).or_default();
            s.agents += 1;
            s.revoked += u64::from(rec.revoked_ms.is_some());
        }
        for (tenant, _, c) in self.store.all_deliveries()? {
            let s = out.entry(tenant).or_default();
            s.batches += c.batches;
            s.records += c.records;
        }
        Ok(out)
    }

    /// The newest `limit` records of a tenant, newest batch first, with their agent.
    pub fn recent_records(
        &self,
        tenant: &TenantId,
        limit: usize,
    ) -> Result<Vec<RecentRecord>, AdminError> {
        let mut batches = Vec::new();
        for (t, agent, counts) in self.store.all_deliveries()? {
            if &t != tenant {
                continue;
            }
            // Enough trailing batches to fill `limit` even if each holds one record.
            let from = counts.last_sequence.saturating_sub(limit as u64);
            batches.extend(self.store.batches(&t, &agent, from)?);
        }
        batches.sort_by_key(|b| std::cmp::Reverse((b.received_ms, b.sequence)));
        let mut out = Vec::new();
        for b in batches {
            let signed = protocol::SignedBatch {
                body: b.body,
                signature: b.signature,
            };
            // Verified on ingest; decoding alone is enough for display.
            let Ok(body) = signed.decode_unverified() else {
                continue;
            };
            for record in body.records.into_iter().rev() {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(RecentRecord {
                    agent: b.agent.clone(),
                    sequence: b.sequence,
                    received_ms: b.received_ms,
                    record,
                });
            }
        }
        Ok(out)
    }

    /// Runs one request, returning its JSON answer.
    pub fn handle(&self, req: AdminRequest) -> Result<serde_json::Value, AdminError> {
        let json = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| AdminError::Socket(e.to_string()))
        };
        match req {
            AdminRequest::CreateToken { tenant, ttl_secs } => {
                let created = self.create_token(&tenant, ttl_secs.map(Duration::from_secs))?;
                let details = serde_json::json!({ "expires_ms": created.expires_ms });
                self.audit_cli(&tenant, "token.create", "enrolment-token", details)?;
                json(serde_json::to_value(created))
            }
            AdminRequest::ListAgents { tenant } => {
                json(serde_json::to_value(self.list_agents(tenant.as_ref())?))
            }
            AdminRequest::RevokeAgent { agent } => {
                let rec = self.revoke_agent(&agent)?;
                self.audit_cli(
                    &rec.tenant,
                    "agent.revoke",
                    agent.as_str(),
                    serde_json::json!({}),
                )?;
                json(serde_json::to_value(rec))
            }
            AdminRequest::Stats => json(serde_json::to_value(self.stats()?)),
            AdminRequest::Records { tenant, limit } => {
                json(serde_json::to_value(self.recent_records(&tenant, limit)?))
            }
            AdminRequest::Fingerprint => {
                Ok(serde_json::Value::String(self.pki.server_ca_fingerprint()))
            }
            AdminRequest::ListRuns {
                tenant,
                agent,
                limit,
            } => json(serde_json::to_value(self.list_runs(&RunFilter {
                tenant,
                agent,
                limit,
            })?)),
            AdminRequest::ListSchedules { tenant } => {
                json(serde_json::to_value(self.list_schedules(tenant.as_ref())?))
            }
            AdminRequest::StartRun { tenant, job_id } => {
                let runs = self.start_run(&tenant, &job_id)?;
                let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
                self.audit_cli(
                    &tenant,
                    "run.start",
                    &job_id,
                    serde_json::json!({ "runs": ids }),
                )?;
                json(serde_json::to_value(runs))
            }
            AdminRequest::Findings(req) => match &self.findings {
                Some(f) => Ok(f.handle(&req)?),
                None => Err(AdminError::Refused(
                    "the findings pipeline is not available".into(),
                )),
            },
            AdminRequest::Report(req) => match &self.reports {
                Some(r) => {
                    let audit = match &req {
                        crate::compliance_api::ReportRequest::Create {
                            tenant,
                            framework,
                            format,
                        } => Some((tenant.clone(), framework.clone(), *format)),
                        _ => None,
                    };
                    let v = crate::compliance_api::handle(r, req)
                        .map_err(|e| AdminError::Refused(e.to_string()))?;
                    if let Some((tenant, framework, format)) = audit {
                        let id = v["id"].as_str().unwrap_or_default().to_string();
                        let details =
                            serde_json::json!({ "framework": framework, "format": format });
                        self.audit_cli(&tenant, "report.create", &id, details)?;
                    }
                    Ok(v)
                }
                None => Err(AdminError::Refused("reports need the sled store".into())),
            },
            AdminRequest::Accounts(req) => match &self.accounts {
                Some(a) => console_api::handle(a.as_ref(), req),
                None => Err(AdminError::Refused(
                    "console accounts need the sled store".into(),
                )),
            },
        }
    }
}
