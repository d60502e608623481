//! `/tasks/{id}`: an indexing task's state.

use super::St;
use crate::auth::Caller;
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
