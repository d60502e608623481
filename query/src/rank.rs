//! Ranking over one collection: each retriever's best chunk per document (BM25, optionally with
//! given term statistics; dense by HNSW, or exactly over a filter's few chunks) and snippets
//! (fusion of the two lists: [`crate::fusion`]).

use crate::{Error, Result};
use sousuo_indexer::bm25::{Bm25Query, Snippets};
use sousuo_indexer::{Collection, TermStats};
use std::collections::{HashMap, HashSet};

/// A document's best chunk from one retriever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DocScore {
    pub(crate) chunk_key: u64,
    pub(crate) score: f32,
}

/// Ranked documents from one retriever: (doc id, best chunk), best first.
pub(crate) type Ranked = Vec<(String, DocScore)>;

/// Snippets are cut at this many characters.
pub(crate) const SNIPPET_CHARS: usize = 240;
pub(crate) fn bm25_docs(
    collection: &Collection,
    query: &Bm25Query,
    allowed: Option<&HashSet<u64>>,
    depth: usize,
    stats: Option<&TermStats>,
) -> Result<Ranked> {
    // Several chunks of one document can rank: over-fetch, then keep each document's best.
    // Chunk keys from a fast field and their documents from memory: no document store reads.
    let hits = collection.bm25().search_keys(query, allowed, depth * 3, stats)?;
    let docs = hits.into_iter().filter_map(|(key, score)| {
        collection.chunk_doc(key).map(|d| (d.to_string(), DocScore { chunk_key: key, score }))
    });
    let mut ranked = best_per_doc(docs, depth);
    // Documents rank by their chunks in context (a chunk's neighbours count); the chunk each
    // one shows (its snippet, the passage an answer reads) is the one whose own text matches
    // best, where its own words match at all.
    if let Some(own) = query.own_text() {
        let mut shown: HashMap<std::sync::Arc<str>, u64> = HashMap::new();
        for (key, _) in collection.bm25().search_keys(&own, allowed, depth * 3, stats)? {
            if let Some(d) = collection.chunk_doc(key) {
                shown.entry(d).or_insert(key);
            }
        }
        for (d, s) in &mut ranked {
            if let Some(&key) = shown.get(d.as_str()) {
                s.chunk_key = key;
            }
        }
    }
    Ok(ranked)
}

/// Below this many allowed chunks (a filter's, or the whole collection's), a dense search scores
/// them exactly: as fast as the graph walk at that size, and the same answer every time (a
/// graph built by parallel inserts can miss a neighbour, differently from build to build).
const EXACT_FILTER_LIMIT: usize = 4096;

pub(crate) fn dense_docs(
    collection: &Collection,
    q: &[f32],
    allowed: Option<&HashSet<u64>>,
    depth: usize,
    ef: usize,
) -> Result<Ranked> {
    let k = depth * 2;
    let hits: Vec<(u64, f32)> = match allowed {
        Some(keys) if keys.len() <= EXACT_FILTER_LIMIT => {
            let mut order: Vec<u64> = keys.iter().copied().collect();
            order.sort_unstable();
            exact_scores(collection, q, &order, k)?
        }
        None if collection.live_chunks() <= EXACT_FILTER_LIMIT => {
            exact_scores(collection, q, &collection.live_chunk_keys()?, k)?
        }
        Some(keys) => collection
            .search_vectors_filtered(q, k, ef.max(k), &|key| keys.contains(&key))?
            .into_iter()
            .map(|h| (h.chunk_key, h.score))
            .collect(),
        None => collection.search_vectors(q, k, ef.max(k))?.into_iter().map(|h| (h.chunk_key, h.score)).collect(),
    };
    // The hits' documents from memory, not the store.
    let docs = hits.into_iter().filter_map(|(key, score)| {
        collection.chunk_doc(key).map(|d| (d.to_string(), DocScore { chunk_key: key, score }))
    });
    Ok(best_per_doc(docs, depth))
}

/// Exact top-k over the vectors of `keys` (ascending; the kernels' SIMD dot product).
fn exact_scores(collection: &Collection, q: &[f32], keys: &[u64], k: usize) -> Result<Vec<(u64, f32)>> {
    let (present, matrix) = collection.vectors_of(keys)?;
    let top = sousuo_kernels::top_k_dot(&matrix, q.len(), q, k)
        .map_err(|e| Error::BadParameter { name: "query vector", reason: e.to_string() })?;
    Ok(top.into_iter().map(|h| (present[h.index], h.score)).collect())
}

/// Keeps each document's best chunk, in score order, at most `depth` documents.
pub(crate) fn best_per_doc(chunks: impl Iterator<Item = (String, DocScore)>, depth: usize) -> Ranked {
    let mut seen = HashSet::new();
    let mut all: Vec<(String, DocScore)> = chunks.collect();
    all.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    all.into_iter().filter(|(d, _)| seen.insert(d.clone())).take(depth).collect()
}

/// The highlighted snippet of a passage, or its opening sentences (escaped) when no query
/// word occurs in it (a dense-only hit).
pub(crate) fn snippet(generator: Option<&Snippets>, passage: &str) -> String {
    if let Some(html) = generator.and_then(|g| g.highlight(passage)) {
        return html;
    }
    let mut end = passage.len().min(SNIPPET_CHARS);
    while !passage.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &passage[..end];
    let cut = match cut.char_indices().rev().find(|(_, c)| matches!(c, '.' | '。' | '!' | '?' | '！' | '？')) {
        Some((i, c)) if i > 80 => &cut[..i + c.len_utf8()],
        _ => cut,
    };
    let mut out = escape_html(cut);
    if cut.len() < passage.len() {
        out.push('…');
    }
    out
}

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(k: u64, s: f32) -> DocScore {
        DocScore { chunk_key: k, score: s }
    }

    #[test]
    fn best_chunk_per_document() {
        let r = best_per_doc(
            vec![("a".into(), ds(1, 1.0)), ("a".into(), ds(2, 3.0)), ("b".into(), ds(3, 2.0))].into_iter(),
            10,
        );
        assert_eq!(r.iter().map(|(d, s)| (d.as_str(), s.chunk_key)).collect::<Vec<_>>(), vec![("a", 2), ("b", 3)]);
    }

    #[test]
    fn snippets_cut_at_multibyte_full_stops() {
        let text = "向量检索把文本转换成向量，通过计算余弦相似度寻找语义相近的文档。".repeat(8);
        let s = snippet(None, &text);
        assert!(s.ends_with('。') || s.ends_with('…'), "{s}");
    }

    #[test]
    fn snippets_escape_document_text() {
        let s = snippet(None, "<script>alert(1)</script> & <img onerror=x>");
        assert!(!s.contains('<') && s.contains("&lt;script&gt;"), "{s}");
    }
}
