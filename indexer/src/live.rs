//! The live chunks of a collection in memory: chunk key -> its document. Built from the
//! store on open and kept current by the write path, so a query never reads sled to check a
//! graph point's liveness or to find a hit's document.
//!
//! Chunk keys are allocated in sequence by the store (from 1), so the map is a table indexed
//! by key holding a 4-byte document slot (`NONE` for a key that is not live): a graph walk's
//! liveness check is one bounds-checked load, and the table costs 4 bytes per key ever
//! allocated. Document ids sit once each in a slot table, reused when a document's last chunk
//! leaves.

use crate::fields::{DocSet, FieldIndex, FieldView};
use crate::store::{Op, Store};
use crate::Result;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// A document's metadata.
pub(crate) type Metadata = BTreeMap<String, serde_json::Value>;

const NONE: u32 = u32::MAX;

/// The live chunks and their documents.
#[derive(Default)]
pub(crate) struct LiveChunks(RwLock<Table>);

/// The read side of [`LiveChunks`], held for a whole graph walk.
#[derive(Default)]
pub(crate) struct Table {
    /// Chunk key -> document slot, or `NONE`.
    slot_of_key: Vec<u32>,
    /// Slot -> document id, its live chunks (a free slot has 0 and sits in `free`) and its
    /// metadata as JSON (empty for none), kept to take it out of the field index again: a
    /// `Metadata` map cost ~600 bytes per document (a B-tree node) where its JSON costs ~30.
    docs: Vec<(Arc<str>, u32, Box<str>)>,
    slot_of_doc: HashMap<Arc<str>, u32>,
    free: Vec<u32>,
    live: usize,
    /// The documents' filterable fields, and the slots in use.
    fields: FieldIndex,
    used: DocSet,
}

impl Table {
    /// Live chunks.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Whether chunk `key` is live.
    pub(crate) fn contains(&self, key: u64) -> bool {
        self.slot(key).is_some()
    }

    /// Every live chunk's key, ascending.
    pub(crate) fn keys(&self) -> Vec<u64> {
        (0..self.slot_of_key.len() as u64).filter(|&k| self.contains(k)).collect()
    }

    fn slot(&self, key: u64) -> Option<u32> {
        let s = *self.slot_of_key.get(usize::try_from(key).ok()?)?;
        (s != NONE).then_some(s)
    }

    fn insert(&mut self, key: u64, doc: &str, metadata: Option<&Metadata>) {
        let Ok(k) = usize::try_from(key) else { return };
        if self.slot(key).is_some() {
            self.remove(key);
        }
        let slot = match self.slot_of_doc.get(doc) {
            Some(&s) => s,
            None => {
                let id: Arc<str> = Arc::from(doc);
                let meta = metadata.filter(|m| !m.is_empty()).and_then(|m| serde_json::to_string(m).ok());
                let entry = (id.clone(), 0, meta.unwrap_or_default().into_boxed_str());
                let s = match self.free.pop() {
                    Some(s) => {
                        self.docs[s as usize] = entry;
                        s
                    }
                    None => {
                        self.docs.push(entry);
                        (self.docs.len() - 1) as u32
                    }
                };
                self.slot_of_doc.insert(id, s);
                self.fields.add(s, doc, metadata.unwrap_or(&Metadata::new()));
                self.used.insert(s);
                s
            }
        };
        if k >= self.slot_of_key.len() {
            self.slot_of_key.resize(k + 1, NONE);
        }
        self.slot_of_key[k] = slot;
        self.docs[slot as usize].1 += 1;
        self.live += 1;
    }

    fn remove(&mut self, key: u64) {
        let Some(slot) = self.slot(key) else { return };
        self.slot_of_key[key as usize] = NONE;
        self.live -= 1;
        let entry = &mut self.docs[slot as usize];
        entry.1 -= 1;
        if entry.1 == 0 {
            let (id, _, meta) = std::mem::replace(entry, (Arc::from(""), 0, Box::from("")));
            let meta: Metadata =
                if meta.is_empty() { Metadata::new() } else { serde_json::from_str(&meta).unwrap_or_default() };
            self.fields.remove(slot, &id, &meta);
            self.used.remove(slot);
            self.slot_of_doc.remove(&id);
            self.free.push(slot);
        }
    }

    /// The live chunks of the documents `select` picks through the field index.
    pub(crate) fn select(&self, select: impl FnOnce(&FieldView<'_>) -> DocSet) -> HashSet<u64> {
        let view = FieldView { index: &self.fields, all: &self.used, slots: self.docs.len() };
        let set = select(&view);
        self.slot_of_key
            .iter()
            .enumerate()
            .filter(|(_, &s)| s != NONE && set.contains(s))
            .map(|(k, _)| k as u64)
            .collect()
    }

    /// Every live (key, document id), for checks.
    #[cfg(test)]
    fn pairs(&self) -> Vec<(u64, String)> {
        let docs = &self.docs;
        self.slot_of_key
            .iter()
            .enumerate()
            .filter(|(_, &s)| s != NONE)
            .map(|(k, &s)| (k as u64, docs[s as usize].0.to_string()))
            .collect()
    }
}

impl LiveChunks {
    /// Every chunk of every stored document.
    pub(crate) fn build(store: &Store) -> Result<Self> {
        let mut table = Table::default();
        for doc in store.docs() {
            let doc = doc?;
            for key in doc.chunk_keys {
                table.insert(key, &doc.id, Some(&doc.metadata));
            }
        }
        Ok(LiveChunks(RwLock::new(table)))
    }

    /// Follows applied operations: their removed chunks leave, their added ones join (with
    /// their document's metadata from `metadata`, by document id).
    pub(crate) fn apply(&self, ops: &[Op], metadata: &HashMap<String, Metadata>) {
        let Ok(mut table) = self.0.write() else { return };
        for op in ops {
            for &key in &op.removed {
                table.remove(key);
            }
            for &key in &op.added {
                table.insert(key, &op.doc_id, metadata.get(&op.doc_id));
            }
        }
    }

    /// See [`Table::select`]; `None` if the lock is poisoned.
    pub(crate) fn select(&self, select: impl FnOnce(&FieldView<'_>) -> DocSet) -> Option<HashSet<u64>> {
        self.0.read().ok().map(|t| t.select(select))
    }

    /// The document of a live chunk.
    pub(crate) fn doc_of(&self, key: u64) -> Option<Arc<str>> {
        let t = self.0.read().ok()?;
        t.slot(key).map(|s| t.docs[s as usize].0.clone())
    }

    /// Runs `f` with the table read-locked (one lock for a whole graph walk).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Table) -> T) -> Option<T> {
        self.0.read().ok().map(|t| f(&t))
    }

    /// Live chunks.
    pub(crate) fn len(&self) -> usize {
        self.0.read().map(|t| t.live).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, DocRecord};
    use crate::Chunk;

    fn upsert(id: &str, n: u32) -> Change {
        let doc = DocRecord {
            id: id.into(),
            title: "t".into(),
            source: "s".into(),
            metadata: Default::default(),
            content_hash: format!("h{n}"),
            chunk_keys: vec![],
            seq: 0,
        };
        let chunks = (0..n)
            .map(|i| Chunk {
                doc_id: id.into(),
                ordinal: i,
                text: format!("c{i}"),
                start: 0,
                end: 2,
                heading: None,
                page: None,
            })
            .collect();
        Change::Upsert { doc, chunks, vectors: (0..n).map(|i| vec![i as f32; 3]).collect() }
    }

    /// The map kept by the write path equals the one built from the store, after every step.
    #[test]
    fn follows_the_store_through_upserts_replacements_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = LiveChunks::default();
        let steps = vec![
            vec![upsert("a", 2), upsert("b", 3)],
            vec![upsert("a", 1)],
            vec![Change::Delete { doc_id: "b".into() }, upsert("c", 2)],
            vec![Change::Delete { doc_id: "missing".into() }],
        ];
        for changes in steps {
            live.apply(&store.apply(&changes).unwrap(), &HashMap::new());
            let built = LiveChunks::build(&store).unwrap();
            let snapshot = |l: &LiveChunks| {
                let mut v: Vec<(u64, String)> = l.with(Table::pairs).unwrap();
                v.sort();
                v
            };
            assert_eq!(snapshot(&live), snapshot(&built));
            assert_eq!(live.len(), store.chunk_count());
        }
        assert_eq!(live.doc_of(store.get_doc("c").unwrap().unwrap().chunk_keys[0]).as_deref(), Some("c"));
    }
}
