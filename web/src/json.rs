//! [`JsonBody`]: the one JSON-body extractor. A body without a JSON content type is 415 (a
//! browser sends `text/plain` across sites without asking first: such a body is never parsed),
//! one over the route's limit 413, anything unreadable 400 naming the problem; the handlers
//! never parse bodies themselves.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !ct.is_some_and(is_json) {
            return Err(unsupported(ct, "application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("the request body is too large")
            } else {
                ApiError::bad_request("bad_body", e.body_text())
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// `application/json`, `application/x-ndjson`, `application/*+json` and the like, with or
/// without parameters.
pub fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime.starts_with("application/") && (mime.ends_with("json") || mime.ends_with("jsonl"))
}

/// 415 naming the content type received and the one expected.
pub fn unsupported(got: Option<&str>, want: &str) -> ApiError {
    let got = got.map_or_else(|| "none".to_string(), |c| format!("{c:?}"));
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_content_type",
        format!("the body's Content-Type is {got}; send {want}"),
    )
}

/// Parses JSON with a clear 400.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("bad_json", format!("invalid JSON body: {e}")))
}
