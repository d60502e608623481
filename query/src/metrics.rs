//! Retrieval metrics with pytrec_eval's definitions (trec_eval's `ndcg_cut`, `recip_rank`,
//! `recall`): graded relevance, gain = relevance, discount log2(rank + 1), the ideal DCG over all
//! judged relevant documents of the query; judgements of 0 or less count as not relevant.

use std::collections::HashMap;

/// nDCG at cut-off `k` for one query's ranked document ids.
pub fn ndcg_at(ranked: &[String], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| gain(qrels.get(d).copied().unwrap_or(0)) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<i32> = qrels.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &r)| gain(r) / ((i + 2) as f64).log2()).sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Reciprocal rank of the first relevant document within the first `k`.
pub fn mrr_at(ranked: &[String], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| qrels.get(d).is_some_and(|&r| r > 0))
        .map(|i| 1.0 / (i + 1) as f64)
        .unwrap_or(0.0)
}

/// Share of the relevant documents found within the first `k`.
pub fn recall_at(ranked: &[String], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = qrels.values().filter(|&&r| r > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|d| qrels.get(*d).is_some_and(|&r| r > 0)).count();
    found as f64 / relevant as f64
}

fn gain(r: i32) -> f64 {
    if r > 0 {
        r as f64
    } else {
        0.0
    }
}

/// Mean, median and 99th percentile of latencies in milliseconds.
pub fn latency_summary(ms: &[f64]) -> (f64, f64, f64) {
    if ms.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut v = ms.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
    (v.iter().sum::<f64>() / v.len() as f64, pct(0.5), pct(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, r)| (d.to_string(), *r)).collect()
    }

    fn r(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ndcg_by_hand() {
        // Relevant a (2) and b (1); ranking x, a, b.
        // DCG = 2/log2(3) + 1/log2(4) = 1.26186 + 0.5; IDCG = 2/1 + 1/log2(3) = 2.63093.
        let got = ndcg_at(&r(&["x", "a", "b"]), &q(&[("a", 2), ("b", 1)]), 10);
        let want = (2.0 / 3f64.log2() + 0.5) / (2.0 + 1.0 / 3f64.log2());
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert!((want - 0.669_673).abs() < 1e-5);
        // Perfect ranking scores 1, no relevant document scores 0.
        assert!((ndcg_at(&r(&["a", "b"]), &q(&[("a", 2), ("b", 1)]), 10) - 1.0).abs() < 1e-12);
        assert_eq!(ndcg_at(&r(&["x"]), &q(&[("a", 1)]), 10), 0.0);
    }

    #[test]
    fn ideal_dcg_counts_relevant_documents_never_retrieved() {
        // Three relevant, one retrieved at rank 1: DCG = 1, IDCG = 1 + 1/log2(3) + 1/2.
        let got = ndcg_at(&r(&["a"]), &q(&[("a", 1), ("b", 1), ("c", 1)]), 10);
        assert!((got - 1.0 / (1.0 + 1.0 / 3f64.log2() + 0.5)).abs() < 1e-12);
    }

    #[test]
    fn cut_off_and_zero_judgements() {
        let ranked = r(&["n1", "n2", "a"]);
        let qr = q(&[("a", 1), ("n1", 0)]);
        assert_eq!(ndcg_at(&ranked, &qr, 2), 0.0);
        assert!((mrr_at(&ranked, &qr, 10) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(mrr_at(&ranked, &qr, 2), 0.0);
        assert_eq!(recall_at(&ranked, &qr, 2), 0.0);
        assert_eq!(recall_at(&ranked, &qr, 3), 1.0);
        assert_eq!(recall_at(&r(&["a"]), &q(&[("a", 1), ("b", 1)]), 100), 0.5);
    }

    #[test]
    fn latency_percentiles() {
        let ms: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        let (mean, p50, p99) = latency_summary(&ms);
        assert_eq!(mean, 50.5);
        assert_eq!(p50, 51.0);
        assert_eq!(p99, 99.0);
    }
}
