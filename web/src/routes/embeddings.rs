//! `POST /v1/embeddings`: OpenAI's embeddings endpoint, so any OpenAI-compatible tool can use
//! Sousuo as its embedding server. `model` is a collection (embedded with the encoder that
//! collection is searched with) or the encoder's own name; the vectors are the ones Sousuo
//! indexes (unit length, mean-pooled). Inputs longer than the encoder reads are truncated to
//! its window, as sentence-transformers does; `usage` counts the tokens read.

use super::St;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine;
use serde::Deserialize;

/// Inputs one request may carry (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

/// A text or a list of texts (token-id inputs are refused: they would be another model's ids).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum Input {
    One(String),
    Many(Vec<String>),
    #[schema(value_type = Object)]
    Other(serde_json::Value),
}

/// OpenAI's embeddings request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct EmbeddingsRequest {
    /// A collection, or the encoder's name (`all-MiniLM-L6-v2`).
    model: String,
    input: Input,
    /// `float` (default) or `base64` (little-endian f32, what the `openai` packages ask for).
    #[serde(default)]
    encoding_format: Option<String>,
    /// Must equal the encoder's width when given.
    #[serde(default)]
    dimensions: Option<usize>,
}

#[utoipa::path(post, path = "/v1/embeddings", request_body = EmbeddingsRequest,
    responses((status = 200, description = "OpenAI's embedding list"), (status = 400, body = ErrorBody)))]
pub(super) async fn embeddings(
    State(state): St,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<EmbeddingsRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let encoder_name = state.encoder.model().name.clone();
    if req.model != encoder_name {
        // A collection: the caller must be allowed to search it, and it must exist.
        super::authorize(&caller, Action::Search, &req.model)
            .map_err(|_| model_not_found(&req.model, &encoder_name))?;
        let s = state.clone();
        let name = req.model.clone();
        let (model, encoder) = (req.model.clone(), encoder_name.clone());
        state.blocking(move || s.collection(&name).map(|_| ())).await.map_err(|e| {
            if e.status == StatusCode::NOT_FOUND {
                model_not_found(&model, &encoder)
            } else {
                e
            }
        })?;
    }
    let texts = inputs(req.input)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_encoding_format",
                format!("encoding_format is \"float\" or \"base64\", not \"{other}\""),
            ))
        }
    };
    let dim = state.encoder.dim();
    if let Some(d) = req.dimensions.filter(|d| *d != dim) {
        return Err(ApiError::bad_request(
            "bad_dimensions",
            format!("dimensions: {encoder_name} gives {dim}-dimensional vectors, not {d}"),
        ));
    }
    let s = state.clone();
    let (rows, tokens) = state
        .blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let ids = s.encoder.tokenize(&refs).map_err(ApiError::from)?;
            let tokens: usize = ids.iter().map(|i| i.len()).sum();
            let e = s.encoder.encode_ids(ids).map_err(ApiError::from)?;
            Ok(((0..refs.len()).map(|i| e.row(i).to_vec()).collect::<Vec<Vec<f32>>>(), tokens))
        })
        .await?;
    let data: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            };
            serde_json::json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(serde_json::json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

fn model_not_found(model: &str, encoder: &str) -> ApiError {
    ApiError::not_found(
        "model_not_found",
        format!("no model \"{model}\": name a collection you may search, or the encoder \"{encoder}\""),
    )
}

/// The texts of an input, checked: at least one, at most [`MAX_INPUTS`], none empty.
fn inputs(input: Input) -> ApiResult<Vec<String>> {
    let texts = match input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
        Input::Other(v) => {
            let what = match v {
                serde_json::Value::Array(a) if a.iter().all(|x| x.is_number() || x.is_array()) => {
                    "token ids (they would be another model's vocabulary)"
                }
                serde_json::Value::Array(_) => "a list holding something other than strings",
                serde_json::Value::Null => "null",
                serde_json::Value::Object(_) => "an object",
                _ => "a number or a boolean",
            };
            return Err(ApiError::bad_request(
                "bad_input",
                format!("input is a string or a list of strings, not {what}"),
            ));
        }
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(
            "bad_input",
            format!("input holds 1 to {MAX_INPUTS} texts, not {}", texts.len()),
        ));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::bad_request("bad_input", format!("input {i} is empty")));
    }
    Ok(texts)
}
