//! Server state: the models, the open collections, the indexing tasks, keys and metrics, and
//! the one helper through which CPU work leaves the async runtime.

use crate::auth::KeyStore;
use crate::cluster::ClusterView;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::tasks::{Retention, Tasks};
use sousuo_decoder::Decoder;
use sousuo_encoder::Encoder;
use sousuo_indexer::{ChunkParams, Collection, EncoderInfo, IndexOptions, IndexSummary, OpenMode, Progress};
use sousuo_query::Retriever;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where collections, keys and uploads live.
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
    /// Without API keys, answer only requests whose `Host` is a loopback name (DNS rebinding);
    /// off for a keyless server deliberately bound to another address (`--insecure-no-auth`).
    pub loopback_hosts_only: bool,
    /// A connection that has not sent a request's whole header this long after opening (or
    /// after its previous request) is closed.
    pub header_read_timeout: Duration,
    /// Origins (`https://app.example.com`) whose pages may call the API from a browser: CORS
    /// answers for them, and their writes pass the cross-site guard. Empty (the default): no
    /// CORS, so other sites' pages can neither read answers nor write.
    pub cors_origins: Vec<String>,
    /// Requests a minute each API key may make (bursts up to as many); `None`: no limit.
    pub rate_limit_per_minute: Option<u32>,
    /// Finished indexing tasks kept (recorded in `<data_dir>/.tasks`).
    pub task_retention: Retention,
    /// Disk space an upload's indexing leaves free (the task fails before it would pass it).
    pub min_free_bytes: u64,
}

impl Config {
    /// The defaults, with collections in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            master_key: None,
            max_upload_bytes: 100 << 20,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(120),
            cpu_workers: 8,
            cpu_queue: 64,
            loopback_hosts_only: true,
            header_read_timeout: Duration::from_secs(10),
            cors_origins: Vec::new(),
            rate_limit_per_minute: None,
            task_retention: Retention::default(),
            min_free_bytes: sousuo_indexer::space::DEFAULT_MIN_FREE_BYTES,
        }
    }
}

/// Everything the handlers share.
pub struct AppState {
    /// Settings.
    pub config: Config,
    /// The encoder every collection is searched with.
    pub encoder: Encoder,
    /// That encoder's identity, checked against each collection's manifest.
    pub encoder_info: EncoderInfo,
    /// `None` when answers are disabled: `ask` then answers extractively.
    pub decoder: Option<Decoder>,
    /// Open collections, by name.
    pub collections: RwLock<HashMap<String, Arc<Collection>>>,
    /// The document task queue.
    pub tasks: Tasks,
    /// API keys.
    pub keys: KeyStore,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The cluster, when this server is a node's coordinator (`sousuo node --bind`).
    pub cluster: Option<ClusterView>,
    /// Per-key request budgets, when configured.
    pub rate_limits: Option<crate::ratelimit::RateLimits>,
    /// Admission to CPU work: permits = running + waiting jobs.
    admission: Arc<Semaphore>,
    /// Running CPU jobs.
    running: Arc<Semaphore>,
}

impl AppState {
    /// Builds the state and starts the indexing worker thread.
    pub fn new(config: Config, encoder: Encoder, decoder: Option<Decoder>) -> ApiResult<Arc<Self>> {
        Self::with_cluster(config, encoder, decoder, None)
    }

    /// [`Self::new`] for a node that also coordinates searches of the cluster's collections.
    pub fn with_cluster(
        config: Config,
        encoder: Encoder,
        decoder: Option<Decoder>,
        cluster: Option<ClusterView>,
    ) -> ApiResult<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", config.data_dir.display())))?;
        let keys = KeyStore::open(&config.data_dir.join("keys.json"), config.master_key.clone())?;
        let encoder_info = EncoderInfo::of(&encoder)?;
        let rate_limits = config.rate_limit_per_minute.map(crate::ratelimit::RateLimits::new);
        let tasks = Tasks::open(&config.data_dir.join(".tasks"), config.task_retention)?;
        let state = Arc::new(AppState {
            admission: Arc::new(Semaphore::new(config.cpu_workers + config.cpu_queue)),
            running: Arc::new(Semaphore::new(config.cpu_workers.max(1))),
            config,
            encoder,
            encoder_info,
            decoder,
            collections: RwLock::new(HashMap::new()),
            tasks,
            keys,
            metrics: Metrics::default(),
            rate_limits,
            cluster,
        });
        let weak = Arc::downgrade(&state);
        // The thread holds the state weakly: it ends when the server drops the state.
        // Each queued id is one task to run; which one, the fair pick decides.
        state.tasks.start_worker(move |_| match weak.upgrade() {
            Some(state) => {
                state.run_task();
                true
            }
            None => false,
        })?;
        Ok(state)
    }

    /// Runs the next task (taken fairly between collections; see `Tasks::start_next`): indexes
    /// its staged files into its collection.
    fn run_task(&self) {
        let Some((id, collection, dir, cancel)) = self.tasks.start_next() else { return };
        let result = (|| -> Result<IndexSummary, String> {
            if let Some(cluster) = &self.cluster {
                // A clustered collection: succeeded once JetStream stored the documents.
                if let Some(c) = cluster.get(&collection).map_err(|e| e.message)? {
                    let sink = cluster.sink(&c).map_err(|e| e.message)?;
                    let on = |p: Progress| {
                        if let Progress::Seen { docs } = p {
                            self.tasks.progress(id, docs);
                        }
                    };
                    return sousuo_indexer::index_into(
                        &*sink,
                        &self.encoder,
                        std::slice::from_ref(&dir),
                        &upload_options(&dir, &cancel, self.config.min_free_bytes),
                        &on,
                    )
                    .map_err(|e| e.to_string());
                }
            }
            let c = self.collection(&collection).map_err(|e| e.message)?;
            let on = |p: Progress| {
                if let Progress::Seen { docs } = p {
                    self.tasks.progress(id, docs);
                }
            };
            sousuo_indexer::index_paths(
                &c,
                &self.encoder,
                std::slice::from_ref(&dir),
                &upload_options(&dir, &cancel, self.config.min_free_bytes),
                &on,
            )
            .map_err(|e| e.to_string())
        })();
        // Task errors are shown to API keys: the server's own paths are not theirs to see.
        let data = self.config.data_dir.display().to_string();
        let result = result.map_err(|e| e.replace(&data, "<data>"));
        if let Ok(s) = &result {
            self.metrics.documents_indexed.inc_by(s.documents_indexed as u64);
        }
        self.tasks.finish(id, result);
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

    /// What searches and answers over `name` run on: the cluster's collection of that name
    /// when this server coordinates a cluster that has one, else the local collection.
    /// Blocks: call it from [`Self::blocking`].
    pub fn retriever(&self, name: &str) -> ApiResult<Arc<dyn Retriever>> {
        if let Some(cluster) = &self.cluster {
            if let Some(c) = cluster.get(name)? {
                return Ok(Arc::new(c));
            }
        }
        Ok(self.collection(name)?)
    }

    /// The cluster's collection `name`, when this server coordinates a cluster that has one
    /// (blocking).
    pub fn clustered(&self, name: &str) -> ApiResult<Option<sousuo_cluster::ClusterCollection>> {
        match &self.cluster {
            Some(c) => c.get(name),
            None => Ok(None),
        }
    }

    /// A new directory to stage an upload to clustered collection `name` in.
    pub fn cluster_upload_dir(&self, name: &str) -> ApiResult<PathBuf> {
        let base = self.config.data_dir.join("cluster-uploads").join(name);
        std::fs::create_dir_all(&base).map_err(|e| ApiError::internal(format!("{}: {e}", base.display())))?;
        let dir = tempfile::Builder::new()
            .tempdir_in(&base)
            .map_err(|e| ApiError::internal(format!("{}: {e}", base.display())))?;
        Ok(dir.keep())
    }

    /// Whether collection `name` exists (open or on disk).
    pub fn collection_exists(&self, name: &str) -> bool {
        self.collections.read().is_ok_and(|m| m.contains_key(name))
            || sousuo_indexer::collection_exists(&self.config.data_dir, name)
    }

    /// Creates a collection; 409 when it exists.
    pub fn create_collection(&self, name: &str) -> ApiResult<Arc<Collection>> {
        sousuo_indexer::validate_name(name)?;
        let mut map = self.collections.write().map_err(|_| poisoned())?;
        if map.contains_key(name) || sousuo_indexer::collection_exists(&self.config.data_dir, name) {
            return Err(sousuo_indexer::Error::CollectionExists(name.to_string()).into());
        }
        self.open_locked(&mut map, name)
    }

    /// The collection, created first when it does not exist (one step under the lock, so two
    /// uploads racing to create it both succeed).
    pub fn open_or_create(&self, name: &str) -> ApiResult<Arc<Collection>> {
        sousuo_indexer::validate_name(name)?;
        let mut map = self.collections.write().map_err(|_| poisoned())?;
        match map.get(name) {
            Some(c) => Ok(c.clone()),
            None => self.open_locked(&mut map, name),
        }
    }

    fn open_locked(&self, map: &mut HashMap<String, Arc<Collection>>, name: &str) -> ApiResult<Arc<Collection>> {
        let mode = OpenMode::Create(ChunkParams::for_encoder(&self.encoder));
        let c = Arc::new(Collection::open(&self.config.data_dir, name, &self.encoder_info, mode)?);
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
        Ok(sousuo_indexer::delete_collection(&self.config.data_dir, name)?)
    }

    /// Names of the collections on disk.
    pub fn collection_names(&self) -> ApiResult<Vec<String>> {
        Ok(sousuo_indexer::list_collections(&self.config.data_dir)?)
    }

    /// Stops taking tasks, finishes the queued ones, and commits every open collection.
    pub fn shutdown(&self) {
        self.tasks.shutdown();
        if let Ok(map) = self.collections.read() {
            for (name, c) in map.iter() {
                if let Err(e) = c.commit() {
                    tracing::error!(collection = %name, "commit at shutdown failed: {e}");
                }
            }
        }
    }
}

fn poisoned() -> ApiError {
    ApiError::internal("a lock was poisoned by a panic")
}

/// How a task indexes its staged upload: sources relative to it ("a.txt",
/// "documents.jsonl#L2"), so that no client sees the server's paths.
fn upload_options(
    dir: &std::path::Path,
    cancel: &Arc<std::sync::atomic::AtomicBool>,
    min_free_bytes: u64,
) -> IndexOptions {
    IndexOptions {
        source_base: Some(dir.to_path_buf()),
        cancel: Some(cancel.clone()),
        min_free_bytes: Some(min_free_bytes),
        ..IndexOptions::default()
    }
}
