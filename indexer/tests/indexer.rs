//! Collections end to end through the library, with the real encoder: SciFact findability,
//! every format, Chinese text, incremental runs, sync deletes, bad input.

use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use sousuo_encoder::{Encoder, EncoderOptions, ModelDir};
use sousuo_indexer::{
    index_paths, ChunkParams, Collection, EncoderInfo, IndexOptions, IndexSummary, OpenMode, Progress,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn encoder() -> &'static Encoder {
    static ENC: OnceLock<Encoder> = OnceLock::new();
    ENC.get_or_init(|| {
        let home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
        let root = default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).expect("set SOUSUO_HOME");
        let dir = ModelCache::new(root)
            .ensure(&MINILM, |_| eprintln!("fetching the encoder for the tests"))
            .unwrap_or_else(|e| panic!("the indexer tests need {}: {e}; run `cargo run -- models fetch`", MINILM.name));
        Encoder::load(&ModelDir::open(&dir).unwrap(), EncoderOptions::default()).unwrap()
    })
}

fn open(data: &Path, name: &str) -> Collection {
    let info = EncoderInfo::of(encoder()).unwrap();
    Collection::open(data, name, &info, OpenMode::Create(ChunkParams::default())).unwrap()
}

fn run(c: &Collection, paths: &[PathBuf], sync: bool) -> IndexSummary {
    let opts = IndexOptions { sync, ..Default::default() };
    index_paths(c, encoder(), paths, &opts, &|_: Progress| {}).unwrap()
}

fn scifact() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/scifact");
    assert!(p.join("corpus.jsonl").is_file(), "SciFact is expected at {} (see DEVELOPERS.md)", p.display());
    p
}

/// The first `n` lines of SciFact's corpus (all of it with SOUSUO_FULL=1).
fn scifact_slice(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(scifact().join("corpus.jsonl")).unwrap();
    let full = std::env::var_os("SOUSUO_FULL").is_some();
    let lines: Vec<&str> = text.lines().take(if full { usize::MAX } else { n }).collect();
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn scifact_documents_are_findable_by_title_and_by_their_own_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = scifact_slice(tmp.path(), 250);
    let c = open(&tmp.path().join("data"), "scifact");
    let s = run(&c, std::slice::from_ref(&corpus), false);
    let n = std::fs::read_to_string(&corpus).unwrap().lines().count();
    assert_eq!(c.stats().unwrap().documents, n);
    assert_eq!(s.documents_indexed, n);
    let docs: Vec<_> = c.store().docs().map(|d| d.unwrap()).collect();
    let step = (docs.len() / 200).max(1);
    let (mut by_title, mut by_vector, mut tried) = (0, 0, 0);
    for d in docs.iter().step_by(step).take(200) {
        tried += 1;
        let hits = c.search_bm25(&d.title, 10).unwrap();
        if hits.iter().any(|h| h.doc_id == d.id) {
            by_title += 1;
        }
        let chunk = c.store().get_chunk(d.chunk_keys[0]).unwrap().unwrap();
        let v = encoder().encode(&[&sousuo_indexer::embed_text(&d.title, &chunk.text)]).unwrap();
        let hits = c.search_vectors(v.row(0), 10, 100).unwrap();
        if hits.first().is_some_and(|h| h.chunk_key == d.chunk_keys[0]) {
            by_vector += 1;
        }
    }
    assert_eq!(by_title, tried, "every title finds its document in the BM25 top 10");
    assert_eq!(by_vector, tried, "every document's own vector finds it first");
}

/// A two-page PDF written with lopdf, page texts as given.
fn write_pdf(path: &Path, title: &str, pages: &[&str]) {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
    let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
    let mut kids = Vec::new();
    for text in pages {
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 700.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! {"Type" => "Pages", "Kids" => kids, "Count" => count}));
    let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog_id);
    let info_id = doc.add_object(dictionary! {"Title" => Object::string_literal(title)});
    doc.trailer.set("Info", info_id);
    doc.save(path).unwrap();
}

fn write(dir: &Path, name: &str, content: &[u8]) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::File::create(p).unwrap().write_all(content).unwrap();
}

#[test]
fn every_format_indexes_with_titles_text_and_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write(&docs, "notes.txt", b"Plain notes\n\nThe quick brown fox studies retrieval.");
    write(
        &docs,
        "guide.md",
        b"# Markdown Guide\n\nIntro about *embeddings*.\n\n## Setup\n\nInstall the `zebra` package.",
    );
    write(&docs, "page.html", b"<html><head><title>Html Page</title><script>var evil=1;</script></head><body><p>Hypertext about giraffes.</p></body></html>");
    write(&docs, "items.json", br#"[{"id": "j1", "title": "Json One", "text": "Octopus facts", "year": 2021}]"#);
    write(&docs, "lines.jsonl", b"{\"id\": \"l1\", \"title\": \"Line One\", \"text\": \"Penguin colonies\"}\n{\"id\": \"l2\", \"text\": \"Walrus tusks\"}\n");
    write_pdf(
        &docs.join("paper.pdf"),
        "Pdf Paper",
        &["First page mentions kangaroos.", "Second page mentions wombats."],
    );
    let c = open(&tmp.path().join("data"), "formats");
    let s = run(&c, std::slice::from_ref(&docs), false);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.documents_indexed, 7);
    let title = |id: &str| c.get_doc(id).unwrap().unwrap_or_else(|| panic!("{id} missing")).title;
    assert_eq!(title("notes.txt"), "Plain notes");
    assert_eq!(title("guide.md"), "Markdown Guide");
    assert_eq!(title("page.html"), "Html Page");
    assert_eq!(title("j1"), "Json One");
    assert_eq!(title("l1"), "Line One");
    assert_eq!(title("paper.pdf"), "Pdf Paper");
    assert_eq!(c.get_doc("j1").unwrap().unwrap().metadata.get("year"), Some(&serde_json::json!(2021)));
    let find = |q: &str| c.search_bm25(q, 5).unwrap().first().map(|h| h.doc_id.clone());
    assert_eq!(find("fox").as_deref(), Some("notes.txt"));
    assert_eq!(find("zebra").as_deref(), Some("guide.md"));
    assert_eq!(find("giraffes").as_deref(), Some("page.html"));
    assert_eq!(find("evil"), None, "script text is not indexed");
    assert_eq!(find("octopus").as_deref(), Some("j1"));
    assert_eq!(find("walrus").as_deref(), Some("l2"));
    let wombat = c.search_bm25("wombats", 5).unwrap();
    assert_eq!(wombat[0].doc_id, "paper.pdf");
    let chunk = c.store().get_chunk(wombat[0].chunk_key).unwrap().unwrap();
    assert_eq!(chunk.page, Some(2), "the PDF page number is kept for citations");
    let md = c.get_doc("guide.md").unwrap().unwrap();
    let md_chunk = c.store().get_chunk(md.chunk_keys[0]).unwrap().unwrap();
    assert!(md_chunk.text.contains("Install the zebra package") && !md_chunk.text.contains('`'));
}

#[test]
fn chinese_words_are_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("zh");
    write(&docs, "a.txt", "向量检索\n\n搜索引擎使用倒排索引和向量检索来查找相关的文档。".as_bytes());
    write(&docs, "b.txt", "天气\n\n今天的天气很好，我们去公园散步吧。".as_bytes());
    let c = open(&tmp.path().join("data"), "zh");
    run(&c, &[docs], false);
    let hits = c.search_bm25("索引", 5).unwrap();
    assert_eq!(hits.first().map(|h| h.doc_id.as_str()), Some("a.txt"));
    let hits = c.search_bm25("公园", 5).unwrap();
    assert_eq!(hits.first().map(|h| h.doc_id.as_str()), Some("b.txt"));
}

#[test]
fn incremental_runs_embed_only_what_changed_and_sync_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("inc");
    write(&docs, "a.txt", b"Alpha\n\nThe first document talks about apples.");
    write(&docs, "b.txt", b"Beta\n\nThe second document talks about bananas.");
    let data = tmp.path().join("data");
    let c = open(&data, "inc");
    let first = run(&c, std::slice::from_ref(&docs), false);
    assert_eq!((first.documents_indexed, first.chunks_embedded), (2, 2));
    let again = run(&c, std::slice::from_ref(&docs), false);
    assert_eq!((again.documents_unchanged, again.chunks_embedded), (2, 0), "an unchanged run embeds nothing");
    write(&docs, "b.txt", b"Beta\n\nThe second document now talks about cherries.");
    let edit = run(&c, std::slice::from_ref(&docs), false);
    assert_eq!((edit.documents_indexed, edit.chunks_embedded), (1, 1));
    assert!(c.search_bm25("bananas", 5).unwrap().is_empty(), "the old text is gone from BM25");
    assert_eq!(c.search_bm25("cherries", 5).unwrap()[0].doc_id, "b.txt");
    std::fs::remove_file(docs.join("b.txt")).unwrap();
    let sync = run(&c, std::slice::from_ref(&docs), true);
    assert_eq!(sync.documents_deleted, 1);
    assert!(c.get_doc("b.txt").unwrap().is_none());
    assert!(c.search_bm25("cherries", 5).unwrap().is_empty());
    let v = encoder().encode(&["Beta\nThe second document now talks about cherries."]).unwrap();
    let hits = c.search_vectors(v.row(0), 5, 50).unwrap();
    assert!(hits.iter().all(|h| c.store().get_chunk(h.chunk_key).unwrap().is_some_and(|ch| ch.doc_id != "b.txt")));
    // Reopen: everything persisted, compact drops the tombstones.
    drop(c);
    let c = open(&data, "inc");
    assert_eq!(c.stats().unwrap().documents, 1);
    assert!(c.stats().unwrap().tombstones >= 1);
    c.compact().unwrap();
    assert_eq!(c.stats().unwrap().tombstones, 0);
    assert_eq!(c.search_bm25("apples", 5).unwrap()[0].doc_id, "a.txt");
}

#[test]
fn a_chunk_is_found_by_its_neighbours_words_but_its_own_come_first() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("ctx");
    write(
        &docs,
        "long.txt",
        b"Long\n\nThe aardvark digs burrows at night in the dry savanna.\n\n\
          Nothing much happens in this quiet middle paragraph here.\n\n\
          A zeppelin floats slowly above the distant city skyline.",
    );
    write(&docs, "short.txt", b"Short\n\nA zeppelin was moored beside the old hangar yesterday.");
    let info = EncoderInfo::of(encoder()).unwrap();
    let params = ChunkParams { max_tokens: 20, overlap_tokens: 0 };
    let c = Collection::open(&tmp.path().join("data"), "ctx", &info, OpenMode::Create(params)).unwrap();
    let s = run(&c, &[docs], false);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let chunks = c.get_doc("long.txt").unwrap().unwrap().chunk_keys;
    let texts: Vec<String> = chunks.iter().map(|k| c.store().get_chunk(*k).unwrap().unwrap().text).collect();
    assert_eq!(chunks.len(), 3, "one chunk a paragraph: {texts:?}");
    // No chunk holds both words; the middle one's context (its neighbours) does.
    let both = c.search_bm25("aardvark zeppelin", 10).unwrap();
    assert_eq!((both[0].doc_id.as_str(), both[0].chunk_key), ("long.txt", chunks[1]), "{both:?}");
    // One word: the chunk that holds it first, its neighbour next, the chunk two away not at all.
    let z: Vec<u64> = c
        .search_bm25("zeppelin", 10)
        .unwrap()
        .into_iter()
        .filter(|h| h.doc_id == "long.txt")
        .map(|h| h.chunk_key)
        .collect();
    assert_eq!(z, vec![chunks[2], chunks[1]]);
}

#[test]
fn a_removed_bm25_index_is_rebuilt_from_the_store_after_the_oplog_was_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write(&docs, "a.txt", b"Alpha\n\nThe first document talks about apples.");
    write(&docs, "b.txt", b"Beta\n\nThe second document talks about bananas.");
    let data = tmp.path().join("data");
    let c = open(&data, "rebuild");
    run(&c, &[docs], false);
    c.commit().unwrap();
    drop(c);
    std::fs::remove_dir_all(data.join("rebuild").join("bm25")).unwrap();
    let c = open(&data, "rebuild");
    assert_eq!(c.search_bm25("bananas", 5).unwrap()[0].doc_id, "b.txt");
    assert_eq!(c.search_bm25("apples", 5).unwrap()[0].doc_id, "a.txt");
    assert_eq!(c.stats().unwrap().bm25_chunks, 2);
}

#[test]
fn bad_input_is_counted_and_never_aborts_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("bad");
    write(&docs, "empty.txt", b"   \n");
    write(&docs, "latin1.txt", b"Caf\xe9\n\nA menu in Latin-1.");
    write(&docs, "broken.pdf", b"%PDF-1.4 this is not a pdf");
    write(&docs, "binary.txt", b"\x00\x01\x02binary");
    write(
        &docs,
        "mixed.jsonl",
        b"{\"id\": \"ok1\", \"text\": \"fine\"}\n{broken\n{\"id\": \"ok1\", \"text\": \"fine again\"}\n",
    );
    write(&docs, "good.md", b"# Good\n\nThis one is fine.");
    let c = open(&tmp.path().join("data"), "bad");
    let s = run(&c, &[docs], false);
    assert_eq!(s.skipped.get("empty"), Some(&1), "{:?}", s.skipped);
    assert_eq!(s.skipped.get("binary"), Some(&1), "{:?}", s.skipped);
    assert!(s.errors.iter().any(|e| e.contains("broken.pdf")), "{:?}", s.errors);
    assert!(s.errors.iter().any(|e| e.contains("mixed.jsonl") && e.contains("line 2")), "{:?}", s.errors);
    assert!(s.warnings >= 2, "lossy UTF-8 and the duplicate id are warned");
    assert!(c.get_doc("good.md").unwrap().is_some());
    assert!(c.get_doc("latin1.txt").unwrap().is_some());
    let chunk = c.store().get_chunk(c.get_doc("ok1").unwrap().unwrap().chunk_keys[0]).unwrap().unwrap();
    assert_eq!(chunk.text, "fine again", "the last duplicate wins");
}

#[test]
fn another_encoder_is_refused_and_names_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    drop(open(&data, "enc"));
    let other = EncoderInfo { name: "other".into(), dim: 768, weights_sha256: "00".into(), precision: "f32".into() };
    let err = Collection::open(&data, "enc", &other, OpenMode::Existing).err().unwrap().to_string();
    assert!(err.contains("reindex") && err.contains("all-MiniLM-L6-v2"), "{err}");
    let info = EncoderInfo::of(encoder()).unwrap();
    // Same weights at another precision: refused, with the flag to pass.
    let int8 = EncoderInfo { precision: "int8".into(), ..info.clone() };
    let err = Collection::open(&data, "enc", &int8, OpenMode::Existing).err().unwrap().to_string();
    assert!(err.contains("--precision f32") && err.contains("reindex"), "{err}");
    for bad in ["../escape", "a/b", ".."] {
        assert!(Collection::open(&data, bad, &info, OpenMode::Create(ChunkParams::default())).is_err());
    }
    assert!(!tmp.path().join("escape").exists());
}

#[test]
fn reindex_swaps_in_vectors_from_another_encoder() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("re");
    write(&docs, "a.txt", b"Apples\n\nApples grow on trees in orchards.");
    write(&docs, "b.txt", b"Boats\n\nBoats float on the water of the harbour.");
    let data = tmp.path().join("data");
    drop({
        let c = open(&data, "re");
        run(&c, &[docs], false);
        c
    });
    // "Another" encoder: the same model with its weights re-serialised, so its identity differs.
    let other_dir = tmp.path().join("other-model");
    std::fs::create_dir_all(&other_dir).unwrap();
    let src = encoder().model().dir.clone();
    for f in ["config.json", "tokenizer.json", "sentence_bert_config.json"] {
        std::fs::copy(src.join(f), other_dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(other_dir.join("1_Pooling")).unwrap();
    std::fs::copy(src.join("1_Pooling/config.json"), other_dir.join("1_Pooling/config.json")).unwrap();
    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let mut tensors: Vec<(String, candle_core::Tensor)> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| b.0.cmp(&a.0));
    candle_core::safetensors::save(&tensors.into_iter().collect(), other_dir.join("model.safetensors")).unwrap();
    let other = Encoder::load(&ModelDir::open(&other_dir).unwrap(), EncoderOptions::default()).unwrap();
    let other_info = EncoderInfo::of(&other).unwrap();
    assert_ne!(other_info.weights_sha256, EncoderInfo::of(encoder()).unwrap().weights_sha256);
    assert!(Collection::open(&data, "re", &other_info, OpenMode::Existing).is_err(), "refused before reindex");
    let moved = sousuo_indexer::reindex(&data, "re", &other, &|_, _| {}).unwrap();
    assert_eq!(moved, 2);
    let c = Collection::open(&data, "re", &other_info, OpenMode::Existing).expect("opens with the new encoder");
    assert_eq!(c.stats().unwrap().documents, 2);
    let v = other.encode(&["Boats\nBoats float on the water of the harbour."]).unwrap();
    let hit = c.search_vectors(v.row(0), 1, 50).unwrap()[0];
    assert_eq!(c.store().get_chunk(hit.chunk_key).unwrap().unwrap().doc_id, "b.txt");
    assert!(Collection::open(&data, "re", &EncoderInfo::of(encoder()).unwrap(), OpenMode::Existing).is_err());
    assert!(!data.join(".reindex/re").exists(), "the staging copy is gone");
}

/// A one-chunk document change with the encoder's vector of its text.
fn upsert(id: &str, text: &str) -> sousuo_indexer::store::Change {
    let v = encoder().encode(&[text]).unwrap().row(0).to_vec();
    let doc = sousuo_indexer::store::DocRecord::new(id, "", "test", id);
    sousuo_indexer::store::Change::one_chunk(doc, text.into(), v)
}

fn finds(c: &Collection, text: &str, id: &str) -> bool {
    let v = encoder().encode(&[text]).unwrap();
    let hits = c.search_vectors(v.row(0), 3, 64).unwrap();
    hits.first().is_some_and(|h| c.chunk_doc(h.chunk_key).as_deref() == Some(id))
}

fn current(data: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data.join("flat/hnsw/CURRENT")).unwrap()).unwrap()
}

#[test]
fn the_flat_graph_is_searched_after_reopening_and_remade_when_missing_or_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let texts = ["Apples grow on trees in orchards.", "Boats float on the water of the harbour."];
    drop({
        let c = open(&data, "flat");
        c.apply(&[upsert("a", texts[0]), upsert("b", texts[1])]).unwrap();
        assert!(finds(&c, texts[1], "b"), "inserts are searched before any persist");
        c.commit().unwrap();
        c
    });
    let flat = current(&data)["flat"].as_str().expect("CURRENT names the flat copy").to_string();
    assert!(data.join("flat/hnsw").join(&flat).join("vectors").is_file());
    let c = open(&data, "flat");
    assert!(finds(&c, texts[0], "a") && finds(&c, texts[1], "b"), "the reopened flat copy finds both");
    // An insert after reopening (hnsw_rs's graph loads from its dump) is found before and after
    // the next persist makes a new flat copy.
    let third = "Comets trail ice and dust across the night sky.";
    c.apply(&[upsert("c", third)]).unwrap();
    assert!(finds(&c, third, "c") && finds(&c, texts[0], "a"));
    let keys = c.vector_ids().unwrap();
    let stale = c.vectors_of(&keys).unwrap();
    c.commit().unwrap();
    assert!(finds(&c, third, "c"));
    assert_eq!(keys.len(), 3);
    // A filter's exact scoring reads the mapped copy once it is current: the same vectors as sled's.
    let (present, matrix) = c.vectors_of(&keys).unwrap();
    assert_eq!((&present, &matrix), (&stale.0, &stale.1));
    for (i, k) in present.iter().enumerate() {
        assert_eq!(&matrix[i * 384..(i + 1) * 384], &c.store().get_vector(*k).unwrap().unwrap()[..]);
    }
    drop(c);
    let flat = data.join("flat/hnsw").join(current(&data)["flat"].as_str().unwrap());
    std::fs::write(flat.join("links0"), b"garbage").unwrap();
    let c = open(&data, "flat");
    assert!(finds(&c, third, "c"), "a damaged flat copy is made again from the dump");
    drop(c);
    // A copy written by an older version (before every node had incoming links) is made again.
    let meta_of =
        |data: &std::path::Path| data.join("flat/hnsw").join(current(data)["flat"].as_str().unwrap()).join("meta.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta_of(&data)).unwrap()).unwrap();
    let version = meta["version"].as_u64().unwrap();
    meta["version"] = serde_json::json!(version - 1);
    std::fs::write(meta_of(&data), serde_json::to_vec(&meta).unwrap()).unwrap();
    let c = open(&data, "flat");
    assert!(finds(&c, texts[0], "a") && finds(&c, third, "c"));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta_of(&data)).unwrap()).unwrap();
    assert_eq!(meta["version"].as_u64(), Some(version), "the older copy was written again at this version");
    drop(c);
    // A collection written before flat copies existed: CURRENT without "flat".
    let mut cur = current(&data);
    std::fs::remove_dir_all(data.join("flat/hnsw").join(cur["flat"].as_str().unwrap())).unwrap();
    cur.as_object_mut().unwrap().remove("flat");
    std::fs::write(data.join("flat/hnsw/CURRENT"), serde_json::to_vec(&cur).unwrap()).unwrap();
    let c = open(&data, "flat");
    assert!(finds(&c, texts[1], "b") && finds(&c, third, "c"));
    assert!(current(&data)["flat"].is_string(), "the flat copy was written on open");
}
