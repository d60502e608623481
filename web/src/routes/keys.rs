//! `/keys`: API keys, managed with the master key.

use super::St;
use crate::auth::{Caller, CreatedKey, KeyRecord, NewKey};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::JsonBody;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

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
pub(super) async fn list(State(state): St, Extension(caller): Extension<Caller>) -> ApiResult<Json<Vec<KeyRecord>>> {
    master_only(&caller)?;
    Ok(Json(state.keys.list()))
}

#[utoipa::path(post, path = "/keys", request_body = NewKey, responses((status = 201, body = CreatedKey), (status = 403, body = ErrorBody)))]
pub(super) async fn create(
    State(state): St,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<NewKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    master_only(&caller)?;
    Ok((StatusCode::CREATED, Json(state.keys.create(req)?)))
}

#[utoipa::path(delete, path = "/keys/{uid}", responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(uid): Path<String>,
) -> ApiResult<StatusCode> {
    master_only(&caller)?;
    state.keys.delete(&uid)?;
    Ok(StatusCode::NO_CONTENT)
}
