//! Hybrid retrieval: BM25 and dense retrieval over chunks, aggregated to documents (best
//! chunk), fused, paged, with snippets.

use crate::filter::Filter;
use crate::shard;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sousuo_encoder::Encoder;
use sousuo_indexer::bm25::{Bm25Query, Snippets};
use sousuo_indexer::{Collection, TermStats};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

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
}

/// The default fusion, chosen on SciFact's train qrels (docs/retrieval.md says how).
pub const DEFAULT_FUSION: Fusion = Fusion::Convex { semantic_ratio: 0.5 };

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
    /// The chunk's stored vector, when the search brought it along (a cluster's shards do, so
    /// answers need not ask again); never serialised.
    #[serde(skip)]
    pub vector: Option<Vec<f32>>,
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
    /// Shards of a clustered collection that no replica answered for: their documents are
    /// missing from these results. Empty (and absent from JSON) when the results are whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<u32>,
    /// Time taken.
    pub took_ms: f64,
}

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

/// Runs a search on one collection: the shard's half ([`shard::lists`]), fusion and paging,
/// then the page's hits ([`shard::bodies`]), all here. A cluster runs the same halves on each
/// shard and merges in between.
pub fn search(collection: &Collection, encoder: &Encoder, query: &str, p: &SearchParams) -> Result<SearchResults> {
    let started = Instant::now();
    check(query, p)?;
    let vector = query_vector(encoder, query, p.mode)?;
    let lists = shard::lists(collection, query, vector.as_deref(), None, p)?;
    let (page, candidates) = lists.fuse_page(p);
    let bodies =
        shard::bodies(collection, query, p, &page.iter().map(|h| (h.doc_id.clone(), h.chunk_key)).collect::<Vec<_>>())?;
    let hits = page.into_iter().zip(bodies).filter_map(|(placed, body)| body.map(|b| placed.into_hit(b))).collect();
    Ok(SearchResults {
        query: query.to_string(),
        mode: p.mode,
        hits,
        candidates,
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

pub(crate) fn bm25_docs(
    collection: &Collection,
    query: &Bm25Query,
    allowed: Option<&HashSet<u64>>,
    depth: usize,
    stats: Option<&TermStats>,
) -> Result<Ranked> {
    // Several chunks of one document can rank: over-fetch, then keep each document's best.
    let hits = collection.bm25().search_with(query, allowed, depth * 3, stats)?;
    Ok(best_per_doc(hits.into_iter().map(|h| (h.doc_id, DocScore { chunk_key: h.chunk_key, score: h.score })), depth))
}

/// Below this many allowed chunks, a filtered dense search scores them exactly.
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
        Some(keys) if keys.len() <= EXACT_FILTER_LIMIT => exact_scores(collection, q, keys, k)?,
        Some(keys) => collection
            .search_vectors_filtered(q, k, ef.max(k), &|key| keys.contains(&key))?
            .into_iter()
            .map(|h| (h.chunk_key, h.score))
            .collect(),
        None => collection.search_vectors(q, k, ef.max(k))?.into_iter().map(|h| (h.chunk_key, h.score)).collect(),
    };
    let mut docs = Vec::with_capacity(hits.len());
    for (key, score) in hits {
        if let Some(chunk) = collection.store().get_chunk(key)? {
            docs.push((chunk.doc_id, DocScore { chunk_key: key, score }));
        }
    }
    Ok(best_per_doc(docs.into_iter(), depth))
}

/// Exact top-k over the allowed chunks' vectors (the kernels' SIMD dot product).
fn exact_scores(collection: &Collection, q: &[f32], keys: &HashSet<u64>, k: usize) -> Result<Vec<(u64, f32)>> {
    let mut order: Vec<u64> = keys.iter().copied().collect();
    order.sort_unstable();
    let mut matrix = Vec::with_capacity(order.len() * q.len());
    let mut present = Vec::with_capacity(order.len());
    for key in order {
        if let Some(v) = collection.store().get_vector(key)? {
            if v.len() == q.len() {
                matrix.extend_from_slice(&v);
                present.push(key);
            }
        }
    }
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

/// Merges the two ranked lists into (doc, fused score, best chunk), best first.
pub(crate) fn fuse(mode: Mode, fusion: Fusion, bm25: &Ranked, dense: &Ranked) -> Vec<(String, f32, DocScore)> {
    let mut scores: HashMap<String, (f32, DocScore)> = HashMap::new();
    match mode {
        Mode::Bm25 | Mode::Dense => {
            let list = if mode == Mode::Bm25 { bm25 } else { dense };
            for (d, s) in list {
                scores.insert(d.clone(), (s.score, *s));
            }
        }
        Mode::Hybrid => match fusion {
            Fusion::Rrf { k } => {
                for list in [bm25, dense] {
                    for (i, (d, s)) in list.iter().enumerate() {
                        let e = scores.entry(d.clone()).or_insert((0.0, *s));
                        e.0 += 1.0 / (k + (i + 1) as f32);
                    }
                }
            }
            Fusion::Convex { semantic_ratio } => {
                let w = semantic_ratio.clamp(0.0, 1.0);
                for (list, weight) in [(bm25, 1.0 - w), (dense, w)] {
                    let (lo, hi) =
                        list.iter().fold((f32::MAX, f32::MIN), |(lo, hi), (_, s)| (lo.min(s.score), hi.max(s.score)));
                    for (d, s) in list {
                        let norm = if hi > lo { (s.score - lo) / (hi - lo) } else { 1.0 };
                        let e = scores.entry(d.clone()).or_insert((0.0, *s));
                        e.0 += weight * norm;
                    }
                }
            }
        },
    }
    // The snippet comes from BM25's best chunk when there is one (it holds the query's words).
    for (d, s) in bm25 {
        if let Some(e) = scores.get_mut(d) {
            e.1 = *s;
        }
    }
    let mut out: Vec<(String, f32, DocScore)> = scores.into_iter().map(|(d, (score, best))| (d, score, best)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
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

/// Fusion on plain (doc, score) lists, for the criterion benchmark.
#[doc(hidden)]
pub fn fuse_for_bench(fusion: Fusion, bm25: &[(String, f32)], dense: &[(String, f32)]) -> usize {
    let conv = |l: &[(String, f32)]| -> Ranked {
        l.iter().map(|(d, s)| (d.clone(), DocScore { chunk_key: 0, score: *s })).collect()
    };
    fuse(Mode::Hybrid, fusion, &conv(bm25), &conv(dense)).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(k: u64, s: f32) -> DocScore {
        DocScore { chunk_key: k, score: s }
    }

    #[test]
    fn rrf_rewards_agreement() {
        let bm25 = vec![("a".to_string(), ds(1, 9.0)), ("b".to_string(), ds(2, 5.0))];
        let dense = vec![("b".to_string(), ds(3, 0.9)), ("c".to_string(), ds(4, 0.8))];
        let out = fuse(Mode::Hybrid, Fusion::Rrf { k: 60.0 }, &bm25, &dense);
        assert_eq!(out[0].0, "b");
        assert_eq!(out[0].2.chunk_key, 2, "the BM25 chunk is kept for the snippet");
        assert!((out[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
    }

    #[test]
    fn convex_weights_normalised_scores() {
        let bm25 = vec![("a".to_string(), ds(1, 10.0)), ("b".to_string(), ds(2, 0.0))];
        let dense = vec![("b".to_string(), ds(3, 0.9)), ("a".to_string(), ds(4, 0.1))];
        let all_sem = fuse(Mode::Hybrid, Fusion::Convex { semantic_ratio: 1.0 }, &bm25, &dense);
        assert_eq!(all_sem[0].0, "b");
        let all_kw = fuse(Mode::Hybrid, Fusion::Convex { semantic_ratio: 0.0 }, &bm25, &dense);
        assert_eq!(all_kw[0].0, "a");
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
