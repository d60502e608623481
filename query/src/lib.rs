//! Query side: hybrid retrieval (BM25 + HNSW), fusion, filters, snippets, and the BEIR
//! evaluator's metrics.

pub mod answer;
pub mod decoder;
mod error;
pub mod eval;
pub mod filter;
pub mod metrics;
pub mod search;

pub use answer::{answer, Answer, AnswerEvent, AnswerKind, AnswerParams, Source, Turn};
pub use error::{Error, Result};
pub use filter::{Condition, Filter};
pub use search::{escape_html, search, Fusion, Hit, Mode, SearchParams, SearchResults, DEFAULT_FUSION};
