//! A collection: a directory holding the manifest, the sled store and the two derived indexes.
//!
//! ```text
//! <data>/<name>/manifest.json   format version, encoder identity, chunking parameters
//! <data>/<name>/store/          sled: documents, chunks, vectors, oplog (source of truth)
//! <data>/<name>/bm25/           tantivy index (commit payload = sled seq included)
//! <data>/<name>/hnsw/           CURRENT + g-<seq>/graph.hnsw.{graph,data}
//! ```

use crate::bm25::{Bm25, Bm25Hit};
use crate::chunk::ChunkParams;
use crate::fields::{DocSet, FieldView};
use crate::live::LiveChunks;
use crate::store::{Change, DocRecord, Op, Store};
use crate::vectors::{HnswParams, VectorHit, VectorIndex};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The file whose presence makes a directory a collection.
const MANIFEST: &str = "manifest.json";

/// Which encoder built a collection's vectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderInfo {
    /// Model name.
    pub name: String,
    /// Width of its vectors.
    pub dim: usize,
    /// SHA-256 of its weights (a re-trained model with the same name differs here).
    pub weights_sha256: String,
    /// The arithmetic of the encoder's dense layers: `f32` (the default, and what collections
    /// written before this field hold) or `int8`.
    #[serde(default = "f32_precision")]
    pub precision: String,
}

fn f32_precision() -> String {
    "f32".into()
}

impl EncoderInfo {
    /// The identity of a loaded encoder.
    pub fn of(encoder: &sousuo_encoder::Encoder) -> Result<Self> {
        Ok(EncoderInfo {
            name: encoder.model().name.clone(),
            dim: encoder.dim(),
            weights_sha256: encoder.model().weights_sha256()?,
            precision: encoder.precision().to_string(),
        })
    }
}

/// What a collection was built with, written once at creation (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// On-disk format version ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// The collection's name.
    pub name: String,
    /// The encoder its vectors come from.
    pub encoder: EncoderInfo,
    /// How its documents were chunked.
    pub chunking: ChunkParams,
    /// Unix seconds at creation.
    pub created_at: u64,
}

/// Document and chunk counts as of the last commit (`counts.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Documents stored.
    pub documents: usize,
    /// Chunks stored.
    pub chunks: usize,
}

/// Reads the counts a collection wrote at its last commit, without opening it.
pub fn read_counts(data_dir: &Path, name: &str) -> Option<Counts> {
    let bytes = std::fs::read(data_dir.join(name).join("counts.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Counts and sizes for `sousuo stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// The collection's name.
    pub name: String,
    /// Documents in the store.
    pub documents: usize,
    /// Chunks in the store.
    pub chunks: usize,
    /// Chunks in the BM25 index.
    pub bm25_chunks: u64,
    /// Points in the HNSW graph (deleted ones included until a rebuild).
    pub hnsw_points: usize,
    /// Deleted points still in the graph.
    pub tombstones: usize,
    /// The last applied operation's sequence number.
    pub seq: u64,
    /// The encoder its vectors come from.
    pub encoder: EncoderInfo,
    /// How its documents were chunked.
    pub chunking: ChunkParams,
    /// Size of the collection's directory.
    pub bytes_on_disk: u64,
    /// Unix seconds of the last change, if any.
    pub last_update: Option<u64>,
}

/// Checks a collection name: letters, digits, `-`, `_`, `.`; no path separators or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| Err(Error::InvalidName { name: name.to_string(), reason });
    if name.is_empty() || name.len() > 64 {
        return bad("use 1 to 64 characters");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("path separators are not allowed");
    }
    if name == "." || name == ".." || name.starts_with('.') {
        return bad("it must not start with a dot");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return bad("use ASCII letters, digits, '-', '_' and '.'");
    }
    if RESERVED.contains(&name) {
        return bad("the server keeps a file of that name in the data directory");
    }
    Ok(())
}

/// Names of what the server and cluster nodes keep beside the collections.
const RESERVED: [&str; 3] = ["keys.json", "node-id", "cluster-uploads"];

/// Whether collection `name` exists in `data_dir` (its manifest is there).
pub fn collection_exists(data_dir: &Path, name: &str) -> bool {
    data_dir.join(name).join(MANIFEST).is_file()
}

/// Deletes collection `name` from `data_dir` (it must not be open).
pub fn delete_collection(data_dir: &Path, name: &str) -> Result<()> {
    validate_name(name)?;
    let dir = data_dir.join(name);
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))
}

/// Names of the collections in `data_dir`.
pub fn list_collections(data_dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    match std::fs::read_dir(data_dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().join(MANIFEST).is_file() && validate_name(&name).is_ok() {
                    names.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(data_dir, e)),
    }
    names.sort();
    Ok(names)
}

/// Reads a collection's manifest without opening its stores.
pub fn read_manifest(data_dir: &Path, name: &str) -> Result<Manifest> {
    validate_name(name)?;
    let path = data_dir.join(name).join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoSuchCollection(name.into())),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
    if m.format_version != FORMAT_VERSION {
        return Err(Error::FormatVersion {
            collection: name.into(),
            found: m.format_version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(m)
}

/// A collection open for reading and writing: the store and the two indexes derived from it.
pub struct Collection {
    name: String,
    dir: PathBuf,
    manifest: Manifest,
    store: Store,
    bm25: Bm25,
    vectors: RwLock<VectorIndex>,
    /// Chunk key -> document id of every live chunk (the query path's view; no sled reads).
    live: LiveChunks,
    last_commit: Mutex<Instant>,
    write: Mutex<()>,
    /// Held while the collection is open: one process at a time.
    _lock: std::fs::File,
}

/// How the collection should be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Fail if it does not exist.
    Existing,
    /// Create it (with these chunking parameters) if it does not exist.
    Create(ChunkParams),
}

impl Collection {
    /// Opens (or creates) collection `name` in `data_dir` for `encoder`. A collection built
    /// with another encoder is refused. Derived indexes behind sled are caught up.
    pub fn open(data_dir: &Path, name: &str, encoder: &EncoderInfo, mode: OpenMode) -> Result<Self> {
        validate_name(name)?;
        let dir = data_dir.join(name);
        let manifest = match (read_manifest(data_dir, name), mode) {
            (Ok(m), _) => m,
            (Err(Error::NoSuchCollection(_)), OpenMode::Create(chunking)) => {
                create_manifest(&dir, name, encoder, chunking)?
            }
            (Err(e), _) => return Err(e),
        };
        if manifest.encoder.weights_sha256 != encoder.weights_sha256 || manifest.encoder.dim != encoder.dim {
            return Err(Error::EncoderMismatch {
                collection: name.into(),
                built_with: manifest.encoder.name.clone(),
                built_dim: manifest.encoder.dim,
                requested: encoder.name.clone(),
                requested_dim: encoder.dim,
            });
        }
        if manifest.encoder.precision != encoder.precision {
            return Err(Error::PrecisionMismatch {
                collection: name.into(),
                built: manifest.encoder.precision.clone(),
                requested: encoder.precision.clone(),
            });
        }
        Self::open_stores(name, dir, manifest)
    }

    fn open_stores(name: &str, dir: PathBuf, manifest: Manifest) -> Result<Self> {
        let lock = lock(name, &dir)?;
        let store = Store::open(&dir.join("store"))?;
        let bm25 = Bm25::open(&dir.join("bm25"))?;
        let vectors = VectorIndex::open(&dir.join("hnsw"), manifest.encoder.dim, HnswParams::default())?;
        let live = LiveChunks::build(&store)?;
        let c = Collection {
            live,
            _lock: lock,
            name: name.to_string(),
            dir,
            manifest,
            store,
            bm25,
            vectors: RwLock::new(vectors),
            last_commit: Mutex::new(Instant::now()),
            write: Mutex::new(()),
        };
        c.catch_up()?;
        Ok(c)
    }

    /// Replays the oplog into whichever derived index is behind sled.
    fn catch_up(&self) -> Result<()> {
        let seq = self.store.seq()?;
        let bm25_seq = self.bm25.committed_seq()?;
        if bm25_seq == 0 && seq > 0 {
            // Never committed (removed, or of an earlier format): the oplog may have been
            // pruned, so the index is rebuilt from the documents themselves.
            let mut docs = 0usize;
            for doc in self.store.docs() {
                let doc = doc?;
                let op = Op { seq, doc_id: doc.id.clone(), added: doc.chunk_keys.clone(), removed: Vec::new() };
                self.bm25.apply(&op, &self.store, &doc.title)?;
                docs += 1;
            }
            self.bm25.include_seq(seq)?;
            self.bm25.commit()?;
            tracing::info!(collection = %self.name, docs, "BM25 index rebuilt from the store");
        } else if bm25_seq < seq {
            let mut replayed = 0usize;
            for op in self.store.ops_after(bm25_seq) {
                let op = op?;
                let title = self.store.get_doc(&op.doc_id)?.map(|d| d.title).unwrap_or_default();
                self.bm25.apply(&op, &self.store, &title)?;
                replayed += 1;
            }
            self.bm25.commit()?;
            tracing::info!(collection = %self.name, from = bm25_seq, to = seq, ops = replayed, "BM25 index caught up");
        }
        let vectors = self.vectors.read().map_err(|_| poisoned())?;
        if vectors.seq() < seq {
            let from = vectors.seq();
            let ops: Vec<Op> = self.store.ops_after(from).collect::<Result<_>>()?;
            vectors.apply(&ops, &self.store)?;
            vectors.persist()?;
            tracing::info!(collection = %self.name, from, to = seq, ops = ops.len(), "vector index caught up");
        }
        Ok(())
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new, empty directory for files that wait to be indexed into this collection
    /// (uploads), inside the collection so they go when it goes.
    pub fn new_upload_dir(&self) -> Result<PathBuf> {
        let base = self.dir.join("uploads");
        std::fs::create_dir_all(&base).map_err(|e| Error::io(&base, e))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", sousuo_common::now_secs()))
            .tempdir_in(&base)
            .map_err(|e| Error::io(&base, e))?;
        Ok(dir.keep())
    }

    /// The collection's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the collection was built with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The store (source of truth).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The BM25 index.
    pub fn bm25(&self) -> &Bm25 {
        &self.bm25
    }

    /// Applies changes to sled (durably), then to both derived indexes. BM25 commits at most
    /// every few seconds (and on [`Self::commit`]); the oplog covers what is not yet committed.
    pub fn apply(&self, changes: &[Change]) -> Result<Vec<Op>> {
        self.apply_inner(changes, None)
    }

    /// [`Self::apply`] for changes read from an external log at position `source` (a cluster
    /// shard's stream sequence), recorded atomically with them: see [`Self::source_seq`].
    pub fn apply_from(&self, changes: &[Change], source: u64) -> Result<Vec<Op>> {
        self.apply_inner(changes, Some(source))
    }

    /// The external log position of the last change applied with [`Self::apply_from`] (0 for
    /// none): a replica resumes after it, and skips what it already holds.
    pub fn source_seq(&self) -> Result<u64> {
        self.store.source_seq()
    }

    fn apply_inner(&self, changes: &[Change], source: Option<u64>) -> Result<Vec<Op>> {
        let _w = self.write.lock().map_err(|_| poisoned())?;
        let ops = match source {
            Some(s) => self.store.apply_from(changes, s)?,
            None => self.store.apply(changes)?,
        };
        let mut metadata = HashMap::new();
        for op in &ops {
            let (title, meta) = self.store.get_doc(&op.doc_id)?.map(|d| (d.title, d.metadata)).unwrap_or_default();
            self.bm25.apply(op, &self.store, &title)?;
            metadata.insert(op.doc_id.clone(), meta);
        }
        self.vectors.read().map_err(|_| poisoned())?.apply(&ops, &self.store)?;
        self.live.apply(&ops, &metadata);
        let mut last = self.last_commit.lock().map_err(|_| poisoned())?;
        if last.elapsed() > Duration::from_secs(5) {
            self.bm25.commit()?;
            *last = Instant::now();
        }
        Ok(ops)
    }

    /// Makes everything searchable and durable in every store: BM25 commit, graph dump,
    /// oplog pruned to what both indexes hold.
    pub fn commit(&self) -> Result<()> {
        let _w = self.write.lock().map_err(|_| poisoned())?;
        self.bm25.commit()?;
        let vectors = self.vectors.read().map_err(|_| poisoned())?;
        vectors.persist()?;
        let upto = self.bm25.committed_seq()?.min(vectors.seq());
        self.store.prune_oplog(upto)?;
        *self.last_commit.lock().map_err(|_| poisoned())? = Instant::now();
        drop(vectors);
        self.write_counts()
    }

    /// Writes `counts.json` so listings can show counts without opening (and locking) the stores.
    fn write_counts(&self) -> Result<()> {
        let counts = Counts { documents: self.store.doc_count(), chunks: self.store.chunk_count() };
        Ok(sousuo_common::fs::atomic_write(
            &self.dir.join("counts.json"),
            &serde_json::to_vec(&counts).unwrap_or_default(),
        )?)
    }

    /// Makes BM25 changes visible without dumping the graph.
    pub fn refresh(&self) -> Result<()> {
        self.bm25.commit()
    }

    /// A stored document's record.
    pub fn get_doc(&self, id: &str) -> Result<Option<DocRecord>> {
        self.store.get_doc(id)
    }

    /// Deletes documents by id from all three stores; returns how many existed.
    pub fn delete(&self, ids: &[String]) -> Result<usize> {
        let changes: Vec<Change> = ids.iter().map(|id| Change::Delete { doc_id: id.clone() }).collect();
        let ops = self.apply(&changes)?;
        Ok(ops.len())
    }

    /// Rebuilds the HNSW graph without tombstones.
    pub fn compact(&self) -> Result<usize> {
        let _w = self.write.lock().map_err(|_| poisoned())?;
        let mut vectors = self.vectors.write().map_err(|_| poisoned())?;
        let before = vectors.points();
        vectors.rebuild(&self.store)?;
        Ok(before.saturating_sub(vectors.points()))
    }

    /// BM25 over chunks (plain text query).
    pub fn search_bm25(&self, query: &str, limit: usize) -> Result<Vec<Bm25Hit>> {
        self.bm25.search_plain(query, limit)
    }

    /// Nearest live chunks to a query vector.
    pub fn search_vectors(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<VectorHit>> {
        let vectors = self.vectors.read().map_err(|_| poisoned())?;
        self.live
            .with(|live| {
                // Without tombstones every graph point is live: no filter in the walk.
                // (The hits are checked anyway, should the counts agree by accident.)
                if vectors.points() == live.len() {
                    let mut hits = vectors.search(query, k, ef, None)?;
                    hits.retain(|h| live.contains(h.chunk_key));
                    Ok(hits)
                } else {
                    vectors.search(query, k, ef, Some(&|key: u64| live.contains(key)))
                }
            })
            .unwrap_or_else(|| Err(poisoned()))
    }

    /// Nearest live chunks that also pass `keep` (applied during the graph walk).
    pub fn search_vectors_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<VectorHit>> {
        let vectors = self.vectors.read().map_err(|_| poisoned())?;
        self.live
            .with(|live| vectors.search(query, k, ef, Some(&|key: u64| live.contains(key) && keep(key))))
            .unwrap_or_else(|| Err(poisoned()))
    }

    /// The live chunks of the documents that `select` picks through the in-memory field index
    /// (every document's id and metadata fields; see [`crate::fields`]), under one lock.
    pub fn select_chunks(&self, select: impl FnOnce(&FieldView<'_>) -> DocSet) -> Result<HashSet<u64>> {
        self.live.select(select).ok_or_else(poisoned)
    }

    /// The document of a live chunk (from memory).
    pub fn chunk_doc(&self, key: u64) -> Option<std::sync::Arc<str>> {
        self.live.doc_of(key)
    }

    /// Live chunks (from memory).
    pub fn live_chunks(&self) -> usize {
        self.live.len()
    }

    /// Every live chunk's key, ascending, from memory.
    pub fn live_chunk_keys(&self) -> Result<Vec<u64>> {
        self.live.with(|live| live.keys()).ok_or_else(poisoned)
    }

    /// The vectors of the live chunks among `keys` (row-major, `dim` wide) and their keys, in
    /// `keys`' order: from the vector index's mapped copy, or sled while that copy is stale.
    pub fn vectors_of(&self, keys: &[u64]) -> Result<(Vec<u64>, Vec<f32>)> {
        let (mut present, mut out) = (Vec::with_capacity(keys.len()), Vec::new());
        let live: Vec<u64> =
            self.live.with(|live| keys.iter().copied().filter(|&k| live.contains(k)).collect()).ok_or_else(poisoned)?;
        let vectors = self.vectors.read().map_err(|_| poisoned())?;
        if vectors.gather(&live, &mut present, &mut out)? {
            return Ok((present, out));
        }
        for k in live {
            if let Some(v) = self.store.get_vector(k)?.filter(|v| v.len() == self.manifest.encoder.dim) {
                present.push(k);
                out.extend_from_slice(&v);
            }
        }
        Ok((present, out))
    }

    /// Every point id in the graph (tombstones included).
    pub fn vector_ids(&self) -> Result<Vec<u64>> {
        self.vectors.read().map_err(|_| poisoned())?.all_ids()
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Result<Stats> {
        let vectors = self.vectors.read().map_err(|_| poisoned())?;
        let chunks = self.store.chunk_count();
        let updated = std::fs::metadata(self.dir.join("store"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        Ok(Stats {
            name: self.name.clone(),
            documents: self.store.doc_count(),
            chunks,
            bm25_chunks: self.bm25.num_chunks(),
            hnsw_points: vectors.points(),
            tombstones: vectors.points().saturating_sub(chunks),
            seq: self.store.seq()?,
            encoder: self.manifest.encoder.clone(),
            chunking: self.manifest.chunking,
            bytes_on_disk: dir_size(&self.dir),
            last_update: updated,
        })
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::warn!(collection = %self.name, error = %e, "could not commit on close; the next open replays the oplog");
        }
    }
}

fn create_manifest(dir: &Path, name: &str, encoder: &EncoderInfo, chunking: ChunkParams) -> Result<Manifest> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let created_at = sousuo_common::now_secs();
    let m =
        Manifest { format_version: FORMAT_VERSION, name: name.into(), encoder: encoder.clone(), chunking, created_at };
    sousuo_common::fs::atomic_write(&dir.join(MANIFEST), &serde_json::to_vec_pretty(&m).unwrap_or_default())?;
    Ok(m)
}

/// Takes the collection's lock file, so a second process (a running `sousuo serve` while
/// `sousuo index` starts) is told plainly instead of failing inside sled or tantivy.
fn lock(name: &str, dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::InUse { collection: name.to_string() }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn poisoned() -> Error {
    Error::Store("a lock was poisoned by a panic".into())
}

pub(crate) use sousuo_common::fs::dir_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_are_refused() {
        for bad in ["", "..", "../x", "a/b", "a\\b", ".hidden", "a b", "ü"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["scifact", "my-docs_2", "v1.2"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }
}
