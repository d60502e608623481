use std::path::PathBuf;

/// Errors from collections and indexing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A collection name that could escape the data directory or is otherwise unusable.
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The named collection is not on disk.
    #[error("collection {0:?} does not exist")]
    NoSuchCollection(String),
    /// A path given to index does not exist.
    #[error("{0}: no such file or directory (nothing was indexed)")]
    NoSuchPath(PathBuf),
    /// A collection of that name is already on disk.
    #[error("collection {0:?} already exists")]
    CollectionExists(String),
    /// Another process holds the collection open.
    #[error("collection {collection:?} is open in another process (a running `sousuo serve` or `index`?)")]
    InUse {
        /// The collection's name.
        collection: String,
    },
    /// The collection was built with another encoder.
    #[error("collection {collection:?} was built with encoder {built_with} (dim {built_dim}), not {requested} (dim {requested_dim}); use that encoder, or re-embed with `sousuo reindex --collection {collection}`")]
    EncoderMismatch {
        /// The collection's name.
        collection: String,
        /// The encoder it was built with.
        built_with: String,
        /// That encoder's width.
        built_dim: usize,
        /// The encoder loaded now.
        requested: String,
        /// Its width.
        requested_dim: usize,
    },
    /// The collection's vectors were computed at another precision.
    #[error("collection {collection:?} was built with {built} vectors, this encoder computes {requested}; pass `--precision {built}`, or re-embed with `sousuo reindex --collection {collection} --precision {requested}`")]
    PrecisionMismatch {
        /// The collection's name.
        collection: String,
        /// The precision it was built with.
        built: String,
        /// The precision of the encoder loaded now.
        requested: String,
    },
    /// The on-disk format is newer or older than this build understands.
    #[error("collection {collection:?} has format version {found}; this build reads version {supported}")]
    FormatVersion {
        /// The collection's name.
        collection: String,
        /// The version on disk.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// One input could not be parsed; the run goes on with the others.
    #[error("{path}: {reason}")]
    Parse {
        /// The input (file path, with the record when there are several).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file in a text format holds binary content (NUL bytes): skipped, not an error.
    #[error("{path}: binary content (NUL bytes) in a text format")]
    Binary {
        /// The file.
        path: String,
    },
    /// A `--syntax` query that tantivy's parser rejects.
    #[error("cannot parse the query {query:?}: {reason} (drop --syntax to search the words as plain text)")]
    QuerySyntax {
        /// The query given.
        query: String,
        /// The parser's complaint.
        reason: String,
    },
    /// No document has this id.
    #[error("document {0:?} does not exist")]
    NoSuchDocument(String),
    /// The store (sled) failed.
    #[error("storage error (sled): {0}")]
    Store(String),
    /// The BM25 index (tantivy) failed.
    #[error("BM25 index error (tantivy): {0}")]
    Bm25(String),
    /// The vector index (hnsw_rs) failed.
    #[error("vector index error (hnsw): {0}")]
    Vectors(String),
    /// A vector had another width than the collection's.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The collection's width.
        expected: usize,
        /// The width found.
        got: usize,
    },
    /// Encoding the chunks failed.
    #[error(transparent)]
    Encoder(#[from] sousuo_encoder::Error),
    /// A durable file write failed.
    #[error(transparent)]
    Files(#[from] sousuo_common::Error),
    /// An I/O error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The destination of an index run (a [`crate::Sink`] other than a collection) failed.
    #[error("the index run's destination failed: {reason}")]
    Sink {
        /// What failed.
        reason: String,
    },
    /// The run was cancelled (its cancel flag was set).
    #[error("indexing was cancelled")]
    Cancelled,
    /// Writing on would leave less free space than the reserve: the run stopped before it.
    #[error(
        "{path}: not enough free disk space: {available} bytes free, {needed} needed to go on \
         (the next writes and a reserve of {reserve} bytes, so that the collection stays readable); \
         free some space (or lower the reserve: --min-free-mb) and run the same command again"
    )]
    DiskFull {
        /// The collection's directory.
        path: PathBuf,
        /// Bytes free on its file system.
        available: u64,
        /// Bytes the next step needs, reserve included.
        needed: u64,
        /// The reserve.
        reserve: u64,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A store or index error named by the collection directory it happened in (sled's and
    /// tantivy's errors name no path: "No space left on device" alone says not where).
    pub(crate) fn in_dir(self, dir: &std::path::Path) -> Self {
        match self {
            Error::Store(e) => Error::Store(format!("{}: {e}", dir.display())),
            Error::Bm25(e) => Error::Bm25(format!("{}: {e}", dir.display())),
            Error::Vectors(e) => Error::Vectors(format!("{}: {e}", dir.display())),
            other => other,
        }
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

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
