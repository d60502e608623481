//! `/collections`: list, create, read, delete, stats.

use super::{authorize, St};
use crate::auth::{Action, Caller};
use crate::error::{ApiResult, ErrorBody};
use crate::json::JsonBody;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CollectionInfo {
    name: String,
    documents: Option<usize>,
    chunks: Option<usize>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct NewCollection {
    name: String,
}

#[utoipa::path(get, path = "/collections", responses((status = 200, body = [CollectionInfo])))]
pub(super) async fn list(
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

#[utoipa::path(post, path = "/collections", request_body = NewCollection,
    responses((status = 201, body = CollectionInfo), (status = 409, body = ErrorBody)))]
pub(super) async fn create(
    State(state): St,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<NewCollection>,
) -> ApiResult<(StatusCode, Json<CollectionInfo>)> {
    sousuo_indexer::validate_name(&req.name)?;
    caller.require(Action::CollectionsManage, Some(&req.name))?;
    let s = state.clone();
    let name = req.name.clone();
    state.blocking(move || s.create_collection(&name).map(|_| ())).await?;
    Ok((StatusCode::CREATED, Json(CollectionInfo { name: req.name, documents: Some(0), chunks: Some(0) })))
}

#[utoipa::path(get, path = "/collections/{name}", responses((status = 200, body = CollectionInfo), (status = 404, body = ErrorBody)))]
pub(super) async fn get(
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
pub(super) async fn delete(
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
pub(super) async fn stats(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<sousuo_indexer::Stats>> {
    authorize(&caller, Action::Search, &name)?;
    let s = state.clone();
    Ok(Json(state.blocking(move || Ok(s.collection(&name)?.stats()?)).await?))
}
