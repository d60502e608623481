//! The routes and their handlers.

use crate::auth::{Action, Caller, CreatedKey, KeyRecord, NewKey};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::{safe_file_name, AppState, TaskView};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use sousuo_query::{answer, AnswerEvent, AnswerParams, Filter, Mode, SearchParams, Turn, DEFAULT_FUSION};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use utoipa::OpenApi;

type St = State<Arc<AppState>>;

/// The router: API, page, middleware. Tests call it without a socket.
pub fn app(state: Arc<AppState>) -> Router {
    let upload_limit = state.config.max_upload_bytes;
    let documents = Router::new()
        .route("/collections/{name}/documents", post(add_documents))
        .layer(DefaultBodyLimit::max(upload_limit));
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/collections", get(list_collections).post(create_collection))
        .route("/collections/{name}", get(get_collection).delete(delete_collection))
        .route("/collections/{name}/stats", get(collection_stats))
        .route("/collections/{name}/documents/{id}", get(get_document).delete(delete_document))
        .route("/collections/{name}/search", get(search_get).post(search_post))
        .route("/collections/{name}/ask", post(ask))
        .route("/tasks/{id}", get(get_task))
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{uid}", axum::routing::delete(delete_key))
        .route("/v1/models", get(crate::openai::models))
        .route("/v1/chat/completions", post(crate::openai::chat_completions))
        .merge(documents)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.config.request_timeout,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Routes open without a key: the health check and the page (it holds no data; it asks for a
/// key when the API answers 401).
fn public(path: &str) -> bool {
    matches!(path, "/health" | "/")
}

async fn authenticate(State(state): St, mut req: Request, next: Next) -> Response {
    let presented = key_from(req.headers());
    let caller = match state.keys.identify(presented.as_deref()) {
        Ok(c) => c,
        Err(e) if public(req.uri().path()) => {
            drop(e);
            Caller::Open
        }
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn key_from(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return Some(v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    }
    h.get("x-api-key").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string())
}

/// Records metrics, and turns axum's plain-text rejections (404 route, 405, 413, 415...)
/// into the JSON error shape.
async fn observe(State(state): St, req: Request, next: Next) -> Response {
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
        let mut e = ApiError::new(status, code, message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            e.retry_after = Some(2);
        }
        let mut r = e.into_response();
        for (k, v) in parts.headers.iter() {
            if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
                r.headers_mut().insert(k.clone(), v.clone());
            }
        }
        return r;
    }
    res
}

/// A JSON body parsed with a clear error (400 naming the problem, 413 when too large).
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("bad_json", format!("invalid JSON body: {e}")))
}

fn body_bytes(b: Result<Bytes, axum::extract::rejection::BytesRejection>) -> ApiResult<Bytes> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })
}

async fn page() -> Html<&'static str> {
    Html(crate::PAGE)
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
    answers: bool,
}

#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health(State(state): St) -> Json<Health> {
    Json(Health { status: "ok", answers: state.decoder.is_some() })
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text")))]
async fn metrics(State(state): St, Extension(caller): Extension<Caller>) -> ApiResult<Response> {
    if !caller.is_master() {
        return Err(ApiError::forbidden("metrics need the master key"));
    }
    let d = state.decoder.as_ref().map(|d| d.stats()).unwrap_or_default();
    let e = state.encoder.stats();
    let text = state.metrics.render(&[
        ("sousuo_cpu_queue_depth", "CPU jobs admitted and not finished.", state.queue_depth() as f64),
        ("sousuo_decoder_queue_depth", "Answers waiting for the decoder.", d.queued as f64),
        ("sousuo_tokens_generated_total", "Tokens generated by the decoder.", d.tokens_generated as f64),
        ("sousuo_answers_total", "Generations run.", d.requests as f64),
        (
            "sousuo_documents_indexed_total",
            "Documents indexed through the API.",
            state.metrics.documents_indexed.load(std::sync::atomic::Ordering::Relaxed) as f64,
        ),
        ("sousuo_encoder_tokens_total", "Tokens embedded by the encoder.", e.tokens as f64),
    ]);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Sousuo", description = "Self-hosted hybrid search with grounded answers"),
    paths(
        health,
        metrics,
        list_collections,
        create_collection,
        get_collection,
        delete_collection,
        collection_stats,
        add_documents,
        get_document,
        delete_document,
        search_get,
        search_post,
        ask,
        get_task,
        list_keys,
        create_key,
        delete_key,
        crate::openai::chat_completions,
        crate::openai::models
    ),
    components(schemas(
        ErrorBody,
        TaskView,
        KeyRecord,
        NewKey,
        CreatedKey,
        Action,
        SearchRequest,
        AskRequest,
        CollectionInfo,
        NewCollection,
        Health,
        crate::openai::ChatRequest
    ))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", responses((status = 200)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[derive(Serialize, utoipa::ToSchema)]
struct CollectionInfo {
    name: String,
    documents: Option<usize>,
    chunks: Option<usize>,
}

#[utoipa::path(get, path = "/collections", responses((status = 200, body = [CollectionInfo])))]
async fn list_collections(
    State(state): St,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<CollectionInfo>>> {
    let names = state.collection_names()?;
    Ok(Json(
        names
            .into_iter()
            .filter(|n| caller.sees(n))
            .map(|n| {
                let c = sousuo_indexer::read_counts(&state.config.data_dir, &n);
                CollectionInfo { documents: c.map(|c| c.documents), chunks: c.map(|c| c.chunks), name: n }
            })
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct NewCollection {
    name: String,
}

#[utoipa::path(post, path = "/collections", request_body = NewCollection,
    responses((status = 201, body = CollectionInfo), (status = 409, body = ErrorBody)))]
async fn create_collection(
    State(state): St,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<CollectionInfo>)> {
    let req: NewCollection = parse_json(&body_bytes(body)?)?;
    sousuo_indexer::validate_name(&req.name)?;
    caller.require(Action::CollectionsManage, Some(&req.name))?;
    let s = state.clone();
    let name = req.name.clone();
    state.blocking(move || s.create_collection(&name).map(|_| ())).await?;
    Ok((StatusCode::CREATED, Json(CollectionInfo { name: req.name, documents: Some(0), chunks: Some(0) })))
}

/// Checks the name and the caller's right before looking the collection up, so a key learns
/// nothing about collections it may not use.
fn authorize(caller: &Caller, action: Action, name: &str) -> ApiResult<()> {
    sousuo_indexer::validate_name(name)?;
    caller.require(action, Some(name))
}

#[utoipa::path(get, path = "/collections/{name}", responses((status = 200, body = CollectionInfo), (status = 404, body = ErrorBody)))]
async fn get_collection(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<CollectionInfo>> {
    authorize(&caller, Action::Search, &name)?;
    let s = state.clone();
    let n = name.clone();
    let c = state.blocking(move || s.collection(&n)).await?;
    Ok(Json(CollectionInfo { name, documents: Some(c.store().doc_count()), chunks: Some(c.store().chunk_count()) }))
}

#[utoipa::path(delete, path = "/collections/{name}", responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_collection(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    authorize(&caller, Action::CollectionsManage, &name)?;
    let s = state.clone();
    state.blocking(move || s.delete_collection(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/collections/{name}/stats", responses((status = 200), (status = 404, body = ErrorBody)))]
async fn collection_stats(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&caller, Action::Search, &name)?;
    let s = state.clone();
    let stats = state.blocking(move || Ok(s.collection(&name)?.stats()?)).await?;
    Ok(Json(serde_json::to_value(stats).map_err(|e| ApiError::internal(e.to_string()))?))
}

const UPLOAD_FORMATS: &[&str] = &["txt", "md", "markdown", "html", "htm", "pdf", "json", "jsonl", "ndjson"];

/// `POST /collections/{name}/documents`: a JSON array, NDJSON, or multipart files. The
/// collection is created if missing (with `collections.manage`). Returns 202 with a task.
#[utoipa::path(post, path = "/collections/{name}/documents",
    request_body(content = String, description = "JSON array of {id, title, text, ...metadata}, NDJSON, or multipart/form-data files (txt, md, html, pdf, json, jsonl)"),
    responses((status = 202, body = TaskView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn add_documents(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    authorize(&caller, Action::DocumentsAdd, &name)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    // Stage the upload before touching the collection, so bad input leaves it as it was.
    let staged: Vec<(String, Vec<u8>)> = if ct.starts_with("multipart/form-data") {
        let mut mp = <Multipart as axum::extract::FromRequest<()>>::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request("bad_multipart", e.body_text()))?;
        let mut files = Vec::new();
        while let Some(field) = mp.next_field().await.map_err(multipart_error)? {
            let Some(fname) = field.file_name().map(safe_file_name) else { continue };
            let ext = fname.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
            if !UPLOAD_FORMATS.contains(&ext.as_str()) {
                return Err(ApiError::bad_request(
                    "unsupported_format",
                    format!("{fname}: unsupported file type; upload {}", UPLOAD_FORMATS.join(", ")),
                ));
            }
            let data = field.bytes().await.map_err(multipart_error)?;
            files.push((fname, data.to_vec()));
        }
        if files.is_empty() {
            return Err(ApiError::bad_request("no_files", "the multipart body holds no file"));
        }
        files
    } else {
        let body = axum::body::to_bytes(req.into_body(), state.config.max_upload_bytes).await.map_err(|_| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        })?;
        vec![("documents.jsonl".to_string(), documents_to_ndjson(&body, &ct)?)]
    };
    let s = state.clone();
    let task = state
        .blocking(move || {
            // Create the collection on first upload when the key may.
            if s.collection(&name).is_err() {
                caller.require(Action::CollectionsManage, Some(&name))?;
                match s.create_collection(&name) {
                    Ok(_) => {}
                    Err(e) if e.code == "collection_exists" => {}
                    Err(e) => return Err(e),
                }
            }
            let dir = s.upload_dir(&name)?;
            let n = staged.len();
            for (fname, data) in &staged {
                let p = dir.join(fname);
                std::fs::write(&p, data).map_err(|e| ApiError::internal(format!("{}: {e}", p.display())))?;
            }
            s.enqueue_index(&name, dir, n)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the upload is too large")
    } else {
        ApiError::bad_request("bad_multipart", e.body_text())
    }
}

/// Validates JSON documents (an array, or NDJSON) and writes them as NDJSON.
fn documents_to_ndjson(body: &[u8], content_type: &str) -> ApiResult<Vec<u8>> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("bad_json", "the body is not UTF-8"))?;
    let trimmed = text.trim_start();
    let docs: Vec<serde_json::Value> = if trimmed.starts_with('[') {
        parse_json(body)?
    } else if content_type.contains("ndjson") || content_type.contains("jsonl") || trimmed.starts_with('{') {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| ApiError::bad_request("bad_json", format!("line {}: invalid JSON: {e}", i + 1)))
            })
            .collect::<ApiResult<_>>()?
    } else {
        return Err(ApiError::bad_request(
            "bad_json",
            "send a JSON array of documents, NDJSON, or multipart/form-data files",
        ));
    };
    if docs.is_empty() {
        return Err(ApiError::bad_request("no_documents", "the body holds no documents"));
    }
    let mut out = Vec::with_capacity(body.len());
    for (i, d) in docs.iter().enumerate() {
        let Some(obj) = d.as_object() else {
            return Err(ApiError::bad_request("bad_document", format!("document {i} is not a JSON object")));
        };
        let id = obj.get("id").or_else(|| obj.get("_id"));
        let id_ok = match id {
            Some(serde_json::Value::String(s)) => !s.trim().is_empty(),
            Some(serde_json::Value::Number(_)) => true,
            _ => false,
        };
        if !id_ok {
            return Err(ApiError::bad_request(
                "bad_document",
                format!("document {i} has no \"id\" (string or number)"),
            ));
        }
        let has_text = ["text", "body", "content"].iter().any(|k| obj.get(*k).is_some_and(|v| v.is_string()));
        if !has_text {
            return Err(ApiError::bad_request("bad_document", format!("document {i} has no \"text\" string")));
        }
        serde_json::to_writer(&mut out, d).map_err(|e| ApiError::internal(e.to_string()))?;
        out.push(b'\n');
    }
    Ok(out)
}

#[derive(Serialize)]
struct DocumentView {
    id: String,
    title: String,
    source: String,
    metadata: std::collections::BTreeMap<String, serde_json::Value>,
    chunks: Vec<ChunkView>,
}

#[derive(Serialize)]
struct ChunkView {
    key: u64,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<u32>,
}

#[utoipa::path(get, path = "/collections/{name}/documents/{id}", responses((status = 200), (status = 404, body = ErrorBody)))]
async fn get_document(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    authorize(&caller, Action::Search, &name)?;
    let s = state.clone();
    let doc = state
        .blocking(move || {
            let c = s.collection(&name)?;
            let d = c
                .get_doc(&id)?
                .ok_or_else(|| ApiError::not_found("document_not_found", format!("no document {id:?}")))?;
            let mut chunks = Vec::new();
            for k in &d.chunk_keys {
                if let Some(ch) = c.store().get_chunk(*k)? {
                    chunks.push(ChunkView { key: *k, text: ch.text, page: ch.page });
                }
            }
            Ok(DocumentView { id: d.id, title: d.title, source: d.source, metadata: d.metadata, chunks })
        })
        .await?;
    Ok(Json(doc).into_response())
}

#[utoipa::path(delete, path = "/collections/{name}/documents/{id}", responses((status = 200), (status = 404, body = ErrorBody)))]
async fn delete_document(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    authorize(&caller, Action::DocumentsDelete, &name)?;
    let s = state.clone();
    state
        .blocking(move || {
            let c = s.collection(&name)?;
            if c.get_doc(&id)?.is_none() {
                return Err(ApiError::not_found("document_not_found", format!("no document {id:?}")));
            }
            c.delete(std::slice::from_ref(&id))?;
            c.refresh()?;
            Ok(Json(serde_json::json!({"deleted": id})))
        })
        .await
}

#[utoipa::path(get, path = "/tasks/{id}", responses((status = 200, body = TaskView), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let missing = || ApiError::not_found("task_not_found", format!("no task {id:?}"));
    let n: u64 = id.parse().map_err(|_| missing())?;
    match state.tasks.get(n) {
        Some(t) if caller.sees(&t.collection) => Ok(Json(t)),
        _ => Err(missing()),
    }
}

/// Search parameters (query string for GET, JSON for POST).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SearchRequest {
    /// The query.
    #[serde(default, alias = "query")]
    pub q: String,
    /// hybrid, keyword (bm25) or semantic (dense).
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub offset: Option<usize>,
    /// One filter expression (GET) or a list of them (POST), ANDed: field=value, field>=n, field in [a, b].
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub filter: Option<FilterArg>,
    /// 0 (keywords) to 1 (semantic).
    #[serde(default)]
    pub semantic_ratio: Option<f32>,
    /// tantivy query syntax.
    #[serde(default)]
    pub syntax: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FilterArg {
    One(String),
    Many(Vec<String>),
}

impl SearchRequest {
    pub fn params(&self) -> ApiResult<SearchParams> {
        let mode: Mode = match &self.mode {
            Some(m) => m.parse()?,
            None => Mode::Hybrid,
        };
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
            Some(w) => sousuo_query::Fusion::Convex { semantic_ratio: w },
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
            mode,
            fusion,
            limit,
            offset,
            syntax: self.syntax.unwrap_or(false),
            filter: Filter::parse(&filters)?,
            ..SearchParams::default()
        })
    }
}

#[utoipa::path(get, path = "/collections/{name}/search", params(("q" = String, Query)), responses((status = 200), (status = 400, body = ErrorBody)))]
async fn search_get(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    q: Result<Query<SearchRequest>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(req) = q.map_err(|e| ApiError::bad_request("bad_parameter", e.body_text()))?;
    run_search(state, caller, name, req).await
}

#[utoipa::path(post, path = "/collections/{name}/search", request_body = SearchRequest, responses((status = 200), (status = 400, body = ErrorBody)))]
async fn search_post(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let req: SearchRequest = parse_json(&body_bytes(body)?)?;
    run_search(state, caller, name, req).await
}

async fn run_search(state: Arc<AppState>, caller: Caller, name: String, req: SearchRequest) -> ApiResult<Response> {
    authorize(&caller, Action::Search, &name)?;
    if req.q.len() > 4096 {
        return Err(ApiError::bad_request("query_too_long", "the query is longer than 4096 bytes"));
    }
    let p = req.params()?;
    let s = state.clone();
    let results = state
        .blocking(move || {
            let c = s.collection(&name)?;
            Ok(sousuo_query::search(&c, &s.encoder, &req.q, &p)?)
        })
        .await?;
    Ok(Json(results).into_response())
}

/// An ask request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AskRequest {
    #[serde(alias = "question", alias = "query")]
    pub q: String,
    /// Earlier turns, oldest first.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Turn>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub filter: Option<FilterArg>,
    /// Passages considered (default 5).
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
}

impl AskRequest {
    pub fn params(&self) -> ApiResult<AnswerParams> {
        let search = SearchRequest {
            q: self.q.clone(),
            mode: self.mode.clone(),
            limit: Some(self.limit.unwrap_or(5).clamp(1, 10)),
            filter: match &self.filter {
                None => None,
                Some(FilterArg::One(f)) => Some(FilterArg::One(f.clone())),
                Some(FilterArg::Many(v)) => Some(FilterArg::Many(v.clone())),
            },
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

/// Applies a request's generation options (shared by `ask` and the OpenAI endpoint): at most
/// 1,024 new tokens, temperature 0 (greedy) to 5, top-p in (0, 1].
pub fn sampling(
    p: &mut AnswerParams,
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
) -> ApiResult<()> {
    if let Some(m) = max_tokens {
        p.generate.max_tokens = m.clamp(1, 1024);
    }
    if temperature.is_some_and(|t| !(0.0..=5.0).contains(&t)) {
        return Err(ApiError::bad_request("bad_parameter", "temperature is between 0 and 5"));
    }
    if top_p.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
        return Err(ApiError::bad_request("bad_parameter", "top_p is above 0 and at most 1"));
    }
    p.generate.temperature = temperature;
    p.generate.top_p = top_p;
    if let Some(s) = seed {
        p.generate.seed = s;
    }
    Ok(())
}

/// Streamed answer events for the SSE and OpenAI streams.
pub enum Streamed {
    Rewritten(String),
    Sources(serde_json::Value),
    Token(String),
    Done(Box<sousuo_query::Answer>),
    Error(ApiError),
}

/// Starts an answer on a blocking thread; events arrive on the returned channel.
pub fn start_answer(
    state: &Arc<AppState>,
    collection: String,
    question: String,
    p: AnswerParams,
) -> ApiResult<tokio::sync::mpsc::Receiver<Streamed>> {
    if let Some(d) = &state.decoder {
        if d.stats().queued >= crate::DECODER_QUEUE {
            return Err(ApiError::busy("the answer model is busy: too many questions are waiting, retry shortly"));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Streamed>(256);
    let s = state.clone();
    let runner = state.clone();
    let job = async move {
        let tx2 = tx.clone();
        let r = runner
            .blocking(move || {
                let c = s.collection(&collection)?;
                let a = answer(&c, &s.encoder, s.decoder.as_ref(), &question, &p, &mut |e| {
                    let msg = match e {
                        AnswerEvent::Rewritten(q) => Streamed::Rewritten(q.to_string()),
                        AnswerEvent::Sources(src) => Streamed::Sources(serde_json::to_value(src).unwrap_or_default()),
                        AnswerEvent::Token(t) => Streamed::Token(t.to_string()),
                    };
                    let _ = tx2.blocking_send(msg);
                })?;
                Ok(a)
            })
            .await;
        let _ = tx
            .send(match r {
                Ok(a) => Streamed::Done(Box::new(a)),
                Err(e) => Streamed::Error(e),
            })
            .await;
    };
    tokio::spawn(job);
    Ok(rx)
}

#[utoipa::path(post, path = "/collections/{name}/ask", request_body = AskRequest,
    responses((status = 200, description = "JSON answer, or Server-Sent Events (sources, token..., done) with Accept: text/event-stream"),
              (status = 503, body = ErrorBody)))]
async fn ask(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    authorize(&caller, Action::Ask, &name)?;
    let req: AskRequest = parse_json(&body_bytes(body)?)?;
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
    state.blocking(move || s.collection(&n).map(|_| ())).await?;
    let sse =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let mut rx = start_answer(&state, name, req.q, p)?;
    if !sse {
        while let Some(m) = rx.recv().await {
            match m {
                Streamed::Done(a) => return Ok(Json(*a).into_response()),
                Streamed::Error(e) => return Err(e),
                _ => {}
            }
        }
        return Err(ApiError::internal("the answer stopped without a result"));
    }
    let stream = ReceiverStream::new(rx).map(|m| -> Result<SseEvent, Infallible> {
        Ok(match m {
            Streamed::Rewritten(q) => {
                SseEvent::default().event("rewritten").data(json(&serde_json::json!({"query": q})))
            }
            Streamed::Sources(v) => SseEvent::default().event("sources").data(json(&v)),
            Streamed::Token(t) => SseEvent::default().event("token").data(json(&serde_json::json!({"text": t}))),
            Streamed::Done(a) => SseEvent::default().event("done").data(json(&*a)),
            Streamed::Error(e) => SseEvent::default().event("error").data(json(&e.body())),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn master_only(caller: &Caller) -> ApiResult<()> {
    match caller {
        Caller::Master => Ok(()),
        Caller::Open => {
            Err(ApiError::bad_request("keys_disabled", "API keys need the server to run with --master-key"))
        }
        Caller::Key(_) => Err(ApiError::forbidden("managing keys needs the master key")),
    }
}

#[utoipa::path(get, path = "/keys", responses((status = 200, body = [KeyRecord]), (status = 403, body = ErrorBody)))]
async fn list_keys(State(state): St, Extension(caller): Extension<Caller>) -> ApiResult<Json<Vec<KeyRecord>>> {
    master_only(&caller)?;
    Ok(Json(state.keys.list()))
}

#[utoipa::path(post, path = "/keys", request_body = NewKey, responses((status = 201, body = CreatedKey), (status = 403, body = ErrorBody)))]
async fn create_key(
    State(state): St,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    master_only(&caller)?;
    let req: NewKey = parse_json(&body_bytes(body)?)?;
    Ok((StatusCode::CREATED, Json(state.keys.create(req)?)))
}

#[utoipa::path(delete, path = "/keys/{uid}", responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_key(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
) -> ApiResult<StatusCode> {
    master_only(&caller)?;
    state.keys.delete(&uid)?;
    Ok(StatusCode::NO_CONTENT)
}
