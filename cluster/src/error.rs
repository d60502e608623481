//! The cluster's errors.

/// Errors from the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A NATS URL that does not parse.
    #[error("invalid NATS URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A NATS or JetStream request failed (the server is unreachable, the stream is missing,
    /// a timeout).
    #[error("NATS {op} failed: {reason}")]
    Nats {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        reason: String,
    },
    /// The cluster has no collection of that name.
    #[error("the cluster has no collection {0:?}")]
    NoSuchCollection(String),
    /// A clustered collection of that name exists already.
    #[error("the cluster already has a collection {0:?}")]
    CollectionExists(String),
    /// A collection spec that cannot work (no shards, a replication factor out of range).
    #[error("invalid cluster collection {name:?}: {reason}")]
    BadSpec {
        /// The collection.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry of a shard stream or of the metadata bucket that does not decode.
    #[error("undecodable entry in {subject} (sequence {seq}): {reason}")]
    Decode {
        /// Where it was read.
        subject: String,
        /// Its sequence in the stream.
        seq: u64,
        /// The decoder's complaint.
        reason: String,
    },
    /// A shard number outside the collection's shards.
    #[error("collection {collection:?} has {shards} shards; there is no shard {shard}")]
    NoSuchShard {
        /// The collection.
        collection: String,
        /// Its shard count.
        shards: u32,
        /// The shard asked for.
        shard: u32,
    },
    /// The local collection of a replica failed.
    #[error(transparent)]
    Index(#[from] sousuo_indexer::Error),
    /// Reading or writing a snapshot's files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A shard's stream was trimmed and it has no snapshot to bootstrap a new replica from.
    #[error(
        "shard {shard} of {collection:?} starts at sequence {first} and has no snapshot: a new replica cannot be built"
    )]
    NoSnapshot {
        /// The collection.
        collection: String,
        /// The shard.
        shard: u32,
        /// The stream's first sequence.
        first: u64,
    },
    /// An embedding worker's encoder failed.
    #[error(transparent)]
    Embed(#[from] sousuo_encoder::Error),
    /// A blocking index task panicked or was cancelled.
    #[error("an index task stopped: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn nats(op: &'static str, e: impl std::fmt::Display) -> Self {
        Error::Nats { op, reason: e.to_string() }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Runs `f` on a blocking thread (index writes, archives).
pub(crate) async fn blocking<T, E>(f: impl FnOnce() -> std::result::Result<T, E> + Send + 'static) -> Result<T>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(Error::Task(e.to_string())),
    }
}

/// Up to `max` messages from a pull consumer, waiting at most `wait` for them.
pub(crate) async fn fetch(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    max: usize,
    wait: std::time::Duration,
    what: &'static str,
) -> Result<Vec<async_nats::jetstream::Message>> {
    use futures_util::StreamExt;
    let mut batch =
        consumer.batch().max_messages(max).expires(wait).messages().await.map_err(|e| Error::nats(what, e))?;
    let mut messages = Vec::new();
    while let Some(m) = batch.next().await {
        messages.push(m.map_err(|e| Error::nats(what, e))?);
    }
    Ok(messages)
}
