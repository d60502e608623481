//! The log: one JetStream stream per shard of a collection, the source of truth for that
//! shard's documents. Each entry is one [`Change`] (an upsert with its embedded chunks, or a
//! delete) as JSON; its stream sequence is its position, which replicas record as they apply.
//!
//! A change is acknowledged to the writer only once JetStream has stored it (on a majority of
//! the stream's replicas). Writers give each change a message id (`Nats-Msg-Id`), so a retried
//! publish inside the stream's duplicate window is stored once.

use crate::meta::CollectionSpec;
use crate::shard::{shard_of, stream_name, subject};
use crate::{Error, Result};
use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::{self, Stream};
use async_nats::jetstream::Context;
use sousuo_indexer::store::Change;
use std::time::Duration;

/// How long JetStream remembers message ids to drop a retried publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where an appended change was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The shard.
    pub shard: u32,
    /// Its sequence in the shard's stream.
    pub seq: u64,
    /// The message id had been stored already (a retry): nothing new was appended.
    pub duplicate: bool,
}

async fn stored(shard: u32, ack: PublishAckFuture) -> Result<Appended> {
    let ack = ack.await.map_err(|e| Error::nats("store", e))?;
    Ok(Appended { shard, seq: ack.sequence, duplicate: ack.duplicate })
}

/// The shard streams of one collection.
#[derive(Clone)]
pub struct ShardLog {
    js: Context,
    spec: CollectionSpec,
}

impl ShardLog {
    /// Opens the collection's shard streams, creating those that do not exist (file storage,
    /// `spec.log_replicas` copies).
    pub async fn open(js: &Context, spec: &CollectionSpec) -> Result<Self> {
        spec.validate()?;
        for shard in 0..spec.shards {
            let config = stream::Config {
                name: stream_name(&spec.name, shard),
                subjects: vec![subject(&spec.name, shard)],
                storage: stream::StorageType::File,
                num_replicas: spec.log_replicas,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            };
            // Idempotent, so retried like an append: a JetStream request can time out while
            // the cluster elects a new leader (a NATS server just died).
            retrying("create shard stream", || async {
                js.get_or_create_stream(config.clone()).await.map_err(|e| Error::nats("create shard stream", e))
            })
            .await?;
        }
        Ok(ShardLog { js: js.clone(), spec: spec.clone() })
    }

    /// The collection.
    pub fn spec(&self) -> &CollectionSpec {
        &self.spec
    }

    /// The JetStream context the streams live in.
    pub fn context(&self) -> &Context {
        &self.js
    }

    /// Appends `change` to its document's shard under message id `msg_id` and waits until
    /// JetStream has stored it.
    pub async fn append(&self, change: &Change, msg_id: &str) -> Result<Appended> {
        let (shard, ack) = self.publish(change, msg_id).await?;
        stored(shard, ack).await
    }

    /// Appends several changes (each with its message id), all published before any
    /// acknowledgement is awaited, so a batch costs about one round trip; returns once
    /// JetStream has stored every one. Changes to one shard are stored in the order given.
    /// A failed batch (a server down, a stream electing its leader) is sent again, up to
    /// [`APPEND_TRIES`] times: the message ids make JetStream store each change once.
    pub async fn append_all<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a Change, String)>,
    ) -> Result<Vec<Appended>> {
        let changes: Vec<(&Change, String)> = changes.into_iter().collect();
        retrying("append to a shard log", || self.try_append_all(&changes)).await
    }

    async fn try_append_all(&self, changes: &[(&Change, String)]) -> Result<Vec<Appended>> {
        let mut pending = Vec::new();
        for (change, msg_id) in changes {
            pending.push(self.publish(change, msg_id).await?);
        }
        let mut out = Vec::with_capacity(pending.len());
        for (shard, ack) in pending {
            out.push(stored(shard, ack).await?);
        }
        Ok(out)
    }

    /// Sends `change` to its shard; the future resolves when JetStream has stored it.
    async fn publish(&self, change: &Change, msg_id: &str) -> Result<(u32, PublishAckFuture)> {
        let doc_id = match change {
            Change::Upsert { doc, .. } => &doc.id,
            Change::Delete { doc_id } => doc_id,
        };
        let shard = shard_of(doc_id, self.spec.shards);
        let payload = serde_json::to_vec(change).map_err(|e| Error::Decode {
            subject: subject(&self.spec.name, shard),
            seq: 0,
            reason: e.to_string(),
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, msg_id);
        let ack = self
            .js
            .publish_with_headers(subject(&self.spec.name, shard), headers, payload.into())
            .await
            .map_err(|e| Error::nats("publish", e))?;
        Ok((shard, ack))
    }

    /// A shard's stream.
    pub async fn stream(&self, shard: u32) -> Result<Stream> {
        if shard >= self.spec.shards {
            return Err(Error::NoSuchShard { collection: self.spec.name.clone(), shards: self.spec.shards, shard });
        }
        self.js.get_stream(stream_name(&self.spec.name, shard)).await.map_err(|e| Error::nats("open shard stream", e))
    }

    /// The sequence of the last change stored in a shard (0 for none).
    pub async fn last_seq(&self, shard: u32) -> Result<u64> {
        let info = self.stream(shard).await?.get_info().await.map_err(|e| Error::nats("shard stream info", e))?;
        Ok(info.state.last_sequence)
    }

    /// The first sequence a shard's stream still holds (above 1 once trimmed below a snapshot).
    pub async fn first_seq(&self, shard: u32) -> Result<u64> {
        let info = self.stream(shard).await?.get_info().await.map_err(|e| Error::nats("shard stream info", e))?;
        Ok(info.state.first_sequence)
    }

    /// The last stream sequence node `node`'s replica of `shard` has acknowledged (applied),
    /// `None` when that node has no replica consumer on the shard.
    pub async fn acknowledged(&self, shard: u32, node: &str) -> Result<Option<u64>> {
        let stream = self.stream(shard).await?;
        match stream.consumer_info(format!("replica-{node}")).await {
            Ok(info) => {
                // A replica's consumer starts after what its store held (a restored snapshot):
                // everything before its start sequence is applied too.
                let start = match info.config.deliver_policy {
                    async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence } => {
                        start_sequence.saturating_sub(1)
                    }
                    _ => 0,
                };
                Ok(Some(info.ack_floor.stream_sequence.max(start)))
            }
            Err(e) if e.kind() == async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::nats("replica consumer info", e)),
        }
    }

    /// Deletes every shard stream (the collection's whole history).
    pub async fn delete(self) -> Result<()> {
        for shard in 0..self.spec.shards {
            self.js
                .delete_stream(stream_name(&self.spec.name, shard))
                .await
                .map_err(|e| Error::nats("delete shard stream", e))?;
        }
        Ok(())
    }
}

/// Tries of an append before its error is returned.
pub const APPEND_TRIES: u32 = 10;

/// Runs `attempt` until it succeeds or has failed [`APPEND_TRIES`] times with a NATS error
/// (other errors are returned at once), waiting a little longer after each failure.
pub(crate) async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e @ Error::Nats { .. }) if tries < APPEND_TRIES => {
                tracing::warn!("{what} failed ({e}); trying again");
                tokio::time::sleep(Duration::from_millis(250 * u64::from(tries))).await;
                tries += 1;
            }
            other => return other,
        }
    }
}
