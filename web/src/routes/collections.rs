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
    let mut all: Vec<CollectionInfo> = names
        .into_iter()
        .map(|n| {
            let c = sousuo_indexer::read_counts(&state.config.data_dir, &n);
            CollectionInfo { documents: c.map(|c| c.documents), chunks: c.map(|c| c.chunks), name: n }
        })
        .collect();
    if state.cluster.is_some() {
        let s = state.clone();
        let clustered = state.blocking(move || s.cluster.as_ref().map_or(Ok(Vec::new()), |c| c.list())).await?;
        all.extend(clustered.into_iter().map(|(name, count)| CollectionInfo {
            name,
            documents: Some(count.documents as usize),
            chunks: Some(count.chunks as usize),
        }));
    }
    Ok(Json(all.into_iter().filter(|c| caller.sees(&c.name)).collect()))
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
    let (documents, chunks) = state
        .blocking(move || {
            if let Some(c) = s.cluster.as_ref().map(|c| c.get(&n)).transpose()?.flatten() {
                let count = c.count_blocking()?;
                return Ok((count.documents as usize, count.chunks as usize));
            }
            let c = s.collection(&n)?;
            Ok((c.store().doc_count(), c.store().chunk_count()))
        })
        .await?;
    Ok(Json(CollectionInfo { name, documents: Some(documents), chunks: Some(chunks) }))
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
