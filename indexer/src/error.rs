use std::path::PathBuf;

/// Errors from collections and indexing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A collection name that could escape the data directory or is otherwise unusable.
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("collection {0:?} does not exist")]
    NoSuchCollection(String),
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    /// The collection was built with another encoder.
    #[error("collection {collection:?} was built with encoder {built_with} (dim {built_dim}), not {requested} (dim {requested_dim}); use that encoder, or re-embed with `sousuo reindex --collection {collection}`")]
    EncoderMismatch {
        collection: String,
        built_with: String,
        built_dim: usize,
        requested: String,
        requested_dim: usize,
    },
    /// The collection's vectors were computed at another precision.
    #[error("collection {collection:?} was built with {built} vectors, this encoder computes {requested}; pass `--precision {built}`, or re-embed with `sousuo reindex --collection {collection} --precision {requested}`")]
    PrecisionMismatch { collection: String, built: String, requested: String },
    /// The on-disk format is newer or older than this build understands.
    #[error("collection {collection:?} has format version {found}; this build reads version {supported}")]
    FormatVersion { collection: String, found: u32, supported: u32 },
    /// One input could not be parsed; the run goes on with the others.
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("document {0:?} does not exist")]
    NoSuchDocument(String),
    #[error("storage error (sled): {0}")]
    Store(String),
    #[error("BM25 index error (tantivy): {0}")]
    Bm25(String),
    #[error("vector index error (hnsw): {0}")]
    Vectors(String),
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error(transparent)]
    Encoder(#[from] sousuo_encoder::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("indexing was cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Bm25(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
