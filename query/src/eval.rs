//! The BEIR evaluator: queries and relevance judgements in, nDCG@10, MRR@10, recall@100 and
//! latency per retrieval mode out.

use crate::metrics::{latency_summary, mrr_at, ndcg_at, recall_at};
use crate::search::{search, SearchParams};
use crate::{Error, Result};
use serde::Serialize;
use sousuo_encoder::Encoder;
use sousuo_indexer::Collection;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

/// Judged queries of one split.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// (query id, text), in file order, only those with judgements.
    pub queries: Vec<(String, String)>,
    /// query id -> doc id -> relevance.
    pub qrels: HashMap<String, HashMap<String, i32>>,
}

/// Reads `queries.jsonl` and `qrels/<split>.tsv` of a BEIR directory.
pub fn load_beir(dir: &Path, split: &str) -> Result<Judged> {
    let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
    let f = std::fs::File::open(&qrels_path).map_err(|e| Error::Dataset(format!("{}: {e}", qrels_path.display())))?;
    let mut qrels: HashMap<String, HashMap<String, i32>> = HashMap::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::Dataset(format!("{}: {e}", qrels_path.display())))?;
        let cols: Vec<&str> = line.split('\t').collect();
        if i == 0 && cols.first().is_some_and(|c| c.contains("query")) {
            continue; // header
        }
        if cols.len() < 3 {
            continue;
        }
        let rel: i32 = cols[2]
            .trim()
            .parse()
            .map_err(|_| Error::Dataset(format!("{}:{}: bad score", qrels_path.display(), i + 1)))?;
        qrels.entry(cols[0].to_string()).or_default().insert(cols[1].to_string(), rel);
    }
    let qpath = dir.join("queries.jsonl");
    let f = std::fs::File::open(&qpath).map_err(|e| Error::Dataset(format!("{}: {e}", qpath.display())))?;
    let mut queries = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::Dataset(format!("{}: {e}", qpath.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| Error::Dataset(format!("{}:{}: {e}", qpath.display(), i + 1)))?;
        let id = match &v["_id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if qrels.contains_key(&id) {
            queries.push((id, v["text"].as_str().unwrap_or_default().to_string()));
        }
    }
    Ok(Judged { queries, qrels })
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
}

/// One mode's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    #[serde(rename = "recall@100")]
    pub recall_100: f64,
    pub latency_ms: Latency,
}

/// Runs every judged query with `params` (limit 100, no snippets) and averages the metrics.
pub fn evaluate(
    collection: &Collection,
    encoder: &Encoder,
    judged: &Judged,
    params: &SearchParams,
) -> Result<ModeReport> {
    let p = SearchParams { limit: 100, offset: 0, snippets: false, ..params.clone() };
    let (mut ndcg, mut mrr, mut recall, mut lat) = (0.0, 0.0, 0.0, Vec::with_capacity(judged.queries.len()));
    for (qid, text) in &judged.queries {
        let t = Instant::now();
        let results = search(collection, encoder, text, &p)?;
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
