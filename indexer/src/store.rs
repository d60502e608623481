//! The source of truth: one sled database per collection.
//!
//! Trees: `docs` (id -> [`DocRecord`]), `chunks` (key -> [`Chunk`]), `vectors` (key -> f32 LE),
//! `oplog` (seq -> [`Op`]) and `meta` (counters). Every change to a document is one serialisable
//! transaction over all of them that also appends an oplog entry with the next sequence number;
//! the derived indexes (tantivy, HNSW) record the sequence number they include and replay the
//! oplog after it when they are behind, so a crash between the stores heals on the next open.

use crate::document::Chunk;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A stored document (its text lives in its chunks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocRecord {
    /// The document's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Where it came from (file path, URL or id).
    pub source: String,
    /// Free-form metadata (filterable).
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// SHA-256 of the content (unchanged documents are skipped).
    pub content_hash: String,
    /// Keys of its chunks.
    pub chunk_keys: Vec<u64>,
    /// The sequence number of the operation that wrote it.
    pub seq: u64,
}

impl DocRecord {
    /// A record not yet stored: no metadata, no chunk keys, no sequence number.
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        source: impl Into<String>,
        content_hash: impl Into<String>,
    ) -> Self {
        DocRecord {
            id: id.into(),
            title: title.into(),
            source: source.into(),
            metadata: BTreeMap::new(),
            content_hash: content_hash.into(),
            chunk_keys: Vec::new(),
            seq: 0,
        }
    }
}

/// One oplog entry: what a sequence number changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Its sequence number (the log's order).
    pub seq: u64,
    /// The document it changed.
    pub doc_id: String,
    /// Chunk keys it added.
    pub added: Vec<u64>,
    /// Chunk keys it removed.
    pub removed: Vec<u64>,
}

/// A change to apply: a document with its chunks and their vectors, or a deletion. Serialised,
/// it is a cluster shard log's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Store a document (replacing the one with its id), its chunks and their vectors.
    Upsert {
        /// The document's record.
        doc: DocRecord,
        /// Its chunks, in order.
        chunks: Vec<Chunk>,
        /// One vector per chunk.
        vectors: Vec<Vec<f32>>,
    },
    /// Delete a document and its chunks.
    Delete {
        /// The document's id.
        doc_id: String,
    },
}

impl Change {
    /// Stores `doc` as one chunk holding all of `text`, with its `vector`.
    pub fn one_chunk(doc: DocRecord, text: String, vector: Vec<f32>) -> Change {
        let chunk =
            Chunk { doc_id: doc.id.clone(), ordinal: 0, start: 0, end: text.len(), text, heading: None, page: None };
        Change::Upsert { doc, chunks: vec![chunk], vectors: vec![vector] }
    }
}

/// The sled store: documents, chunks, vectors and the operation log, the source of truth.
pub struct Store {
    db: sled::Db,
    docs: sled::Tree,
    chunks: sled::Tree,
    vectors: sled::Tree,
    oplog: sled::Tree,
    meta: sled::Tree,
}

const SEQ: &[u8] = b"seq";
const NEXT_CHUNK: &[u8] = b"next_chunk";
/// The external log position of the last change applied from it (cluster replicas).
const SOURCE_SEQ: &[u8] = b"source_seq";

fn key(k: u64) -> [u8; 8] {
    k.to_be_bytes()
}

fn read_u64(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    u64::from_be_bytes(b)
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain records cannot fail (string keys, no non-finite floats).
    serde_json::to_vec(v).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| Error::Store(format!("corrupt {what} record: {e}")))
}

/// A vector as little-endian bytes.
pub fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A vector from little-endian bytes (a trailing partial value is ignored).
pub fn vector_from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// sled's page cache per open store, in bytes. sled's own default is 1 GiB per database, which
/// a server holding 20 collections would reserve 20 times over; queries never read sled (the
/// live chunks, vectors and BM25 index are in memory), so a small cache costs only the
/// document reads of a results page.
pub const DEFAULT_STORE_CACHE_BYTES: u64 = 32 << 20;

static STORE_CACHE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_STORE_CACHE_BYTES);

/// Sets the page cache of stores opened from now on (`--store-cache-mb`).
pub fn set_store_cache_bytes(bytes: u64) {
    STORE_CACHE_BYTES.store(bytes.max(1 << 20), Ordering::Relaxed);
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        wait_for_release(path);
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(STORE_CACHE_BYTES.load(Ordering::Relaxed))
            .open()?;
        Ok(Store {
            docs: db.open_tree("docs")?,
            chunks: db.open_tree("chunks")?,
            vectors: db.open_tree("vectors")?,
            oplog: db.open_tree("oplog")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// The sequence number of the last committed operation (0 for none).
    pub fn seq(&self) -> Result<u64> {
        Ok(self.meta.get(SEQ)?.map(|v| read_u64(&v)).unwrap_or(0))
    }

    /// The position in an external log (a cluster shard's stream) of the last change applied
    /// with [`Self::apply_from`] (0 for none).
    pub fn source_seq(&self) -> Result<u64> {
        Ok(self.meta.get(SOURCE_SEQ)?.map(|v| read_u64(&v)).unwrap_or(0))
    }

    /// Applies `changes` atomically, then flushes to disk. Returns the oplog entries written
    /// (a deletion of an absent document writes none).
    pub fn apply(&self, changes: &[Change]) -> Result<Vec<Op>> {
        self.apply_inner(changes, None)
    }

    /// [`Self::apply`] for changes read from an external log: `source` (their position in it)
    /// is recorded in the same transaction, so a replica knows exactly what it holds.
    pub fn apply_from(&self, changes: &[Change], source: u64) -> Result<Vec<Op>> {
        self.apply_inner(changes, Some(source))
    }

    fn apply_inner(&self, changes: &[Change], source: Option<u64>) -> Result<Vec<Op>> {
        let trees = (&self.docs, &self.chunks, &self.vectors, &self.oplog, &self.meta);
        let result = trees.transaction(|(docs, chunks, vectors, oplog, meta)| {
            let mut seq = meta.get(SEQ)?.map(|v| read_u64(&v)).unwrap_or(0);
            let mut next = meta.get(NEXT_CHUNK)?.map(|v| read_u64(&v)).unwrap_or(1);
            let mut ops = Vec::new();
            for change in changes {
                let doc_id = match change {
                    Change::Upsert { doc, .. } => &doc.id,
                    Change::Delete { doc_id } => doc_id,
                };
                let old: Option<DocRecord> = match docs.get(doc_id.as_bytes())? {
                    Some(v) => Some(from_json("document", &v).map_err(ConflictableTransactionError::Abort)?),
                    None => None,
                };
                let removed = old.map(|o| o.chunk_keys).unwrap_or_default();
                for k in &removed {
                    chunks.remove(&key(*k))?;
                    vectors.remove(&key(*k))?;
                }
                let mut added = Vec::new();
                match change {
                    Change::Upsert { doc, chunks: cs, vectors: vs } => {
                        for (c, v) in cs.iter().zip(vs) {
                            chunks.insert(&key(next), to_json(c))?;
                            vectors.insert(&key(next), vector_bytes(v))?;
                            added.push(next);
                            next += 1;
                        }
                        seq += 1;
                        let rec = DocRecord { chunk_keys: added.clone(), seq, ..doc.clone() };
                        docs.insert(doc_id.as_bytes(), to_json(&rec))?;
                    }
                    Change::Delete { .. } => {
                        if removed.is_empty() && docs.get(doc_id.as_bytes())?.is_none() {
                            continue;
                        }
                        docs.remove(doc_id.as_bytes())?;
                        seq += 1;
                    }
                }
                let op = Op { seq, doc_id: doc_id.clone(), added, removed };
                oplog.insert(&key(seq), to_json(&op))?;
                ops.push(op);
            }
            meta.insert(SEQ, &key(seq))?;
            meta.insert(NEXT_CHUNK, &key(next))?;
            if let Some(source) = source {
                meta.insert(SOURCE_SEQ, &key(source))?;
            }
            Ok(ops)
        });
        let ops = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => Error::Store(e.to_string()),
        })?;
        self.db.flush()?;
        Ok(ops)
    }

    /// A document's record.
    pub fn get_doc(&self, id: &str) -> Result<Option<DocRecord>> {
        self.docs.get(id.as_bytes())?.map(|v| from_json("document", &v)).transpose()
    }

    /// A chunk.
    pub fn get_chunk(&self, k: u64) -> Result<Option<Chunk>> {
        self.chunks.get(key(k))?.map(|v| from_json("chunk", &v)).transpose()
    }

    /// A chunk's vector.
    pub fn get_vector(&self, k: u64) -> Result<Option<Vec<f32>>> {
        Ok(self.vectors.get(key(k))?.map(|v| vector_from_bytes(&v)))
    }

    /// Whether a chunk is stored.
    pub fn has_chunk(&self, k: u64) -> Result<bool> {
        Ok(self.chunks.contains_key(key(k))?)
    }

    /// Documents stored.
    pub fn doc_count(&self) -> usize {
        self.docs.len()
    }

    /// Chunks stored.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Every stored document.
    pub fn docs(&self) -> impl Iterator<Item = Result<DocRecord>> + '_ {
        self.docs.iter().map(|r| r.map_err(Error::from).and_then(|(_, v)| from_json("document", &v)))
    }

    /// Every live chunk key.
    pub fn chunk_keys(&self) -> impl Iterator<Item = Result<u64>> + '_ {
        self.chunks.iter().keys().map(|k| k.map(|k| read_u64(&k)).map_err(Error::from))
    }

    /// Every live chunk key with its vector.
    pub fn vectors(&self) -> impl Iterator<Item = Result<(u64, Vec<f32>)>> + '_ {
        self.vectors.iter().map(|r| r.map(|(k, v)| (read_u64(&k), vector_from_bytes(&v))).map_err(Error::from))
    }

    /// Oplog entries after `seq`, in order.
    pub fn ops_after(&self, seq: u64) -> impl Iterator<Item = Result<Op>> + '_ {
        self.oplog
            .range(key(seq.saturating_add(1))..)
            .map(|r| r.map_err(Error::from).and_then(|(_, v)| from_json("oplog", &v)))
    }

    /// Drops oplog entries up to `seq` (every derived index has them).
    pub fn prune_oplog(&self, seq: u64) -> Result<()> {
        let keys: Vec<sled::IVec> = self.oplog.range(..=key(seq)).keys().collect::<std::result::Result<_, _>>()?;
        for k in keys {
            self.oplog.remove(k)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// Bytes on disk (sled's estimate).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Makes every applied change durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// sled lets go of its file lock when the last of its background threads drops the database,
/// which can be a moment after the handle itself is dropped: a reopen in the same process waits
/// for that (at most a few seconds) instead of failing. Another process holding a collection is
/// refused earlier, by the collection's own lock.
fn wait_for_release(path: &Path) {
    let Ok(file) = std::fs::File::open(path.join("db")) else { return };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        if std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = file.unlock();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> DocRecord {
        DocRecord {
            id: id.into(),
            title: "t".into(),
            source: "s".into(),
            metadata: Default::default(),
            content_hash: "h".into(),
            chunk_keys: vec![],
            seq: 0,
        }
    }

    fn chunk(id: &str, n: u32) -> Chunk {
        Chunk { doc_id: id.into(), ordinal: n, text: format!("c{n}"), start: 0, end: 2, heading: None, page: None }
    }

    #[test]
    fn changes_from_an_external_log_record_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.source_seq().unwrap(), 0);
        let up = Change::Upsert { doc: rec("a"), chunks: vec![chunk("a", 0)], vectors: vec![vec![0.5; 3]] };
        // A log entry is a change as JSON: it round-trips.
        let json = serde_json::to_string(&up).unwrap();
        assert!(json.contains("\"op\":\"upsert\""), "{json}");
        assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), up);
        s.apply_from(&[up], 7).unwrap();
        assert_eq!((s.source_seq().unwrap(), s.seq().unwrap()), (7, 1));
        // A delete of an absent document writes no oplog entry but still advances the position.
        s.apply_from(&[Change::Delete { doc_id: "zz".into() }], 9).unwrap();
        assert_eq!((s.source_seq().unwrap(), s.seq().unwrap()), (9, 1));
        // Plain applies leave it alone; it survives a reopen.
        s.apply(&[Change::Delete { doc_id: "a".into() }]).unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!((s.source_seq().unwrap(), s.seq().unwrap(), s.doc_count()), (9, 2, 0));
    }

    #[test]
    fn upsert_replace_delete_keep_the_oplog() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let up = |n: u32| Change::Upsert {
            doc: rec("a"),
            chunks: (0..n).map(|i| chunk("a", i)).collect(),
            vectors: (0..n).map(|i| vec![i as f32; 3]).collect(),
        };
        let ops = s.apply(&[up(2)]).unwrap();
        assert_eq!(ops[0].added, vec![1, 2]);
        let ops = s.apply(&[up(1)]).unwrap();
        assert_eq!((ops[0].added.clone(), ops[0].removed.clone()), (vec![3], vec![1, 2]));
        assert_eq!(s.chunk_count(), 1);
        assert_eq!(s.get_vector(3).unwrap().unwrap(), vec![0.0; 3]);
        assert_eq!(s.get_doc("a").unwrap().unwrap().seq, 2);
        let ops = s.apply(&[Change::Delete { doc_id: "a".into() }, Change::Delete { doc_id: "zz".into() }]).unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(s.doc_count(), 0);
        assert_eq!(s.chunk_count(), 0);
        assert_eq!(s.seq().unwrap(), 3);
        let all: Vec<Op> = s.ops_after(1).collect::<Result<_>>().unwrap();
        assert_eq!(all.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![2, 3]);
        s.prune_oplog(2).unwrap();
        assert_eq!(s.ops_after(0).count(), 1);
    }
}
