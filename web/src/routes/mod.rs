//! The routes, by resource, and the router that stacks them with the middleware.
//!
//! `collections`, `documents`, `tasks`, `search`, `ask`, `keys`, `openai` and `embeddings` (`/v1/*`);
//! `stream` runs an answer on a blocking thread for both `ask` and the OpenAI route;
//! `middleware` checks keys and records metrics; `origin` refuses what another site's page
//! could make a browser send.

mod ask;
mod collections;
mod documents;
mod embeddings;
mod keys;
mod middleware;
mod ndjson;
mod openai;
mod origin;
mod search;
mod stream;
mod tasks;

pub use ask::AskRequest;
pub use search::{FilterArg, SearchRequest};

use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use std::sync::Arc;
use utoipa::OpenApi;

type St = State<Arc<AppState>>;

/// The router: API, page, middleware. Tests call it without a socket.
pub fn app(state: Arc<AppState>) -> Router {
    let upload_limit = state.config.max_upload_bytes;
    let cors = cors(&state.config.cors_origins);
    let documents = Router::new()
        .route("/collections/{name}/documents", post(documents::add))
        .layer(DefaultBodyLimit::max(upload_limit));
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/collections", get(collections::list).post(collections::create))
        .route("/collections/{name}", get(collections::get).delete(collections::delete))
        .route("/collections/{name}/stats", get(collections::stats))
        .route("/collections/{name}/documents/{id}", get(documents::get).delete(documents::delete))
        .route("/collections/{name}/search", get(search::search_get).post(search::search_post))
        .route("/collections/{name}/ask", post(ask::ask))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::get))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{uid}", delete(keys::delete))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .merge(documents)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::authenticate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), origin::guard))
        .layer(axum::middleware::from_fn(openai::error_shape))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::observe))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            state.config.request_timeout,
        ))
        // Server errors are logged where they are made (`ApiError`, with their message); a 503
        // that sheds load is not an error worth a log line per request.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        // Outermost: a preflight is answered before the key check (it carries no key).
        .layer(tower::util::option_layer(cors))
        .with_state(state)
}

/// CORS for the configured origins only; none configured, none answered.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderValue, Method};
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    (!list.is_empty()).then(|| {
        tower_http::cors::CorsLayer::new()
            .allow_origin(list)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .max_age(std::time::Duration::from_secs(600))
    })
}

/// Checks the name and the caller's right before looking the collection up, so a key learns
/// nothing about collections it may not use.
fn authorize(caller: &Caller, action: Action, name: &str) -> ApiResult<()> {
    sousuo_indexer::validate_name(name)?;
    caller.require(action, Some(name))
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

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text (docs/metrics.md)")))]
async fn metrics(State(state): St, Extension(caller): Extension<Caller>) -> ApiResult<Response> {
    if !caller.is_master() {
        return Err(ApiError::forbidden("metrics need the master key"));
    }
    let d = state.decoder.as_ref().map(|d| d.stats()).unwrap_or_default();
    let live = crate::metrics::Live {
        cpu_queue: state.queue_depth() as u64,
        decoder_queue: d.queued as u64,
        answers: d.requests,
        tokens_generated: d.tokens_generated,
        encoder_tokens: state.encoder.stats().tokens,
    };
    let mut registry = state.metrics.registry(&live);
    if let Some(cluster) = &state.cluster {
        cluster.register_metrics(&mut registry).await;
    }
    let text = crate::metrics::encode(&registry);
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// The OpenAPI description of every route.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sousuo", description = "Self-hosted hybrid search with grounded answers"),
    paths(
        health,
        metrics,
        collections::list,
        collections::create,
        collections::get,
        collections::delete,
        collections::stats,
        documents::add,
        documents::get,
        documents::delete,
        search::search_get,
        search::search_post,
        ask::ask,
        tasks::get,
        tasks::cancel,
        tasks::list,
        keys::list,
        keys::create,
        keys::delete,
        openai::chat_completions,
        openai::models,
        embeddings::embeddings
    ),
    components(schemas(
        ErrorBody,
        crate::error::ErrorDetail,
        crate::tasks::TaskView,
        crate::auth::KeyRecord,
        crate::auth::NewKey,
        crate::auth::CreatedKey,
        Action,
        SearchRequest,
        AskRequest,
        collections::CollectionInfo,
        collections::NewCollection,
        Health,
        openai::ChatRequest,
        embeddings::EmbeddingsRequest
    ))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/openapi.json", responses((status = 200)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
