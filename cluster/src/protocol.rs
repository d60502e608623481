//! What a coordinator asks a shard and what the shard answers (JSON over NATS request-reply).
//!
//! A shard's replicas subscribe to [`subject`] in one queue group ([`group`]), so NATS hands
//! each request to one of them; a dead replica's subscription is gone, so a request finds a
//! live one or none ("no responders").

use serde::{Deserialize, Serialize};
use sousuo_indexer::store::DocRecord;
use sousuo_indexer::{Chunk, TermStats};
use sousuo_query::shard::{HitBody, Lists};
use sousuo_query::SearchParams;

/// The subject a shard's replicas answer searches on.
pub fn subject(collection: &str, shard: u32) -> String {
    format!("sousuo.search.{collection}.{shard}")
}

/// The queue group of a shard's replicas.
pub fn group(collection: &str, shard: u32) -> String {
    format!("sousuo-search-{collection}-{shard}")
}

/// A request to one shard.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ShardRequest {
    /// The shard's statistics of the query's BM25 terms.
    Stats {
        /// The query text.
        query: String,
        /// The search's parameters.
        params: SearchParams,
    },
    /// The shard's candidate lists.
    Lists {
        /// The query text.
        query: String,
        /// The query's embedding (made once, by the coordinator).
        vector: Option<Vec<f32>>,
        /// The whole collection's term statistics.
        stats: Option<TermStats>,
        /// The search's parameters.
        params: SearchParams,
    },
    /// The hit bodies of some of the shard's documents.
    Bodies {
        /// The query text (for snippets).
        query: String,
        /// The search's parameters.
        params: SearchParams,
        /// (document id, chunk key) of each hit.
        items: Vec<(String, u64)>,
    },
    /// A chunk's stored vector (an answer scores its passages with them).
    Vector {
        /// The chunk's key.
        key: u64,
    },
    /// The shard's size.
    Count,
    /// A stored document with its chunks.
    Document {
        /// Its id.
        id: String,
    },
}

/// A stored document with its chunks (key and chunk), as a shard holds it.
pub type StoredDocument = (DocRecord, Vec<(u64, Chunk)>);

/// A shard's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardReply {
    /// To [`ShardRequest::Stats`].
    Stats(Option<TermStats>),
    /// To [`ShardRequest::Lists`].
    Lists(Lists),
    /// To [`ShardRequest::Bodies`], in the items' order.
    Bodies(Vec<Option<HitBody>>),
    /// To [`ShardRequest::Count`].
    Count {
        /// Documents stored.
        documents: u64,
        /// Chunks stored.
        chunks: u64,
        /// The stream sequence applied.
        applied: u64,
    },
    /// To [`ShardRequest::Vector`]: `None` when the shard has no such chunk.
    Vector(Option<Vec<f32>>),
    /// To [`ShardRequest::Document`]: `None` when the shard has no such document.
    Document(Option<StoredDocument>),
    /// The request failed on the shard.
    Failed {
        /// The caller's mistake (a query the index cannot parse, a bad filter), not the
        /// shard's.
        bad_request: bool,
        /// What failed.
        reason: String,
    },
}
