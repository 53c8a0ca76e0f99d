//! API errors with a stable JSON shape: `{"error":{"code":"...","message":"..."}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::accounts::AccountError;

/// Failure of an operation the console delegates to its host (the collector).
#[derive(Debug, Error)]
pub enum OpsError {
    /// The named finding, asset or framework does not exist in the tenant.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed (a bad search query, say); the message is shown.
    #[error("{0}")]
    Invalid(String),
    /// The operation failed inside the host; logged, not shown.
    #[error("{0}")]
    Failed(String),
}

/// An error answer of the HTTP API.
#[derive(Debug, Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation (never internal details).
    pub message: String,
    /// Seconds to wait, for 429 answers.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 401: no valid session or API key.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "log in or present an API key",
        )
    }

    /// 404: used for unknown and foreign resources alike, so existence never leaks.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    /// 403: a member whose role does not allow the action.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "your role in this tenant does not allow this",
        )
    }

    /// 400: malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 500: logged with its cause, answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("console API internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid(m) => Self::bad_request(m),
            AccountError::UserExists(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            other => Self::internal(other),
        }
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::NotFound(_) => Self::not_found(),
            OpsError::Invalid(m) => Self::bad_request(m),
            OpsError::Failed(m) => Self::internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
