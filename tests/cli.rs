//! The real binary from the outside: embed, index, search, stats, and its errors.

use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A private SOUSUO_HOME whose model cache links to the shared one (fetched if missing).
fn home() -> tempfile::TempDir {
    let shared = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
    let root = default_cache_root(shared.as_deref(), dirs::cache_dir().as_deref()).expect("set SOUSUO_HOME");
    ModelCache::new(&root)
        .ensure(&MINILM, |_| eprintln!("fetching the encoder for the CLI tests"))
        .unwrap_or_else(|e| panic!("the CLI tests need {}: {e}; run `cargo run -- models fetch`", MINILM.name));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&root, dir.path().join("models")).unwrap();
    dir
}

fn sousuo(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sousuo"));
    cmd.arg("--home").arg(home).args(args).env_remove("SOUSUO_ENCODER");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn embed_writes_jsonl_in_input_order_and_npy() {
    let h = home();
    let out = sousuo(h.path(), &["embed", "-"], Some("first line\nsecond line\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], 0);
    assert_eq!(rows[1]["id"], 1);
    assert_eq!(rows[0]["embedding"].as_array().unwrap().len(), 384);
    let input = h.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\": \"a\", \"text\": \"alpha\"}\n{\"id\": \"b\", \"text\": \"beta\"}\n").unwrap();
    let npy = h.path().join("out.npy");
    let out =
        sousuo(h.path(), &["embed", input.to_str().unwrap(), "--format", "npy", "-o", npy.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&npy).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"));
    assert!(text(&bytes[..128]).contains("(2, 384"), "{}", text(&bytes[..128]));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let h = home();
    let input = h.path().join("bad.jsonl");
    std::fs::write(&input, "{\"id\": 1, \"text\": \"ok\"}\nnot json\n").unwrap();
    let out = sousuo(h.path(), &["embed", input.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("bad.jsonl:2"), "{}", text(&out.stderr));
    let out = sousuo(h.path(), &["index", "/nonexistent/path", "-c", "x"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/path: no such file or directory"), "{}", text(&out.stderr));
    let out = sousuo(h.path(), &["collections", "--json"], None);
    assert_eq!(text(&out.stdout).trim(), "[]", "a failed index run left a collection behind");
    let out = sousuo(h.path(), &["embed", "/nonexistent/file.jsonl"], None);
    // Each cause once: the I/O error is not repeated after the message that carries it.
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.matches("No such file").count() == 1, "{err}");
    let out = sousuo(h.path(), &["index", ".", "-c", "../escape"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("invalid collection name"), "{}", text(&out.stderr));
    let out = sousuo(h.path(), &["search", "anything", "-c", "missing"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("does not exist"), "{}", text(&out.stderr));
    let out = sousuo(h.path(), &["--encoder", "/nonexistent/model", "embed", "-"], Some("x\n"));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("config.json"), "{}", text(&out.stderr));
}

#[test]
fn index_search_stats_and_delete_through_the_binary() {
    let h = home();
    let docs = h.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("tea.md"), "# Tea\n\nGreen tea is steeped at eighty degrees.").unwrap();
    std::fs::write(docs.join("bikes.txt"), "Bicycles\n\nA derailleur moves the chain between sprockets.").unwrap();
    let out = sousuo(h.path(), &["index", docs.to_str().unwrap(), "-c", "mini"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 new or changed"), "{}", text(&out.stdout));
    let again = sousuo(h.path(), &["index", docs.to_str().unwrap(), "-c", "mini"], None);
    assert!(text(&again.stdout).contains("0 chunks embedded"), "{}", text(&again.stdout));
    let out = sousuo(h.path(), &["search", "how hot should the water be for tea", "-c", "mini", "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["hits"][0]["doc_id"], "tea.md");
    let out = sousuo(h.path(), &["search", "", "-c", "mini"], None);
    assert!(!out.status.success() && text(&out.stderr).contains("empty"), "{}", text(&out.stderr));
    let out = sousuo(h.path(), &["stats", "-c", "mini", "--json"], None);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["documents"], 2);
    let out = sousuo(h.path(), &["delete", "-c", "mini", "tea.md"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = sousuo(h.path(), &["collections", "--json"], None);
    let l: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(l[0]["name"], "mini");
    assert_eq!(l[0]["documents"], 1);
}

/// The README's main job, answered from the command line: `demo --no-serve` indexes the sample
/// corpus, then `ask` answers a documented question with a valid citation and an uncovered one
/// with `insufficient_evidence`.
#[test]
fn demo_corpus_answers_with_citations_and_abstains() {
    let h = home();
    let out = sousuo(
        h.path(),
        &["demo", "--no-serve", "--corpus", concat!(env!("CARGO_MANIFEST_DIR"), "/corpora/sample")],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("demo collection: 30 documents"), "{}", text(&out.stdout));
    let ask = |q: &str| -> serde_json::Value {
        let out = sousuo(h.path(), &["ask", q, "--collection", "demo", "--json"], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let a = ask("What is retrieval-augmented generation?");
    assert_ne!(a["kind"], "insufficient_evidence", "{a}");
    let n = a["sources"].as_array().unwrap().len() as u64;
    let cites: Vec<u64> = a["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["citations"].as_array().unwrap().clone())
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert!(!cites.is_empty() && cites.iter().all(|&c| c >= 1 && c <= n), "{a}");
    let b = ask("Who won the football world cup in 1998?");
    assert_eq!(b["kind"], "insufficient_evidence", "{b}");
    // Streaming mode prints the numbered sources.
    let out = sousuo(h.path(), &["ask", "What does Q8_0 quantization store?", "--collection", "demo"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("Sources:") && s.contains("[1] "), "{s}");
}

/// The self-contained GPU check, run here on the CPU path: Sousuo's forward pass on random
/// weights against candle's, through the binary (no model files needed).
#[test]
fn random_weights_benchmark_compares_against_candle() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "encode",
        "--random-weights",
        "--device",
        "cpu",
        "--layers",
        "2",
        "--hidden",
        "64",
        "--heads",
        "4",
        "--intermediate",
        "128",
        "--vocab",
        "500",
        "--lengths",
        "8,40",
        "--batch-sizes",
        "2,5",
        "--seconds",
        "0.05",
        "--json",
    ];
    let out = sousuo(dir.path(), &args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let json = &stdout[stdout.find("{\n").expect("a JSON object")..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(v["min_cosine"].as_f64().unwrap() >= 0.9999, "{v}");
    assert!(v["min_cosine_between_inputs"].as_f64().unwrap() < 0.99, "inputs too alike to compare: {v}");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r["docs_per_s"].as_f64().unwrap() > 0.0 && r["tflops"].as_f64().unwrap() > 0.0));
    // No GPU here (or no CUDA build): asking for one is a clear error, not a crash.
    let cuda = sousuo(dir.path(), &["bench", "encode", "--random-weights", "--device", "cuda", "--layers", "1"], None);
    if !cuda.status.success() {
        let err = text(&cuda.stderr);
        assert!(err.contains("CUDA") && !err.contains("panicked"), "{err}");
    }
}

/// A tiny BEIR data set: documents on distinct topics, one query per topic, each judging its
/// own document relevant.
fn tiny_beir(dir: &Path, topics: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let mut corpus = String::new();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (i, (doc, query)) in topics.iter().enumerate() {
        corpus.push_str(&serde_json::json!({"_id": format!("d{i}"), "title": "", "text": doc}).to_string());
        corpus.push('\n');
        queries.push_str(&serde_json::json!({"_id": format!("q{i}"), "text": query}).to_string());
        queries.push('\n');
        qrels.push_str(&format!("q{i}\td{i}\t1\n"));
    }
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
    std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
}

#[test]
fn eval_takes_several_data_sets_and_reports_their_mean() {
    let h = home();
    let (a, b) = (h.path().join("cooking"), h.path().join("space"));
    tiny_beir(
        &a,
        &[
            ("Knead the bread dough for ten minutes, then let it rise.", "how long to knead bread dough"),
            ("Simmer the tomato sauce with garlic and basil.", "tomato sauce with basil"),
            ("Whisk the eggs and sugar until pale for the sponge cake.", "sponge cake eggs and sugar"),
        ],
    );
    tiny_beir(
        &b,
        &[
            ("The rover landed in Jezero crater on Mars.", "which crater did the rover land in"),
            ("Saturn's rings are made of ice and rock.", "what are saturn's rings made of"),
        ],
    );
    let beir = format!("{},{}", a.display(), b.display());
    let out = sousuo(h.path(), &["eval", "--beir", &beir, "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let sets = v["datasets"].as_array().unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["dataset"], "cooking");
    assert_eq!(sets[1]["queries"], 2);
    for mode in ["bm25", "dense", "hybrid"] {
        let per: Vec<f64> = sets.iter().map(|s| s["modes"][mode]["ndcg@10"].as_f64().unwrap()).collect();
        let mean = v["mean"][mode]["ndcg@10"].as_f64().unwrap();
        assert!((mean - (per[0] + per[1]) / 2.0).abs() < 1e-9, "{mode}: {mean} vs {per:?}");
        assert!(mean > 0.5, "{mode}: topics this distinct are found ({mean})");
    }
    // --collection names one collection, so it takes one data set.
    let out = sousuo(h.path(), &["eval", "--beir", &beir, "--collection", "x"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("one --beir"), "{}", text(&out.stderr));
}
