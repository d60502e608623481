//! Crash safety: `sousuo index` is killed with SIGKILL at random moments; after each kill the
//! collection must open, hold every document the process reported as committed in sled,
//! tantivy and HNSW, with no duplicates; resuming completes it to exactly the input's size.
//! Then the same over HTTP: `sousuo serve` killed while a client uploads and deletes; and
//! indexing into a file system that fills up; and the hostile corpus, file by file.
//!
//! CI runs it on a 1,000-document slice of SciFact; `SOUSUO_FULL=1` runs the whole corpus.
//! `SOUSUO_CRASH_SEED=N` replays a run's kill times.

use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use sousuo_encoder::{Encoder, EncoderOptions, ModelDir};
use sousuo_indexer::{Collection, EncoderInfo, OpenMode};
use std::collections::HashSet;

#[path = "crash/disk_full.rs"]
mod disk_full;
#[path = "crash/hostile.rs"]
mod hostile;
#[path = "crash/over_http.rs"]
mod over_http;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn model_dir() -> PathBuf {
    let home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
    let root = default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).expect("set SOUSUO_HOME");
    ModelCache::new(root)
        .ensure(&MINILM, |_| eprintln!("fetching the encoder for the crash test"))
        .unwrap_or_else(|e| panic!("the crash test needs {}: {e}; run `cargo run -- models fetch`", MINILM.name))
}

/// xorshift64*: enough randomness for kill times, reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn between_ms(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn scifact_lines() -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/scifact/corpus.jsonl");
    std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("SciFact expected at {}: {e}", src.display()))
}

fn slice(dir: &Path) -> (PathBuf, usize) {
    let text = scifact_lines();
    let n = if std::env::var_os("SOUSUO_FULL").is_some() { usize::MAX } else { 1000 };
    let lines: Vec<&str> = text.lines().take(n).collect();
    let path = dir.join("slice.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, lines.len())
}

fn index_command(home: &Path, corpus: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sousuo"));
    cmd.arg("--home").arg(home).arg("index").arg(corpus).args(["--collection", "crash", "--commit-log"]).arg(log);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

/// Opens the collection and checks the invariants; returns how many documents it holds.
fn check(data: &Path, info: &EncoderInfo, log: &Path) -> usize {
    let committed: HashSet<String> =
        std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect();
    check_stores(data, info, &committed)
}

/// The collection opens; sled, tantivy and HNSW hold the same chunks, each once, each of one
/// document; every id in `committed` is in sled. Returns how many documents it holds.
fn check_stores(data: &Path, info: &EncoderInfo, committed: &HashSet<String>) -> usize {
    check_collection(data, "crash", info, committed)
}

/// [`check_stores`] for collection `name`.
fn check_collection(data: &Path, name: &str, info: &EncoderInfo, committed: &HashSet<String>) -> usize {
    let c = Collection::open(data, name, info, OpenMode::Existing).expect("the collection opens after a kill");
    let bm25 = c.bm25().all_chunk_keys().unwrap();
    let bm25_set: HashSet<u64> = bm25.iter().copied().collect();
    assert_eq!(bm25.len(), bm25_set.len(), "a chunk appears twice in tantivy");
    let hnsw = c.vector_ids().unwrap();
    let hnsw_set: HashSet<u64> = hnsw.iter().copied().collect();
    assert_eq!(hnsw.len(), hnsw_set.len(), "a chunk appears twice in the HNSW graph");
    let mut docs = 0;
    let mut live_chunks = HashSet::new();
    for d in c.store().docs() {
        let d = d.unwrap();
        docs += 1;
        for k in &d.chunk_keys {
            assert!(live_chunks.insert(*k), "chunk {k} belongs to two documents");
            assert!(bm25_set.contains(k), "document {} chunk {k} is missing from tantivy", d.id);
            assert!(hnsw_set.contains(k), "document {} chunk {k} is missing from HNSW", d.id);
        }
    }
    assert_eq!(bm25_set, live_chunks, "tantivy holds exactly the live chunks");
    for id in committed {
        assert!(c.get_doc(id).unwrap().is_some(), "document {id} was reported committed but is not in sled");
    }
    docs
}

/// A home whose models link to the shared cache, and the encoder's identity as the CLI and the
/// server use it (int8: the default for the default encoder on a CPU, no other collection).
fn crash_home(tmp: &Path) -> (PathBuf, EncoderInfo) {
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let models = model_dir().parent().unwrap().to_path_buf();
    std::os::unix::fs::symlink(&models, home.join("models")).unwrap();
    let options = EncoderOptions { precision: sousuo_encoder::Precision::Int8, ..EncoderOptions::default() };
    let encoder = Encoder::load(&ModelDir::open(&model_dir()).unwrap(), options).unwrap();
    (home, EncoderInfo::of(&encoder).unwrap())
}

fn seed() -> u64 {
    std::env::var("SOUSUO_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    })
}

#[test]
fn killed_index_runs_lose_nothing_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, info) = crash_home(tmp.path());
    let (corpus, n) = slice(tmp.path());
    let log = tmp.path().join("committed.log");
    let data = home.join("data");
    let seed = seed();
    eprintln!("crash test: {n} documents, SOUSUO_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut kills = 0;
    while kills < 5 {
        let mut child = index_command(&home, &corpus, &log).spawn().expect("sousuo starts");
        let wait = Duration::from_millis(rng.between_ms(500, 12_000));
        let start = Instant::now();
        let mut finished = false;
        while start.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if finished {
            break; // the corpus completed before this kill: nothing left to interrupt
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let docs = if data.join("crash/manifest.json").exists() { check(&data, &info, &log) } else { 0 };
        eprintln!("kill {kills} after {wait:?}: {docs} documents intact");
    }
    let status = index_command(&home, &corpus, &log).status().unwrap();
    assert!(status.success(), "the resumed run completes");
    assert_eq!(check(&data, &info, &log), n, "the collection holds exactly the slice");
}
