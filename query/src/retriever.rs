//! Where a search runs: one local collection, or (implemented by the cluster crate) a
//! collection split into shards on other nodes. Answers and evaluation take either.

use crate::search::{search, Hit, SearchParams, SearchResults};
use crate::Result;
use sousuo_encoder::Encoder;
use sousuo_indexer::Collection;

/// A searchable collection.
pub trait Retriever: Send + Sync {
    /// Runs a search ([`search()`] on a local collection).
    fn search(&self, encoder: &Encoder, query: &str, p: &SearchParams) -> Result<SearchResults>;

    /// The stored vector of a hit's chunk (answers score passages with it).
    fn chunk_vector(&self, hit: &Hit) -> Result<Option<Vec<f32>>>;
}

impl Retriever for Collection {
    fn search(&self, encoder: &Encoder, query: &str, p: &SearchParams) -> Result<SearchResults> {
        search(self, encoder, query, p)
    }

    fn chunk_vector(&self, hit: &Hit) -> Result<Option<Vec<f32>>> {
        Ok(self.store().get_vector(hit.chunk_key)?)
    }
}
