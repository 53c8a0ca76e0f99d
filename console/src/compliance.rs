//! Compliance reports and NIS2 incidents: the [`ComplianceOps`] the host
//! implements and the tenant-scoped routes over them (`/reports...`,
//! `/incidents...`). Every state change is audited.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::TenantId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::Role;
use crate::api::{ConsoleState, blocking, parse_body, with_scope};
use crate::error::{ApiError, OpsError};

/// A file to hand out.
#[derive(Debug, Clone)]
pub struct Download {
    /// Contents.
    pub bytes: Vec<u8>,
    /// `Content-Type`.
    pub content_type: String,
    /// File name for `Content-Disposition`.
    pub filename: String,
}

/// Report and incident operations of the host. Bodies arrive as JSON and the
/// host validates them (unknown fields and bad values are `OpsError::Invalid`).
pub trait ComplianceOps: Send + Sync + 'static {
    /// Queues a report; answers its metadata.
    fn create_report(
        &self,
        tenant: &TenantId,
        framework: &str,
        format: &str,
        requested_by: &str,
    ) -> Result<Value, OpsError>;
    /// Reports of a tenant, newest first.
    fn list_reports(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// One report's metadata.
    fn report(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError>;
    /// The report file; `None` while it is not done.
    fn report_file(&self, tenant: &TenantId, id: &str) -> Result<Option<Download>, OpsError>;
    /// Incidents of a tenant.
    fn list_incidents(&self, tenant: &TenantId) -> Result<Value, OpsError>;
    /// Records an incident.
    fn create_incident(
        &self,
        tenant: &TenantId,
        body: Value,
        actor: &str,
    ) -> Result<Value, OpsError>;
    /// One incident.
    fn incident(&self, tenant: &TenantId, id: &str) -> Result<Value, OpsError>;
    /// Changes an incident; answers it and a summary of the changes for the audit log.
    fn update_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        body: Value,
    ) -> Result<(Value, Value), OpsError>;
    /// One notification stage of an incident as `pdf` or `json`.
    fn export_incident(
        &self,
        tenant: &TenantId,
        id: &str,
        stage: &str,
        format: &str,
    ) -> Result<Download, OpsError>;
}

/// Routes under `/api/v1/tenants/{tenant}`.
pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/reports", get(list_reports).post(create_report))
        .route("/reports/{id}", get(report))
        .route("/reports/{id}/download", get(download_report))
        .route("/incidents", get(list_incidents).post(create_incident))
        .route("/incidents/{id}", get(incident).patch(update_incident))
        .route("/incidents/{id}/export/{stage}", get(export_incident))
}

fn ops(state: &ConsoleState) -> Result<std::sync::Arc<dyn ComplianceOps>, ApiError> {
    state.compliance().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "reports and incidents are not available on this collector",
        )
    })
}

fn file_response(d: Download) -> Result<Response, ApiError> {
    // The name is built by the host from validated ids; quotes cannot occur.
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", d.filename))
        .map_err(ApiError::internal)?;
    let ctype = HeaderValue::from_str(&d.content_type).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        d.bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportBody {
    framework: String,
    format: String,
}

async fn create_report(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    let b: ReportBody = parse_body(&body)?;
    let ops = ops(&state)?;
    blocking(move || {
        let actor = sc.principal.actor();
        let v = ops.create_report(&sc.tenant, &b.framework, &b.format, &actor)?;
        let id = v["id"].as_str().unwrap_or_default().to_string();
        sc.audit(
            &state,
            "report.create",
            &id,
            json!({ "framework": b.framework, "format": b.format }),
        )?;
        Ok((StatusCode::ACCEPTED, axum::Json(v)))
    })
    .await
}

async fn list_reports(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let ops = ops(&state)?;
    blocking(move || Ok(axum::Json(ops.list_reports(&sc.tenant)?))).await
}

async fn report(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let ops = ops(&state)?;
    blocking(move || Ok(axum::Json(ops.report(&sc.tenant, &id)?))).await
}

async fn download_report(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let ops = ops(&state)?;
    blocking(move || match ops.report_file(&sc.tenant, &id)? {
        Some(d) => file_response(d),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            "the report is not done yet",
        )),
    })
    .await
}

async fn list_incidents(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let ops = ops(&state)?;
    blocking(move || Ok(axum::Json(ops.list_incidents(&sc.tenant)?))).await
}

async fn create_incident(
    State(state): State<ConsoleState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    let b: Value = parse_body(&body)?;
    let ops = ops(&state)?;
    blocking(move || {
        let v = ops.create_incident(&sc.tenant, b, &sc.principal.actor())?;
        let id = v["id"].as_str().unwrap_or_default().to_string();
        sc.audit(
            &state,
            "incident.create",
            &id,
            json!({
                "title": v["title"],
                "significant": v["significant"],
                "detected_ms": v["detected_ms"],
            }),
        )?;
        Ok((StatusCode::CREATED, axum::Json(v)))
    })
    .await
}

async fn incident(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let ops = ops(&state)?;
    blocking(move || Ok(axum::Json(ops.incident(&sc.tenant, &id)?))).await
}

async fn update_incident(
    State(state): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Auditor).await?;
    let b: Value = parse_body(&body)?;
    let ops = ops(&state)?;
    blocking(move || {
        let (v, changes) = ops.update_incident(&sc.tenant, &id, b)?;
        sc.audit(&state, "incident.update", &id, changes)?;
        Ok(axum::Json(v))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    format: Option<String>,
}

async fn export_incident(
    State(state): State<ConsoleState>,
    Path((tenant, id, stage)): Path<(String, String, String)>,
    q: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sc = with_scope(&state, headers, tenant, Role::Viewer).await?;
    let Query(p) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let format = p.format.unwrap_or_else(|| "pdf".into());
    let ops = ops(&state)?;
    blocking(move || file_response(ops.export_incident(&sc.tenant, &id, &stage, &format)?)).await
}
