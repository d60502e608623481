//! API errors: `{"error": {"code": "...", "message": "..."}}` with the matching status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (503 answers).
    pub retry_after: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_api_key", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn busy(message: impl Into<String>) -> Self {
        ApiError { retry_after: Some(2), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message) }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message.clone() } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<sousuo_query::Error> for ApiError {
    fn from(e: sousuo_query::Error) -> Self {
        use sousuo_query::Error as E;
        match &e {
            E::EmptyQuery => ApiError::bad_request("empty_query", e.to_string()),
            E::QuerySyntax { .. } => ApiError::bad_request("bad_query", e.to_string()),
            E::BadFilter { .. } => ApiError::bad_request("bad_filter", e.to_string()),
            E::BadParameter { .. } => ApiError::bad_request("bad_parameter", e.to_string()),
            E::Busy => ApiError::busy(e.to_string()),
            E::Index(ie) => index_error(ie),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl From<sousuo_indexer::Error> for ApiError {
    fn from(e: sousuo_indexer::Error) -> Self {
        index_error(&e)
    }
}

fn index_error(e: &sousuo_indexer::Error) -> ApiError {
    use sousuo_indexer::Error as E;
    match e {
        E::NoSuchCollection(_) => ApiError::not_found("collection_not_found", e.to_string()),
        E::InvalidName { .. } => ApiError::bad_request("bad_collection_name", e.to_string()),
        E::CollectionExists(_) => ApiError::new(StatusCode::CONFLICT, "collection_exists", e.to_string()),
        E::NoSuchDocument(_) => ApiError::not_found("document_not_found", e.to_string()),
        E::EncoderMismatch { .. } => ApiError::new(StatusCode::CONFLICT, "encoder_mismatch", e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}

impl From<sousuo_encoder::Error> for ApiError {
    fn from(e: sousuo_encoder::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
