//! Shared fixtures: a console over a temporary sled database and a recording
//! stand-in for the collector's operations.

#![allow(dead_code)]

pub mod alerts;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use console::accounts::create_user_with_membership;
use console::compliance::{ComplianceOps, Download};
use console::{
    AccountStore, ConsoleOptions, ConsoleState, Operations, OpsError, Role, SledAccounts,
};
use http_body_util::BodyExt;
use protocol::TenantId;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Password every fixture user has.
pub const PASSWORD: &str = "correct horse battery staple";

/// In-memory agents per tenant; records every revocation and token.
#[derive(Default)]
pub struct TestOps {
    /// agent id → (tenant, revoked)
    pub agents: Mutex<BTreeMap<String, (TenantId, bool)>>,
    /// Tokens created, per tenant.
    pub tokens: Mutex<Vec<TenantId>>,
    /// (tenant, finding id) → finding.
    pub findings: Mutex<BTreeMap<(TenantId, String), Value>>,
    /// (tenant, asset) → baseline accepted.
    pub assets: Mutex<BTreeMap<(TenantId, String), bool>>,
    /// (tenant, report id) → report metadata.
    pub reports: Mutex<BTreeMap<(TenantId, String), Value>>,
    /// (tenant, incident id) → incident.
    pub incidents: Mutex<BTreeMap<(TenantId, String), Value>>,
    /// Alerting state.
    pub alerts: alerts::TestAlerts,
}

fn lock_err(e: impl std::fmt::Display) -> OpsError {
    OpsError::Failed(e.to_string())
}

impl ComplianceOps for TestOps {
    fn create_report(
        &self,
        tenant: &TenantId,
        framework: &str,
        format: &str,
        requested_by: &str,
    ) -> Result<Value, OpsError> {
        if !["pdf", "json", "csv", "ocsf", "sarif"].contains(&format) {
            return Err(OpsError::Invalid(format!("bad format {format}")));
        }
        let mut r = self.reports.lock().map_err(lock_err)?;
        let id = format!("r-{}", r.len() + 1);
        let v = json!({ "id": id, "framework": framework, "format": format, "status": "queued",
            "progress": 0, "requested_by": requested_by });
        r.insert((tenant.clone(), id), v.clone());
        Ok(v)
    }

    fn list_reports(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        let r = self.reports.lock().map_err(lock_err)?;
        Ok(Value::Array(
            r.iter()
                .filter(|((t, _), _)| t == tenant)
                .map(|(_, v)| v.clone())
                .collect(),
        ))
    }

    fn report(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        let r = self.reports.lock().map_err(lock_err)?;
        r.get(&(tenant.clone(), id.to_string()))
            .cloned()
            .ok_or_else(|| OpsError::NotFound(id.into()))
    }

    fn report_file(&self, tenant: &TenantId, id: &str) -> Result<Option<Download>, OpsError> {
        let v = self.report(tenant, id)?;
        Ok((v["status"] == "done").then(|| Download {
            // JSON, because the fixture's client decodes every answer.
            bytes: br#"{"report":true}"#.to_vec(),
            content_type: "application/json".into(),
            filename: format!("vigil-{tenant}-nis2-{id}.json"),
        }))
    }

    fn list_incidents(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        let r = self.incidents.lock().map_err(lock_err)?;
        Ok(Value::Array(
            r.iter()
                .filter(|((t, _), _)| t == tenant)
                .map(|(_, v)| v.clone())
                .collect(),
        ))
    }

    fn create_incident(
        &self,
        tenant: &TenantId,
        body: Value,
        actor: &str,
    ) -> Result<Value, OpsError> {
        let title = body["title"]
            .as_str()
            .ok_or_else(|| OpsError::Invalid("title missing".into()))?;
        let mut r = self.incidents.lock().map_err(lock_err)?;
        let id = format!("inc-{}", r.len() + 1);
        let v = json!({ "id": id, "title": title, "significant": body["significant"], "created_by": actor });
        r.insert((tenant.clone(), id), v.clone());
        Ok(v)
    }

    fn incident(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        let r = self.incidents.lock().map_err(lock_err)?;
        r.get(&(tenant.clone(), id.to_string()))
            .cloned()
            .ok_or_else(|| OpsError::NotFound(id.into()))
    }

    fn update_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        body: Value,
    ) -> Result<(Value, Value), OpsError> {
        let mut r = self.incidents.lock().map_err(lock_err)?;
        let v = r
            .get_mut(&(tenant.clone(), id.to_string()))
            .ok_or_else(|| OpsError::NotFound(id.into()))?;
        let Some(obj) = body.as_object().filter(|o| !o.is_empty()) else {
            return Err(OpsError::Invalid("nothing to change".into()));
        };
        for (k, val) in obj {
            v[k] = val.clone();
        }
        Ok((v.clone(), body))
    }

    fn export_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        stage: &str,
        format: &str,
    ) -> Result<Download, OpsError> {
        self.incident(tenant, id)?;
        if format != "pdf" && format != "json" {
            return Err(OpsError::Invalid("format".into()));
        }
        Ok(Download {
            bytes: b"{}".to_vec(),
            content_type: "application/json".into(),
            filename: format!("vigil-{tenant}-{id}-{stage}.{format}"),
        })
    }
}

impl Operations for TestOps {
    fn alerts(&self) -> Option<&dyn console::api::alerts::AlertOperations> {
        Some(&self.alerts)
    }

    fn list_agents(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        let agents = self
            .agents
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        Ok(Value::Array(
            agents
                .iter()
                .filter(|(_, (t, _))| t == tenant)
                .map(|(id, (t, revoked))| json!({ "agent": id, "tenant": t, "revoked": revoked }))
                .collect(),
        ))
    }

    fn revoke_agent(&self, tenant: &TenantId, agent: &str) -> Result<Option<Value>, OpsError> {
        let mut agents = self
            .agents
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        match agents.get_mut(agent) {
            Some((t, revoked)) if t == tenant => {
                *revoked = true;
                Ok(Some(
                    json!({ "agent": agent, "tenant": t, "revoked": true }),
                ))
            }
            _ => Ok(None),
        }
    }

    fn create_token(&self, tenant: &TenantId, ttl: Option<Duration>) -> Result<Value, OpsError> {
        self.tokens
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?
            .push(tenant.clone());
        Ok(json!({
            "token": "vgt_secret_never_logged",
            "tenant": tenant,
            "expires_ms": ttl.map_or(86_400_000, |t| t.as_millis() as u64),
        }))
    }

    fn stats(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        let n = self
            .agents
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?
            .values()
            .filter(|(t, _)| t == tenant)
            .count();
        Ok(json!({ "agents": n }))
    }

    fn search_findings(
        &self,
        tenant: &TenantId,
        query: &str,
        limit: usize,
        offset: usize,
        _facets: bool,
    ) -> Result<Value, OpsError> {
        if query.contains('(') {
            return Err(OpsError::Invalid(format!("unbalanced query {query:?}")));
        }
        let f = self
            .findings
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        let all: Vec<Value> = f
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, v)| v.clone())
            .collect();
        let total = all.len();
        let hits: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
        Ok(json!({ "total": total, "hits": hits }))
    }

    fn finding(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError> {
        let f = self
            .findings
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        f.get(&(tenant.clone(), id.to_string()))
            .cloned()
            .ok_or_else(|| OpsError::NotFound(id.to_string()))
    }

    fn set_suppression(
        &self,
        tenant: &TenantId,
        id: &str,
        suppression: Option<console::api::SuppressionInput>,
    ) -> Result<Value, OpsError> {
        let mut f = self
            .findings
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        let v = f
            .get_mut(&(tenant.clone(), id.to_string()))
            .ok_or_else(|| OpsError::NotFound(id.to_string()))?;
        v["suppression"] =
            serde_json::to_value(suppression).map_err(|e| OpsError::Failed(e.to_string()))?;
        Ok(v.clone())
    }

    fn changes(
        &self,
        tenant: &TenantId,
        asset: Option<&str>,
        limit: usize,
    ) -> Result<Value, OpsError> {
        let a = self
            .assets
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        Ok(Value::Array(
            a.keys()
                .filter(|(t, name)| t == tenant && asset.is_none_or(|x| x == name))
                .map(|(_, name)| json!({ "asset": name, "kind": "port_opened" }))
                .take(limit)
                .collect(),
        ))
    }

    fn posture(
        &self,
        tenant: &TenantId,
        framework: &str,
        history: usize,
    ) -> Result<Value, OpsError> {
        if framework != "nis2" {
            return Err(OpsError::NotFound(framework.to_string()));
        }
        Ok(
            json!({ "posture": { "tenant": tenant, "framework": framework }, "history": vec![json!({}); history.min(2)] }),
        )
    }

    fn asset(&self, tenant: &TenantId, asset: &str) -> Result<Value, OpsError> {
        let a = self
            .assets
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        let accepted = a
            .get(&(tenant.clone(), asset.to_string()))
            .ok_or_else(|| OpsError::NotFound(asset.to_string()))?;
        Ok(json!({ "asset": asset, "baseline_accepted": accepted }))
    }

    fn accept_baseline(&self, tenant: &TenantId, asset: &str) -> Result<Value, OpsError> {
        let mut a = self
            .assets
            .lock()
            .map_err(|e| OpsError::Failed(e.to_string()))?;
        let accepted = a
            .get_mut(&(tenant.clone(), asset.to_string()))
            .ok_or_else(|| OpsError::NotFound(asset.to_string()))?;
        *accepted = true;
        Ok(json!({ "asset": asset, "baseline_accepted": true }))
    }

    fn scope(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        Ok(
            json!({ "scope": { "cidrs": [format!("10.{}.0.0/16", tenant.as_str().len())], "hostnames": [], "ports": "1-1024" }, "jobs": [] }),
        )
    }

    fn schedules(&self, tenant: &TenantId) -> Result<Value, OpsError> {
        Ok(json!([{ "tenant": tenant, "job_id": "nightly" }]))
    }

    fn start_run(&self, tenant: &TenantId, job: &str) -> Result<Value, OpsError> {
        // Each tenant has its own job, so another tenant's job name is unknown here.
        if job != format!("nightly-{tenant}") {
            return Err(OpsError::NotFound(job.to_string()));
        }
        Ok(json!([{ "tenant": tenant, "job_id": job, "status": "queued" }]))
    }

    fn runs(&self, tenant: &TenantId, limit: usize) -> Result<Value, OpsError> {
        Ok(Value::Array(
            (0..limit.min(2))
                .map(|i| json!({ "tenant": tenant, "run_id": i }))
                .collect(),
        ))
    }

    fn records(&self, tenant: &TenantId, limit: usize) -> Result<Value, OpsError> {
        Ok(Value::Array(
            (0..limit.min(3))
                .map(|i| json!({ "tenant": tenant, "n": i }))
                .collect(),
        ))
    }
}

/// A console with tenants `acme` and `globex` and users:
/// `{admin,auditor,viewer}@acme.test` in acme, `admin@globex.test` in globex,
/// and `msp@staff.test` (admin in acme, viewer in globex).
pub struct Fixture {
    /// Keeps the database directory alive.
    pub _dir: tempfile::TempDir,
    /// The account store.
    pub accounts: Arc<SledAccounts>,
    /// The sled database (tests tamper with it).
    pub db: sled::Db,
    /// Operations stand-in.
    pub ops: Arc<TestOps>,
    /// The router under test.
    pub app: Router,
}

pub fn t(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_options(ConsoleOptions::default())
    }

    pub fn with_options(o: ConsoleOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let accounts = Arc::new(SledAccounts::open(&db).unwrap());
        let users = [
            ("admin@acme.test", "acme", Role::Admin),
            ("auditor@acme.test", "acme", Role::Auditor),
            ("viewer@acme.test", "acme", Role::Viewer),
            ("admin@globex.test", "globex", Role::Admin),
            ("msp@staff.test", "acme", Role::Admin),
            ("msp@staff.test", "globex", Role::Viewer),
        ];
        for (email, tenant, role) in users {
            create_user_with_membership(
                accounts.as_ref(),
                email,
                Some(PASSWORD),
                &t(tenant),
                role,
                1,
            )
            .unwrap();
        }
        let ops = Arc::new(TestOps::default());
        {
            let mut a = ops.agents.lock().unwrap();
            a.insert("ag-acme1".into(), (t("acme"), false));
            a.insert("ag-acme2".into(), (t("acme"), false));
            a.insert("ag-globex1".into(), (t("globex"), false));
            let mut f = ops.findings.lock().unwrap();
            let mut assets = ops.assets.lock().unwrap();
            for tenant in ["acme", "globex"] {
                let id = format!("f-{tenant}1");
                f.insert(
                    (t(tenant), id.clone()),
                    json!({ "id": id, "tenant": tenant }),
                );
                assets.insert((t(tenant), format!("web.{tenant}.test")), false);
                // Reports and incidents named like the findings, so `{id}` fits every route.
                ops.reports.lock().unwrap().insert(
                    (t(tenant), id.clone()),
                    json!({ "id": id, "framework": "nis2", "format": "pdf", "status": "done" }),
                );
                ops.incidents.lock().unwrap().insert(
                    (t(tenant), id.clone()),
                    json!({ "id": id, "title": "outage", "significant": true }),
                );
                ops.alerts.seed(&t(tenant));
            }
        }
        let state = ConsoleState::with_options(accounts.clone(), ops.clone(), o);
        state.set_compliance(ops.clone());
        Self {
            _dir: dir,
            accounts,
            db,
            ops,
            app: console::router(state),
        }
    }

    /// Logs in and returns the session cookie pair (`vigil_session=...`).
    pub async fn login(&self, email: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/api/v1/login",
                &Auth::None,
                Some(json!({ "email": email, "password": PASSWORD })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {email}: {}", r.body);
        let set = r.headers[header::SET_COOKIE].to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    }

    pub async fn call(&self, method: Method, uri: &str, auth: &Auth, body: Option<Value>) -> Resp {
        self.call_from(method, uri, auth, body, "10.0.0.1:5000")
            .await
    }

    pub async fn call_from(
        &self,
        method: Method,
        uri: &str,
        auth: &Auth,
        body: Option<Value>,
        peer: &str,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        match auth {
            Auth::None => {}
            Auth::Cookie(c) => b = b.header(header::COOKIE, c.as_str()),
            Auth::Bearer(k) => b = b.header(header::AUTHORIZATION, format!("Bearer {k}")),
            Auth::Headers(h) => {
                for (k, v) in h {
                    b = b.header(k, v);
                }
            }
        }
        let body = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = b.body(body).unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("non-JSON answer {status}: {e}: {bytes:?}"))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Creates an API key straight in the store and returns the presented form.
    pub fn api_key(&self, tenant: &str, role: Role) -> (String, String) {
        let id = format!("k-{:016x}", rand_u64());
        let secret = format!("{:032x}", rand_u64());
        self.accounts
            .put_api_key(&console::accounts::ApiKeyRecord {
                id: id.clone(),
                tenant: t(tenant),
                role,
                name: "fixture".into(),
                secret_sha256: hex::encode(console::accounts::secret_hash(&secret)),
                created_by: "fixture".into(),
                created_ms: 1,
                expires_ms: None,
            })
            .unwrap();
        (id.clone(), format!("vgk_{id}_{secret}"))
    }
}

fn rand_u64() -> u64 {
    u64::from_le_bytes(console::accounts::random_bytes::<8>().unwrap())
}

/// How a request authenticates.
pub enum Auth {
    None,
    Cookie(String),
    Bearer(String),
    Headers(Vec<(String, String)>),
}

/// A decoded answer.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// Asserts the stable error shape and returns the code.
    pub fn error_code(&self) -> String {
        let code = self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code in {}", self.body));
        assert!(
            self.body["error"]["message"].is_string(),
            "no error.message in {}",
            self.body
        );
        code.to_string()
    }
}
