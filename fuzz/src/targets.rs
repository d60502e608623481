//! The targets. Each takes arbitrary bytes; the first byte often picks a variant (a format, a
//! file of a BEIR set, a route), the rest is the input.

use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use sousuo_encoder::{Encoder, EncoderOptions, ModelDir};
use sousuo_indexer::chunk::{chunk_document, ChunkParams};
use sousuo_indexer::formats::{parse, Format, JsonFields};
use std::io::Cursor;
use std::sync::LazyLock;

/// Target names, in [`Target`]'s order.
pub const NAMES: [&str; 7] = ["formats", "beir", "filter", "syntax", "gguf", "safetensors", "api"];

#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// txt, md, html, pdf, json, jsonl through the parsers, then the chunker.
    Formats,
    /// BEIR corpus/queries lines and qrels files.
    Beir,
    /// The filter language.
    Filter,
    /// tantivy's query syntax (`--syntax`) against a BM25 index.
    Syntax,
    /// A GGUF model file a user points at: header, metadata, tokenizer, template, tensors.
    Gguf,
    /// An encoder's model.safetensors a user points at (`--encoder DIR`): header and tensors.
    Safetensors,
    /// The API's request bodies (JSON, NDJSON, multipart) and query strings, through the router.
    Api,
}

impl Target {
    pub fn named(name: &str) -> Option<Target> {
        let all = [
            Target::Formats,
            Target::Beir,
            Target::Filter,
            Target::Syntax,
            Target::Gguf,
            Target::Safetensors,
            Target::Api,
        ];
        NAMES.iter().position(|n| *n == name).map(|i| all[i])
    }
}

/// The real encoder (its tokenizer chunks documents; the API embeds with it).
pub static ENCODER: LazyLock<Encoder> = LazyLock::new(|| {
    let home = std::env::var_os("SOUSUO_HOME").map(std::path::PathBuf::from);
    let root = default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).expect("a cache directory");
    let dir = ModelCache::new(root).ensure(&MINILM, |_| {}).expect("the encoder: run `sousuo models fetch`");
    Encoder::load(&ModelDir::open(&dir).expect("model dir"), EncoderOptions::default()).expect("encoder")
});

static SCRATCH: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("a temp dir"));

static BM25: LazyLock<sousuo_indexer::bm25::Bm25> =
    LazyLock::new(|| sousuo_indexer::bm25::Bm25::open(&SCRATCH.path().join("bm25")).expect("bm25"));

pub fn run(target: Target, data: &[u8]) {
    match target {
        Target::Formats => formats(data),
        Target::Beir => beir(data),
        Target::Filter => filter(data),
        Target::Syntax => syntax(data),
        Target::Gguf => gguf(data),
        Target::Safetensors => safetensors(data),
        Target::Api => crate::api::request(data),
    }
}

fn formats(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let formats = [Format::Text, Format::Markdown, Format::Html, Format::Pdf, Format::Json, Format::JsonLines];
    let format = formats[pick as usize % formats.len()];
    let Ok(parsed) = parse(format, bytes, "f", "f", &JsonFields::default()) else { return };
    let params = ChunkParams::for_encoder(&ENCODER);
    for doc in &parsed.docs {
        if let Ok(chunks) = chunk_document(doc, &params, &*ENCODER) {
            for c in &chunks {
                assert!(c.start <= c.end, "a chunk ends before it starts: {c:?}");
            }
        }
    }
}

fn beir(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let dir = SCRATCH.path().join("beir");
    let _ = std::fs::create_dir_all(dir.join("qrels"));
    if pick % 2 == 0 {
        let path = dir.join("corpus.jsonl");
        if std::fs::write(&path, bytes).is_ok() {
            let _ = sousuo_query::beir::read_records(&path, None);
        }
    } else if std::fs::write(dir.join("qrels/test.tsv"), bytes).is_ok() {
        let _ = sousuo_query::beir::read_qrels(&dir, "test");
    }
}

fn filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let exprs: Vec<String> = text.split('\n').map(str::to_string).collect();
    let _ = sousuo_query::Filter::parse(&exprs);
}

fn syntax(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(Some(q)) = BM25.query(&text, true) {
        let _ = BM25.search(&q, None, 10);
    }
}

fn gguf(data: &[u8]) {
    let mut file = Cursor::new(data);
    let Ok(ct) = sousuo_decoder::read_gguf(&mut file) else { return };
    let _ = sousuo_decoder::DecoderTokenizer::from_gguf(&ct);
    if sousuo_decoder::LlamaConfig::from_gguf(&ct).is_ok() {
        let _ = sousuo_decoder::NativeLlama::from_gguf(&ct, &mut file, 1);
    }
}

fn safetensors(data: &[u8]) {
    use sousuo_encoder::weights::{BertShape, BertWeights};
    let path = SCRATCH.path().join("model.safetensors");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let shape = BertShape {
        vocab: 8,
        hidden: 4,
        layers: 1,
        heads: 1,
        intermediate: 8,
        max_positions: 4,
        type_vocab: 2,
        eps: 1e-12,
    };
    let _ = BertWeights::load(&path, shape);
}
