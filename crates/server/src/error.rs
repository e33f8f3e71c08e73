//! The one mapping from errors to HTTP responses, at the server's edge.
//!
//! Every failure a client can cause is a 4xx with a JSON body `{"error": "..."}` that says
//! what to do; a 500 means a bug and is logged once, here. The database away (503, with
//! `Retry-After`) or its disk full (507) say so, so clients and executors retry instead of
//! giving up.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_store::StoreError;
use flotilla_wire::ErrorBody;

/// An error returned by a handler.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Extra JSON fields (e.g. spec diagnostics).
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), details: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match &error {
            StoreError::NotFound { .. } => ApiError::not_found(error.to_string()),
            StoreError::Conflict { .. } => ApiError::conflict(error.to_string()),
            StoreError::InvalidState { .. } => ApiError::conflict(error.to_string()),
            StoreError::Unavailable { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
            StoreError::StorageFull { .. } => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, error.to_string()),
            _ => ApiError::internal(format!("database error: {error}")),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        ApiError::internal(format!("{error:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let mut body = serde_json::to_value(ErrorBody { error: self.message }).unwrap_or_default();
        if let (Some(serde_json::Value::Object(details)), serde_json::Value::Object(object)) = (self.details, &mut body) {
            object.extend(details);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Turns the framework's own refusals (a body that is not JSON, a missing `Content-Type`, a
/// field of the wrong type, an unknown route or method), which axum answers in plain text or
/// with no body, into this API's JSON error shape with status 400 (404 and 405 keep theirs), so
/// every error a client sees reads the same way. Found by running schemathesis against
/// docs/openapi.yaml.
pub async fn json_refusals(response: Response) -> Response {
    let status = response.status();
    if !status.is_client_error() {
        return response;
    }
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|value| value.starts_with("text/plain"));
    if !plain {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 << 10).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let (status, message) = match status {
        StatusCode::NOT_FOUND if text.is_empty() => (status, "no such route; see docs/openapi.yaml for the API".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (status, "this route does not take that method; see docs/openapi.yaml for the API".to_owned()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => (StatusCode::BAD_REQUEST, text),
        _ if text.is_empty() => (status, status.canonical_reason().unwrap_or("refused").to_owned()),
        _ => (status, text),
    };
    ApiError { status, message, details: None }.into_response()
}
