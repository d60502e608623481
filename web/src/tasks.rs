//! Indexing tasks: uploads are staged, queued as tasks with ids and states (enqueued,
//! processing, succeeded, failed, canceled), and indexed one at a time on the
//! `sousuo-index-tasks` thread, taken fairly between collections (`start_next`). A task can be cancelled: an enqueued one never runs (its upload
//! is deleted), a running one stops before its next document. Every change of state is
//! recorded on disk (`taskstore`) before it is acknowledged: after a restart the tasks are
//! there, and those a crash interrupted (enqueued or processing) run again from their upload.
//! Finished tasks are pruned by count and age ([`Retention`]).

use crate::error::{ApiError, ApiResult};
use crate::taskstore::{Record, TaskStore};
use serde::Serialize;
use sousuo_common::{now_secs, Worker};
use sousuo_indexer::IndexSummary;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
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

/// How many finished tasks are kept, and for how long (the oldest go first).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Finished tasks kept at most.
    pub count: usize,
    /// Finished tasks older than this are forgotten.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { count: 10_000, max_age: Duration::from_secs(30 * 24 * 3600) }
    }
}

/// Indexing tasks, recorded on disk (or only in memory: `Tasks::default`), and the thread that
/// runs them one at a time.
#[derive(Default)]
pub struct Tasks {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, Task>>,
    worker: Mutex<Option<Worker<u64>>>,
    store: Option<TaskStore>,
    retention: Retention,
    /// Tasks a restart found unfinished, queued again when the worker starts.
    resume: Mutex<Vec<u64>>,
    /// When each collection's last task started (a sequence number): the fair pick.
    turns: Mutex<std::collections::HashMap<String, u64>>,
    turn: AtomicU64,
}

impl Tasks {
    /// The tasks recorded at `path` (created when missing): finished ones as they ended, and
    /// those a stop or crash interrupted set to run again (from their upload; one whose upload
    /// is gone fails, saying so).
    pub fn open(path: &Path, retention: Retention) -> ApiResult<Self> {
        let store = TaskStore::open(path)?;
        let (mut map, mut resume) = (BTreeMap::new(), Vec::new());
        for Record { mut view, dir } in store.load() {
            if matches!(view.status, TaskStatus::Enqueued | TaskStatus::Processing) {
                if dir.is_dir() {
                    view.status = TaskStatus::Enqueued;
                    view.started_at = None;
                    resume.push(view.id);
                } else {
                    view.status = TaskStatus::Failed;
                    view.finished_at = Some(now_secs());
                    view.errors.push("interrupted by a restart, and its upload is gone: upload again".into());
                }
                store.put(&Record { view: view.clone(), dir: dir.clone() })?;
            }
            map.insert(view.id, Task { view, dir, cancel: Arc::new(AtomicBool::new(false)) });
        }
        let next = map.keys().next_back().copied().unwrap_or(0);
        let tasks = Tasks {
            next: AtomicU64::new(next),
            map: Mutex::new(map),
            worker: Mutex::new(None),
            store: Some(store),
            retention,
            resume: Mutex::new(resume),
            turns: Mutex::default(),
            turn: AtomicU64::new(0),
        };
        tasks.prune();
        Ok(tasks)
    }

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
        let resume = self.resume.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
        if !resume.is_empty() {
            tracing::info!("running again {} task(s) a stop interrupted: {resume:?}", resume.len());
        }
        for id in resume {
            let _ = worker.send(id);
        }
        *self.worker.lock().map_err(|_| ApiError::internal("a lock was poisoned by a panic"))? = Some(worker);
        Ok(())
    }

    /// Queues a task that indexes the files in `dir` into `collection`.
    pub fn enqueue(&self, collection: &str, dir: PathBuf, files: usize) -> ApiResult<TaskView> {
        let id = self.add(collection, dir, files)?;
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

    fn add(&self, collection: &str, dir: PathBuf, files: usize) -> ApiResult<u64> {
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
        let task = Task { view, dir, cancel: Arc::new(AtomicBool::new(false)) };
        if let Some(store) = &self.store {
            store.put(&record(&task))?;
        }
        self.map.lock().map_err(|_| ApiError::internal("a lock was poisoned by a panic"))?.insert(id, task);
        Ok(id)
    }

    /// Records a task's new state; a failure is logged (the state in memory stands).
    fn save(&self, task: &Task) {
        if let Some(Err(e)) = self.store.as_ref().map(|s| s.put(&record(task))) {
            tracing::error!("task {}: {}", task.view.id, e.message);
        }
    }

    /// Forgets finished tasks past the retention's age, then the oldest beyond its count.
    fn prune(&self) {
        let Ok(mut m) = self.map.lock() else { return };
        let finished = |t: &Task| !matches!(t.view.status, TaskStatus::Enqueued | TaskStatus::Processing);
        let oldest = now_secs().saturating_sub(self.retention.max_age.as_secs());
        let mut gone: Vec<u64> = m
            .values()
            .filter(|t| finished(t) && t.view.finished_at.unwrap_or(t.view.enqueued_at) < oldest)
            .map(|t| t.view.id)
            .collect();
        let kept = m.values().filter(|t| finished(t)).count() - gone.len();
        let extra = kept.saturating_sub(self.retention.count);
        let oldest_kept: Vec<u64> =
            m.values().filter(|t| finished(t) && !gone.contains(&t.view.id)).take(extra).map(|t| t.view.id).collect();
        gone.extend(oldest_kept);
        if gone.is_empty() {
            return;
        }
        for id in &gone {
            m.remove(id);
        }
        if let Some(Err(e)) = self.store.as_ref().map(|s| s.remove(&gone)) {
            tracing::error!("pruning tasks: {}", e.message);
        }
    }

    /// Picks the task to run now, fairly between collections: the oldest enqueued task of the
    /// collection whose last task started longest ago (or never). One collection's queue of
    /// uploads then delays another collection's task by at most the one task running. Each
    /// queued message runs one task this way, so every enqueued task runs; `None` when none
    /// waits (it was cancelled).
    pub(crate) fn start_next(&self) -> Option<(u64, String, PathBuf, Arc<AtomicBool>)> {
        let id = {
            let m = self.map.lock().ok()?;
            let turns = self.turns.lock().ok()?;
            m.values()
                .filter(|t| t.view.status == TaskStatus::Enqueued)
                .min_by_key(|t| (turns.get(&t.view.collection).copied().unwrap_or(0), t.view.id))
                .map(|t| t.view.id)?
        };
        let (collection, dir, cancel) = self.start(id)?;
        if let Ok(mut turns) = self.turns.lock() {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed) + 1;
            turns.insert(collection.clone(), turn);
        }
        Some((id, collection, dir, cancel))
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
        self.save(t);
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
            if upload.is_some() {
                self.save(t);
            }
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

    /// Ends a task: records how it ended, then deletes its upload.
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
                self.save(t);
                // The documents are stored (or the task failed for good) and its end is
                // recorded: the upload would only be a second copy. Removed last, so that a
                // crash before this point finds it and runs the task again; under the lock, so
                // that no one sees the task ended with its upload still there.
                let _ = std::fs::remove_dir_all(&t.dir);
            }
        }
        self.prune();
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

fn record(task: &Task) -> Record {
    Record { view: task.view.clone(), dir: task.dir.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> IndexSummary {
        IndexSummary { documents_seen: 1, documents_indexed: 1, ..IndexSummary::default() }
    }

    #[test]
    fn tasks_survive_a_restart_and_interrupted_ones_run_again() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".tasks");
        let upload = |n: &str| {
            let dir = tmp.path().join(n);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        {
            let tasks = Tasks::open(&path, Retention::default()).unwrap();
            let done = tasks.add("c", upload("u1"), 1).unwrap();
            tasks.start(done).unwrap();
            tasks.finish(done, Ok(summary()));
            assert!(!tmp.path().join("u1").exists(), "the upload is deleted once the end is recorded");
            let failed = tasks.add("c", upload("u2"), 1).unwrap();
            tasks.start(failed).unwrap();
            tasks.finish(failed, Err("no collection \"c\"".into()));
            let running = tasks.add("c", upload("u3"), 1).unwrap();
            tasks.start(running).unwrap();
            tasks.add("c", upload("u4"), 1).unwrap(); // enqueued
            tasks.add("c", tmp.path().join("gone"), 1).unwrap(); // its upload never existed
                                                                 // Dropped here without finishing: as after SIGKILL, only the record remains.
        }
        let tasks = Tasks::open(&path, Retention::default()).unwrap();
        let status = |id: u64| tasks.get(id).unwrap().status;
        assert_eq!(status(1), TaskStatus::Succeeded);
        assert_eq!((status(2), tasks.get(2).unwrap().errors), (TaskStatus::Failed, vec!["no collection \"c\"".into()]));
        assert_eq!((status(3), status(4)), (TaskStatus::Enqueued, TaskStatus::Enqueued), "interrupted: queued again");
        assert_eq!(*tasks.resume.lock().unwrap(), vec![3, 4]);
        let gone = tasks.get(5).unwrap();
        assert_eq!(gone.status, TaskStatus::Failed);
        assert!(gone.errors[0].contains("upload is gone"), "{:?}", gone.errors);
        assert_eq!(tasks.add("c", upload("u6"), 1).unwrap(), 6, "ids continue after the last one");
    }

    #[test]
    fn collections_take_turns_on_the_indexing_thread() {
        let tmp = tempfile::tempdir().unwrap();
        let tasks = Tasks::open(&tmp.path().join(".tasks"), Retention::default()).unwrap();
        for c in ["a", "a", "a", "b", "c", "b"] {
            tasks.add(c, tmp.path().join("none"), 1).unwrap();
        }
        let mut order = Vec::new();
        while let Some((id, collection, ..)) = tasks.start_next() {
            order.push(format!("{collection}{id}"));
            tasks.finish(id, Ok(summary()));
        }
        assert_eq!(order, ["a1", "b4", "c5", "a2", "b6", "a3"], "a's queue does not hold b and c back");
    }

    #[test]
    fn finished_tasks_are_pruned_by_count_and_never_unfinished_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".tasks");
        let keep_two = Retention { count: 2, ..Retention::default() };
        {
            let tasks = Tasks::open(&path, keep_two).unwrap();
            let upload = |n: usize| {
                let dir = tmp.path().join(format!("u{n}"));
                std::fs::create_dir_all(&dir).unwrap();
                dir
            };
            let waiting = tasks.add("c", upload(0), 1).unwrap();
            for n in 1..5 {
                let id = tasks.add("c", upload(n), 1).unwrap();
                tasks.start(id).unwrap();
                tasks.finish(id, Ok(summary()));
            }
            let ids: Vec<u64> = tasks.list(|_| true, None, 100).0.iter().map(|t| t.id).collect();
            assert_eq!(ids, vec![5, 4, waiting]);
        }
        let aged = Retention { count: 10, max_age: Duration::ZERO };
        std::thread::sleep(Duration::from_millis(1100)); // finished_at is in whole seconds
        let tasks = Tasks::open(&path, aged).unwrap();
        let ids: Vec<u64> = tasks.list(|_| true, None, 100).0.iter().map(|t| t.id).collect();
        assert_eq!(ids, vec![1], "the finished ones aged out; the enqueued one stays");
    }
}
