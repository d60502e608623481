//! `POST /v1/chat/completions`: an OpenAI-compatible endpoint, so chat clients can use a
//! collection (the `model`) as a grounded model. The reply is Sousuo's checked answer with its
//! sources listed; streaming sends it as `chat.completion.chunk` deltas, then `[DONE]`. The
//! stream carries the verified answer (not raw model tokens), so a client never shows text the
//! sources do not support.

use crate::api::{start_answer, Streamed};
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::{now_secs, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sousuo_query::{Answer, AnswerParams, SearchParams, Turn};
use std::convert::Infallible;
use std::sync::Arc;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    pub role: String,
    /// A string, or a list of `{"type": "text", "text": ..}` parts.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    /// The collection to answer from.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default)]
    pub max_completion_tokens: Option<usize>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(|t| t.as_str())).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// The question (the last user message) and the history (earlier user/assistant pairs).
fn conversation(messages: &[ChatMessage]) -> ApiResult<(String, Vec<Turn>)> {
    let last = messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or_else(|| ApiError::bad_request("bad_messages", "messages need at least one user message"))?;
    let question = text_of(&messages[last].content);
    let mut history = Vec::new();
    let mut pending: Option<String> = None;
    for m in &messages[..last] {
        match m.role.as_str() {
            "user" => pending = Some(text_of(&m.content)),
            "assistant" => {
                if let Some(q) = pending.take() {
                    history.push(Turn { question: q, answer: text_of(&m.content) });
                }
            }
            _ => {}
        }
    }
    Ok((question, history))
}

/// The reply text: the checked answer and its numbered sources.
fn reply(a: &Answer) -> String {
    let mut out = a.text.clone();
    if !a.sources.is_empty() {
        out.push_str("\n\nSources:");
        for s in &a.sources {
            out.push_str(&format!("\n[{}] {} ({})", s.n, s.title, s.uri));
        }
    }
    out
}

#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatRequest,
    responses((status = 200, description = "chat.completion, or chat.completion.chunk events when stream is true"),
              (status = 400, body = ErrorBody)))]
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|e| ApiError::bad_request("bad_body", e.body_text()))?;
    let req: ChatRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_json", format!("invalid chat completion request: {e}")))?;
    sousuo_indexer::validate_name(&req.model)
        .map_err(|_| ApiError::bad_request("bad_model", "model names the collection to answer from"))?;
    caller.require(Action::Ask, Some(&req.model))?;
    let (question, history) = conversation(&req.messages)?;
    if question.trim().is_empty() {
        return Err(ApiError::bad_request("empty_query", "the last user message is empty"));
    }
    let s = state.clone();
    let model = req.model.clone();
    state.blocking(move || s.collection(&model).map(|_| ())).await?;
    let mut p = AnswerParams {
        search: SearchParams { limit: 5, ..SearchParams::default() },
        history,
        wait_for_decoder: false,
        ..AnswerParams::default()
    };
    crate::api::sampling(&mut p, req.max_completion_tokens.or(req.max_tokens), req.temperature, req.top_p, req.seed)?;
    let mut rx = start_answer(&state, req.model.clone(), question, p)?;
    let id = format!("chatcmpl-{}", now_secs());
    let created = now_secs();
    if !req.stream {
        while let Some(m) = rx.recv().await {
            match m {
                Streamed::Done(a) => {
                    let gen = a.generation.as_ref();
                    let (pt, ct) = gen.map(|g| (g.prompt_tokens, g.generated_tokens)).unwrap_or((0, 0));
                    return Ok(Json(serde_json::json!({
                        "id": id,
                        "object": "chat.completion",
                        "created": created,
                        "model": req.model,
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": reply(&a)},
                            "finish_reason": "stop"
                        }],
                        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
                        "sousuo": *a,
                    }))
                    .into_response());
                }
                Streamed::Error(e) => return Err(e),
                _ => {}
            }
        }
        return Err(ApiError::internal("the answer stopped without a result"));
    }
    let model = req.model.clone();
    let stream = async_stream(rx, id, created, model);
    Ok(Sse::new(stream).into_response())
}

fn chunk(id: &str, created: u64, model: &str, delta: serde_json::Value, finish: Option<&str>) -> SseEvent {
    let v = serde_json::json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    SseEvent::default().data(v.to_string())
}

/// The OpenAI stream: a role delta, the checked answer in word-sized deltas, a final chunk,
/// then `[DONE]`.
fn async_stream(
    mut rx: tokio::sync::mpsc::Receiver<Streamed>,
    id: String,
    created: u64,
    model: String,
) -> impl futures_util::Stream<Item = Result<SseEvent, Infallible>> {
    let (tx, out) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(64);
    tokio::spawn(async move {
        let _ = tx.send(Ok(chunk(&id, created, &model, serde_json::json!({"role": "assistant"}), None))).await;
        let mut text = None;
        while let Some(m) = rx.recv().await {
            match m {
                Streamed::Done(a) => {
                    text = Some(reply(&a));
                    break;
                }
                Streamed::Error(e) => {
                    let _ = tx
                        .send(Ok(SseEvent::default().data(serde_json::to_string(&e.body()).unwrap_or_default())))
                        .await;
                    break;
                }
                _ => {}
            }
        }
        if let Some(text) = text {
            for piece in text.split_inclusive(' ') {
                let _ = tx.send(Ok(chunk(&id, created, &model, serde_json::json!({"content": piece}), None))).await;
            }
            let _ = tx.send(Ok(chunk(&id, created, &model, serde_json::json!({}), Some("stop")))).await;
        }
        let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    tokio_stream::wrappers::ReceiverStream::new(out)
}

#[utoipa::path(get, path = "/v1/models", responses((status = 200)))]
pub async fn models(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<serde_json::Value>> {
    let names = state.collection_names()?;
    let data: Vec<serde_json::Value> = names
        .into_iter()
        .filter(|n| caller.sees(n))
        .map(|n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "sousuo"}))
        .collect();
    Ok(Json(serde_json::json!({"object": "list", "data": data})))
}
