//! The two halves of a search, so that a collection split into shards searches as one.
//!
//! A shard runs [`lists`] (its BM25 and dense candidates, scored with the whole collection's
//! term statistics from [`term_stats`] summed over the shards) and, for the documents on the
//! final page, [`bodies`] (title, passage, snippet). The coordinator merges the shards' lists
//! ([`Lists::merge`]: scores are comparable, so a merge by score is the single index's order),
//! fuses once ([`Lists::fuse_page`]) and builds the hits ([`Placed::into_hit`]). A single node's
//! [`search`](crate::search()) runs the same functions with nothing in between.

use crate::fusion::fuse;
use crate::rank::{best_per_doc, bm25_docs, dense_docs, snippet, DocScore, Ranked, SNIPPET_CHARS};
use crate::types::{Fusion, Hit, Mode, RetrieverScore, SearchParams};
use crate::Result;
use serde::{Deserialize, Serialize};
use sousuo_indexer::{Collection, TermStats};
use std::collections::HashMap;

/// A document's best chunk in one retriever's list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The document's id.
    pub doc_id: String,
    /// Its best chunk.
    pub chunk_key: u64,
    /// The retriever's score of that chunk.
    pub score: f32,
}

/// Both retrievers' ranked documents, best first, at most `depth` each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lists {
    /// BM25's list (empty in dense mode or for a query without searchable words).
    pub bm25: Vec<Scored>,
    /// The dense retriever's list (empty in bm25 mode).
    pub dense: Vec<Scored>,
    /// The most a chunk could score under BM25 for the query (with the statistics the list was
    /// scored with; 0 when BM25 did not run or the fusion is not adaptive): the adaptive fusion's measure of how much of the
    /// query BM25's best match covers.
    #[serde(default)]
    pub bm25_bound: f32,
}

/// A page placed by fusion.
#[derive(Debug, Clone)]
pub struct FusedPage {
    /// The page's documents, in order.
    pub placed: Vec<Placed>,
    /// Documents that either retriever found.
    pub candidates: usize,
    /// The dense list's weight the fusion used (convex and adaptive fusion in hybrid mode).
    pub semantic_ratio: Option<f32>,
}

/// A document placed on the result page by fusion, before its body is fetched.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The document's id.
    pub doc_id: String,
    /// The chunk whose passage and snippet the hit shows.
    pub chunk_key: u64,
    /// The fused score.
    pub score: f32,
    /// BM25's rank and score.
    pub bm25: Option<RetrieverScore>,
    /// The dense retriever's rank and score.
    pub dense: Option<RetrieverScore>,
}

/// What a hit shows of its document, read where the document is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HitBody {
    /// The document's title.
    pub title: String,
    /// Where it came from.
    pub source: String,
    /// The chunk's plain text.
    pub passage: String,
    /// The highlighted snippet.
    pub snippet: String,
    /// The chunk's page.
    pub page: Option<u32>,
    /// The chunk's heading.
    pub heading: Option<String>,
}

impl Placed {
    /// The hit, with what its shard read.
    pub fn into_hit(self, body: HitBody) -> Hit {
        Hit {
            doc_id: self.doc_id,
            title: body.title,
            source: body.source,
            score: self.score,
            chunk_key: self.chunk_key,
            passage: body.passage,
            snippet: body.snippet,
            page: body.page,
            heading: body.heading,
            bm25: self.bm25,
            dense: self.dense,
        }
    }
}

fn to_ranked(list: &[Scored]) -> Ranked {
    list.iter().map(|s| (s.doc_id.clone(), DocScore { chunk_key: s.chunk_key, score: s.score })).collect()
}

fn from_ranked(list: Ranked) -> Vec<Scored> {
    list.into_iter().map(|(doc_id, d)| Scored { doc_id, chunk_key: d.chunk_key, score: d.score }).collect()
}

impl Lists {
    /// The shards' lists as one: each retriever's documents by score, the best `depth` kept.
    pub fn merge(parts: impl IntoIterator<Item = Lists>, depth: usize) -> Lists {
        let (mut bm25, mut dense, mut bm25_bound) = (Vec::new(), Vec::new(), 0.0f32);
        for part in parts {
            // The shards score with the same summed statistics: the same bound.
            bm25_bound = bm25_bound.max(part.bm25_bound);
            bm25.extend(to_ranked(&part.bm25));
            dense.extend(to_ranked(&part.dense));
        }
        Lists {
            bm25: from_ranked(best_per_doc(bm25.into_iter(), depth)),
            dense: from_ranked(best_per_doc(dense.into_iter(), depth)),
            bm25_bound,
        }
    }

    /// Fuses the lists (once, over the whole collection's candidates) and cuts the page.
    pub fn fuse_page(&self, p: &SearchParams) -> FusedPage {
        let (bm25, dense) = (to_ranked(&self.bm25), to_ranked(&self.dense));
        let fused = fuse(p.mode, p.fusion, &bm25, &dense, self.bm25_bound);
        let candidates = fused.docs.len();
        let ranks = |list: &Ranked| -> HashMap<String, RetrieverScore> {
            list.iter()
                .enumerate()
                .map(|(i, (d, s))| (d.clone(), RetrieverScore { rank: i + 1, score: s.score }))
                .collect()
        };
        let (bm25_ranks, dense_ranks) = (ranks(&bm25), ranks(&dense));
        let placed = fused
            .docs
            .into_iter()
            .skip(p.offset)
            .take(p.limit)
            .map(|(doc_id, score, best)| Placed {
                bm25: bm25_ranks.get(&doc_id).copied(),
                dense: dense_ranks.get(&doc_id).copied(),
                doc_id,
                score,
                chunk_key: best.chunk_key,
            })
            .collect();
        FusedPage { placed, candidates, semantic_ratio: fused.semantic_ratio }
    }
}

/// The collection's statistics of the query's BM25 terms (`None` when the mode does not use
/// BM25 or the query has no searchable word).
pub fn term_stats(collection: &Collection, query: &str, p: &SearchParams) -> Result<Option<TermStats>> {
    if p.mode == Mode::Dense {
        return Ok(None);
    }
    match collection.bm25().query(query, p.syntax)? {
        Some(q) => Ok(Some(collection.bm25().term_stats(&q)?)),
        None => Ok(None),
    }
}

/// A shard's half of a search: both retrievers' best `max(depth, offset + limit)` documents,
/// BM25 scored with `stats` when given (the whole collection's) and the dense retriever with
/// the query's `vector`.
pub fn lists(
    collection: &Collection,
    query: &str,
    vector: Option<&[f32]>,
    stats: Option<&TermStats>,
    p: &SearchParams,
) -> Result<Lists> {
    lists_then_vector(collection, query, || Ok(vector.map(<[f32]>::to_vec)), stats, p)
}

/// [`lists`] with the query vector asked for only once the filter and the BM25 list are done,
/// so that its forward pass (on the encoder's thread) overlaps them.
pub fn lists_then_vector(
    collection: &Collection,
    query: &str,
    vector: impl FnOnce() -> Result<Option<Vec<f32>>>,
    stats: Option<&TermStats>,
    p: &SearchParams,
) -> Result<Lists> {
    let allowed = if p.filter.is_empty() { None } else { Some(p.filter.allowed_chunks(collection)?) };
    let depth = p.depth.max(p.offset + p.limit);
    // BM25 alone needs no list past the page: nothing is fused with it. (Dense alone keeps
    // `depth`, which sets its search width.)
    let bm25_depth = if p.mode == Mode::Bm25 { p.offset + p.limit } else { depth };
    let (bm25, bm25_bound) = match (p.mode, collection.bm25().query(query, p.syntax)?) {
        (Mode::Dense, _) | (_, None) => (Vec::new(), 0.0),
        (_, Some(q)) => {
            // Only the adaptive fusion reads the bound: other searches skip its statistics.
            let bound = match (p.mode == Mode::Hybrid && p.fusion == Fusion::Adaptive, stats) {
                (false, _) => 0.0,
                (true, Some(stats)) => q.bound(stats),
                (true, None) => q.bound(&collection.bm25().term_stats(&q)?),
            };
            (bm25_docs(collection, &q, allowed.as_ref(), bm25_depth.max(1), stats)?, bound)
        }
    };
    let vector = vector()?;
    let dense = match (p.mode, vector.as_deref()) {
        (Mode::Bm25, _) | (_, None) => Vec::new(),
        (_, Some(v)) => dense_docs(collection, v, allowed.as_ref(), depth, p.ef)?,
    };
    Ok(Lists { bm25: from_ranked(bm25), dense: from_ranked(dense), bm25_bound })
}

/// What the hits for `items` (document id, chunk key) show, in their order; `None` for a
/// document no longer stored. Snippets highlight the query's BM25 words when `p.snippets`.
pub fn bodies(
    collection: &Collection,
    query: &str,
    p: &SearchParams,
    items: &[(String, u64)],
) -> Result<Vec<Option<HitBody>>> {
    let snippets = match (p.snippets, collection.bm25().query(query, p.syntax)?) {
        (true, Some(q)) => Some(collection.bm25().snippets(&q, SNIPPET_CHARS)?),
        _ => None,
    };
    let mut out = Vec::with_capacity(items.len());
    for (doc_id, chunk_key) in items {
        let Some(doc) = collection.get_doc(doc_id)? else {
            out.push(None);
            continue;
        };
        let chunk = collection.store().get_chunk(*chunk_key)?;
        let passage = chunk.as_ref().map(|c| c.text.clone()).unwrap_or_default();
        out.push(Some(HitBody {
            title: doc.title,
            source: doc.source,
            snippet: snippet(snippets.as_ref(), &passage),
            page: chunk.as_ref().and_then(|c| c.page),
            heading: chunk.as_ref().and_then(|c| c.heading.clone()),
            passage,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(doc: &str, score: f32) -> Scored {
        Scored { doc_id: doc.into(), chunk_key: 0, score }
    }

    #[test]
    fn merging_orders_every_shard_by_score_and_keeps_depth() {
        let a = Lists { bm25: vec![s("a1", 9.0), s("a2", 3.0)], dense: vec![s("a1", 0.5)], bm25_bound: 20.0 };
        let b = Lists { bm25: vec![s("b1", 5.0), s("b2", 1.0)], dense: vec![s("b2", 0.9)], bm25_bound: 20.0 };
        let m = Lists::merge([a, b], 3);
        let ids = |l: &[Scored]| l.iter().map(|x| x.doc_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&m.bm25), ["a1", "b1", "a2"]);
        assert_eq!(ids(&m.dense), ["b2", "a1"]);
        assert_eq!(m.bm25_bound, 20.0);
    }
}
