//! `/collections/{name}/search`: GET with a query string, POST with JSON.

use super::{authorize, St};
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sousuo_query::{Filter, Fusion, Mode, SearchParams, DEFAULT_FUSION};
use std::sync::Arc;

/// Search parameters (query string for GET, JSON for POST).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SearchRequest {
    /// The query.
    #[serde(default, alias = "query")]
    pub q: String,
    /// hybrid, keyword (bm25) or semantic (dense).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub mode: Option<Mode>,
    /// Hits per page (1 to 100, default 10).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Hits skipped (at most 10,000).
    #[serde(default)]
    pub offset: Option<usize>,
    /// One filter expression (GET) or a list of them (POST), ANDed: field = v, field != v,
    /// field >= n (<=, >, <), field IN [a, b], field NOT IN [..], AND / OR / NOT, parentheses,
    /// quoted values (title = "made in china").
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub filter: Option<FilterArg>,
    /// 0 (keywords) to 1 (semantic).
    #[serde(default)]
    pub semantic_ratio: Option<f32>,
    /// tantivy query syntax.
    #[serde(default)]
    pub syntax: Option<bool>,
    /// Rerank the first 10 hits by the decoder's question likelihood (better order, ~1.3 s
    /// on two CPU cores; needs a server with answers on).
    #[serde(default)]
    pub rerank: Option<bool>,
    /// On a clustered collection: 503 `shards_unavailable` rather than results without a
    /// shard that no replica answers for (by default such results name it in `missing_shards`).
    #[serde(default)]
    pub complete: Option<bool>,
}

/// Filters: one expression or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FilterArg {
    /// One expression.
    One(String),
    /// Several, ANDed.
    Many(Vec<String>),
}

impl SearchRequest {
    /// The search parameters, checked.
    pub fn params(&self) -> ApiResult<SearchParams> {
        let filters: Vec<String> = match &self.filter {
            None => Vec::new(),
            Some(FilterArg::One(f)) if f.trim().is_empty() => Vec::new(),
            Some(FilterArg::One(f)) => vec![f.clone()],
            Some(FilterArg::Many(v)) => v.clone(),
        };
        let fusion = match self.semantic_ratio {
            Some(w) if !(0.0..=1.0).contains(&w) || w.is_nan() => {
                return Err(ApiError::bad_request("bad_parameter", "semantic_ratio is between 0 and 1"))
            }
            Some(w) => Fusion::Convex { semantic_ratio: w },
            None => DEFAULT_FUSION,
        };
        let limit = self.limit.unwrap_or(10);
        if limit == 0 || limit > 100 {
            return Err(ApiError::bad_request("bad_parameter", "limit is 1 to 100"));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > 10_000 {
            return Err(ApiError::bad_request("bad_parameter", "offset is at most 10000"));
        }
        Ok(SearchParams {
            mode: self.mode.unwrap_or(Mode::Hybrid),
            fusion,
            limit,
            offset,
            syntax: self.syntax.unwrap_or(false),
            filter: Filter::parse(&filters)?,
            complete: self.complete.unwrap_or(false),
            ..SearchParams::default()
        })
    }
}

#[utoipa::path(get, path = "/collections/{name}/search", params(("q" = String, Query)), responses((status = 200), (status = 400, body = ErrorBody)))]
pub(super) async fn search_get(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    q: Result<Query<SearchRequest>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(req) = q.map_err(|e| ApiError::bad_request("bad_parameter", e.body_text()))?;
    run(state, caller, name, req).await
}

#[utoipa::path(post, path = "/collections/{name}/search", request_body = SearchRequest, responses((status = 200), (status = 400, body = ErrorBody)))]
pub(super) async fn search_post(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SearchRequest>,
) -> ApiResult<Response> {
    run(state, caller, name, req).await
}

async fn run(state: Arc<AppState>, caller: Caller, name: String, req: SearchRequest) -> ApiResult<Response> {
    authorize(&caller, Action::Search, &name)?;
    if req.q.len() > 4096 {
        return Err(ApiError::bad_request("query_too_long", "the query is longer than 4096 bytes"));
    }
    let p = req.params()?;
    let rerank = req.rerank.unwrap_or(false);
    if rerank && state.decoder.is_none() {
        return Err(ApiError::bad_request(
            "bad_parameter",
            "rerank needs the decoder, and this server runs without one (--no-answers)",
        ));
    }
    let s = state.clone();
    let results = state
        .blocking(move || {
            let c = s.retriever(&name)?;
            match (rerank, s.decoder.as_ref()) {
                (true, Some(d)) => Ok(sousuo_query::rerank::search_reranked(&*c, &s.encoder, d, &req.q, &p)?),
                _ => Ok(c.search(&s.encoder, &req.q, &p)?),
            }
        })
        .await?;
    Ok(Json(results).into_response())
}
