//! Retrieval over a real collection (a SciFact slice, the real encoder): HNSW recall against
//! exact search, filters, hostile queries, modes and snippets.

use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use sousuo_encoder::{Encoder, EncoderOptions, ModelDir};
use sousuo_indexer::{index_paths, ChunkParams, Collection, EncoderInfo, IndexOptions, OpenMode};
use sousuo_query::beir::load_judged;
use sousuo_query::{search, Error, Filter, Mode, SearchParams};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    encoder: Encoder,
    collection: Collection,
    docs: usize,
}

fn scifact() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/scifact")
}

/// A SciFact slice (500 documents; all with SOUSUO_FULL=1) with a `bucket` field (i % 100)
/// so that `bucket=7` keeps 1% of the documents.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
        let root = default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).expect("set SOUSUO_HOME");
        let model = ModelCache::new(root)
            .ensure(&MINILM, |_| eprintln!("fetching the encoder for the tests"))
            .unwrap_or_else(|e| panic!("the query tests need {}: {e}; run `cargo run -- models fetch`", MINILM.name));
        let encoder = Encoder::load(&ModelDir::open(&model).unwrap(), EncoderOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(scifact().join("corpus.jsonl")).expect("SciFact in ../shared/corpora");
        let n = if std::env::var_os("SOUSUO_FULL").is_some() { usize::MAX } else { 500 };
        let lines: Vec<String> = text
            .lines()
            .take(n)
            .enumerate()
            .map(|(i, l)| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["bucket"] = serde_json::json!(i % 100);
                v.to_string()
            })
            .collect();
        let corpus = dir.path().join("corpus.jsonl");
        std::fs::write(&corpus, lines.join("\n")).unwrap();
        let info = EncoderInfo::of(&encoder).unwrap();
        let collection =
            Collection::open(&dir.path().join("data"), "q", &info, OpenMode::Create(ChunkParams::default())).unwrap();
        index_paths(&collection, &encoder, &[corpus], &IndexOptions::default(), &|_| {}).unwrap();
        Fixture { _dir: dir, encoder, collection, docs: lines.len() }
    })
}

fn queries(n: usize) -> Vec<String> {
    let j = load_judged(&scifact(), "test").unwrap();
    j.queries.into_iter().take(n).map(|(_, t)| t).collect()
}

#[test]
fn hnsw_agrees_with_exact_search_at_the_default_ef() {
    let f = fixture();
    let store = f.collection.store();
    let all: Vec<(u64, Vec<f32>)> = store.vectors().collect::<Result<_, _>>().unwrap();
    let keys: Vec<u64> = all.iter().map(|(k, _)| *k).collect();
    let matrix: Vec<f32> = all.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let ef = SearchParams::default().ef;
    let (mut agree, mut total) = (0usize, 0usize);
    for q in queries(300) {
        let v = f.encoder.encode(&[&q]).unwrap();
        let exact: HashSet<u64> =
            sousuo_kernels::top_k_dot(&matrix, 384, v.row(0), 10).unwrap().iter().map(|h| keys[h.index]).collect();
        let approx: HashSet<u64> =
            f.collection.search_vectors(v.row(0), 10, ef).unwrap().iter().map(|h| h.chunk_key).collect();
        agree += exact.intersection(&approx).count();
        total += exact.len();
    }
    let recall = agree as f64 / total as f64;
    assert!(recall >= 0.98, "HNSW top-10 agrees with exact top-10 on {recall:.4} of results");
}

#[test]
fn a_one_percent_filter_still_fills_the_page() {
    let f = fixture();
    let matching = f.docs.div_ceil(100).min(10);
    let filter = Filter::parse(&["bucket=7".to_string()]).unwrap();
    for mode in [Mode::Hybrid, Mode::Bm25, Mode::Dense] {
        let p = SearchParams { mode, limit: matching, filter: filter.clone(), ..SearchParams::default() };
        // A broad query whose best matches lie mostly outside the filter: post-filtering the
        // unfiltered top 100 would come back short.
        let r = search(&f.collection, &f.encoder, "the effect of the treatment in patients and in cells", &p).unwrap();
        assert_eq!(r.hits.len(), matching, "{mode:?}");
        for h in &r.hits {
            let d = f.collection.get_doc(&h.doc_id).unwrap().unwrap();
            assert_eq!(d.metadata["bucket"], serde_json::json!(7));
        }
    }
}

#[test]
fn hostile_queries_never_error_and_empty_ones_do() {
    let f = fixture();
    let long = "evidence ".repeat(1200);
    let hostile = [
        "C++ \"unclosed",
        "AND OR NOT",
        "((()))[]{}:^~*?\\/!-+",
        "\"",
        "title:",
        "\u{0}\u{1}\u{7}\u{1b}[31m control",
        "🙂🚀🔥",
        "糖尿病 insulin 胰岛素 resistance",
        &long[..10_000],
        "-vitamin +D",
    ];
    for q in hostile {
        let r = search(&f.collection, &f.encoder, q, &SearchParams::default());
        assert!(r.is_ok(), "{:?}: {:?}", &q[..q.len().min(40)], r.err());
    }
    for empty in ["", "   ", "\n\t"] {
        assert!(matches!(search(&f.collection, &f.encoder, empty, &SearchParams::default()), Err(Error::EmptyQuery)));
    }
    let bad = SearchParams { syntax: true, ..SearchParams::default() };
    let err =
        search(&f.collection, &f.encoder, "title:(unclosed", &bad).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("cannot parse") && err.contains("--syntax"), "{err}");
}

#[test]
fn modes_paging_snippets_and_explain() {
    let f = fixture();
    let doc = f.collection.store().docs().next().unwrap().unwrap();
    let p = SearchParams { limit: 5, ..SearchParams::default() };
    let r = search(&f.collection, &f.encoder, &doc.title, &p).unwrap();
    assert_eq!(r.hits[0].doc_id, doc.id, "a document's exact title finds it first");
    let h = &r.hits[0];
    assert!(h.bm25.is_some() && h.dense.is_some(), "both retrievers found it");
    assert!(h.snippet.contains("<b>"), "query words are highlighted: {}", h.snippet);
    // Stop words are not: they would be marked in every snippet.
    let r2 = search(&f.collection, &f.encoder, &format!("what is the role of {}", doc.title), &p).unwrap();
    assert!(r2.hits.iter().any(|h| h.snippet.contains("<b>")), "meaningful words still are");
    for h in &r2.hits {
        let s = h.snippet.to_lowercase();
        for w in ["what", "is", "the", "of", "and", "in", "a"] {
            assert!(!s.contains(&format!("<b>{w}</b>")), "stop word {w:?} marked: {s}");
        }
    }
    let page2 =
        search(&f.collection, &f.encoder, &doc.title, &SearchParams { limit: 5, offset: 5, ..SearchParams::default() })
            .unwrap();
    let first: HashSet<_> = r.hits.iter().map(|h| h.doc_id.clone()).collect();
    assert!(page2.hits.iter().all(|h| !first.contains(&h.doc_id)), "pages do not overlap");
    for mode in [Mode::Bm25, Mode::Dense] {
        let r =
            search(&f.collection, &f.encoder, &doc.title, &SearchParams { mode, limit: 3, ..SearchParams::default() })
                .unwrap();
        assert_eq!(r.hits[0].doc_id, doc.id, "{mode:?}");
    }
}

#[test]
fn a_document_ranked_by_its_chunks_in_context_shows_the_chunk_that_holds_the_words() {
    let f = fixture();
    let docs: Vec<_> =
        f.collection.store().docs().map(|d| d.unwrap()).filter(|d| d.chunk_keys.len() >= 3).take(8).collect();
    assert!(docs.len() >= 4, "the slice has documents of three chunks or more");
    for doc in docs {
        // Words from the middle of the middle chunk: its neighbours hold them in their context.
        let chunk = f.collection.store().get_chunk(doc.chunk_keys[1]).unwrap().unwrap();
        let words: Vec<&str> = chunk.text.split_whitespace().collect();
        let mid = words.len() / 2;
        let phrase = words[mid.saturating_sub(6)..(mid + 6).min(words.len())].join(" ");
        for mode in [Mode::Bm25, Mode::Hybrid] {
            let p = SearchParams { mode, limit: 10, ..SearchParams::default() };
            let r = search(&f.collection, &f.encoder, &phrase, &p).unwrap();
            let hit =
                r.hits.iter().find(|h| h.doc_id == doc.id).unwrap_or_else(|| panic!("{phrase:?} finds {}", doc.id));
            assert!(hit.passage.contains(&phrase), "{mode:?}: {phrase:?} shows {:?}", hit.passage);
        }
    }
}
