//! A shard replica: a local collection (the single-node sled/tantivy/HNSW collection) that
//! applies its shard's stream in order through a durable JetStream consumer.
//!
//! Each batch of changes is applied in one store transaction that also records the stream
//! sequence of its last change ([`Collection::apply_from`]); only then are the messages
//! acknowledged. A replica that dies between the two gets the batch again (after the ack wait,
//! or from the consumer's ack floor when it restarts) and skips what its store already holds,
//! so no change is applied twice and none is lost.

use crate::error::{blocking, fetch};
use crate::log::ShardLog;
use crate::snapshot::{trim, Snapshots};
use crate::{Error, Result};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use sousuo_indexer::store::Change;
use sousuo_indexer::{Collection, OpenMode};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long JetStream waits for a batch's acknowledgement before delivering it again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// Changes applied in one store transaction at most.
pub const BATCH: usize = 256;

/// What one [`Replica::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stepped {
    /// Changes delivered (redeliveries included).
    pub delivered: usize,
    /// Changes new to this replica, applied.
    pub applied: usize,
}

/// One replica of one shard.
pub struct Replica {
    collection: Arc<Collection>,
    consumer: PullConsumer,
    log: ShardLog,
    shard: u32,
}

impl Replica {
    /// Opens (creating it when absent) the local collection `<name>-shard<k>` in `data_dir`,
    /// and node `node`'s durable consumer on the shard's stream, which resumes after the last
    /// change the local store holds.
    pub async fn open(log: &ShardLog, shard: u32, node: &str, data_dir: &Path) -> Result<Self> {
        Self::open_with(log, shard, node, data_dir, ACK_WAIT).await
    }

    /// [`Self::open`] with another ack wait (tests use a short one).
    pub async fn open_with(
        log: &ShardLog,
        shard: u32,
        node: &str,
        data_dir: &Path,
        ack_wait: Duration,
    ) -> Result<Self> {
        let spec = log.spec().clone();
        let mut stream = log.stream(shard).await?;
        let (dir, name, encoder, chunking) =
            (data_dir.to_path_buf(), local_name(&spec.name, shard), spec.encoder.clone(), spec.chunking);
        if !sousuo_indexer::collection_exists(data_dir, &name) {
            // A new replica of a trimmed stream starts from the latest snapshot.
            let first = stream.info().await.map_err(|e| Error::nats("shard stream info", e))?.state.first_sequence;
            if first > 1 {
                let snapshots = Snapshots::open(log.context(), spec.log_replicas).await?;
                match snapshots.restore(&spec.name, shard, &data_dir.join(&name)).await? {
                    Some(seq) if seq + 1 >= first => tracing::info!(shard, seq, "restored a snapshot"),
                    _ => return Err(Error::NoSnapshot { collection: spec.name.clone(), shard, first }),
                }
            }
        }
        let collection = blocking(move || Collection::open(&dir, &name, &encoder, OpenMode::Create(chunking))).await?;
        let applied = collection.source_seq()?;
        let durable = format!("replica-{node}");
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            // A new consumer (a new replica, or one whose consumer was removed) starts after
            // what the local store holds; an existing one resumes from its ack floor.
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: applied + 1 },
            max_ack_pending: BATCH as i64,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(|e| Error::nats("create replica consumer", e))?;
        Ok(Replica { collection: Arc::new(collection), consumer, log: log.clone(), shard })
    }

    /// The local collection (searches run on it).
    pub fn collection(&self) -> &Arc<Collection> {
        &self.collection
    }

    /// The shard.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The stream sequence of the last change applied.
    pub fn applied(&self) -> Result<u64> {
        Ok(self.collection.source_seq()?)
    }

    /// Changes stored in the shard's stream that this replica has not applied yet.
    pub async fn lag(&self) -> Result<u64> {
        Ok(self.log.last_seq(self.shard).await?.saturating_sub(self.applied()?))
    }

    /// Waits up to `wait` for changes, applies what arrived (up to [`BATCH`]) and acknowledges
    /// it; when that drained the stream, what was applied is searchable before it is
    /// acknowledged.
    pub async fn step(&self, wait: Duration) -> Result<Stepped> {
        let messages = fetch(&self.consumer, BATCH, wait, "fetch changes").await?;
        let applied = self.applied()?;
        let mut delivered: BTreeMap<u64, Change> = BTreeMap::new();
        for m in &messages {
            let seq = m.info().map_err(|e| Error::nats("read delivery", e))?.stream_sequence;
            if seq <= applied {
                continue; // a redelivery of what the store holds
            }
            delivered.insert(seq, decode(&m.subject, seq, &m.payload)?);
        }
        // Changes are applied strictly in stream order. A delivery can skip ahead (an earlier
        // batch failed mid-fetch and waits for its redelivery): the gap is read from the
        // stream itself, so nothing is passed over.
        let changes = self.fill_gaps(applied, delivered).await?;
        let fresh = changes.len();
        if let Some(&(last, _)) = changes.last() {
            let collection = self.collection.clone();
            let changes: Vec<Change> = changes.into_iter().map(|(_, c)| c).collect();
            // A batch short of full drained the stream: make it searchable (a BM25 commit)
            // before acknowledging, so an acknowledged change at the tail can be found.
            let drained = messages.len() < BATCH;
            blocking(move || {
                collection.apply_from(&changes, last)?;
                if drained {
                    collection.refresh()?;
                }
                sousuo_indexer::Result::Ok(())
            })
            .await?;
        }
        for m in &messages {
            // A lost ack only means a redelivery, which the sequence check skips.
            if let Err(e) = m.ack().await {
                tracing::warn!(shard = self.shard, "acknowledging a change failed: {e}");
            }
        }
        Ok(Stepped { delivered: messages.len(), applied: fresh })
    }

    /// `delivered` (sequences above `applied`) with every missing sequence before its last read
    /// from the stream, in order.
    async fn fill_gaps(&self, applied: u64, mut delivered: BTreeMap<u64, Change>) -> Result<Vec<(u64, Change)>> {
        let Some(&last) = delivered.keys().next_back() else { return Ok(Vec::new()) };
        if last - applied == delivered.len() as u64 {
            return Ok(delivered.into_iter().collect());
        }
        let stream = self.log.stream(self.shard).await?;
        for seq in applied + 1..last {
            if let std::collections::btree_map::Entry::Vacant(e) = delivered.entry(seq) {
                let m = stream.get_raw_message(seq).await.map_err(|e| Error::nats("read a skipped change", e))?;
                e.insert(decode(&m.subject, seq, &m.payload)?);
            }
        }
        Ok(delivered.into_iter().collect())
    }

    /// Applies changes until the replica has everything the stream stored when it was called.
    pub async fn catch_up(&self) -> Result<()> {
        let target = self.log.last_seq(self.shard).await?;
        while self.applied()? < target {
            self.step(Duration::from_millis(500)).await?;
        }
        Ok(())
    }

    /// Stores a snapshot of this replica (committed and flushed first; call it from the loop
    /// that applies, so nothing changes meanwhile), then trims the shard's stream below what the
    /// snapshot and every replica hold. Returns the snapshot's sequence.
    pub async fn snapshot(&self, snapshots: &Snapshots) -> Result<u64> {
        self.commit().await?;
        let collection = self.collection.clone();
        blocking(move || collection.store().flush()).await?;
        let seq = self.applied()?;
        snapshots.put(&self.log.spec().name, self.shard, seq, self.collection.dir()).await?;
        let first = trim(&self.log, self.shard, seq).await?;
        tracing::info!(shard = self.shard, seq, first, "stored a snapshot and trimmed the stream");
        Ok(seq)
    }

    /// Makes everything applied searchable and durable in every index (BM25 commit, graph dump).
    pub async fn commit(&self) -> Result<()> {
        let collection = self.collection.clone();
        blocking(move || collection.commit()).await
    }
}

fn decode(subject: &str, seq: u64, payload: &[u8]) -> Result<Change> {
    serde_json::from_slice(payload).map_err(|e| Error::Decode {
        subject: subject.to_string(),
        seq,
        reason: e.to_string(),
    })
}

/// The local collection holding a shard replica.
pub fn local_name(collection: &str, shard: u32) -> String {
    format!("{collection}-shard{shard}")
}
