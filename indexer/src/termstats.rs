//! BM25 term statistics that can be summed over several indexes, so that the shards of one
//! collection score a query as the whole collection would (global IDF and mean length).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::Field;
use tantivy::{Searcher, Term};

/// The statistics BM25 needs for one query: documents (chunks), tokens per field, and each
/// term's document frequency. Terms are keyed by [`key`] (field id and value bytes in hex).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TermStats {
    /// Chunk slots in the index (tantivy's `total_num_docs`).
    pub docs: u64,
    /// Tokens per field (its id, as text: JSON keys are strings).
    pub tokens: BTreeMap<String, u64>,
    /// Document frequency per term ([`key`]).
    pub doc_freq: BTreeMap<String, u64>,
}

/// BM25's term-frequency saturation (tantivy's k1).
const K1: f32 = 1.2;

impl TermStats {
    /// The most one chunk can score for the query under BM25: each term's IDF (tantivy's) times
    /// 1 + k1, the limit of its saturating term-frequency factor, times `weight` of its field
    /// (by id: the query's weight of that field).
    pub fn bm25_bound(&self, weight: impl Fn(u32) -> f32) -> f32 {
        let n = self.docs as f32;
        let idf = |df: f32| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        let field = |key: &str| key.split(':').next().and_then(|f| f.parse::<u32>().ok());
        self.doc_freq.iter().map(|(k, &df)| field(k).map_or(0.0, &weight) * idf(df as f32) * (1.0 + K1)).sum()
    }

    /// Adds another index's statistics for the same query.
    pub fn add(&mut self, other: &TermStats) {
        self.docs += other.docs;
        for (f, n) in &other.tokens {
            *self.tokens.entry(f.clone()).or_default() += n;
        }
        for (t, n) in &other.doc_freq {
            *self.doc_freq.entry(t.clone()).or_default() += n;
        }
    }
}

/// Scores with given statistics, falling back to the local index's for anything they lack.
pub(crate) struct Provider<'a> {
    pub(crate) stats: &'a TermStats,
    pub(crate) local: &'a Searcher,
}

impl Bm25StatisticsProvider for Provider<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        match self.stats.tokens.get(&field.field_id().to_string()) {
            Some(&n) => Ok(n),
            None => self.local.total_num_tokens(field),
        }
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.stats.docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        match self.stats.doc_freq.get(&key(term)) {
            Some(&n) => Ok(n),
            None => self.local.doc_freq(term),
        }
    }
}

/// The local statistics of the terms a query uses.
pub(crate) fn collect(searcher: &Searcher, query: &dyn tantivy::query::Query) -> tantivy::Result<TermStats> {
    let mut terms: Vec<Term> = Vec::new();
    query.query_terms(&mut |t, _| terms.push(t.clone()));
    // As tantivy counts them for BM25: every document slot, deleted ones included (doc_freq
    // counts those too, so the sum never falls below a term's frequency).
    let mut stats = TermStats { docs: searcher.total_num_docs()?, ..TermStats::default() };
    for t in terms {
        let field = t.field();
        if let std::collections::btree_map::Entry::Vacant(e) = stats.tokens.entry(field.field_id().to_string()) {
            e.insert(searcher.total_num_tokens(field)?);
        }
        let df = searcher.doc_freq(&t)?;
        stats.doc_freq.insert(key(&t), df);
    }
    Ok(stats)
}

/// A term's key in [`TermStats::doc_freq`]: `<field id>:<value bytes in hex>` (JSON object keys
/// are strings; the hex keeps any value type exact).
pub fn key(term: &Term) -> String {
    use std::fmt::Write;
    let mut k = format!("{}:", term.field().field_id());
    for b in term.serialized_value_bytes() {
        let _ = write!(k, "{b:02x}");
    }
    k
}
