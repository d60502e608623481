//! Query side: hybrid retrieval (BM25 + HNSW), fusion, filters, snippets, grounded answers,
//! and the BEIR evaluator's metrics.
//!
//! - [`search()`]: both retrievers over chunks, best chunk per document, fusion, paging,
//!   snippets; [`filter`]: the filter language resolved to allowed chunks.
//! - [`shard`]: the halves of a search a shard runs and a coordinator merges;
//!   [`Retriever`]: a local collection or (the cluster crate) a sharded one.
//! - [`answer()`]: retrieve -> generate (the decoder crate) -> verify -> decide.
//! - [`beir`]: BEIR data sets (corpus, queries, judgements) read in one place.
//! - [`eval`] and [`metrics`]: the evaluator and the trec_eval measures; [`qa`]: SQuAD's
//!   answer scoring.

#![warn(missing_docs)]

pub mod answer;
pub mod beir;
mod error;
pub mod eval;
pub mod filter;
mod fusion;
pub mod metrics;
pub mod qa;
mod rank;
pub mod rerank;
pub mod retriever;
pub mod search;
pub mod shard;
mod types;

pub use answer::{answer, Answer, AnswerEvent, AnswerKind, AnswerParams, Source, Turn};
pub use error::{Error, Result};
pub use filter::{Condition, Filter};
pub use retriever::Retriever;
pub use search::{escape_html, search, Fusion, Hit, Mode, SearchParams, SearchResults, DEFAULT_FUSION};
