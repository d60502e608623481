//! `/collections/{name}/ask`: a grounded answer, as JSON or as Server-Sent Events.

use super::search::{FilterArg, SearchRequest};
use super::stream::{finished, sampling, start_answer, Streamed};
use super::{authorize, St};
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sousuo_query::{AnswerParams, Mode, Turn};
use std::convert::Infallible;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// An ask request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AskRequest {
    /// The question.
    #[serde(alias = "question", alias = "query")]
    pub q: String,
    /// Earlier turns, oldest first.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Turn>,
    /// Retrieval mode (default hybrid).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub mode: Option<Mode>,
    /// Filters, as for search.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub filter: Option<FilterArg>,
    /// Passages considered (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Tokens the decoder may generate (at most 1,024).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature (0: greedy).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Sampling seed.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl AskRequest {
    /// The answer parameters, checked.
    pub fn params(&self) -> ApiResult<AnswerParams> {
        let search = SearchRequest {
            q: self.q.clone(),
            mode: self.mode,
            limit: Some(self.limit.unwrap_or(5).clamp(1, 10)),
            filter: self.filter.clone(),
            ..SearchRequest::default()
        }
        .params()?;
        if self.history.len() > 50 {
            return Err(ApiError::bad_request("bad_parameter", "history holds at most 50 turns"));
        }
        let mut p =
            AnswerParams { search, history: self.history.clone(), wait_for_decoder: false, ..AnswerParams::default() };
        sampling(&mut p, self.max_tokens, self.temperature, self.top_p, self.seed)?;
        Ok(p)
    }
}

#[utoipa::path(post, path = "/collections/{name}/ask", request_body = AskRequest,
    responses((status = 200, description = "JSON answer, or Server-Sent Events (sources, token..., done) with Accept: text/event-stream"),
              (status = 503, body = ErrorBody)))]
pub(super) async fn ask(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<AskRequest>,
) -> ApiResult<Response> {
    authorize(&caller, Action::Ask, &name)?;
    if req.q.trim().is_empty() {
        return Err(ApiError::bad_request("empty_query", "the question is empty"));
    }
    if req.q.len() > 4096 {
        return Err(ApiError::bad_request("query_too_long", "the question is longer than 4096 bytes"));
    }
    let p = req.params()?;
    // Fail before streaming when the collection does not exist.
    let s = state.clone();
    let n = name.clone();
    state.blocking(move || s.retriever(&n).map(|_| ())).await?;
    let sse =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let rx = start_answer(&state, name, req.q, p)?;
    if !sse {
        return Ok(Json(finished(rx).await?).into_response());
    }
    let stream = ReceiverStream::new(rx).map(|m| -> Result<SseEvent, Infallible> {
        Ok(match m {
            Streamed::Rewritten(q) => {
                SseEvent::default().event("rewritten").data(json(&serde_json::json!({"query": q})))
            }
            Streamed::Sources(v) => SseEvent::default().event("sources").data(json(&v)),
            // The decoder's draft as it is written: nothing in it is checked yet (the `done`
            // event holds the checked answer), and it says so.
            Streamed::Token(t) => {
                SseEvent::default().event("token").data(json(&serde_json::json!({"text": t, "checked": false})))
            }
            Streamed::Done(a) => SseEvent::default().event("done").data(json(&*a)),
            Streamed::Error(e) => SseEvent::default().event("error").data(json(&e.body())),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}
