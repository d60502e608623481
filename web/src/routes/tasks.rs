//! `/tasks/{id}`: an indexing task's state; `POST /tasks/{id}/cancel` stops it.

use super::St;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::tasks::{TaskStatus, TaskView};
use axum::extract::{Path, State};
use axum::{Extension, Json};

#[utoipa::path(get, path = "/tasks/{id}", responses((status = 200, body = TaskView), (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    State(state): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let missing = || ApiError::not_found("task_not_found", format!("no task {id:?}"));
    let n: u64 = id.parse().map_err(|_| missing())?;
    let mut task = match state.tasks.get(n) {
        Some(t) if caller.sees(&t.collection) => t,
        _ => return Err(missing()),
    };
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
    let missing = || ApiError::not_found("task_not_found", format!("no task {id:?}"));
    let n: u64 = id.parse().map_err(|_| missing())?;
    match state.tasks.get(n) {
        Some(t) if caller.sees(&t.collection) => caller.require(Action::DocumentsAdd, Some(&t.collection))?,
        _ => return Err(missing()),
    }
    state.tasks.cancel(n).map(Json).ok_or_else(missing)
}
