//! Alerting endpoints (issue 5): channels, rules, mute windows and deliveries
//! of a tenant. The host implements [`AlertOperations`] and hands it out
//! through [`super::Operations::alerts`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use protocol::TenantId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ConsoleState, MAX_RECORDS, Operations, blocking, parse_body, query_limit, query_param,
    with_scope,
};
use crate::accounts::Role;
use crate::error::{ApiError, OpsError};
use crate::openapi::{RouteDoc, array_of, object, schema_ref};

/// A channel as requested through the API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    /// Display name.
    pub name: String,
    /// `webhook`, `slack` or `email`.
    pub kind: String,
    /// Webhook or Slack URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Webhook HMAC key; generated (and answered once) when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Email recipients.
    #[serde(default)]
    pub to: Vec<String>,
}

fn default_severity() -> String {
    "info".into()
}

fn enabled() -> bool {
    true
}

/// An alert rule as requested through the API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// Channel the matching events go to.
    pub channel_id: String,
    /// Lowest finding severity (`info` when absent).
    #[serde(default = "default_severity")]
    pub min_severity: String,
    /// Change types that match (empty: none).
    #[serde(default)]
    pub change_types: Vec<String>,
    /// Event kinds that match.
    pub events: Vec<String>,
    /// Active (true when absent).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

/// A mute window as requested through the API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MuteWindowInput {
    /// Start, ms since the epoch.
    pub starts_ms: u64,
    /// End, ms since the epoch.
    pub ends_ms: u64,
    /// Why.
    pub reason: String,
}

/// Alerting operations of the host. Calls may block. Every id is scoped to
/// `tenant`: another tenant's id is [`OpsError::NotFound`].
pub trait AlertOperations: Send + Sync {
    /// Channels, without secrets.
    fn alert_channels(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// Creates a channel; a generated webhook secret is in the answer once.
    fn create_alert_channel(&self, tenant: &TenantId, c: ChannelInput) -> Result<Value, OpsError>;
    /// Deletes a channel (and its rules).
    fn delete_alert_channel(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError>;
    /// Queues a test message to a channel; answers `{delivery_id}`.
    fn test_alert_channel(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError>;
    /// Alert rules.
    fn alert_rules(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// Creates a rule.
    fn create_alert_rule(&self, tenant: &TenantId, r: RuleInput) -> Result<Value, OpsError>;
    /// Deletes a rule.
    fn delete_alert_rule(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError>;
    /// Mute windows.
    fn mute_windows(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// Creates a mute window.
    fn create_mute_window(&self, tenant: &TenantId, w: MuteWindowInput) -> Result<Value, OpsError>;
    /// Deletes a mute window.
    fn delete_mute_window(&self, tenant: &TenantId, id: &str) -> Result<(), OpsError>;
    /// Deliveries, newest first, optionally of one status.
    fn alert_deliveries(
        &self,
        tenant: &TenantId,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Value, OpsError>;
    /// Puts a dead-lettered delivery back in the queue.
    fn retry_alert_delivery(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError>;
}

/// Delivery states the `status` filter accepts.
pub const DELIVERY_STATES: [&str; 4] = ["pending", "delivered", "dead", "muted"];

fn alert_ops(ops: &dyn Operations) -> Result<&dyn AlertOperations, ApiError> {
    ops.alerts().ok_or_else(ApiError::not_found)
}

/// Routes below `/tenants/{tenant}`.
pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/alert-channels", get(list_channels).post(create_channel))
        .route("/alert-channels/{id}", delete(delete_channel))
        .route("/alert-channels/{id}/test", post(test_channel))
        .route("/alert-rules", get(list_rules).post(create_rule))
        .route("/alert-rules/{id}", delete(delete_rule))
        .route("/mute-windows", get(list_mutes).post(create_mute))
        .route("/mute-windows/{id}", delete(delete_mute))
        .route("/alert-deliveries", get(list_deliveries))
        .route("/alert-deliveries/{id}/retry", post(retry_delivery))
}

type Json = axum::Json<Value>;

async fn read(
    state: ConsoleState,
    tenant: String,
    headers: axum::http::HeaderMap,
    f: impl FnOnce(&dyn AlertOperations, &TenantId) -> Result<Value, OpsError> + Send + 'static,
) -> Result<Json, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    blocking(move || {
        let ops = state.inner.ops.clone();
        Ok(axum::Json(f(alert_ops(ops.as_ref())?, &sc.tenant)?))
    })
    .await
}

async fn list_channels(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Json, ApiError> {
    read(state, tenant, headers, |o, t| o.alert_channels(t)).await
}

async fn list_rules(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Json, ApiError> {
    read(state, tenant, headers, |o, t| o.alert_rules(t)).await
}

async fn list_mutes(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Json, ApiError> {
    read(state, tenant, headers, |o, t| o.mute_windows(t)).await
}

async fn list_deliveries(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Json, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    let limit = query_limit(&q, 50, MAX_RECORDS)? as usize;
    let status = query_param(&q, "status");
    if let Some(s) = &status
        && !DELIVERY_STATES.contains(&s.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status must be one of {}",
            DELIVERY_STATES.join(", ")
        )));
    }
    blocking(move || {
        let ops = state.inner.ops.clone();
        let v = alert_ops(ops.as_ref())?.alert_deliveries(&sc.tenant, status.as_deref(), limit)?;
        Ok(axum::Json(v))
    })
    .await
}

async fn create_channel(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    let input: ChannelInput = parse_body(&body)?;
    blocking(move || {
        let ops = state.inner.ops.clone();
        let created = alert_ops(ops.as_ref())?.create_alert_channel(&sc.tenant, input)?;
        // The secret is in the answer only.
        let details = json!({ "name": created["name"], "kind": created["kind"], "target": created["target"] });
        let id = created["id"].as_str().unwrap_or_default().to_string();
        sc.audit(&state, "alert_channel.create", &id, details)?;
        Ok((StatusCode::CREATED, axum::Json(created)))
    })
    .await
}

async fn create_rule(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    let input: RuleInput = parse_body(&body)?;
    blocking(move || {
        let ops = state.inner.ops.clone();
        let created = alert_ops(ops.as_ref())?.create_alert_rule(&sc.tenant, input)?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        sc.audit(&state, "alert_rule.create", &id, created.clone())?;
        Ok((StatusCode::CREATED, axum::Json(created)))
    })
    .await
}

async fn create_mute(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    let input: MuteWindowInput = parse_body(&body)?;
    blocking(move || {
        let ops = state.inner.ops.clone();
        let created = alert_ops(ops.as_ref())?.create_mute_window(&sc.tenant, input)?;
        let id = created["id"].as_str().unwrap_or_default().to_string();
        sc.audit(&state, "mute_window.create", &id, created.clone())?;
        Ok((StatusCode::CREATED, axum::Json(created)))
    })
    .await
}

/// Runs an admin action on `id` and audits it under `action`.
async fn admin_action(
    state: ConsoleState,
    tenant: String,
    id: String,
    headers: axum::http::HeaderMap,
    action: &'static str,
    f: impl FnOnce(&dyn AlertOperations, &TenantId, &str) -> Result<Value, OpsError> + Send + 'static,
) -> Result<Value, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Admin).await?;
    blocking(move || {
        let ops = state.inner.ops.clone();
        let v = f(alert_ops(ops.as_ref())?, &sc.tenant, &id)?;
        sc.audit(&state, action, &id, json!({}))?;
        Ok(v)
    })
    .await
}

async fn delete_channel(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<StatusCode, ApiError> {
    admin_action(
        state,
        tenant,
        id,
        headers,
        "alert_channel.delete",
        |o, t, id| o.delete_alert_channel(t, id).map(|_| Value::Null),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_rule(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<StatusCode, ApiError> {
    admin_action(
        state,
        tenant,
        id,
        headers,
        "alert_rule.delete",
        |o, t, id| o.delete_alert_rule(t, id).map(|_| Value::Null),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_mute(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<StatusCode, ApiError> {
    admin_action(
        state,
        tenant,
        id,
        headers,
        "mute_window.delete",
        |o, t, id| o.delete_mute_window(t, id).map(|_| Value::Null),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_channel(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<(StatusCode, Json), ApiError> {
    let v = admin_action(
        state,
        tenant,
        id,
        headers,
        "alert_channel.test",
        |o, t, id| o.test_alert_channel(t, id),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(v)))
}

async fn retry_delivery(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<(StatusCode, Json), ApiError> {
    let v = admin_action(
        state,
        tenant,
        id,
        headers,
        "alert_delivery.retry",
        |o, t, id| o.retry_alert_delivery(t, id),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(v)))
}

const fn doc(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    min_role: &'static str,
    success: u16,
    body: Option<&'static str>,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        min_role: Some(min_role),
        success,
        body,
        auth: true,
    }
}

/// OpenAPI entries of the alerting routes.
pub const ROUTES: &[RouteDoc] = &[
    doc(
        "get",
        "/api/v1/tenants/{tenant}/alert-channels",
        "Alert channels (secrets are never returned)",
        "auditor",
        200,
        None,
    ),
    doc(
        "post",
        "/api/v1/tenants/{tenant}/alert-channels",
        "Create an alert channel; a generated webhook secret is shown once",
        "admin",
        201,
        Some("AlertChannelRequest"),
    ),
    doc(
        "delete",
        "/api/v1/tenants/{tenant}/alert-channels/{id}",
        "Delete an alert channel and its rules",
        "admin",
        204,
        None,
    ),
    doc(
        "post",
        "/api/v1/tenants/{tenant}/alert-channels/{id}/test",
        "Queue a test message to a channel",
        "admin",
        202,
        None,
    ),
    doc(
        "get",
        "/api/v1/tenants/{tenant}/alert-rules",
        "Alert rules",
        "auditor",
        200,
        None,
    ),
    doc(
        "post",
        "/api/v1/tenants/{tenant}/alert-rules",
        "Create an alert rule",
        "admin",
        201,
        Some("AlertRuleRequest"),
    ),
    doc(
        "delete",
        "/api/v1/tenants/{tenant}/alert-rules/{id}",
        "Delete an alert rule",
        "admin",
        204,
        None,
    ),
    doc(
        "get",
        "/api/v1/tenants/{tenant}/mute-windows",
        "Mute windows",
        "auditor",
        200,
        None,
    ),
    doc(
        "post",
        "/api/v1/tenants/{tenant}/mute-windows",
        "Create a mute window",
        "admin",
        201,
        Some("MuteWindowRequest"),
    ),
    doc(
        "delete",
        "/api/v1/tenants/{tenant}/mute-windows/{id}",
        "Delete a mute window",
        "admin",
        204,
        None,
    ),
    doc(
        "get",
        "/api/v1/tenants/{tenant}/alert-deliveries",
        "Alert deliveries, newest first (?status=pending|delivered|dead|muted&limit=50)",
        "auditor",
        200,
        None,
    ),
    doc(
        "post",
        "/api/v1/tenants/{tenant}/alert-deliveries/{id}/retry",
        "Put a dead-lettered delivery back in the queue",
        "admin",
        202,
        None,
    ),
];

/// Success body of an alerting route; `None` for other routes.
pub fn response_schema(rd: &RouteDoc) -> Option<Value> {
    if !ROUTES
        .iter()
        .any(|r| r.method == rd.method && r.path == rd.path)
    {
        return None;
    }
    let tail = rd.path.rsplit('/').next().unwrap_or_default();
    Some(match (rd.method, tail) {
        ("get", "alert-channels") => array_of("AlertChannel"),
        ("post", "alert-channels") => schema_ref("CreatedAlertChannel"),
        ("get", "alert-rules") => array_of("AlertRule"),
        ("post", "alert-rules") => schema_ref("AlertRule"),
        ("get", "mute-windows") => array_of("MuteWindow"),
        ("post", "mute-windows") => schema_ref("MuteWindow"),
        ("get", "alert-deliveries") => array_of("AlertDelivery"),
        ("post", "retry") => schema_ref("AlertDelivery"),
        ("post", "test") => object(&[("delivery_id", json!({ "type": "string" }))]),
        _ => json!({}),
    })
}

/// Component schemas of the alerting routes.
pub fn schemas() -> serde_json::Map<String, Value> {
    let s = || json!({ "type": "string" });
    let n = || json!({ "type": "integer", "minimum": 0 });
    let opt_n = || json!({ "type": ["integer", "null"], "minimum": 0 });
    let strings = || json!({ "type": "array", "items": { "type": "string" } });
    let kind = || json!({ "type": "string", "enum": ["webhook", "slack", "email"] });
    let severity =
        || json!({ "type": "string", "enum": ["info", "low", "medium", "high", "critical"] });
    let events = || {
        json!({ "type": "array", "items": { "type": "string",
            "enum": ["finding_new", "finding_reopened", "change", "incident_deadline"] } })
    };
    let channel = [
        ("id", s()),
        ("name", s()),
        ("kind", kind()),
        (
            "target",
            json!({ "type": "string", "description": "URL, or comma-separated recipients" }),
        ),
        ("created_ms", n()),
    ];
    let mut created = object(&channel);
    created["properties"]["secret"] =
        json!({ "type": "string", "description": "generated webhook secret, shown once" });
    let mut m = serde_json::Map::new();
    m.insert("AlertChannel".into(), object(&channel));
    m.insert("CreatedAlertChannel".into(), created);
    m.insert(
        "AlertRule".into(),
        object(&[
            ("id", s()),
            ("channel_id", s()),
            ("min_severity", severity()),
            ("change_types", strings()),
            ("events", events()),
            ("enabled", json!({ "type": "boolean" })),
        ]),
    );
    m.insert(
        "MuteWindow".into(),
        object(&[
            ("id", s()),
            ("starts_ms", n()),
            ("ends_ms", n()),
            ("reason", s()),
        ]),
    );
    m.insert(
        "AlertDelivery".into(),
        object(&[
            ("id", s()),
            ("channel_id", s()),
            (
                "event_kind",
                json!({ "type": "string", "enum": ["finding_new", "finding_reopened", "change", "incident_deadline", "test"] }),
            ),
            ("summary", s()),
            (
                "status",
                json!({ "type": "string", "enum": DELIVERY_STATES }),
            ),
            ("attempts", n()),
            ("next_attempt_ms", n()),
            ("last_error", json!({ "type": ["string", "null"] })),
            ("created_ms", n()),
            ("delivered_ms", opt_n()),
        ]),
    );
    m.insert(
        "AlertChannelRequest".into(),
        json!({
            "type": "object", "required": ["name", "kind"],
            "properties": {
                "name": s(), "kind": kind(),
                "url": { "type": "string", "description": "webhook and slack" },
                "secret": { "type": "string", "minLength": 16, "description": "webhook HMAC key; generated when absent" },
                "to": { "type": "array", "items": { "type": "string" }, "description": "email recipients" }
            }
        }),
    );
    m.insert(
        "AlertRuleRequest".into(),
        json!({
            "type": "object", "required": ["channel_id", "events"],
            "properties": {
                "channel_id": s(), "min_severity": severity(),
                "change_types": { "type": "array", "items": { "type": "string" }, "description": "e.g. PORT_OPENED; empty matches no change event" },
                "events": events(), "enabled": { "type": "boolean" }
            }
        }),
    );
    m.insert(
        "MuteWindowRequest".into(),
        json!({
            "type": "object", "required": ["starts_ms", "ends_ms", "reason"],
            "properties": { "starts_ms": n(), "ends_ms": n(), "reason": s() }
        }),
    );
    m
}
