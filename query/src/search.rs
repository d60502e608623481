//! Hybrid retrieval on one collection: BM25 and dense retrieval over chunks, aggregated to
//! documents (best chunk), fused, paged, with snippets. The types are in `types`, the ranking in
//! `rank`, the halves a cluster splits between shards and coordinator in [`crate::shard`].

use crate::shard;
use crate::{Error, Result};
use sousuo_encoder::Encoder;
use sousuo_indexer::Collection;
use std::time::Instant;

pub use crate::fusion::fuse_for_bench;
pub use crate::rank::escape_html;
pub use crate::types::{Fusion, Hit, Mode, RetrieverScore, SearchParams, SearchResults, DEFAULT_FUSION};

/// Runs a search on one collection: the shard's half ([`shard::lists`]), fusion and paging,
/// then the page's hits ([`shard::bodies`]), all here. A cluster runs the same halves on each
/// shard and merges in between.
pub fn search(collection: &Collection, encoder: &Encoder, query: &str, p: &SearchParams) -> Result<SearchResults> {
    let started = Instant::now();
    check(query, p)?;
    // The query's forward pass runs on the encoder's thread while the BM25 list is built here.
    let pending = match p.mode {
        Mode::Bm25 => None,
        _ => Some(encoder.submit(&[query])?),
    };
    let vector = || -> Result<Option<Vec<f32>>> {
        Ok(match pending {
            Some(pending) => Some(pending.wait()?.row(0).to_vec()),
            None => None,
        })
    };
    let lists = shard::lists_then_vector(collection, query, vector, None, p)?;
    let page = lists.fuse_page(p);
    let items: Vec<(String, u64)> = page.placed.iter().map(|h| (h.doc_id.clone(), h.chunk_key)).collect();
    let bodies = shard::bodies(collection, query, p, &items)?;
    let hits =
        page.placed.into_iter().zip(bodies).filter_map(|(placed, body)| body.map(|b| placed.into_hit(b))).collect();
    Ok(SearchResults {
        query: query.to_string(),
        mode: p.mode,
        hits,
        candidates: page.candidates,
        semantic_ratio: page.semantic_ratio,
        missing_shards: Vec::new(),
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// Rejects an empty query and out-of-range paging.
pub fn check(query: &str, p: &SearchParams) -> Result<()> {
    if query.trim().is_empty() {
        return Err(Error::EmptyQuery);
    }
    if p.limit > 1000 || p.depth == 0 || p.depth > 10_000 {
        return Err(Error::BadParameter {
            name: "limit/depth",
            reason: "limit is at most 1000, depth 1 to 10000".into(),
        });
    }
    Ok(())
}

/// The query's embedding, when the mode uses the dense retriever.
pub fn query_vector(encoder: &Encoder, query: &str, mode: Mode) -> Result<Option<Vec<f32>>> {
    Ok(match mode {
        Mode::Bm25 => None,
        _ => Some(encoder.encode(&[query])?.row(0).to_vec()),
    })
}
