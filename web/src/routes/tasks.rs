//! `/tasks/{id}`: an indexing task's state; `POST /tasks/{id}/cancel` stops it; `GET /tasks`
//! lists them, newest first, filtered by status and collection.

use super::St;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::tasks::{TaskStatus, TaskView};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};

#[utoipa::path(get, path = "/tasks/{id}", responses((status = 200, body = TaskView), (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let mut task = visible(&state, &caller, &id)?;
    if task.status == TaskStatus::Succeeded {
        let (s, name) = (state.clone(), task.collection.clone());
        if let Some(c) = state.blocking(move || s.clustered(&name)).await? {
            if let Some(cluster) = &state.cluster {
                task.replicated = Some(cluster.replicated(&c).await?);
            }
        }
    }
    Ok(Json(task))
}

#[utoipa::path(post, path = "/tasks/{id}/cancel",
    responses((status = 200, body = TaskView, description = "canceled, or still processing until its next document"),
              (status = 404, body = ErrorBody)))]
pub(super) async fn cancel(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let task = visible(&state, &caller, &id)?;
    caller.require(Action::DocumentsAdd, Some(&task.collection))?;
    state.tasks.cancel(task.id).map(Json).ok_or_else(|| missing(&id))
}

fn missing(id: &str) -> ApiError {
    ApiError::not_found("task_not_found", format!("no task {id:?}"))
}

/// Task `id` if the caller may see its collection; otherwise (or when there is none) 404, so a
/// key learns nothing about other collections' tasks.
fn visible(state: &AppState, caller: &Caller, id: &str) -> ApiResult<TaskView> {
    let n: u64 = id.parse().map_err(|_| missing(id))?;
    state.tasks.get(n).filter(|t| caller.sees(&t.collection)).ok_or_else(|| missing(id))
}

/// `GET /tasks` filters and paging.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(super) struct ListQuery {
    /// Comma-separated statuses: enqueued, processing, succeeded, failed, canceled.
    status: Option<String>,
    /// Only this collection's tasks.
    collection: Option<String>,
    /// Tasks per page (default 20, at most 1,000).
    limit: Option<usize>,
    /// Start from this task id (the `next` of the previous page).
    from: Option<u64>,
}

#[utoipa::path(get, path = "/tasks", params(ListQuery),
    responses((status = 200, description = "{results, limit, from, next}"), (status = 400, body = ErrorBody)))]
pub(super) async fn list(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let statuses: Option<Vec<TaskStatus>> = q
        .status
        .as_deref()
        .map(|s| {
            s.split(',')
                .map(|one| {
                    serde_json::from_value(serde_json::Value::from(one.trim())).map_err(|_| {
                        ApiError::bad_request(
                            "bad_parameter",
                            format!("status {one:?} is none of enqueued, processing, succeeded, failed, canceled"),
                        )
                    })
                })
                .collect()
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    // A key sees only its collections' tasks.
    let keep = |t: &TaskView| {
        caller.sees(&t.collection)
            && q.collection.as_ref().is_none_or(|c| *c == t.collection)
            && statuses.as_ref().is_none_or(|s| s.contains(&t.status))
    };
    let (results, next) = state.tasks.list(keep, q.from, limit);
    Ok(Json(serde_json::json!({"results": results, "limit": limit, "from": q.from, "next": next})))
}
