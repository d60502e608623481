//! The BM25 index (tantivy): one tantivy document per chunk.
//!
//! Fields: `chunk_key` (u64, the sled key), `doc_id` (raw string), `title` (analysed, stored),
//! `text` (title + passage, analysed, stored: what snippets and the query syntax run on; one
//! field for both measured best on SciFact) and `context` (title + the passage with the
//! chunks before and after it in its document, analysed, frequencies only). Each commit
//! carries the sled sequence number it includes as its payload.
//!
//! A plain query scores a chunk by its context, plus [`OWN_WEIGHT`] times its own text: a
//! passage cut from a longer document keeps the words its neighbours say it with (an abstract
//! split in two answers a query whose terms fall on both sides of the cut). Which of a
//! document's chunks it shows (its snippet, its citation) is asked of the own text alone
//! ([`Bm25Query::own_text`]). Measured in docs/retrieval.md ("Passages scored with their
//! neighbours").

use crate::document::Chunk;
use crate::store::{Op, Store};
use crate::termstats::{Provider, TermStats};
use crate::tokenizer::{analyzer, ANALYZER};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, QueryParser, TermQuery, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED, STRING,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{doc, DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, TantivyDocument, Term};

/// The fields of a chunk in the BM25 index.
#[derive(Clone, Copy)]
pub struct Fields {
    /// The chunk's key in the store (fast field).
    pub chunk_key: Field,
    /// The document's id (stored).
    pub doc_id: Field,
    /// The document's title (indexed with the text).
    pub title: Field,
    /// The chunk's text (indexed and stored, for snippets).
    pub text: Field,
    /// The title and the chunk's text between its neighbours' (indexed, term frequencies only).
    pub context: Field,
}

/// Weight of a chunk's own text against its context in a plain query's score (chosen on
/// SciFact's train split, where 0.1 to 0.5 rank alike and 0.1 ranks best).
pub const OWN_WEIGHT: f32 = 0.1;

/// A parsed BM25 query ([`Bm25::query`]), with the weight of each field it scores.
pub struct Bm25Query {
    query: Box<dyn Query>,
    weights: Vec<(Field, f32)>,
    /// For a plain query over chunks in their context: the same words over the chunks' own
    /// text, and that field.
    own: Option<(Box<dyn Query>, Field)>,
}

impl Bm25Query {
    /// The query's words over the chunks' own text alone (`None` when the query scores only
    /// that already): among one document's chunks, the one that holds the words.
    pub fn own_text(&self) -> Option<Bm25Query> {
        let (q, field) = self.own.as_ref()?;
        Some(Bm25Query { query: q.box_clone(), weights: vec![(*field, 1.0)], own: None })
    }

    /// The most one chunk can score for this query under BM25 with `stats` (its terms'
    /// statistics): each term's IDF times 1 + k1 (the limit of BM25's saturating term
    /// frequency), times its field's weight in the query.
    pub fn bound(&self, stats: &TermStats) -> f32 {
        stats.bm25_bound(|field| self.weights.iter().find(|(f, _)| f.field_id() == field).map_or(0.0, |(_, w)| *w))
    }
}

/// Highlights a query's words in passages ([`Bm25::snippets`]).
pub struct Snippets(SnippetGenerator);

impl Snippets {
    /// The best fragment of `passage` with the query's words in `<b>`, as escaped HTML;
    /// `None` when no query word occurs in it.
    pub fn highlight(&self, passage: &str) -> Option<String> {
        let s = self.0.snippet(passage);
        (!s.highlighted().is_empty()).then(|| s.to_html())
    }
}

/// A chunk found by BM25.
#[derive(Debug, Clone, PartialEq)]
pub struct Bm25Hit {
    /// The chunk's key in the store.
    pub chunk_key: u64,
    /// Its document's id.
    pub doc_id: String,
    /// BM25 score.
    pub score: f32,
}

#[derive(Serialize, Deserialize, Default)]
struct Payload {
    seq: u64,
}

/// The BM25 index of a collection (tantivy), derived from the store.
pub struct Bm25 {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    /// The sequence number of the last change added to the writer (committed or not).
    pending_seq: Mutex<u64>,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let analysed = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        chunk_key: b.add_u64_field("chunk_key", INDEXED | STORED | FAST),
        doc_id: b.add_text_field("doc_id", STRING | STORED),
        title: b.add_text_field("title", analysed.clone()),
        text: b.add_text_field("text", analysed),
        context: b.add_text_field(
            "context",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
            ),
        ),
    };
    (b.build(), fields)
}

impl Bm25 {
    /// Opens or creates the index in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (schema, fields) = schema();
        let mmap = || tantivy::directory::MmapDirectory::open(dir).map_err(|e| Error::Bm25(e.to_string()));
        let existing = mmap()?;
        let exists = Index::exists(&existing).map_err(|e| Error::Bm25(e.to_string()))?;
        let index = if exists && Index::open(existing)?.schema() != schema {
            // An index from an earlier build (without the context field): started afresh, and
            // the collection rebuilds it from its store (it reads as never committed).
            tracing::info!(dir = %dir.display(), "BM25 index of an earlier format: rebuilt from the store");
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            Index::create(mmap()?, schema, tantivy::IndexSettings::default())?
        } else {
            Index::open_or_create(mmap()?, schema)?
        };
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index.writer_with_num_threads(1, 64_000_000)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let bm25 = Bm25 { index, reader, writer: Mutex::new(writer), fields, pending_seq: Mutex::new(0) };
        let seq = bm25.committed_seq()?;
        *bm25.pending_seq.lock().map_err(|_| poisoned())? = seq;
        Ok(bm25)
    }

    /// The index's fields.
    pub fn fields(&self) -> Fields {
        self.fields
    }

    /// The sled sequence number included in the last commit.
    pub fn committed_seq(&self) -> Result<u64> {
        let metas = self.index.load_metas()?;
        Ok(metas.payload.as_deref().and_then(|p| serde_json::from_str::<Payload>(p).ok()).map(|p| p.seq).unwrap_or(0))
    }

    /// Adds one operation's changes to the writer (visible after [`Self::commit`]). Chunks that
    /// are no longer in sled (a later operation removed them) are skipped. The added chunks
    /// are one document's, in order: each is indexed with its neighbours as context.
    pub fn apply(&self, op: &Op, store: &Store, title: &str) -> Result<()> {
        let writer = self.writer.lock().map_err(|_| poisoned())?;
        for k in op.removed.iter().chain(&op.added) {
            writer.delete_term(Term::from_field_u64(self.fields.chunk_key, *k));
        }
        let mut chunks = Vec::with_capacity(op.added.len());
        for &k in &op.added {
            if let Some(chunk) = store.get_chunk(k)? {
                chunks.push((k, chunk));
            }
        }
        for (i, (k, chunk)) in chunks.iter().enumerate() {
            let around = &chunks[i.saturating_sub(1)..(i + 2).min(chunks.len())];
            let context: Vec<&str> = around.iter().map(|(_, c)| c.text.as_str()).collect();
            writer.add_document(self.document(*k, chunk, &context, title))?;
        }
        let mut pending = self.pending_seq.lock().map_err(|_| poisoned())?;
        *pending = (*pending).max(op.seq);
        Ok(())
    }

    fn document(&self, key: u64, chunk: &Chunk, context: &[&str], title: &str) -> TantivyDocument {
        let f = self.fields;
        let titled = |body: &str| if title.is_empty() { body.to_string() } else { format!("{title}\n\n{body}") };
        doc!(
            f.chunk_key => key,
            f.doc_id => chunk.doc_id.clone(),
            f.title => title.to_string(),
            f.text => titled(&chunk.text),
            f.context => titled(&context.join("\n\n")),
        )
    }

    /// Records that the next commit includes every change up to `seq` (a rebuild from the
    /// store's documents holds them all, whatever the changes that made them).
    pub fn include_seq(&self, seq: u64) -> Result<()> {
        let mut pending = self.pending_seq.lock().map_err(|_| poisoned())?;
        *pending = (*pending).max(seq);
        Ok(())
    }

    /// Commits what was added, recording the sequence number, and makes it searchable.
    pub fn commit(&self) -> Result<()> {
        let seq = *self.pending_seq.lock().map_err(|_| poisoned())?;
        let mut writer = self.writer.lock().map_err(|_| poisoned())?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&serde_json::to_string(&Payload { seq }).unwrap_or_default());
        prepared.commit()?;
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// Number of chunk documents visible to searches.
    pub fn num_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The analysed words of `text`, each once.
    fn words(text: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut stream = a.token_stream(text);
        let mut words: Vec<String> = Vec::new();
        while stream.advance() {
            let w = &stream.token().text;
            if !words.contains(w) {
                words.push(w.clone());
            }
        }
        words
    }

    /// Parses a query: its analysed words OR-ed (syntax characters are just separators, so no
    /// error is possible), or with `syntax` tantivy's query language over the text. `None` when
    /// the text holds no searchable word.
    pub fn query(&self, text: &str, syntax: bool) -> Result<Option<Bm25Query>> {
        if syntax {
            let parser = QueryParser::for_index(&self.index, vec![self.fields.text]);
            let syntax_error = |reason: String| Error::QuerySyntax { query: text.to_string(), reason };
            let q = parser.parse_query(text).map_err(|e| syntax_error(e.to_string()))?;
            // Parsed is not runnable: `doc_id:*` asks for a fast field the index lacks. Build
            // the query's weight now so that such a query is the caller's error, not ours.
            let searcher = self.reader.searcher();
            q.weight(tantivy::query::EnableScoring::enabled_from_searcher(&searcher))
                .map_err(|e| syntax_error(e.to_string()))?;
            return Ok(Some(Bm25Query { query: q, weights: vec![(self.fields.text, 1.0)], own: None }));
        }
        let words = Self::words(text);
        if words.is_empty() {
            return Ok(None);
        }
        let weights = vec![(self.fields.context, 1.0), (self.fields.text, OWN_WEIGHT)];
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(words.len() * weights.len());
        let mut own: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(words.len());
        for w in &words {
            for &(field, weight) in &weights {
                let q = TermQuery::new(Term::from_field_text(field, w), IndexRecordOption::WithFreqs);
                if field == self.fields.text {
                    own.push((Occur::Should, Box::new(q.clone())));
                }
                let q: Box<dyn Query> =
                    if weight == 1.0 { Box::new(q) } else { Box::new(BoostQuery::new(Box::new(q), weight)) };
                clauses.push((Occur::Should, q));
            }
        }
        Ok(Some(Bm25Query {
            query: Box::new(BooleanQuery::new(clauses)),
            weights,
            own: Some((Box::new(BooleanQuery::new(own)), self.fields.text)),
        }))
    }

    /// Plain-text BM25 search: the query's words OR-ed; syntax characters are just separators.
    pub fn search_plain(&self, query: &str, limit: usize) -> Result<Vec<Bm25Hit>> {
        match self.query(query, false)? {
            Some(q) if limit > 0 => self.search(&q, None, limit),
            _ => Ok(Vec::new()),
        }
    }

    /// The best `limit` chunks for `query`, only among the `allowed` chunk keys when given.
    pub fn search(&self, query: &Bm25Query, allowed: Option<&HashSet<u64>>, limit: usize) -> Result<Vec<Bm25Hit>> {
        self.search_with(query, allowed, limit, None)
    }

    /// The local statistics of the terms `query` uses, to be summed over the shards of a
    /// collection ([`TermStats::add`]) and given back to [`Self::search_with`].
    pub fn term_stats(&self, query: &Bm25Query) -> Result<TermStats> {
        Ok(crate::termstats::collect(&self.reader.searcher(), &*query.query)?)
    }

    /// [`Self::search`] scoring with the given statistics (a whole collection's, when this
    /// index holds one shard of it) instead of this index's own.
    pub fn search_with(
        &self,
        query: &Bm25Query,
        allowed: Option<&HashSet<u64>>,
        limit: usize,
        stats: Option<&TermStats>,
    ) -> Result<Vec<Bm25Hit>> {
        let searcher = self.reader.searcher();
        let top = self.top(&searcher, query, allowed, limit, stats)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let chunk_key = d.get_first(self.fields.chunk_key).and_then(|v| v.as_u64()).unwrap_or(0);
            let doc_id = d.get_first(self.fields.doc_id).and_then(|v| v.as_str()).unwrap_or("").to_string();
            hits.push(Bm25Hit { chunk_key, doc_id, score });
        }
        Ok(hits)
    }

    /// As [`Self::search_with`], but only each hit's chunk key (from the `chunk_key` fast
    /// field, no document store read) and score, best first: the query path maps keys to
    /// documents in memory.
    pub fn search_keys(
        &self,
        query: &Bm25Query,
        allowed: Option<&HashSet<u64>>,
        limit: usize,
        stats: Option<&TermStats>,
    ) -> Result<Vec<(u64, f32)>> {
        let searcher = self.reader.searcher();
        let top = self.top(&searcher, query, allowed, limit, stats)?;
        let mut columns = HashMap::new();
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let column = match columns.entry(addr.segment_ord) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(searcher.segment_reader(addr.segment_ord).fast_fields().u64("chunk_key")?),
            };
            if let Some(key) = column.first(addr.doc_id) {
                hits.push((key, score));
            }
        }
        Ok(hits)
    }

    fn top(
        &self,
        searcher: &Searcher,
        query: &Bm25Query,
        allowed: Option<&HashSet<u64>>,
        limit: usize,
        stats: Option<&TermStats>,
    ) -> Result<Vec<(Score, DocAddress)>> {
        let filtered;
        let query: &dyn Query = match allowed {
            None => &*query.query,
            Some(keys) => {
                let terms = keys.iter().map(|&k| Term::from_field_u64(self.fields.chunk_key, k));
                let clauses: Vec<(Occur, Box<dyn Query>)> =
                    vec![(Occur::Must, query.query.box_clone()), (Occur::Must, Box::new(TermSetQuery::new(terms)))];
                filtered = BooleanQuery::new(clauses);
                &filtered
            }
        };
        let collector = TopDocs::with_limit(limit).order_by_score();
        Ok(match stats {
            None => searcher.search(query, &collector)?,
            Some(stats) => {
                searcher.search_with_statistics_provider(query, &collector, &Provider { stats, local: searcher })?
            }
        })
    }

    /// A highlighter for `query`'s words in passages, cutting snippets at `max_chars`.
    pub fn snippets(&self, query: &Bm25Query, max_chars: usize) -> Result<Snippets> {
        let searcher = self.reader.searcher();
        // As tantivy's `SnippetGenerator::create`, but only the query's meaningful words are
        // marked: stop words ("the", "and", "do") would be highlighted in every snippet.
        let mut terms = std::collections::BTreeSet::new();
        query.query.query_terms(&mut |term, _| {
            if term.field() == self.fields.text {
                terms.insert(term.clone());
            }
        });
        let mut all = std::collections::BTreeMap::new();
        for term in &terms {
            let value = term.value();
            let Some(text) = value.as_str() else { continue };
            let df = searcher.doc_freq(term)?;
            if df > 0 {
                all.insert(text.to_string(), 1.0 / (1.0 + df as Score));
            }
        }
        let meaningful: std::collections::BTreeMap<String, Score> =
            all.iter().filter(|(t, _)| !is_stop_word(t)).map(|(t, s)| (t.clone(), *s)).collect();
        // A query of stop words only ("to be or not to be") still marks them.
        let chosen = if meaningful.is_empty() { all } else { meaningful };
        let tokenizer = searcher.index().tokenizer_for_field(self.fields.text)?;
        Ok(Snippets(SnippetGenerator::new(chosen, tokenizer, self.fields.text, max_chars)))
    }

    /// Every chunk key in the committed index, with repetitions (for consistency checks).
    pub fn all_chunk_keys(&self) -> Result<Vec<u64>> {
        let searcher = self.reader.searcher();
        let mut keys = Vec::new();
        for segment in searcher.segment_readers() {
            let col = segment.fast_fields().u64("chunk_key")?;
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                keys.extend(col.values_for_doc(doc));
            }
        }
        Ok(keys)
    }
}

/// English function words, as the analyzer leaves them (lower case, stemmed: "does" is "doe").
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "do", "doe", "did", "for", "from",
    "had", "ha", "has", "have", "how", "i", "if", "in", "into", "is", "it", "it'", "its", "of", "on", "or", "so",
    "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "thi", "this", "those", "to",
    "wa", "was", "we", "were", "what", "when", "where", "which", "who", "whi", "why", "will", "with", "would", "you",
    "your",
];

fn is_stop_word(term: &str) -> bool {
    STOP_WORDS.contains(&term)
}

fn poisoned() -> Error {
    Error::Bm25("a writer lock was poisoned by a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_of_an_earlier_schema_is_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Schema::builder();
        let text = b.add_text_field("text", tantivy::schema::TEXT);
        let index = Index::create_in_dir(dir.path(), b.build()).unwrap();
        let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        w.add_document(doc!(text => "an old chunk")).unwrap();
        w.commit().unwrap();
        drop((w, index));
        let bm25 = Bm25::open(dir.path()).unwrap();
        assert_eq!((bm25.num_chunks(), bm25.committed_seq().unwrap()), (0, 0), "empty, never committed");
        assert!(bm25.index.schema().get_field("context").is_ok());
        drop(bm25);
        assert!(Bm25::open(dir.path()).is_ok(), "the new one reopens as it is");
    }

    #[test]
    fn the_bound_weighs_each_field_as_the_query_does() {
        let dir = tempfile::tempdir().unwrap();
        let bm25 = Bm25::open(dir.path()).unwrap();
        let q = bm25.query("zeppelin", false).unwrap().unwrap();
        let stats = bm25.term_stats(&q).unwrap();
        let bound = q.bound(&stats);
        // One word, in two fields: (1 + OWN_WEIGHT) of one field's bound.
        let one = stats.bm25_bound(|f| if f == bm25.fields.context.field_id() { 1.0 } else { 0.0 });
        assert!(one > 0.0 && (bound - (1.0 + OWN_WEIGHT) * one).abs() < 1e-4, "{bound} {one}");
    }
}
