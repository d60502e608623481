//! Where an index run sends a clustered collection's documents ([`sousuo_indexer::Sink`]):
//! embedded upserts straight to the shard logs ([`LogSink`]), or upserts without vectors to the
//! embedding workers' queue ([`WorkSink`]). Either returns once JetStream has stored them.
//! They block on a runtime handle: index runs are on blocking threads.

use crate::log::ShardLog;
use crate::work::{message_id, WorkQueue};
use sousuo_indexer::store::Change;
use sousuo_indexer::{ChunkParams, Sink};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Embedded changes appended to their shard logs.
pub struct LogSink {
    log: ShardLog,
    handle: tokio::runtime::Handle,
    /// Per shard, the last sequence appended through this sink.
    last: Mutex<BTreeMap<u32, u64>>,
}

impl LogSink {
    /// A sink into `log`, blocking on `handle`.
    pub fn new(log: ShardLog, handle: tokio::runtime::Handle) -> Self {
        LogSink { log, handle, last: Mutex::default() }
    }

    /// Per shard, the last sequence appended through this sink.
    pub fn appended(&self) -> BTreeMap<u32, u64> {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn sink_error(e: crate::Error) -> sousuo_indexer::Error {
    sousuo_indexer::Error::Sink { reason: e.to_string() }
}

impl Sink for LogSink {
    fn chunking(&self) -> ChunkParams {
        self.log.spec().chunking
    }

    fn stored_hash(&self, _id: &str) -> sousuo_indexer::Result<Option<String>> {
        Ok(None) // the replicas know; every document is appended (a same-version retry is deduplicated)
    }

    fn store(&self, changes: &[Change]) -> sousuo_indexer::Result<()> {
        let batch = changes.iter().map(|change| (change, message_id(change)));
        let appended = self.handle.block_on(self.log.append_all(batch)).map_err(sink_error)?;
        if let Ok(mut last) = self.last.lock() {
            for a in appended {
                let seq = last.entry(a.shard).or_default();
                *seq = (*seq).max(a.seq);
            }
        }
        Ok(())
    }
}

/// Upserts without vectors queued for the embedding workers.
pub struct WorkSink {
    queue: WorkQueue,
    chunking: ChunkParams,
    handle: tokio::runtime::Handle,
}

impl WorkSink {
    /// A sink into `queue`, blocking on `handle`.
    pub fn new(queue: WorkQueue, chunking: ChunkParams, handle: tokio::runtime::Handle) -> Self {
        WorkSink { queue, chunking, handle }
    }
}

impl Sink for WorkSink {
    fn chunking(&self) -> ChunkParams {
        self.chunking
    }

    fn stored_hash(&self, _id: &str) -> sousuo_indexer::Result<Option<String>> {
        Ok(None)
    }

    fn store(&self, changes: &[Change]) -> sousuo_indexer::Result<()> {
        self.handle.block_on(self.queue.append_all(changes)).map_err(sink_error)
    }

    fn embeds(&self) -> bool {
        false
    }
}
