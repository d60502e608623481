//! Indexing tasks: uploads are staged, queued as tasks with ids and states (enqueued,
//! processing, succeeded, failed, canceled), and indexed one at a time on the
//! `sousuo-index-tasks` thread. A task can be cancelled: an enqueued one never runs (its upload
//! is deleted), a running one stops before its next document.

use crate::error::{ApiError, ApiResult};
use serde::Serialize;
use sousuo_common::{now_secs, Worker};
use sousuo_indexer::IndexSummary;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The state of an indexing task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Waiting for the indexing thread.
    Enqueued,
    /// Being indexed.
    Processing,
    /// Done (some files may have failed: see `errors`).
    Succeeded,
    /// Nothing could be indexed.
    Failed,
    /// Cancelled on request (documents indexed before it stopped stay).
    Canceled,
}

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    /// The task's id.
    pub id: u64,
    /// The collection it indexes into.
    pub collection: String,
    /// Where it stands.
    pub status: TaskStatus,
    /// Files uploaded.
    pub files: usize,
    /// Documents parsed so far.
    pub documents_seen: usize,
    /// Documents written (new or changed).
    pub documents_indexed: usize,
    /// Documents whose content had not changed.
    pub documents_unchanged: usize,
    /// Files or documents that failed, with why.
    pub errors: Vec<String>,
    /// Unix seconds.
    pub enqueued_at: u64,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Time spent indexing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// For a clustered collection, once the task succeeded (JetStream stored its documents):
    /// whether every live replica has applied them (and no embedding work is queued).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicated: Option<bool>,
}

struct Task {
    view: TaskView,
    dir: PathBuf,
    cancel: Arc<AtomicBool>,
}

/// Indexing tasks, kept in memory (the last 10,000), and the thread that runs them one at a
/// time.
#[derive(Default)]
pub struct Tasks {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, Task>>,
    worker: Mutex<Option<Worker<u64>>>,
}

impl Tasks {
    /// Starts the indexing thread: it calls `run` with each queued task's id, in order, until
    /// `run` answers `false` or the queue is shut down.
    pub(crate) fn start_worker(&self, mut run: impl FnMut(u64) -> bool + Send + 'static) -> ApiResult<()> {
        let worker = Worker::spawn("sousuo-index-tasks", None, move |rx| {
            for id in rx {
                if !run(id) {
                    break;
                }
            }
        })
        .map_err(|e| ApiError::internal(format!("cannot start the indexing thread: {e}")))?;
        *self.worker.lock().map_err(|_| ApiError::internal("a lock was poisoned by a panic"))? = Some(worker);
        Ok(())
    }

    /// Queues a task that indexes the files in `dir` into `collection`.
    pub fn enqueue(&self, collection: &str, dir: PathBuf, files: usize) -> ApiResult<TaskView> {
        let id = self.add(collection, dir, files);
        let sent = self.worker.lock().is_ok_and(|w| w.as_ref().is_some_and(|w| w.send(id).is_ok()));
        if !sent {
            self.finish(id, Err("the server is shutting down".into()));
            return Err(ApiError::busy("the server is shutting down"));
        }
        self.get(id).ok_or_else(|| ApiError::internal("task vanished"))
    }

    /// Stops taking tasks and waits for the queued ones to finish.
    pub(crate) fn shutdown(&self) {
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        drop(worker);
    }

    fn add(&self, collection: &str, dir: PathBuf, files: usize) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let view = TaskView {
            id,
            collection: collection.to_string(),
            status: TaskStatus::Enqueued,
            files,
            documents_seen: 0,
            documents_indexed: 0,
            documents_unchanged: 0,
            errors: Vec::new(),
            enqueued_at: now_secs(),
            started_at: None,
            finished_at: None,
            seconds: None,
            replicated: None,
        };
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, Task { view, dir, cancel: Arc::new(AtomicBool::new(false)) });
            while m.len() > 10_000 {
                m.pop_first();
            }
        }
        id
    }

    /// Marks the task running and hands out its collection, upload and cancel flag; `None`
    /// when it is gone or was cancelled while it waited.
    pub(crate) fn start(&self, id: u64) -> Option<(String, PathBuf, Arc<AtomicBool>)> {
        let mut m = self.map.lock().ok()?;
        let t = m.get_mut(&id)?;
        if t.view.status != TaskStatus::Enqueued {
            return None;
        }
        t.view.status = TaskStatus::Processing;
        t.view.started_at = Some(now_secs());
        Some((t.view.collection.clone(), t.dir.clone(), t.cancel.clone()))
    }

    /// Cancels a task: an enqueued one at once (its upload deleted), a running one before its
    /// next document (it then ends `canceled`). A finished task is left as it is.
    pub fn cancel(&self, id: u64) -> Option<TaskView> {
        let (view, upload) = {
            let mut m = self.map.lock().ok()?;
            let t = m.get_mut(&id)?;
            t.cancel.store(true, Ordering::Relaxed);
            let upload = (t.view.status == TaskStatus::Enqueued).then(|| {
                t.view.status = TaskStatus::Canceled;
                t.view.finished_at = Some(now_secs());
                t.dir.clone()
            });
            (t.view.clone(), upload)
        };
        if let Some(dir) = upload {
            let _ = std::fs::remove_dir_all(dir);
        }
        Some(view)
    }

    pub(crate) fn progress(&self, id: u64, docs: usize) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(t) = m.get_mut(&id) {
                t.view.documents_seen = docs;
            }
        }
    }

    pub(crate) fn finish(&self, id: u64, result: Result<IndexSummary, String>) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(t) = m.get_mut(&id) {
                t.view.finished_at = Some(now_secs());
                match result {
                    Ok(s) => {
                        t.view.documents_seen = s.documents_seen;
                        t.view.documents_indexed = s.documents_indexed;
                        t.view.documents_unchanged = s.documents_unchanged;
                        t.view.errors = s.errors;
                        t.view.seconds = Some(s.seconds);
                        // Files that all failed to parse fail the task.
                        t.view.status = if s.documents_seen == 0 && !t.view.errors.is_empty() {
                            TaskStatus::Failed
                        } else {
                            TaskStatus::Succeeded
                        };
                    }
                    Err(_) if t.cancel.load(Ordering::Relaxed) => {
                        t.view.status = TaskStatus::Canceled;
                        t.view.errors.push(format!(
                            "canceled after {} documents; those indexed before the cancel stay",
                            t.view.documents_seen
                        ));
                    }
                    Err(e) => {
                        t.view.status = TaskStatus::Failed;
                        t.view.errors.push(e);
                    }
                }
            }
        }
    }

    /// Tasks that pass `keep`, newest first, from id `from` down, at most `limit`; and the id
    /// the next page starts from.
    pub fn list(
        &self,
        keep: impl Fn(&TaskView) -> bool,
        from: Option<u64>,
        limit: usize,
    ) -> (Vec<TaskView>, Option<u64>) {
        let Ok(m) = self.map.lock() else { return (Vec::new(), None) };
        let mut matching = m.range(..=from.unwrap_or(u64::MAX)).rev().map(|(_, t)| &t.view).filter(|v| keep(v));
        let page: Vec<TaskView> = matching.by_ref().take(limit).cloned().collect();
        (page, matching.next().map(|v| v.id))
    }

    /// A task as the API shows it.
    pub fn get(&self, id: u64) -> Option<TaskView> {
        self.map.lock().ok()?.get(&id).map(|t| t.view.clone())
    }

    pub(crate) fn active_for(&self, collection: &str) -> bool {
        self.map.lock().is_ok_and(|m| {
            m.values().any(|t| {
                t.view.collection == collection
                    && matches!(t.view.status, TaskStatus::Enqueued | TaskStatus::Processing)
            })
        })
    }
}
