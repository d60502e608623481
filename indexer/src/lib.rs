//! Collections on disk: ingest, parse, chunk, and store documents twice (BM25 terms and
//! vectors) with sled as the source of truth.
//!
//! - [`formats`] and [`sources`]: files to [`Document`]s (txt, md, html, pdf, json, jsonl, BEIR).
//! - [`chunk`]: documents to passages within the encoder's token budget.
//! - [`store`]: the sled store with its operation log; [`bm25`] (tantivy) and [`vectors`]
//!   (hnsw_rs) are derived from it and catch up from the oplog on open.
//! - [`Collection`]: the three stores behind one API; [`index_paths`]: a pipelined index run
//!   ([`index_into`]: the same run into any [`Sink`], such as a cluster's shard logs).

#![warn(missing_docs)]

pub mod bm25;
pub mod chunk;
mod collection;
mod document;
mod error;
pub mod fields;
pub mod flat;
pub mod formats;
mod live;
mod pdf;
mod pipeline;
mod reindex;
mod sink;
pub mod sources;
pub mod space;
pub mod store;
pub mod termstats;
pub mod tokenizer;
pub mod vectors;

pub use chunk::ChunkParams;
pub use collection::{
    collection_exists, delete_collection, list_collections, read_counts, read_manifest, validate_name, Collection,
    Counts, EncoderInfo, Manifest, OpenMode, Stats, FORMAT_VERSION,
};
pub use document::{Chunk, Document, Part};
pub use error::{Error, Result};
pub use pipeline::{embed_text, index_into, index_paths, IndexOptions, IndexSummary, Progress, MAX_DOCUMENT_BYTES};
pub use reindex::reindex;
pub use sink::Sink;
pub use termstats::TermStats;
