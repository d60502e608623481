//! The task queue's durable record: each task's state in a sled database beside the collections
//! (`<data>/tasks`), written and flushed at every change of state before the change is
//! acknowledged, so task ids, states and errors survive a restart or a crash.

use crate::error::{ApiError, ApiResult};
use crate::tasks::TaskView;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One task as stored: what the API shows and where its upload is staged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub view: TaskView,
    pub dir: PathBuf,
}

pub(crate) struct TaskStore {
    db: sled::Db,
    path: PathBuf,
}

impl TaskStore {
    /// Opens (or creates) the record at `path`. Another server on the same data directory
    /// holds its lock: that is refused here, by name.
    pub fn open(path: &Path) -> ApiResult<Self> {
        let db = sled::Config::new().path(path).cache_capacity(1 << 20).open().map_err(|e| {
            ApiError::internal(format!(
                "cannot open the task record {} ({e}); is another server using this data directory?",
                path.display()
            ))
        })?;
        Ok(TaskStore { db, path: path.to_path_buf() })
    }

    /// Every stored task, by id. A record that does not decode (written by another version)
    /// is skipped with a warning rather than stopping the server.
    pub fn load(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for entry in self.db.iter() {
            let decoded = entry
                .map_err(|e| e.to_string())
                .and_then(|(_, v)| serde_json::from_slice::<Record>(&v).map_err(|e| e.to_string()));
            match decoded {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!("{}: a task record could not be read ({e}); skipped", self.path.display()),
            }
        }
        out
    }

    /// Writes a task and flushes it to disk.
    pub fn put(&self, record: &Record) -> ApiResult<()> {
        let value = serde_json::to_vec(record).map_err(|e| ApiError::internal(e.to_string()))?;
        self.db
            .insert(record.view.id.to_be_bytes(), value)
            .and_then(|_| self.db.flush())
            .map(|_| ())
            .map_err(|e| self.failed(e))
    }

    /// Forgets tasks (pruned).
    pub fn remove(&self, ids: &[u64]) -> ApiResult<()> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.to_be_bytes());
        }
        self.db.apply_batch(batch).and_then(|_| self.db.flush()).map(|_| ()).map_err(|e| self.failed(e))
    }

    fn failed(&self, e: sled::Error) -> ApiError {
        ApiError::internal(format!("cannot write the task record {}: {e}", self.path.display()))
    }
}
