//! `POST /v1/chat/completions`: an OpenAI-compatible endpoint, so chat clients can use a
//! collection (the `model`) as a grounded model. The reply is Sousuo's checked answer with its
//! sources listed; streaming sends it as `chat.completion.chunk` deltas, then `[DONE]`. The
//! stream carries the verified answer (not raw model tokens), so a client never shows text the
//! sources do not support.
//!
//! The client's `system` (or `developer`) messages are honoured: they join the decoder's
//! instructions after Sousuo's own rules. The answer's sources, sentences and checks ride along
//! as the non-standard field `sousuo` (in the reply, and in a streamed reply's last chunk).
//! Errors on `/v1/*` take OpenAI's shape ([`error_shape`]).

use super::stream::{finished, sampling, start_answer, Streamed};
use super::St;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sousuo_common::now_secs;
use sousuo_decoder::StopReason;
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

/// The client's instructions: its `system` and `developer` messages, in order.
fn instructions(messages: &[ChatMessage]) -> Option<String> {
    let parts: Vec<String> = messages
        .iter()
        .filter(|m| matches!(m.role.as_str(), "system" | "developer"))
        .map(|m| text_of(&m.content))
        .filter(|t| !t.trim().is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// The question (the last user message) and the history (earlier user/assistant pairs).
fn conversation(messages: &[ChatMessage]) -> ApiResult<(String, Vec<Turn>)> {
    if let Some(m) = messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant"))
    {
        return Err(ApiError::bad_request(
            "bad_messages",
            format!("message role \"{}\" is not supported: system, developer, user and assistant are", m.role),
        ));
    }
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
        instructions: instructions(&req.messages),
        ..AnswerParams::default()
    };
    sampling(&mut p, req.max_completion_tokens.or(req.max_tokens), req.temperature, req.top_p, req.seed)?;
    let rx = start_answer(&state, req.model.clone(), question, p)?;
    let id = format!("chatcmpl-{:032x}", rand::random::<u128>());
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
                "finish_reason": finish_reason(&a)
            }],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            "sousuo": a,
        }))
        .into_response());
    }
    let model = req.model.clone();
    let stream = async_stream(rx, id, created, model);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// `length` when `max_tokens` cut the decoder's reply, else `stop`.
fn finish_reason(a: &Answer) -> &'static str {
    finish_reason_of(a.generation.as_ref().map(|g| g.stop))
}

fn finish_reason_of(stop: Option<StopReason>) -> &'static str {
    match stop {
        Some(StopReason::MaxTokens) => "length",
        _ => "stop",
    }
}

fn chunk_json(
    id: &str,
    created: u64,
    model: &str,
    delta: serde_json::Value,
    finish: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    })
}

fn chunk(id: &str, created: u64, model: &str, delta: serde_json::Value, finish: Option<&str>) -> SseEvent {
    SseEvent::default().data(chunk_json(id, created, model, delta, finish).to_string())
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
        let mut done = None;
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
                    done = Some(a);
                    break;
                }
                Streamed::Error(e) => {
                    let body = openai_error(e.status, e.code, &e.message);
                    let _ = tx.send(Ok(SseEvent::default().data(body.to_string()))).await;
                    break;
                }
                _ => {}
            }
        }
        if let Some(a) = done {
            for piece in reply(&a).split_inclusive(' ') {
                let _ = tx.send(Ok(chunk(&id, created, &model, serde_json::json!({"content": piece}), None))).await;
            }
            let mut last = chunk_json(&id, created, &model, serde_json::json!({}), Some(finish_reason(&a)));
            last["sousuo"] = serde_json::to_value(&*a).unwrap_or_default();
            let _ = tx.send(Ok(SseEvent::default().data(last.to_string()))).await;
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

/// OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`, with OpenAI's
/// type names and Sousuo's stable code.
fn openai_error(status: StatusCode, code: &str, message: &str) -> serde_json::Value {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// Middleware: an error answered on `/v1/*` (by a handler, or by the key check before it) is
/// rewritten into OpenAI's error shape, so OpenAI clients raise their typed errors with its
/// message. Other paths keep Sousuo's shape.
pub(super) async fn error_shape(req: Request, next: Next) -> Response {
    let openai = req.uri().path().starts_with("/v1/");
    let res = next.run(req).await;
    let is_json =
        res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !openai || res.status().is_success() || !is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // Error bodies are small; a larger one is passed on untouched.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, "").into_response();
    };
    let ours: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let (Some(code), Some(message)) = (ours["error"]["code"].as_str(), ours["error"]["message"].as_str()) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let body = openai_error(parts.status, code, message).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: serde_json::Value::from(content) }
    }

    #[test]
    fn system_and_developer_messages_become_instructions() {
        let m = [msg("system", "Be brief."), msg("user", "q1"), msg("assistant", "a1"), msg("developer", "In French.")];
        assert_eq!(instructions(&m).as_deref(), Some("Be brief.\nIn French."));
        assert_eq!(instructions(&m[1..3]), None);
        let (q, history) =
            conversation(&[msg("system", "x"), msg("user", "q1"), msg("assistant", "a1"), msg("user", "q2")]).unwrap();
        assert_eq!(q, "q2");
        assert_eq!(history.len(), 1);
    }

    #[test]
    fn unknown_roles_are_refused_by_name() {
        let e = conversation(&[msg("tool", "{}"), msg("user", "q")]).unwrap_err();
        assert_eq!(e.code, "bad_messages");
        assert!(e.message.contains("\"tool\""), "{}", e.message);
    }

    #[test]
    fn a_reply_cut_by_max_tokens_finishes_with_length() {
        assert_eq!(finish_reason_of(Some(StopReason::MaxTokens)), "length");
        assert_eq!(finish_reason_of(Some(StopReason::EndOfTurn)), "stop");
        assert_eq!(finish_reason_of(None), "stop", "a direct or extractive answer is whole");
    }

    #[test]
    fn errors_take_openais_types() {
        let e = openai_error(StatusCode::NOT_FOUND, "model_not_found", "no model");
        assert_eq!(e["error"]["type"], "not_found_error");
        assert_eq!(e["error"]["code"], "model_not_found");
        assert!(e["error"]["param"].is_null());
        assert_eq!(openai_error(StatusCode::UNAUTHORIZED, "c", "m")["error"]["type"], "authentication_error");
        assert_eq!(openai_error(StatusCode::SERVICE_UNAVAILABLE, "busy", "m")["error"]["type"], "server_error");
        assert_eq!(openai_error(StatusCode::PAYLOAD_TOO_LARGE, "c", "m")["error"]["type"], "invalid_request_error");
    }
}
