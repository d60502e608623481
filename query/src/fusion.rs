//! Fusion of the two retrievers' lists: reciprocal rank, a fixed convex combination, or the
//! default, a convex combination whose weight follows the query.
//!
//! **Adaptive** (the default; docs/retrieval.md, "Query-adaptive fusion"): both lists' scores
//! as z-scores within their list (a document one list lacks counts that list's lowest), and
//! the dense list's weight set by how much of the query BM25's best match covers: its score
//! over the most any chunk could score for these terms (each term's IDF times 1 + k1, the
//! limit of its saturating term frequency). A query whose best keyword match covers little of
//! it is worded away from the collection's text, and there the dense list is the one to
//! trust. Chosen on SciFact's train split and a reverse-dictionary set built from WordNet and
//! GCIDE (where dense beats BM25 by 0.17), checked on SciFact's test split, SQuAD and the
//! reverse direction of the dictionary set.

use crate::rank::{DocScore, Ranked};
use crate::types::{Fusion, Mode};
use std::collections::HashMap;

/// The dense weight at [`PIVOT`] coverage.
const BASE: f32 = 0.5;
/// Coverage at which the weight is [`BASE`].
const PIVOT: f32 = 0.4;
/// Weight added per unit of coverage below [`PIVOT`] (taken away above it).
const SLOPE: f32 = 0.5;
/// The weight stays within these.
const LOWEST: f32 = 0.2;
const HIGHEST: f32 = 0.9;

/// The dense list's weight for a query whose best BM25 match scores `coverage` of the most
/// possible (0 when BM25 found nothing).
pub(crate) fn adaptive_weight(coverage: f32) -> f32 {
    (BASE + SLOPE * (PIVOT - coverage.clamp(0.0, 1.0))).clamp(LOWEST, HIGHEST)
}

/// The fused list, best first (ties by document id), and the dense weight a convex fusion used.
pub(crate) struct Fused {
    /// (doc, fused score, best chunk).
    pub(crate) docs: Vec<(String, f32, DocScore)>,
    /// The dense list's weight (convex and adaptive fusion in hybrid mode).
    pub(crate) semantic_ratio: Option<f32>,
}

/// Merges the two ranked lists. `bm25_bound` is the most a chunk can score under BM25 for the
/// query (0 when unknown: the adaptive weight then takes BM25's best match as covering nothing).
pub(crate) fn fuse(mode: Mode, fusion: Fusion, bm25: &Ranked, dense: &Ranked, bm25_bound: f32) -> Fused {
    let mut scores: HashMap<String, (f32, DocScore)> = HashMap::new();
    let mut semantic_ratio = None;
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
            Fusion::Convex { semantic_ratio: w } => {
                let w = w.clamp(0.0, 1.0);
                semantic_ratio = Some(w);
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
            Fusion::Adaptive => {
                let top = bm25.first().map_or(0.0, |(_, s)| s.score);
                let coverage = if bm25_bound > 0.0 { top / bm25_bound } else { 0.0 };
                let w = adaptive_weight(coverage);
                semantic_ratio = Some(w);
                let (b, d) = (zscores(bm25), zscores(dense));
                let lowest = |z: &HashMap<&str, f32>| z.values().copied().fold(f32::INFINITY, f32::min);
                let (b_lo, d_lo) = (lowest(&b).min(0.0), lowest(&d).min(0.0));
                for (doc, s) in bm25.iter().chain(dense) {
                    let fused = (1.0 - w) * b.get(doc.as_str()).copied().unwrap_or(b_lo)
                        + w * d.get(doc.as_str()).copied().unwrap_or(d_lo);
                    scores.entry(doc.clone()).or_insert((fused, *s));
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
    let mut docs: Vec<(String, f32, DocScore)> =
        scores.into_iter().map(|(d, (score, best))| (d, score, best)).collect();
    docs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Fused { docs, semantic_ratio }
}

/// Each document's score as a z-score within its list (0 for a list of one, or of equal scores).
fn zscores(list: &Ranked) -> HashMap<&str, f32> {
    let n = list.len().max(1) as f32;
    let mean = list.iter().map(|(_, s)| s.score).sum::<f32>() / n;
    let sd = (list.iter().map(|(_, s)| (s.score - mean).powi(2)).sum::<f32>() / n).sqrt();
    list.iter().map(|(d, s)| (d.as_str(), if sd > 0.0 { (s.score - mean) / sd } else { 0.0 })).collect()
}

/// Fusion on plain (doc, score) lists, for the criterion benchmark.
#[doc(hidden)]
pub fn fuse_for_bench(fusion: Fusion, bm25: &[(String, f32)], dense: &[(String, f32)]) -> usize {
    let conv = |l: &[(String, f32)]| -> Ranked {
        l.iter().map(|(d, s)| (d.clone(), DocScore { chunk_key: 0, score: *s })).collect()
    };
    let bound = bm25.iter().map(|(_, s)| *s).fold(0.0, f32::max) * 2.0;
    fuse(Mode::Hybrid, fusion, &conv(bm25), &conv(dense), bound).docs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(k: u64, s: f32) -> DocScore {
        DocScore { chunk_key: k, score: s }
    }

    fn list(items: &[(&str, f32)]) -> Ranked {
        items.iter().enumerate().map(|(i, (d, s))| (d.to_string(), ds(i as u64, *s))).collect()
    }

    #[test]
    fn rrf_rewards_agreement() {
        let bm25 = vec![("a".to_string(), ds(1, 9.0)), ("b".to_string(), ds(2, 5.0))];
        let dense = vec![("b".to_string(), ds(3, 0.9)), ("c".to_string(), ds(4, 0.8))];
        let out = fuse(Mode::Hybrid, Fusion::Rrf { k: 60.0 }, &bm25, &dense, 0.0);
        assert_eq!(out.docs[0].0, "b");
        assert_eq!(out.docs[0].2.chunk_key, 2, "the BM25 chunk is kept for the snippet");
        assert!((out.docs[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
        assert_eq!(out.semantic_ratio, None);
    }

    #[test]
    fn convex_weights_normalised_scores() {
        let bm25 = vec![("a".to_string(), ds(1, 10.0)), ("b".to_string(), ds(2, 0.0))];
        let dense = vec![("b".to_string(), ds(3, 0.9)), ("a".to_string(), ds(4, 0.1))];
        let all_sem = fuse(Mode::Hybrid, Fusion::Convex { semantic_ratio: 1.0 }, &bm25, &dense, 0.0);
        assert_eq!(all_sem.docs[0].0, "b");
        let all_kw = fuse(Mode::Hybrid, Fusion::Convex { semantic_ratio: 0.0 }, &bm25, &dense, 0.0);
        assert_eq!(all_kw.docs[0].0, "a");
    }

    #[test]
    fn the_weight_leans_to_dense_when_the_best_keyword_match_covers_little() {
        assert!((adaptive_weight(PIVOT) - BASE).abs() < 1e-6);
        assert!(adaptive_weight(0.1) > adaptive_weight(0.3) && adaptive_weight(0.3) > adaptive_weight(0.6));
        assert!((adaptive_weight(0.0) - (BASE + SLOPE * PIVOT)).abs() < 1e-6);
        assert!((adaptive_weight(5.0) - LOWEST.max(BASE - SLOPE * (1.0 - PIVOT))).abs() < 1e-6);
        // BM25 and dense disagree on the first place: "k" leads BM25 by a little, "d" leads the
        // dense list by as much. A keyword match covering most of the query keeps BM25's
        // choice; one covering a sliver of it gives the place to the dense list's.
        let bm25 = list(&[("k", 9.0), ("d", 8.8), ("x", 4.0), ("y", 3.0)]);
        let dense = list(&[("d", 0.80), ("k", 0.78), ("x", 0.40), ("y", 0.30)]);
        let strong = fuse(Mode::Hybrid, Fusion::Adaptive, &bm25, &dense, 9.0 / 0.9);
        let weak = fuse(Mode::Hybrid, Fusion::Adaptive, &bm25, &dense, 9.0 / 0.05);
        assert_eq!((strong.docs[0].0.as_str(), weak.docs[0].0.as_str()), ("k", "d"));
        assert!(weak.semantic_ratio > strong.semantic_ratio);
        // A document only one list holds counts the other's lowest score, not zero, and the
        // lists keep every document once.
        let bm25 = list(&[("a", 5.0), ("b", 1.0), ("c", 0.5)]);
        let dense = list(&[("z", 0.9), ("a", 0.2), ("b", 0.1)]);
        let out = fuse(Mode::Hybrid, Fusion::Adaptive, &bm25, &dense, 10.0);
        assert_eq!(out.docs.len(), 4);
        assert_eq!(out.docs[0].0, "a");
        // One list empty: the other's order.
        let out = fuse(Mode::Hybrid, Fusion::Adaptive, &Vec::new(), &dense, 0.0);
        assert_eq!(out.docs.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["z", "a", "b"]);
    }
}
