//! Embedding workers. Documents are parsed and chunked where they arrive; their upserts,
//! without vectors, go to the collection's work-queue stream. A worker (`sousuo worker`)
//! pulls a batch sized for its device from the queue's one shared durable consumer, embeds
//! every chunk in one encoder call, appends the embedded upserts to the shard logs (the same
//! message ids as a direct append, so JetStream drops a repeat), and only then acknowledges
//! the batch. A worker that dies mid-batch loses nothing: the batch is delivered again after
//! its ack wait, to another worker; its repeat on the shard logs is deduplicated.

use crate::error::{blocking, fetch};
use crate::log::{retrying, ShardLog, DUPLICATE_WINDOW};
use crate::{CollectionSpec, Error, Result};
use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{stream, Context};
use sousuo_encoder::Encoder;
use sousuo_indexer::embed_text;
use sousuo_indexer::store::Change;
use std::time::Duration;

/// The shared durable consumer of a work queue.
const CONSUMER: &str = "workers";

/// The work-queue stream of a collection.
pub fn stream_name(collection: &str) -> String {
    format!("SOUSUO-WORK-{collection}")
}

fn subject(collection: &str) -> String {
    format!("sousuo.work.{collection}")
}

/// The message id of a change, the same on the work queue and the shard logs.
pub fn message_id(change: &Change) -> String {
    match change {
        Change::Upsert { doc, .. } => format!("{}@{}", doc.id, doc.content_hash),
        Change::Delete { doc_id } => format!("{doc_id}@deleted@{}", sousuo_common::now_secs()),
    }
}

/// A collection's work queue.
#[derive(Clone)]
pub struct WorkQueue {
    js: Context,
    spec: CollectionSpec,
}

impl WorkQueue {
    /// Opens the queue's stream, creating it (work-queue retention: a message is removed once
    /// a worker acknowledges it) when absent.
    pub async fn open(js: &Context, spec: &CollectionSpec) -> Result<Self> {
        let config = stream::Config {
            name: stream_name(&spec.name),
            subjects: vec![subject(&spec.name)],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: spec.log_replicas,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        js.get_or_create_stream(config).await.map_err(|e| Error::nats("create work queue", e))?;
        Ok(WorkQueue { js: js.clone(), spec: spec.clone() })
    }

    /// Queues upserts to embed; returns once JetStream stored every one (a failed batch is
    /// sent again, its message ids deduplicating what was stored).
    pub async fn append_all(&self, changes: &[Change]) -> Result<()> {
        retrying("queue work", || self.try_append_all(changes)).await
    }

    async fn try_append_all(&self, changes: &[Change]) -> Result<()> {
        let mut acks = Vec::with_capacity(changes.len());
        for change in changes {
            let payload = serde_json::to_vec(change).map_err(|e| Error::Decode {
                subject: subject(&self.spec.name),
                seq: 0,
                reason: e.to_string(),
            })?;
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, message_id(change).as_str());
            let ack = self
                .js
                .publish_with_headers(subject(&self.spec.name), headers, payload.into())
                .await
                .map_err(|e| Error::nats("queue work", e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| Error::nats("queue work", e))?;
        }
        Ok(())
    }

    /// Documents queued and not yet embedded and appended.
    pub async fn pending(&self) -> Result<u64> {
        let mut s =
            self.js.get_stream(stream_name(&self.spec.name)).await.map_err(|e| Error::nats("open work queue", e))?;
        let info = s.info().await.map_err(|e| Error::nats("work queue info", e))?;
        Ok(info.state.messages)
    }

    /// Deletes the queue (with its collection).
    pub async fn delete(&self) -> Result<()> {
        self.js.delete_stream(stream_name(&self.spec.name)).await.map_err(|e| Error::nats("delete work queue", e))?;
        Ok(())
    }
}

/// What one [`Worker::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Worked {
    /// Documents embedded and appended.
    pub documents: usize,
    /// Chunks embedded.
    pub chunks: usize,
}

/// One worker's consumer of one collection's queue.
pub struct Worker {
    consumer: PullConsumer,
    log: ShardLog,
    encoder: Encoder,
    batch: usize,
}

impl Worker {
    /// Joins the queue's shared consumer; batches of up to `batch` documents, each
    /// acknowledged within `ack_wait` or delivered again.
    pub async fn open(
        js: &Context,
        spec: &CollectionSpec,
        encoder: Encoder,
        batch: usize,
        ack_wait: Duration,
    ) -> Result<Self> {
        WorkQueue::open(js, spec).await?;
        let stream = js.get_stream(stream_name(&spec.name)).await.map_err(|e| Error::nats("open work queue", e))?;
        let config = pull::Config {
            durable_name: Some(CONSUMER.into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            max_ack_pending: 10_000,
            ..Default::default()
        };
        let consumer =
            stream.get_or_create_consumer(CONSUMER, config).await.map_err(|e| Error::nats("join work queue", e))?;
        Ok(Worker { consumer, log: ShardLog::open(js, spec).await?, encoder, batch: batch.max(1) })
    }

    /// Waits up to `wait` for work; embeds what came, appends it to the shard logs, then
    /// acknowledges it.
    pub async fn step(&self, wait: Duration) -> Result<Worked> {
        let messages = fetch(&self.consumer, self.batch, wait, "fetch work").await?;
        if messages.is_empty() {
            return Ok(Worked::default());
        }
        let mut changes = Vec::with_capacity(messages.len());
        for m in &messages {
            let change: Change = serde_json::from_slice(&m.payload).map_err(|e| Error::Decode {
                subject: m.subject.to_string(),
                seq: m.info().map(|i| i.stream_sequence).unwrap_or(0),
                reason: e.to_string(),
            })?;
            changes.push(change);
        }
        let encoder = self.encoder.clone();
        let (changes, chunks) = blocking(move || embed(&encoder, changes)).await?;
        let ids: Vec<String> = changes.iter().map(message_id).collect();
        self.log.append_all(changes.iter().zip(ids)).await?;
        for m in &messages {
            // A lost ack means a redelivery, whose appends the shard logs deduplicate.
            if let Err(e) = m.ack().await {
                tracing::warn!("acknowledging work failed: {e}");
            }
        }
        Ok(Worked { documents: changes.len(), chunks })
    }
}

/// Fills in the vectors of upserts (one encoder call for the whole batch).
fn embed(encoder: &Encoder, mut changes: Vec<Change>) -> Result<(Vec<Change>, usize)> {
    let texts: Vec<String> = changes
        .iter()
        .flat_map(|c| match c {
            Change::Upsert { doc, chunks, .. } => chunks.iter().map(|ch| embed_text(&doc.title, &ch.text)).collect(),
            Change::Delete { .. } => Vec::new(),
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = encoder.encode(&refs)?;
    let mut rows = vectors.rows();
    for change in &mut changes {
        if let Change::Upsert { chunks, vectors, .. } = change {
            *vectors = rows.by_ref().take(chunks.len()).map(<[f32]>::to_vec).collect();
        }
    }
    Ok((changes, refs.len()))
}
