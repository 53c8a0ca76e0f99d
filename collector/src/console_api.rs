//! Glue between the collector and the console crate: the collector implements
//! [`console::Operations`] with its [`Admin`] operations, gives the console its
//! account trees inside the same sled database, and serves the console router.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use console::api::SuppressionInput;
use console::audit::AuditDraft;
use console::{AccountStore, OpsError, SledAccounts};
use protocol::{AgentId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admin::{Admin, AdminError, AdminRequest};
use crate::config::TenantConfig;
use crate::findings::requests::FindingsRequest;
use crate::findings::{FindingError, SuppressionKind};
use crate::scheduler::RunNowError;
use crate::store::{RunFilter, Store};
use crate::time::now_ms;

/// The collector's operations as the console API sees them.
pub struct ConsoleOps {
    admin: Admin,
    store: Arc<dyn Store>,
    tenants: BTreeMap<String, TenantConfig>,
    alerts: Option<Arc<crate::alerts::AlertService>>,
}

impl ConsoleOps {
    /// Operations over a running collector's admin handle and store.
    pub fn new(admin: Admin, store: Arc<dyn Store>) -> Self {
        Self {
            admin,
            store,
            tenants: BTreeMap::new(),
            alerts: None,
        }
    }

    /// Serves the alerting endpoints from `alerts`.
    pub fn with_alerts(mut self, alerts: Arc<crate::alerts::AlertService>) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Adds the configured per-tenant scope and jobs, for the scope view.
    pub fn with_tenant_config(mut self, tenants: BTreeMap<String, TenantConfig>) -> Self {
        self.tenants = tenants;
        self
    }
}

fn ops_err(e: impl std::fmt::Display) -> OpsError {
    OpsError::Failed(e.to_string())
}

fn to_json(v: impl Serialize) -> Result<Value, OpsError> {
    serde_json::to_value(v).map_err(ops_err)
}

/// Keeps "not found" and "bad request" apart from internal failures, so the
/// API answers 404 / 400 for them.
fn findings_err(e: AdminError) -> OpsError {
    match e {
        AdminError::Findings(FindingError::NotFound(what)) => OpsError::NotFound(what),
        AdminError::Findings(e @ (FindingError::Invalid(_) | FindingError::Query(_))) => {
            OpsError::Invalid(e.to_string())
        }
        other => ops_err(other),
    }
}

impl ConsoleOps {
    fn findings(&self, req: FindingsRequest) -> Result<Value, OpsError> {
        self.admin
            .handle(AdminRequest::Findings(req))
            .map_err(findings_err)
    }
}

impl console::Operations for ConsoleOps {
    fn alerts(&self) -> Option<&dyn console::api::alerts::AlertOperations> {
        self.alerts
            .as_deref()
            .map(|a| a as &dyn console::api::alerts::AlertOperations)
    }

    fn list_agents(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        to_json(self.admin.list_agents(Some(tenant)).map_err(ops_err)?)
    }

    fn revoke_agent(&self, tenant: &TenantId, agent: &str) -> Result<Option<Value>, OpsError> {
        let Ok(agent) = AgentId::new(agent) else {
            return Ok(None);
        };
        // Only an agent of this tenant may be revoked through this tenant.
        match self.store.agent(&agent).map_err(ops_err)? {
            Some(rec) if &rec.tenant == tenant => {}
            _ => return Ok(None),
        }
        to_json(self.admin.revoke_agent(&agent).map_err(ops_err)?).map(Some)
    }

    fn create_token(&self, tenant: &TenantId, ttl: Option<Duration>) -> Result<Value, OpsError> {
        to_json(self.admin.create_token(tenant, ttl).map_err(ops_err)?)
    }

    fn stats(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        let all = self.admin.stats().map_err(ops_err)?;
        to_json(all.get(tenant).cloned().unwrap_or_default())
    }

    fn records(&self, tenant: &TenantId, limit: usize) -> Result<Value, OpsError> {
        to_json(self.admin.recent_records(tenant, limit).map_err(ops_err)?)
    }

    fn search_findings(
        &self,
        tenant: &TenantId,
        query: &str,
        limit: usize,
        offset: usize,
        facets: bool,
    ) -> Result<Value, OpsError> {
        self.findings(FindingsRequest::Search {
            tenant: tenant.clone(),
            query: query.to_string(),
            limit: Some(limit),
            offset: Some(offset),
            facets,
        })
    }

    fn finding(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        self.findings(FindingsRequest::Show {
            tenant: tenant.clone(),
            id: id.to_string(),
        })
    }

    fn set_suppression(
        &self,
        tenant: &TenantId,
        id: &str,
        suppression: Option<SuppressionInput>,
    ) -> Result<Value, OpsError> {
        let (tenant, id) = (tenant.clone(), id.to_string());
        self.findings(match suppression {
            None => FindingsRequest::Unsuppress { tenant, id },
            Some(s) => FindingsRequest::Suppress {
                tenant,
                id,
                kind: match s.kind {
                    console::api::SuppressionKind::Suppressed => SuppressionKind::Suppressed,
                    console::api::SuppressionKind::AcceptedRisk => SuppressionKind::AcceptedRisk,
                },
                reason: s.reason,
                owner: s.owner.unwrap_or_default(),
                expires_ms: s.expires_ms,
            },
        })
    }

    fn changes(
        &self,
        tenant: &TenantId,
        asset: Option<&str>,
        limit: usize,
    ) -> Result<Value, OpsError> {
        self.findings(FindingsRequest::Changes {
            tenant: tenant.clone(),
            asset: asset.map(str::to_string),
            limit: Some(limit),
        })
    }

    fn posture(
        &self,
        tenant: &TenantId,
        framework: &str,
        history: usize,
    ) -> Result<Value, OpsError> {
        self.findings(FindingsRequest::Posture {
            tenant: tenant.clone(),
            framework: framework.to_string(),
            history: Some(history),
        })
    }

    fn asset(&self, tenant: &TenantId, asset: &str) -> Result<Value, OpsError> {
        self.findings(FindingsRequest::Asset {
            tenant: tenant.clone(),
            asset: asset.to_string(),
        })
    }

    fn accept_baseline(&self, tenant: &TenantId, asset: &str) -> Result<Value, OpsError> {
        self.findings(FindingsRequest::AcceptBaseline {
            tenant: tenant.clone(),
            asset: asset.to_string(),
        })
    }

    fn scope(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        // A tenant without configuration may scan nothing: an empty scope, no jobs.
        let config = self
            .tenants
            .get(tenant.as_str())
            .cloned()
            .unwrap_or_default();
        to_json(config)
    }

    fn schedules(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        to_json(self.admin.list_schedules(Some(tenant)).map_err(ops_err)?)
    }

    fn start_run(&self, tenant: &TenantId, job: &str) -> Result<Value, OpsError> {
        match self.admin.start_run(tenant, job) {
            Ok(runs) => to_json(runs),
            Err(AdminError::RunNow(RunNowError::UnknownJob { job_id, .. })) => {
                Err(OpsError::NotFound(format!("scheduled job {job_id}")))
            }
            Err(AdminError::RunNow(e @ RunNowError::NoAgents(_))) => {
                Err(OpsError::Invalid(e.to_string()))
            }
            Err(e) => Err(ops_err(e)),
        }
    }

    fn runs(&self, tenant: &TenantId, limit: usize) -> Result<Value, OpsError> {
        let filter = RunFilter {
            tenant: Some(tenant.clone()),
            agent: None,
            limit: Some(limit),
        };
        to_json(self.admin.list_runs(&filter).map_err(ops_err)?)
    }
}

/// The console's account store inside the collector's database, when it is sled.
pub fn account_store(store: &dyn Store) -> Option<Result<Arc<dyn AccountStore>, AdminError>> {
    let db = store.sled_db()?;
    Some(
        SledAccounts::open(&db)
            .map(|a| Arc::new(a) as Arc<dyn AccountStore>)
            .map_err(|e| AdminError::Refused(e.to_string())),
    )
}

/// Binds the console listener and serves the API until the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    state: console::ConsoleState,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // Connect info gives handlers the peer address for per-address login limits.
    let app = console::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("console API server stopped: {e}");
        }
    });
    Ok((local, task))
}

/// Account and audit requests of the admin socket and CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccountRequest {
    /// Create a user (or reuse one with that email) with a role in a tenant.
    CreateUser {
        /// Login email.
        email: String,
        /// Tenant to join (created on first use).
        tenant: TenantId,
        /// Role in that tenant.
        role: console::Role,
        /// Password for a new user.
        password: Option<String>,
    },
    /// Set a user's password (recovery for a locked-out admin); ends their sessions.
    SetPassword {
        /// Login email.
        email: String,
        /// The new password.
        password: String,
    },
    /// Users with their tenants and roles.
    ListUsers,
    /// Verify the audit hash chain of one tenant or of all.
    AuditVerify {
        /// Only this tenant.
        tenant: Option<TenantId>,
    },
}

/// Answer to [`AccountRequest::CreateUser`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedUser {
    /// User id.
    pub user_id: String,
    /// Normalised email.
    pub email: String,
    /// Tenant joined.
    pub tenant: TenantId,
    /// Role granted.
    pub role: console::Role,
    /// Whether the user was new.
    pub created: bool,
}

/// A user with its memberships, as `collector user list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserSummary {
    /// User id.
    pub user_id: String,
    /// Login email.
    pub email: String,
    /// Tenant and role pairs.
    pub tenants: Vec<(TenantId, console::Role)>,
}

/// Appends a CLI action to a tenant's audit log.
pub fn audit_cli(
    accounts: &dyn AccountStore,
    tenant: &TenantId,
    action: &str,
    target: &str,
    details: Value,
) -> Result<(), AdminError> {
    accounts
        .append_audit(
            tenant,
            AuditDraft {
                time_ms: now_ms(),
                actor: "cli".into(),
                action: action.into(),
                target: target.into(),
                details,
            },
        )
        .map(|_| ())
        .map_err(|e| AdminError::Refused(format!("audit log: {e}")))
}

/// Runs an account request against the account store.
pub fn handle(accounts: &dyn AccountStore, req: AccountRequest) -> Result<Value, AdminError> {
    let refused = |e: console::AccountError| AdminError::Refused(e.to_string());
    match req {
        AccountRequest::CreateUser {
            email,
            tenant,
            role,
            password,
        } => {
            let (user, created) = console::accounts::create_user_with_membership(
                accounts,
                &email,
                password.as_deref(),
                &tenant,
                role,
                now_ms(),
            )
            .map_err(refused)?;
            audit_cli(
                accounts,
                &tenant,
                "member.set",
                &user.email,
                serde_json::json!({ "role": role, "user_created": created }),
            )?;
            accounts.flush().map_err(refused)?;
            to_json(CreatedUser {
                user_id: user.id,
                email: user.email,
                tenant,
                role,
                created,
            })
            .map_err(|e| AdminError::Socket(e.to_string()))
        }
        AccountRequest::SetPassword { email, password } => {
            let email = console::accounts::normalize_email(&email).map_err(refused)?;
            let user = accounts
                .user_by_email(&email)
                .map_err(refused)?
                .ok_or_else(|| AdminError::Refused(format!("no user with email {email}")))?;
            let ended =
                console::accounts::set_password(accounts, &user, &password, "cli", now_ms())
                    .map_err(refused)?;
            accounts.flush().map_err(refused)?;
            to_json(serde_json::json!({ "email": email, "sessions_ended": ended }))
                .map_err(|e| AdminError::Socket(e.to_string()))
        }
        AccountRequest::ListUsers => {
            let mut out = Vec::new();
            for u in accounts.users().map_err(refused)? {
                let tenants = accounts
                    .memberships_of(&u.id)
                    .map_err(refused)?
                    .into_iter()
                    .map(|m| (m.tenant, m.role))
                    .collect();
                out.push(UserSummary {
                    user_id: u.id,
                    email: u.email,
                    tenants,
                });
            }
            out.sort_by(|a, b| a.email.cmp(&b.email));
            to_json(out).map_err(|e| AdminError::Socket(e.to_string()))
        }
        AccountRequest::AuditVerify { tenant } => {
            let tenants = match tenant {
                Some(t) => vec![t],
                None => accounts.audit_tenants().map_err(refused)?,
            };
            let mut reports = Vec::new();
            for t in &tenants {
                reports.push(console::audit::verify(accounts, t).map_err(refused)?);
            }
            to_json(reports).map_err(|e| AdminError::Socket(e.to_string()))
        }
    }
}
