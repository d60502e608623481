//! The query crate's errors.

/// Errors from searching and answering.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is empty (or only whitespace).
    #[error("the query is empty: type some words to search for")]
    EmptyQuery,
    /// A filter expression that cannot be understood.
    #[error("invalid filter {filter:?}: {reason}")]
    BadFilter {
        /// The expression as given.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A parameter out of range.
    #[error("invalid parameter {name}: {reason}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// Its allowed range.
        reason: String,
    },
    /// The collection failed (including a `--syntax` query its BM25 index cannot parse).
    #[error(transparent)]
    Index(#[from] sousuo_indexer::Error),
    /// The encoder failed.
    #[error(transparent)]
    Encoder(#[from] sousuo_encoder::Error),
    /// The decoder failed or is busy.
    #[error(transparent)]
    Decoder(#[from] sousuo_decoder::Error),
    /// Shards of a clustered collection had no replica answering, and complete results were
    /// asked for.
    #[error("shards {missing:?} of {collection:?} have no replica answering; try again when one is back")]
    ShardsUnavailable {
        /// The collection.
        collection: String,
        /// The shards without an answer.
        missing: Vec<u32>,
    },
    /// The cluster could not be reached or answered something unreadable.
    #[error("the cluster failed: {reason}")]
    Cluster {
        /// What failed.
        reason: String,
    },
    /// A benchmark data set that cannot be read.
    #[error("cannot read the data set: {0}")]
    Dataset(String),
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
