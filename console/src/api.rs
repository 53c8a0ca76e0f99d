//! HTTP API v1: authentication, tenant scoping, role checks and handlers.

pub mod alerts;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use protocol::TenantId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{
    AccountStore, ApiKeyRecord, Role, Session, User, create_user_with_membership, dummy_hash,
    normalize_email, random_bytes, secret_hash, verify_password,
};
use crate::audit::AuditDraft;
use crate::error::{ApiError, OpsError};
use crate::limiter::LoginLimiter;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "vigil_session";
/// Prefix of presented API keys: `vgk_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "vgk_";
/// Most records one request may ask for.
pub const MAX_RECORDS: usize = 1000;
/// Most audit entries one request returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// Collector operations the console exposes; implemented by the host so the
/// console needs no knowledge of collector internals. Calls may block.
pub trait Operations: Send + Sync + 'static {
    /// Agents of a tenant with status, last seen and delivery counters (JSON array).
    fn list_agents(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// Revokes an agent of this tenant; `None` when the tenant has no such agent.
    fn revoke_agent(&self, tenant: &TenantId, agent: &str) -> Result<Option<Value>, OpsError>;
    /// Creates a single-use enrolment token; the answer holds the secret once.
    fn create_token(&self, tenant: &TenantId, ttl: Option<Duration>) -> Result<Value, OpsError>;
    /// Totals of a tenant.
    fn stats(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// Newest stored records of a tenant.
    fn records(&self, tenant: &TenantId, limit: usize) -> Result<Value, OpsError>;
    /// A tenant's authorised scan scope and configured jobs.
    fn scope(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// Collector-scheduled scan jobs of a tenant with their next due time.
    fn schedules(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// Scan runs of a tenant, newest first.
    fn runs(&self, tenant: &TenantId, limit: usize) -> Result<Value, OpsError>;
    /// Queues a run of a scheduled job now on the tenant's agents (the
    /// created runs); `NotFound` when the tenant has no such scheduled job.
    fn start_run(&self, tenant: &TenantId, job: &str) -> Result<Value, OpsError>;
    /// Searches a tenant's findings and change events (query language of `docs/search.md`),
    /// skipping the first `offset` hits.
    fn search_findings(
        &self,
        tenant: &TenantId,
        query: &str,
        limit: usize,
        offset: usize,
        facets: bool,
    ) -> Result<Value, OpsError>;
    /// One finding in full.
    fn finding(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError>;
    /// Suppresses a finding or accepts its risk; `None` removes the suppression.
    fn set_suppression(
        &self,
        tenant: &TenantId,
        id: &str,
        suppression: Option<SuppressionInput>,
    ) -> Result<Value, OpsError>;
    /// Change events, newest first, optionally of one asset.
    fn changes(
        &self,
        tenant: &TenantId,
        asset: Option<&str>,
        limit: usize,
    ) -> Result<Value, OpsError>;
    /// Compliance posture against a framework, with `history` past entries.
    fn posture(
        &self,
        tenant: &TenantId,
        framework: &str,
        history: usize,
    ) -> Result<Value, OpsError>;
    /// An asset's snapshot, baseline and pending drift.
    fn asset(&self, tenant: &TenantId, asset: &str) -> Result<Value, OpsError>;
    /// Accepts an asset's current snapshot as its baseline.
    fn accept_baseline(&self, tenant: &TenantId, asset: &str) -> Result<Value, OpsError>;
    /// Alerting operations; `None` (the default) makes the alert routes answer 404.
    fn alerts(&self) -> Option<&dyn alerts::AlertOperations> {
        None
    }
}

/// A suppression as requested through the API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionInput {
    /// `suppressed` (false positive) or `accepted_risk`.
    pub kind: SuppressionKind,
    /// Why.
    pub reason: String,
    /// Who is accountable; the caller when absent.
    #[serde(default)]
    pub owner: Option<String>,
    /// Expiry, ms since the epoch.
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

/// Whether a suppression marks a false positive or an accepted risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionKind {
    /// Not a real problem here.
    Suppressed,
    /// A real problem the owner accepts until the expiry.
    AcceptedRisk,
}

/// Everything the API handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    inner: Arc<Inner>,
}

struct Inner {
    accounts: Arc<dyn AccountStore>,
    ops: Arc<dyn Operations>,
    limiter: LoginLimiter,
    secure_cookies: bool,
    session_ttl: Duration,
    trusted_proxies: Vec<IpAddr>,
    compliance: std::sync::OnceLock<Arc<dyn crate::compliance::ComplianceOps>>,
}

impl ConsoleState {
    /// State over an account store and the host's operations, with defaults:
    /// 12 h sessions, 5 failed logins per 15 min per account and per address.
    pub fn new(accounts: Arc<dyn AccountStore>, ops: Arc<dyn Operations>) -> Self {
        Self::with_options(accounts, ops, ConsoleOptions::default())
    }

    /// State with explicit options.
    pub fn with_options(
        accounts: Arc<dyn AccountStore>,
        ops: Arc<dyn Operations>,
        o: ConsoleOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                accounts,
                ops,
                limiter: LoginLimiter::new(o.max_login_failures, o.login_window),
                secure_cookies: o.secure_cookies,
                session_ttl: o.session_ttl,
                trusted_proxies: o.trusted_proxies,
                compliance: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The account store.
    pub fn accounts(&self) -> Arc<dyn AccountStore> {
        self.inner.accounts.clone()
    }

    /// Attaches the host's report and incident operations (set once).
    pub fn set_compliance(&self, ops: Arc<dyn crate::compliance::ComplianceOps>) {
        let _ = self.inner.compliance.set(ops);
    }

    /// Report and incident operations, when the host provides them.
    pub(crate) fn compliance(&self) -> Option<Arc<dyn crate::compliance::ComplianceOps>> {
        self.inner.compliance.get().cloned()
    }
}

/// Tunables of the console API.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Mark the session cookie `Secure` (the console is served over TLS).
    pub secure_cookies: bool,
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Failed logins allowed per account and per address within `login_window`.
    pub max_login_failures: usize,
    /// Window of the login rate limit.
    pub login_window: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the real client.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            max_login_failures: 5,
            login_window: Duration::from_secs(15 * 60),
            trusted_proxies: Vec::new(),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs blocking work (sled, argon2, collector operations) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// A console user with a session.
    User { user: User, session: [u8; 32] },
    /// An automation client with an API key bound to one tenant.
    ApiKey(ApiKeyRecord),
}

impl Principal {
    pub(crate) fn actor(&self) -> String {
        match self {
            Self::User { user, .. } => format!("user:{}", user.email),
            Self::ApiKey(k) => format!("api-key:{}", k.id),
        }
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Constant-time equality, so comparing secret hashes leaks no prefix length.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authenticate(accounts: &dyn AccountStore, headers: &HeaderMap) -> Result<Principal, ApiError> {
    // An Authorization header is decisive: a bad key never falls back to a cookie.
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let presented = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|v| v.trim().strip_prefix(API_KEY_PREFIX))
            .ok_or_else(ApiError::unauthenticated)?;
        let (id, secret) = presented
            .split_once('_')
            .ok_or_else(ApiError::unauthenticated)?;
        let key = accounts
            .api_key(id)?
            .filter(|k| k.expires_ms.is_none_or(|e| e > now_ms()))
            .ok_or_else(ApiError::unauthenticated)?;
        let want = hex::decode(&key.secret_sha256).map_err(ApiError::internal)?;
        if !ct_eq(&secret_hash(secret), &want) {
            return Err(ApiError::unauthenticated());
        }
        return Ok(Principal::ApiKey(key));
    }
    let sid = cookie_value(headers, SESSION_COOKIE).ok_or_else(ApiError::unauthenticated)?;
    let hash = secret_hash(&sid);
    let session = accounts
        .session(hash)?
        .ok_or_else(ApiError::unauthenticated)?;
    if session.expires_ms <= now_ms() {
        accounts.delete_session(hash)?;
        return Err(ApiError::unauthenticated());
    }
    let user = accounts
        .user(&session.user_id)?
        .ok_or_else(ApiError::unauthenticated)?;
    Ok(Principal::User {
        user,
        session: hash,
    })
}

/// A request authorised for one tenant.
pub(crate) struct Scoped {
    pub(crate) principal: Principal,
    pub(crate) tenant: TenantId,
}

impl Scoped {
    pub(crate) fn audit(
        &self,
        state: &ConsoleState,
        action: &str,
        target: &str,
        details: Value,
    ) -> Result<(), ApiError> {
        state.inner.accounts.append_audit(
            &self.tenant,
            AuditDraft {
                time_ms: now_ms(),
                actor: self.principal.actor(),
                action: action.into(),
                target: target.into(),
                details,
            },
        )?;
        Ok(())
    }
}

/// Authenticates, resolves the caller's role in `tenant` and checks it against
/// `min`. A tenant the caller does not belong to — or that does not exist, or
/// is not even a valid name — is 404, so tenants cannot be enumerated.
fn scope(
    state: &ConsoleState,
    headers: &HeaderMap,
    tenant: &str,
    min: Role,
) -> Result<Scoped, ApiError> {
    let accounts = state.inner.accounts.as_ref();
    let principal = authenticate(accounts, headers)?;
    let tenant = TenantId::new(tenant).map_err(|_| ApiError::not_found())?;
    let role = match &principal {
        Principal::User { user, .. } => accounts.membership(&user.id, &tenant)?,
        Principal::ApiKey(k) => (k.tenant == tenant).then_some(k.role),
    }
    .ok_or_else(ApiError::not_found)?;
    if role < min {
        return Err(ApiError::forbidden());
    }
    Ok(Scoped { principal, tenant })
}

pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

fn query_param(raw: &Option<String>, name: &str) -> Option<String> {
    raw.as_deref()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn query_number(raw: &Option<String>, name: &str) -> Result<Option<u64>, ApiError> {
    query_param(raw, name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{name} must be a whole number")))
        })
        .transpose()
}

/// The `limit` query parameter: `default` when absent, else 1..=`max`.
fn query_limit(raw: &Option<String>, default: u64, max: usize) -> Result<u64, ApiError> {
    let limit = query_number(raw, "limit")?.unwrap_or(default);
    if limit == 0 || limit > max as u64 {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max}"
        )));
    }
    Ok(limit)
}

pub(crate) async fn with_scope(
    state: &ConsoleState,
    headers: HeaderMap,
    tenant: String,
    min: Role,
) -> Result<Scoped, ApiError> {
    let s = state.clone();
    blocking(move || scope(&s, &headers, &tenant, min)).await
}

/// Builds the `/api/v1` router with the web UI at `/` and `/ui/...`.
pub fn router(state: ConsoleState) -> Router {
    let tenant = Router::new()
        .route("/agents", get(list_agents))
        .route("/agents/{agent}/revoke", post(revoke_agent))
        .route("/tokens", post(create_token))
        .route("/stats", get(stats))
        .route("/records", get(records))
        .route("/scope", get(tenant_scope))
        .route("/schedules", get(schedules))
        .route("/schedules/{job}/run", post(start_run))
        .route("/runs", get(runs))
        .route("/findings", get(search_findings))
        .route("/findings/{id}", get(finding))
        .route(
            "/findings/{id}/suppression",
            axum::routing::put(suppress).delete(unsuppress),
        )
        .route("/changes", get(changes))
        .route("/posture/{framework}", get(posture))
        .route("/assets/{asset}", get(asset))
        .route("/assets/{asset}/accept-baseline", post(accept_baseline))
        .route("/api-keys", get(list_api_keys).post(create_api_key))
        .route("/api-keys/{key}", delete(delete_api_key))
        .route("/members", get(list_members).post(set_member))
        .route("/members/{user}", delete(remove_member))
        .route("/audit", get(audit_log))
        .route("/audit/export", get(audit_export))
        .merge(crate::compliance::routes())
        .merge(alerts::routes());
    let v1 = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/me/password", post(change_password))
        .route("/openapi.json", get(openapi))
        .nest("/tenants/{tenant}", tenant);
    Router::new()
        .nest("/api/v1", v1)
        .merge(crate::ui::routes())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )
        })
        .with_state(state)
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(crate::openapi::document())
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// The client's address: the peer, or — only when the peer is a trusted proxy —
/// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy
/// (entries further left are whatever the client chose to send).
fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> String {
    let Some(peer) = peer.map(|a| a.ip()) else {
        return "unknown".to_string();
    };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .map(|s| s.parse::<IpAddr>())
        .find(|ip| ip.as_ref().map_or(true, |ip| !trusted.contains(ip)))
        .map_or(peer.to_string(), |ip| {
            // A malformed entry is the last hop we can attribute; count it as the proxy's.
            ip.map_or(peer.to_string(), |ip| ip.to_string())
        })
}

fn tenants_of(accounts: &dyn AccountStore, p: &Principal) -> Result<Value, ApiError> {
    Ok(match p {
        Principal::User { user, .. } => {
            let ms = accounts.memberships_of(&user.id)?;
            json!({
                "user": { "id": user.id, "email": user.email },
                "tenants": ms.iter().map(|m| json!({ "tenant": m.tenant, "role": m.role })).collect::<Vec<_>>(),
            })
        }
        Principal::ApiKey(k) => json!({
            "api_key": { "id": k.id, "name": k.name },
            "tenants": [ { "tenant": k.tenant, "role": k.role } ],
        }),
    })
}

fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> Result<HeaderValue, ApiError> {
    let mut c =
        format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).map_err(ApiError::internal)
}

async fn login(State(state): State<ConsoleState>, req: Request) -> Result<Response, ApiError> {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let secure = state.inner.secure_cookies || forwarded_https(req.headers());
    let ip = client_ip(addr, req.headers(), &state.inner.trusted_proxies);
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::bad_request("request body too large"))?;
    let body: LoginBody = parse_body(&body)?;
    let email = normalize_email(&body.email).unwrap_or_else(|_| body.email.clone());
    let keys = [format!("account:{email}"), format!("ip:{ip}")];
    let now = Instant::now();
    if let Some(wait) = keys
        .iter()
        .filter_map(|k| state.inner.limiter.blocked_for(k, now))
        .max()
    {
        tracing::warn!(%email, ip = %ip, "login rate limited");
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed logins; try again later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let s = state.clone();
    let password = body.password;
    let lookup = email.clone();
    let user = blocking(move || {
        let user = s.inner.accounts.user_by_email(&lookup)?;
        // Unknown accounts still pay for one hash, so timing does not reveal them.
        let phc = user
            .as_ref()
            .map_or(dummy_hash(), |u| u.password_hash.as_str());
        let ok = verify_password(&password, phc);
        Ok(user.filter(|_| ok))
    })
    .await?;
    let Some(user) = user else {
        for k in &keys {
            state.inner.limiter.fail(k, now);
        }
        tracing::info!(%email, ip = %ip, "login failed");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong email or password",
        ));
    };
    state.inner.limiter.clear(&keys[0]);
    let sid = hex::encode(random_bytes::<32>()?);
    let ttl = state.inner.session_ttl;
    let created_ms = now_ms();
    let session = Session {
        user_id: user.id.clone(),
        created_ms,
        expires_ms: created_ms.saturating_add(ttl.as_millis() as u64),
    };
    let hash = secret_hash(&sid);
    let s = state.clone();
    let answer = blocking(move || {
        // Sessions that expired unused would otherwise pile up; logins are rare enough to sweep.
        let pruned = s.inner.accounts.prune_sessions(created_ms)?;
        if pruned > 0 {
            tracing::debug!(pruned, "expired console sessions removed");
        }
        s.inner.accounts.put_session(hash, &session)?;
        tenants_of(
            s.inner.accounts.as_ref(),
            &Principal::User {
                user,
                session: hash,
            },
        )
    })
    .await?;
    let cookie = session_cookie(&sid, ttl.as_secs(), secure)?;
    Ok(([(header::SET_COOKIE, cookie)], axum::Json(answer)).into_response())
}

async fn logout(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secure = state.inner.secure_cookies || forwarded_https(&headers);
    let s = state.clone();
    blocking(move || {
        match authenticate(s.inner.accounts.as_ref(), &headers)? {
            Principal::User { session, .. } => s.inner.accounts.delete_session(session)?,
            // API keys have no session to end.
            Principal::ApiKey(_) => {}
        }
        Ok(())
    })
    .await?;
    let cookie = session_cookie("", 0, secure)?;
    Ok(([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

async fn me(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    blocking(move || {
        let accounts = state.inner.accounts.as_ref();
        let p = authenticate(accounts, &headers)?;
        tenants_of(accounts, &p).map(axum::Json)
    })
    .await
}

async fn list_agents(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let ops = state.inner.ops.clone();
    blocking(move || Ok(axum::Json(ops.list_agents(&sc.tenant)?))).await
}

async fn revoke_agent(
    State(state): State<ConsoleState>,
    Path((tenant, agent)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    blocking(move || {
        let rec = state
            .inner
            .ops
            .revoke_agent(&sc.tenant, &agent)?
            .ok_or_else(ApiError::not_found)?;
        sc.audit(&state, "agent.revoke", &agent, json!({}))?;
        Ok(axum::Json(rec))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    ttl_secs: Option<u64>,
}

/// Longest enrolment token lifetime the API grants.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

async fn create_token(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    let b: TokenBody = if body.is_empty() {
        TokenBody::default()
    } else {
        parse_body(&body)?
    };
    let ttl = b.ttl_secs.map(Duration::from_secs);
    if ttl.is_some_and(|t| t.is_zero() || t > MAX_TOKEN_TTL) {
        return Err(ApiError::bad_request(
            "ttl_secs must be between 1 and 2592000",
        ));
    }
    blocking(move || {
        let created = state.inner.ops.create_token(&sc.tenant, ttl)?;
        // The secret is in the answer only; the log gets the expiry.
        let details = json!({ "expires_ms": created.get("expires_ms") });
        sc.audit(&state, "token.create", "enrolment-token", details)?;
        Ok((StatusCode::CREATED, axum::Json(created)))
    })
    .await
}

async fn stats(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    blocking(move || Ok(axum::Json(state.inner.ops.stats(&sc.tenant)?))).await
}

async fn records(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let limit = query_limit(&q, 20, MAX_RECORDS)?;
    blocking(move || {
        Ok(axum::Json(
            state.inner.ops.records(&sc.tenant, limit as usize)?,
        ))
    })
    .await
}

async fn tenant_scope(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    blocking(move || Ok(axum::Json(state.inner.ops.scope(&sc.tenant)?))).await
}

async fn schedules(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    blocking(move || Ok(axum::Json(state.inner.ops.schedules(&sc.tenant)?))).await
}

async fn runs(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let limit = query_limit(&q, 50, MAX_RECORDS)?;
    blocking(move || {
        Ok(axum::Json(
            state.inner.ops.runs(&sc.tenant, limit as usize)?,
        ))
    })
    .await
}

async fn start_run(
    State(state): State<ConsoleState>,
    Path((tenant, job)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    blocking(move || {
        let runs = state.inner.ops.start_run(&sc.tenant, &job)?;
        sc.audit(&state, "run.start", &job, json!({ "runs": runs.clone() }))?;
        Ok((StatusCode::ACCEPTED, axum::Json(runs)))
    })
    .await
}

fn key_view(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id, "name": k.name, "role": k.role, "tenant": k.tenant,
        "created_by": k.created_by, "created_ms": k.created_ms, "expires_ms": k.expires_ms,
    })
}

async fn list_api_keys(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    blocking(move || {
        let keys = state.inner.accounts.api_keys(&sc.tenant)?;
        Ok(axum::Json(Value::Array(
            keys.iter().map(key_view).collect(),
        )))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyBody {
    name: String,
    role: Role,
    /// Lifetime in seconds; the key never expires when absent.
    ttl_secs: Option<u64>,
}

async fn create_api_key(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    let b: ApiKeyBody = parse_body(&body)?;
    let name = b.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::bad_request("name must be 1 to 100 characters"));
    }
    if b.ttl_secs == Some(0) {
        return Err(ApiError::bad_request("ttl_secs must be at least 1"));
    }
    blocking(move || {
        let created_ms = now_ms();
        let id = format!("k-{}", hex::encode(random_bytes::<8>()?));
        let secret = hex::encode(random_bytes::<32>()?);
        let rec = ApiKeyRecord {
            id: id.clone(),
            tenant: sc.tenant.clone(),
            role: b.role,
            name,
            secret_sha256: hex::encode(secret_hash(&secret)),
            created_by: sc.principal.actor(),
            created_ms,
            expires_ms: b
                .ttl_secs
                .map(|t| created_ms.saturating_add(t.saturating_mul(1000))),
        };
        state.inner.accounts.put_api_key(&rec)?;
        sc.audit(
            &state,
            "api_key.create",
            &id,
            json!({ "name": rec.name, "role": rec.role, "expires_ms": rec.expires_ms }),
        )?;
        let mut v = key_view(&rec);
        // Shown once: only its hash is stored.
        v["key"] = Value::String(format!("{API_KEY_PREFIX}{id}_{secret}"));
        Ok((StatusCode::CREATED, axum::Json(v)))
    })
    .await
}

async fn delete_api_key(
    State(state): State<ConsoleState>,
    Path((tenant, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    blocking(move || {
        let rec = state
            .inner
            .accounts
            .delete_api_key(&sc.tenant, &key)?
            .ok_or_else(ApiError::not_found)?;
        sc.audit(
            &state,
            "api_key.delete",
            &rec.id,
            json!({ "name": rec.name }),
        )?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

async fn list_members(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    blocking(move || {
        let accounts = state.inner.accounts.as_ref();
        let mut out = Vec::new();
        for m in accounts.members(&sc.tenant)? {
            if let Some(u) = accounts.user(&m.user_id)? {
                out.push(json!({ "user_id": u.id, "email": u.email, "role": m.role }));
            }
        }
        Ok(axum::Json(Value::Array(out)))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    email: String,
    role: Role,
    password: Option<String>,
}

async fn set_member(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    let b: MemberBody = parse_body(&body)?;
    blocking(move || {
        let accounts = state.inner.accounts.as_ref();
        let email = normalize_email(&b.email)?;
        // Demoting the last admin would leave the tenant unmanageable from the API.
        if b.role != Role::Admin
            && let Some(u) = accounts.user_by_email(&email)?
            && accounts.membership(&u.id, &sc.tenant)? == Some(Role::Admin)
            && admin_count(accounts, &sc.tenant)? <= 1
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "last_admin",
                "a tenant must keep at least one admin",
            ));
        }
        let (user, created) = create_user_with_membership(
            accounts,
            &email,
            b.password.as_deref(),
            &sc.tenant,
            b.role,
            now_ms(),
        )?;
        sc.audit(
            &state,
            "member.set",
            &user.email,
            json!({ "role": b.role, "user_created": created }),
        )?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            axum::Json(json!({ "user_id": user.id, "email": user.email, "role": b.role })),
        ))
    })
    .await
}

async fn audit_log(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    let from = query_number(&q, "from")?.unwrap_or(1);
    let limit = query_limit(&q, 100, MAX_AUDIT_PAGE)?;
    blocking(move || {
        let entries = state
            .inner
            .accounts
            .audit_entries(&sc.tenant, from, limit as usize)?;
        serde_json::to_value(entries)
            .map(axum::Json)
            .map_err(ApiError::internal)
    })
    .await
}

/// Decodes a query string with form rules (`+` is a space, `%xx` escapes).
fn query<T: serde::de::DeserializeOwned>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

fn check_limit(limit: usize) -> Result<usize, ApiError> {
    if limit == 0 || limit > MAX_RECORDS {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_RECORDS}"
        )));
    }
    Ok(limit)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    facets: bool,
}

/// Most search hits a request may skip.
pub const MAX_SEARCH_OFFSET: usize = 100_000;

async fn search_findings(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    q: Result<axum::extract::Query<SearchParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let p = query(q)?;
    let limit = check_limit(p.limit.unwrap_or(50))?;
    if p.offset > MAX_SEARCH_OFFSET {
        return Err(ApiError::bad_request(format!(
            "offset must be at most {MAX_SEARCH_OFFSET}"
        )));
    }
    blocking(move || {
        let v = state
            .inner
            .ops
            .search_findings(&sc.tenant, &p.q, limit, p.offset, p.facets)?;
        Ok(axum::Json(v))
    })
    .await
}

async fn finding(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    blocking(move || Ok(axum::Json(state.inner.ops.finding(&sc.tenant, &id)?))).await
}

async fn suppress(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    let mut s: SuppressionInput = parse_body(&body)?;
    if s.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason must not be empty"));
    }
    // Accountability defaults to whoever made the decision.
    let actor = sc.principal.actor();
    let owner = s.owner.take().filter(|o| !o.trim().is_empty());
    s.owner = Some(owner.unwrap_or_else(|| actor.clone()));
    blocking(move || {
        let v = state
            .inner
            .ops
            .set_suppression(&sc.tenant, &id, Some(s.clone()))?;
        let details = serde_json::to_value(&s).map_err(ApiError::internal)?;
        sc.audit(&state, "finding.suppress", &id, details)?;
        Ok(axum::Json(v))
    })
    .await
}

async fn unsuppress(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    blocking(move || {
        let v = state.inner.ops.set_suppression(&sc.tenant, &id, None)?;
        sc.audit(&state, "finding.unsuppress", &id, json!({}))?;
        Ok(axum::Json(v))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesParams {
    asset: Option<String>,
    limit: Option<usize>,
}

async fn changes(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    q: Result<axum::extract::Query<ChangesParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let p = query(q)?;
    let limit = check_limit(p.limit.unwrap_or(50))?;
    blocking(move || {
        let v = state
            .inner
            .ops
            .changes(&sc.tenant, p.asset.as_deref(), limit)?;
        Ok(axum::Json(v))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostureParams {
    history: Option<usize>,
}

async fn posture(
    State(state): State<ConsoleState>,
    Path((tenant, framework)): Path<(String, String)>,
    q: Result<axum::extract::Query<PostureParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let p = query(q)?;
    let history = p.history.unwrap_or(10);
    if history > MAX_RECORDS {
        return Err(ApiError::bad_request(format!(
            "history must be at most {MAX_RECORDS}"
        )));
    }
    blocking(move || {
        let v = state.inner.ops.posture(&sc.tenant, &framework, history)?;
        Ok(axum::Json(v))
    })
    .await
}

async fn asset(
    State(state): State<ConsoleState>,
    Path((tenant, asset)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    blocking(move || Ok(axum::Json(state.inner.ops.asset(&sc.tenant, &asset)?))).await
}

async fn accept_baseline(
    State(state): State<ConsoleState>,
    Path((tenant, asset)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    blocking(move || {
        let v = state.inner.ops.accept_baseline(&sc.tenant, &asset)?;
        sc.audit(&state, "asset.accept_baseline", &asset, json!({}))?;
        Ok(axum::Json(v))
    })
    .await
}

fn admin_count(accounts: &dyn AccountStore, tenant: &TenantId) -> Result<usize, ApiError> {
    Ok(accounts
        .members(tenant)?
        .iter()
        .filter(|m| m.role == Role::Admin)
        .count())
}

async fn remove_member(
    State(state): State<ConsoleState>,
    Path((tenant, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    blocking(move || {
        let accounts = state.inner.accounts.as_ref();
        let role = accounts
            .membership(&user, &sc.tenant)?
            .ok_or_else(ApiError::not_found)?;
        if role == Role::Admin && admin_count(accounts, &sc.tenant)? <= 1 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "last_admin",
                "a tenant must keep at least one admin",
            ));
        }
        accounts.remove_membership(&user, &sc.tenant)?;
        let email = accounts.user(&user)?.map(|u| u.email).unwrap_or_default();
        sc.audit(
            &state,
            "member.remove",
            &email,
            json!({ "user_id": user, "role": role }),
        )?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Most entries one export carries; beyond it the answer says it is truncated.
pub const MAX_EXPORT: usize = 100_000;

async fn audit_export(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    blocking(move || {
        let accounts = state.inner.accounts.as_ref();
        // The verification result travels with the entries so the recipient
        // knows what the collector vouched for at export time.
        let report = crate::audit::verify(accounts, &sc.tenant)?;
        let mut entries = accounts.audit_entries(&sc.tenant, 1, MAX_EXPORT + 1)?;
        let truncated = entries.len() > MAX_EXPORT;
        entries.truncate(MAX_EXPORT);
        let body = json!({
            "tenant": sc.tenant,
            "exported_ms": now_ms(),
            "exported_by": sc.principal.actor(),
            "verification": report,
            "truncated": truncated,
            "entries": entries,
        });
        let disposition = format!("attachment; filename=\"vigil-audit-{}.json\"", sc.tenant);
        let disposition = HeaderValue::from_str(&disposition).map_err(ApiError::internal)?;
        Ok((
            [(header::CONTENT_DISPOSITION, disposition)],
            axum::Json(body),
        )
            .into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// Changes the caller's own password; every session of the user ends, this one included.
async fn change_password(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let secure = state.inner.secure_cookies || forwarded_https(&headers);
    let s = state.clone();
    let principal = blocking(move || authenticate(s.inner.accounts.as_ref(), &headers)).await?;
    let b: PasswordBody = parse_body(&body)?;
    let Principal::User { user, .. } = principal else {
        return Err(ApiError::bad_request(
            "API keys have no password; log in as a user",
        ));
    };
    // Guessing the current password through a stolen session counts as a failed login.
    let key = format!("account:{}", user.email);
    let now = Instant::now();
    if let Some(wait) = state.inner.limiter.blocked_for(&key, now) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed attempts; try again later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let s = state.clone();
    let (current, phc) = (b.current_password, user.password_hash.clone());
    let ok = blocking(move || Ok(verify_password(&current, &phc))).await?;
    if !ok {
        s.inner.limiter.fail(&key, now);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "the current password is wrong",
        ));
    }
    blocking(move || {
        let actor = format!("user:{}", user.email);
        crate::accounts::set_password(
            s.inner.accounts.as_ref(),
            &user,
            &b.new_password,
            &actor,
            now_ms(),
        )?;
        Ok(())
    })
    .await?;
    let cookie = session_cookie("", 0, secure)?;
    Ok(([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}
