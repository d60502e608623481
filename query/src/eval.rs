//! The BEIR evaluator: queries and relevance judgements in, nDCG@10, MRR@10, recall@100 and
//! latency per retrieval mode out.

use crate::beir::Judged;
use crate::metrics::{latency_summary, mrr_at, ndcg_at, recall_at};
use crate::retriever::Retriever;
use crate::search::SearchParams;
use crate::Result;
use serde::Serialize;
use sousuo_encoder::Encoder;
use std::time::Instant;

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// nDCG@10.
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
    /// MRR@10.
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    /// Recall@100.
    #[serde(rename = "recall@100")]
    pub recall_100: f64,
    /// Per-query latency in milliseconds.
    pub latency_ms: Latency,
}

/// Runs every judged query with `params` (limit 100, no snippets) and averages the metrics;
/// with `rerank`, the first [`crate::rerank::DEPTH`] hits are reranked by that decoder
/// (latency included).
pub fn evaluate(
    collection: &dyn Retriever,
    encoder: &Encoder,
    judged: &Judged,
    params: &SearchParams,
    rerank: Option<&sousuo_decoder::Decoder>,
) -> Result<ModeReport> {
    let p = SearchParams { limit: 100, offset: 0, snippets: false, ..params.clone() };
    let (mut ndcg, mut mrr, mut recall, mut lat) = (0.0, 0.0, 0.0, Vec::with_capacity(judged.queries.len()));
    for (qid, text) in &judged.queries {
        let t = Instant::now();
        let mut results = collection.search(encoder, text, &p)?;
        if let Some(d) = rerank {
            crate::rerank::rerank(d, text, &mut results.hits, crate::rerank::DEPTH)?;
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let ranked: Vec<String> = results.hits.into_iter().map(|h| h.doc_id).collect();
        let qrels = &judged.qrels[qid];
        ndcg += ndcg_at(&ranked, qrels, 10);
        mrr += mrr_at(&ranked, qrels, 10);
        recall += recall_at(&ranked, qrels, 100);
    }
    let n = judged.queries.len().max(1) as f64;
    let (mean, p50, p99) = latency_summary(&lat);
    Ok(ModeReport {
        ndcg_10: ndcg / n,
        mrr_10: mrr / n,
        recall_100: recall / n,
        latency_ms: Latency { mean, p50, p99 },
    })
}
