/// Errors from searching and answering.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is empty (or only whitespace).
    #[error("the query is empty: type some words to search for")]
    EmptyQuery,
    /// `--syntax` query that tantivy's parser rejects.
    #[error("cannot parse the query {query:?}: {reason} (drop --syntax to search the words as plain text)")]
    QuerySyntax { query: String, reason: String },
    /// A filter expression that cannot be understood.
    #[error("invalid filter {filter:?}: {reason}")]
    BadFilter { filter: String, reason: String },
    /// A parameter out of range.
    #[error("invalid parameter {name}: {reason}")]
    BadParameter { name: &'static str, reason: String },
    #[error(transparent)]
    Index(#[from] sousuo_indexer::Error),
    #[error(transparent)]
    Encoder(#[from] sousuo_encoder::Error),
    /// A benchmark data set that cannot be read.
    #[error("cannot read the data set: {0}")]
    Dataset(String),
    #[error("BM25 search failed: {0}")]
    Bm25(String),
    /// Loading or running the decoder model failed.
    #[error("decoder: {0}")]
    Decoder(String),
    /// The decoder's queue is full: retry later.
    #[error("the answer model is busy: too many questions are waiting, retry shortly")]
    Busy,
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Bm25(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
