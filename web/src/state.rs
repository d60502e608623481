//! Server state: the models, the open collections, the indexing tasks, keys and metrics, and
//! the one helper through which CPU work leaves the async runtime.

use crate::auth::KeyStore;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use serde::Serialize;
use sousuo_encoder::Encoder;
use sousuo_indexer::{ChunkParams, Collection, EncoderInfo, IndexOptions, OpenMode};
use sousuo_query::decoder::Decoder;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// With a master key every route but `/health` and the page's assets needs a key.
    pub master_key: Option<String>,
    /// Request bodies above this are refused with 413 (document uploads).
    pub max_upload_bytes: usize,
    /// Other request bodies.
    pub max_body_bytes: usize,
    /// Requests that take longer get 503 (streams count until their headers are sent).
    pub request_timeout: Duration,
    /// CPU jobs (searches, parsing) running at once; more wait in a queue of `cpu_queue`.
    pub cpu_workers: usize,
    /// CPU jobs that may wait; beyond it requests get 503 with `Retry-After`.
    pub cpu_queue: usize,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            master_key: None,
            max_upload_bytes: 100 << 20,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(120),
            cpu_workers: 8,
            cpu_queue: 64,
        }
    }
}

/// Everything the handlers share.
pub struct AppState {
    pub config: Config,
    pub encoder: Encoder,
    pub encoder_info: EncoderInfo,
    /// `None` when answers are disabled: `ask` then answers extractively.
    pub decoder: Option<Decoder>,
    pub collections: RwLock<HashMap<String, Arc<Collection>>>,
    pub tasks: Tasks,
    pub keys: KeyStore,
    pub metrics: Metrics,
    /// Admission to CPU work: permits = running + waiting jobs.
    admission: Arc<Semaphore>,
    /// Running CPU jobs.
    running: Arc<Semaphore>,
    index_tx: Mutex<Option<std::sync::mpsc::Sender<u64>>>,
    index_worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Chunking for collections created through the API.
fn chunking(encoder: &Encoder) -> ChunkParams {
    ChunkParams { max_tokens: encoder.max_len().saturating_sub(2), ..ChunkParams::default() }
}

impl AppState {
    /// Builds the state and starts the indexing worker thread.
    pub fn new(config: Config, encoder: Encoder, decoder: Option<Decoder>) -> ApiResult<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", config.data_dir.display())))?;
        let keys = KeyStore::open(&config.data_dir.join("keys.json"), config.master_key.clone())?;
        let encoder_info = EncoderInfo::of(&encoder)?;
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let state = Arc::new(AppState {
            admission: Arc::new(Semaphore::new(config.cpu_workers + config.cpu_queue)),
            running: Arc::new(Semaphore::new(config.cpu_workers.max(1))),
            config,
            encoder,
            encoder_info,
            decoder,
            collections: RwLock::new(HashMap::new()),
            tasks: Tasks::default(),
            keys,
            metrics: Metrics::default(),
            index_tx: Mutex::new(Some(tx)),
            index_worker: Mutex::new(None),
        });
        let weak = Arc::downgrade(&state);
        let handle = std::thread::Builder::new()
            .name("sousuo-index-tasks".into())
            .spawn(move || {
                for id in rx {
                    let Some(state) = weak.upgrade() else { break };
                    state.run_task(id);
                }
            })
            .map_err(|e| ApiError::internal(format!("cannot start the indexing thread: {e}")))?;
        *state.index_worker.lock().map_err(|_| ApiError::internal("poisoned"))? = Some(handle);
        Ok(state)
    }

    /// Runs CPU work off the async runtime. Fails at once with 503 when too much is waiting.
    pub async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
        let admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::busy("the server is busy: too many requests are waiting, retry shortly"))?;
        let running = self.running.clone().acquire_owned().await.map_err(|_| ApiError::internal("shutting down"))?;
        let r = tokio::task::spawn_blocking(move || {
            let _held = (admitted, running);
            f()
        })
        .await
        .map_err(|e| ApiError::internal(format!("a worker failed: {e}")))?;
        r
    }

    /// CPU jobs admitted and not finished.
    pub fn queue_depth(&self) -> usize {
        (self.config.cpu_workers + self.config.cpu_queue).saturating_sub(self.admission.available_permits())
    }

    /// An open collection (opened on first use; one handle per collection per process).
    pub fn collection(&self, name: &str) -> ApiResult<Arc<Collection>> {
        if let Some(c) = self.collections.read().map_err(|_| poisoned())?.get(name) {
            return Ok(c.clone());
        }
        let mut map = self.collections.write().map_err(|_| poisoned())?;
        if let Some(c) = map.get(name) {
            return Ok(c.clone());
        }
        let c = Arc::new(Collection::open(&self.config.data_dir, name, &self.encoder_info, OpenMode::Existing)?);
        map.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// Creates a collection; 409 when it exists.
    pub fn create_collection(&self, name: &str) -> ApiResult<Arc<Collection>> {
        sousuo_indexer::validate_name(name)?;
        let mut map = self.collections.write().map_err(|_| poisoned())?;
        if map.contains_key(name) || self.config.data_dir.join(name).join("manifest.json").exists() {
            return Err(sousuo_indexer::Error::CollectionExists(name.to_string()).into());
        }
        let c = Arc::new(Collection::open(
            &self.config.data_dir,
            name,
            &self.encoder_info,
            OpenMode::Create(chunking(&self.encoder)),
        )?);
        map.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// Deletes a collection from disk; 409 while a task indexes into it.
    pub fn delete_collection(&self, name: &str) -> ApiResult<()> {
        sousuo_indexer::validate_name(name)?;
        if self.tasks.active_for(name) {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "collection_busy",
                format!("collection {name:?} has indexing tasks in progress; retry when they finish"),
            ));
        }
        // Make sure it exists (404 otherwise) before dropping the handle.
        self.collection(name)?;
        let removed = self.collections.write().map_err(|_| poisoned())?.remove(name);
        if let Some(c) = removed {
            if Arc::strong_count(&c) > 1 {
                // A request still uses it: put it back rather than delete under its feet.
                self.collections.write().map_err(|_| poisoned())?.insert(name.to_string(), c);
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "collection_busy",
                    format!("collection {name:?} is in use; retry shortly"),
                ));
            }
        }
        let dir = self.config.data_dir.join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| ApiError::internal(format!("cannot delete {}: {e}", dir.display())))
    }

    /// Names of the collections on disk.
    pub fn collection_names(&self) -> ApiResult<Vec<String>> {
        Ok(sousuo_indexer::list_collections(&self.config.data_dir)?)
    }

    /// Queues a task that indexes the files in `dir` into `collection`.
    pub fn enqueue_index(&self, collection: &str, dir: PathBuf, files: usize) -> ApiResult<TaskView> {
        let id = self.tasks.add(collection, dir, files);
        let tx = self.index_tx.lock().map_err(|_| poisoned())?;
        let sent = tx.as_ref().map(|tx| tx.send(id).is_ok()).unwrap_or(false);
        if !sent {
            self.tasks.finish(id, Err("the server is shutting down".into()));
            return Err(ApiError::busy("the server is shutting down"));
        }
        self.tasks.get(id).ok_or_else(|| ApiError::internal("task vanished"))
    }

    fn run_task(&self, id: u64) {
        let Some((collection, dir)) = self.tasks.start(id) else { return };
        let result = (|| -> Result<sousuo_indexer::IndexSummary, String> {
            let c = self.collection(&collection).map_err(|e| e.message)?;
            let on = |p: sousuo_indexer::Progress| {
                if let sousuo_indexer::Progress::Seen { docs } = p {
                    self.tasks.progress(id, docs);
                }
            };
            sousuo_indexer::index_paths(&c, &self.encoder, &[dir], &IndexOptions::default(), &on)
                .map_err(|e| e.to_string())
        })();
        if let Ok(s) = &result {
            self.metrics.documents_indexed.fetch_add(s.documents_indexed as u64, Ordering::Relaxed);
        }
        self.tasks.finish(id, result);
    }

    /// Stops taking tasks, finishes the queued ones, and commits every open collection.
    pub fn shutdown(&self) {
        if let Ok(mut tx) = self.index_tx.lock() {
            tx.take();
        }
        let worker = self.index_worker.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = worker {
            let _ = w.join();
        }
        if let Ok(map) = self.collections.read() {
            for (name, c) in map.iter() {
                if let Err(e) = c.commit() {
                    tracing::error!(collection = %name, "commit at shutdown failed: {e}");
                }
            }
        }
    }

    /// Where uploads of a task are kept: `<data>/<collection>/uploads/<task>`.
    pub fn upload_dir(&self, collection: &str) -> ApiResult<PathBuf> {
        let base = self.config.data_dir.join(collection).join("uploads");
        std::fs::create_dir_all(&base).map_err(|e| ApiError::internal(format!("{}: {e}", base.display())))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", now_secs()))
            .tempdir_in(&base)
            .map_err(|e| ApiError::internal(format!("{}: {e}", base.display())))?;
        Ok(dir.keep())
    }
}

fn poisoned() -> ApiError {
    ApiError::internal("a lock was poisoned by a panic")
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The state of an indexing task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Enqueued,
    Processing,
    Succeeded,
    Failed,
}

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    pub id: u64,
    pub collection: String,
    pub status: TaskStatus,
    pub files: usize,
    pub documents_seen: usize,
    pub documents_indexed: usize,
    pub documents_unchanged: usize,
    pub errors: Vec<String>,
    pub enqueued_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

struct Task {
    view: TaskView,
    dir: PathBuf,
}

/// Indexing tasks, kept in memory (the last 10,000).
#[derive(Default)]
pub struct Tasks {
    next: AtomicU64,
    map: Mutex<BTreeMap<u64, Task>>,
}

impl Tasks {
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
        };
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, Task { view, dir });
            while m.len() > 10_000 {
                m.pop_first();
            }
        }
        id
    }

    fn start(&self, id: u64) -> Option<(String, PathBuf)> {
        let mut m = self.map.lock().ok()?;
        let t = m.get_mut(&id)?;
        t.view.status = TaskStatus::Processing;
        t.view.started_at = Some(now_secs());
        Some((t.view.collection.clone(), t.dir.clone()))
    }

    fn progress(&self, id: u64, docs: usize) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(t) = m.get_mut(&id) {
                t.view.documents_seen = docs;
            }
        }
    }

    fn finish(&self, id: u64, result: Result<sousuo_indexer::IndexSummary, String>) {
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
                    Err(e) => {
                        t.view.status = TaskStatus::Failed;
                        t.view.errors.push(e);
                    }
                }
            }
        }
    }

    pub fn get(&self, id: u64) -> Option<TaskView> {
        self.map.lock().ok()?.get(&id).map(|t| t.view.clone())
    }

    fn active_for(&self, collection: &str) -> bool {
        self.map.lock().is_ok_and(|m| {
            m.values().any(|t| {
                t.view.collection == collection
                    && matches!(t.view.status, TaskStatus::Enqueued | TaskStatus::Processing)
            })
        })
    }
}

/// Saves `name` under `dir` with a safe file name; returns the path.
pub fn safe_file_name(name: &str) -> String {
    let base = Path::new(name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let cleaned: String =
        base.chars().map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "upload".into()
    } else {
        cleaned
    }
}
