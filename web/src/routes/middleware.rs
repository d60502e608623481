//! The middleware every route passes: the API-key check, and metrics with axum's plain-text
//! rejections turned into the JSON error shape.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// Routes open without a key: the health check and the page (it holds no data; it asks for a
/// key when the API answers 401).
fn public(path: &str) -> bool {
    matches!(path, "/health" | "/")
}

/// Identifies the caller from its key and hands it to the handler as an extension.
pub async fn authenticate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let presented = key_from(req.headers());
    let caller = match state.keys.identify(presented.as_deref()) {
        Ok(c) => c,
        Err(_) if public(req.uri().path()) => Caller::Open,
        Err(e) => return e.into_response(),
    };
    if let (Some(limits), Caller::Key(k)) = (&state.rate_limits, &caller) {
        if let Err(wait) = limits.take(&k.uid) {
            return ApiError::rate_limited(wait).into_response();
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn key_from(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        // The scheme is case-insensitive (RFC 9110): "Bearer", "bearer", "BEARER".
        let key = match v.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest,
            _ => v,
        };
        return Some(key.trim().to_string());
    }
    h.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string())
}

/// Records metrics, and turns axum's plain-text rejections (404 route, 405, 413, 415...)
/// into the JSON error shape.
pub async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let res = next.run(req).await;
    let status = res.status();
    state.metrics.record(&method, &route, status.as_u16(), started.elapsed().as_secs_f64());
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("text/plain"));
    if (status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE) && plain {
        return json_rejection(res).await;
    }
    res
}

async fn json_rejection(res: Response) -> Response {
    let status = res.status();
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take that method".into()),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large".to_string()),
        StatusCode::SERVICE_UNAVAILABLE => ("timeout", "the request took too long".to_string()),
        _ => ("bad_request", if text.is_empty() { status.to_string() } else { text }),
    };
    let mut r = ApiError::new(status, code, message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}
