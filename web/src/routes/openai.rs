//! `POST /v1/chat/completions`: an OpenAI-compatible endpoint, so chat clients can use a
//! collection (the `model`) as a grounded model. The reply is Sousuo's checked answer with its
//! sources listed; streaming sends it as `chat.completion.chunk` deltas, then `[DONE]`. The
//! stream carries the verified answer (not raw model tokens), so a client never shows text the
//! sources do not support.

use super::stream::{finished, sampling, start_answer, Streamed};
use super::St;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sousuo_common::now_secs;
use sousuo_query::{Answer, AnswerParams, SearchParams, Turn};
use std::convert::Infallible;

/// One chat message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ChatMessage {
    role: String,
    /// A string, or a list of `{"type": "text", "text": ..}` parts.
    #[schema(value_type = Object)]
    content: serde_json::Value,
}

/// OpenAI's chat completion request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ChatRequest {
    /// The collection to answer from.
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
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
pub(super) async fn chat_completions(
    State(state): St,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<ChatRequest>,
) -> ApiResult<Response> {
    sousuo_indexer::validate_name(&req.model)
        .map_err(|_| ApiError::bad_request("bad_model", "model names the collection to answer from"))?;
    caller.require(Action::Ask, Some(&req.model))?;
    let (question, history) = conversation(&req.messages)?;
    if question.trim().is_empty() {
        return Err(ApiError::bad_request("empty_query", "the last user message is empty"));
    }
    if question.len() > 4096 {
        // As `/ask`: a longer question is a document, not a query.
        return Err(ApiError::bad_request("query_too_long", "the last user message is longer than 4096 bytes"));
    }
    let s = state.clone();
    let model = req.model.clone();
    state.blocking(move || s.retriever(&model).map(|_| ())).await?;
    let mut p = AnswerParams {
        search: SearchParams { limit: 5, ..SearchParams::default() },
        history,
        wait_for_decoder: false,
        ..AnswerParams::default()
    };
    sampling(&mut p, req.max_completion_tokens.or(req.max_tokens), req.temperature, req.top_p, req.seed)?;
    let rx = start_answer(&state, req.model.clone(), question, p)?;
    let id = format!("chatcmpl-{}", now_secs());
    let created = now_secs();
    if !req.stream {
        let a = finished(rx).await?;
        let (pt, ct) = a.generation.as_ref().map(|g| (g.prompt_tokens, g.generated_tokens)).unwrap_or((0, 0));
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
            "sousuo": a,
        }))
        .into_response());
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
        loop {
            // A client that left closes `out`: stop reading, so the answer's next token finds
            // its channel closed and stops the decoder.
            let m = tokio::select! {
                m = rx.recv() => m,
                () = tx.closed() => None,
            };
            let Some(m) = m else { break };
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
pub(super) async fn models(
    State(state): St,
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
