//! The hostile corpus (tests/fixtures/hostile, from scripts/hostile-corpus, and a 200 MB
//! single-line text file written here): each file indexed on its own, its outcome (indexed or
//! failed, and why), peak memory and time printed; then all of them in one run with a good file
//! among them: the run completes, the good documents are in, no failed file left a document
//! behind, and the stores agree.

use super::{check_collection, crash_home};
use serde_json::Value;
use sousuo_indexer::{Collection, OpenMode};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn index(home: &Path, path: &Path, collection: &str) -> (bool, Value, String, f64) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sousuo"))
        .arg("--home")
        .arg(home)
        .arg("index")
        .arg(path)
        .args(["--collection", collection, "--json"])
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), summary, String::from_utf8_lossy(&out.stderr).into_owned(), seconds)
}

#[test]
fn the_hostile_corpus_fails_file_by_file_and_never_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, info) = crash_home(tmp.path());
    let corpus = tmp.path().join("hostile");
    std::fs::create_dir_all(&corpus).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    for e in std::fs::read_dir(&fixtures).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), corpus.join(e.file_name())).unwrap();
    }
    // 200 MB on one line, no newline anywhere.
    let line = "word ".repeat(40 << 20);
    std::fs::write(corpus.join("one-line-200mb.txt"), line).unwrap();
    std::fs::write(corpus.join("good.md"), "# Good\n\nA fine document about graphs and ranking.\n").unwrap();

    let mut files: Vec<_> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    println!("| file | outcome | peak memory | seconds |\n| --- | --- | --- | --- |");
    let mut failed = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (ok, summary, stderr, seconds) = index(&home, file, &format!("one{i}"));
        assert!(ok, "{name}: a bad file is an error in the summary, not a failed run: {stderr}");
        let indexed = summary["documents_indexed"].as_u64().unwrap_or(0);
        let errors: Vec<String> =
            summary["errors"].as_array().into_iter().flatten().filter_map(|e| e.as_str().map(str::to_string)).collect();
        let skipped = summary["skipped"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "));
        let outcome = match (indexed, errors.first(), skipped.filter(|s| !s.is_empty())) {
            (n, None, _) if n > 0 => format!("indexed ({n} documents)"),
            (n, Some(e), _) => {
                if n == 0 {
                    failed.push(name.clone());
                }
                let why = e.rsplit_once(": ").map_or(e.as_str(), |(_, w)| w);
                format!("{n} indexed, {} error(s): {}", errors.len(), why.chars().take(90).collect::<String>())
            }
            (_, None, Some(s)) => format!("skipped ({s})"),
            (_, None, None) => "nothing indexed, no error".into(),
        };
        let mib = summary["peak_memory_bytes"].as_u64().unwrap_or(0) >> 20;
        println!("| {name} | {outcome} | {mib} MiB | {seconds:.1} |");
    }
    for must_fail in ["one-line-200mb.txt", "bomb.pdf", "truncated.pdf", "garbage-xref.pdf", "not-a-pdf.pdf"] {
        assert!(failed.iter().any(|f| f == must_fail), "{must_fail} should fail with an error: {failed:?}");
    }

    // All in one run: it completes, the good file is in, the failed files left nothing.
    let (ok, summary, stderr, seconds) = index(&home, &corpus, "all");
    assert!(ok, "the run over the whole corpus completes: {stderr}");
    println!("whole corpus in one run: {seconds:.1} s, {summary}");
    let docs = check_collection(&home.join("data"), "all", &info, &HashSet::new());
    let c = Collection::open(&home.join("data"), "all", &info, OpenMode::Existing).unwrap();
    let sources: HashSet<String> = c
        .store()
        .docs()
        .map(|d| Path::new(&d.unwrap().source).file_name().unwrap_or_default().to_string_lossy().into_owned())
        .collect();
    assert!(sources.contains("good.md"), "{sources:?}");
    for f in &failed {
        assert!(!sources.contains(f), "{f} failed but left a document behind");
    }
    println!("{docs} documents from {} files; failed files: {failed:?}", sources.len());
}
