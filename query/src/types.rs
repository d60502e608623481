//! The search's public types: modes, fusion, parameters, hits and result pages.

use crate::filter::Filter;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which retrievers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Keywords only (BM25).
    #[serde(alias = "keyword")]
    Bm25,
    /// Embeddings only (HNSW).
    #[serde(alias = "semantic")]
    Dense,
    /// Both, fused.
    #[default]
    Hybrid,
}

impl Mode {
    /// The mode's name, as [`FromStr`](std::str::FromStr) and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bm25 => "bm25",
            Mode::Dense => "dense",
            Mode::Hybrid => "hybrid",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bm25" | "keyword" => Ok(Mode::Bm25),
            "dense" | "semantic" => Ok(Mode::Dense),
            "hybrid" => Ok(Mode::Hybrid),
            _ => Err(Error::BadParameter { name: "mode", reason: format!("{s:?}: use bm25, dense or hybrid") }),
        }
    }
}

/// How hybrid mode merges the two lists.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "method")]
pub enum Fusion {
    /// Reciprocal rank fusion: sum of 1 / (k + rank).
    Rrf {
        /// The rank constant (60 in the original paper).
        k: f32,
    },
    /// (1 - ratio) * minmax(bm25) + ratio * minmax(dense).
    Convex {
        /// Weight of the dense scores, 0 to 1.
        semantic_ratio: f32,
    },
    /// (1 - w) * z(bm25) + w * z(dense), the weight w set per query by how much of the query
    /// BM25's best match covers (less covered, more dense weight).
    Adaptive,
}

/// The default fusion: adaptive, chosen on SciFact's train split and a reverse-dictionary set
/// (docs/retrieval.md says how).
pub const DEFAULT_FUSION: Fusion = Fusion::Adaptive;

/// Search parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchParams {
    /// Which retrievers run.
    pub mode: Mode,
    /// How hybrid mode merges them.
    pub fusion: Fusion,
    /// Hits per page.
    pub limit: usize,
    /// Hits skipped (paging).
    pub offset: usize,
    /// Documents each retriever contributes before fusion.
    pub depth: usize,
    /// HNSW search breadth.
    pub ef: usize,
    /// Parse the query with tantivy's query language instead of as plain words.
    pub syntax: bool,
    /// Metadata conditions every hit meets.
    pub filter: Filter,
    /// Build highlighted snippets.
    pub snippets: bool,
    /// On a clustered collection, fail (`ShardsUnavailable`) rather than answer without the
    /// shards no replica answered for.
    #[serde(default)]
    pub complete: bool,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            mode: Mode::Hybrid,
            fusion: DEFAULT_FUSION,
            limit: 10,
            offset: 0,
            depth: 100,
            ef: 128,
            syntax: false,
            filter: Filter::default(),
            snippets: true,
            complete: false,
        }
    }
}

/// A retriever's view of a hit (for `--explain`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrieverScore {
    /// Rank in that retriever's list, from 1.
    pub rank: usize,
    /// That retriever's score.
    pub score: f32,
}

/// One result document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    /// The document's id.
    pub doc_id: String,
    /// Its title.
    pub title: String,
    /// Where it came from (file path, URL or id).
    pub source: String,
    /// The fused score.
    pub score: f32,
    /// The best chunk: its key, plain text, and highlighted HTML snippet.
    pub chunk_key: u64,
    /// The chunk's plain text.
    pub passage: String,
    /// Highlighted HTML snippet of the chunk.
    pub snippet: String,
    /// The chunk's page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The chunk's heading, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// BM25's rank and score, when it found the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25: Option<RetrieverScore>,
    /// The dense retriever's rank and score, when it found the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<RetrieverScore>,
}

/// A result page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResults {
    /// The query as given.
    pub query: String,
    /// The mode it ran in.
    pub mode: Mode,
    /// This page of hits.
    pub hits: Vec<Hit>,
    /// Documents that either retriever found (before paging).
    pub candidates: usize,
    /// The dense list's weight the fusion used (hybrid mode with convex or adaptive fusion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_ratio: Option<f32>,
    /// Shards of a clustered collection that no replica answered for: their documents are
    /// missing from these results. Empty (and absent from JSON) when the results are whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<u32>,
    /// Time taken.
    pub took_ms: f64,
}
