//! The live chunks of a collection in memory: chunk key -> its document's id. Built from the
//! store on open and kept current by the write path, so a query never reads sled to check a
//! graph point's liveness or to find a hit's document.

use crate::store::{Op, Store};
use crate::Result;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Chunk key -> document id, for every chunk the store holds.
#[derive(Default)]
pub(crate) struct LiveChunks(RwLock<HashMap<u64, Arc<str>>>);

impl LiveChunks {
    /// Every chunk of every stored document.
    pub(crate) fn build(store: &Store) -> Result<Self> {
        let mut map = HashMap::new();
        for doc in store.docs() {
            let doc = doc?;
            let id: Arc<str> = Arc::from(doc.id.as_str());
            for key in doc.chunk_keys {
                map.insert(key, id.clone());
            }
        }
        Ok(LiveChunks(RwLock::new(map)))
    }

    /// Follows applied operations: their removed chunks leave, their added ones join.
    pub(crate) fn apply(&self, ops: &[Op]) {
        let Ok(mut map) = self.0.write() else { return };
        for op in ops {
            for key in &op.removed {
                map.remove(key);
            }
            let id: Arc<str> = Arc::from(op.doc_id.as_str());
            for &key in &op.added {
                map.insert(key, id.clone());
            }
        }
    }

    /// The document of a live chunk.
    pub(crate) fn doc_of(&self, key: u64) -> Option<Arc<str>> {
        self.0.read().ok().and_then(|m| m.get(&key).cloned())
    }

    /// Runs `f` with the map read-locked (one lock for a whole graph walk).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&HashMap<u64, Arc<str>>) -> T) -> Option<T> {
        self.0.read().ok().map(|m| f(&m))
    }

    /// Live chunks.
    pub(crate) fn len(&self) -> usize {
        self.0.read().map(|m| m.len()).unwrap_or(0)
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
            live.apply(&store.apply(&changes).unwrap());
            let built = LiveChunks::build(&store).unwrap();
            let snapshot = |l: &LiveChunks| {
                let mut v: Vec<(u64, String)> =
                    l.with(|m| m.iter().map(|(k, d)| (*k, d.to_string())).collect()).unwrap();
                v.sort();
                v
            };
            assert_eq!(snapshot(&live), snapshot(&built));
            assert_eq!(live.len(), store.chunk_count());
        }
        assert_eq!(live.doc_of(store.get_doc("c").unwrap().unwrap().chunk_keys[0]).as_deref(), Some("c"));
    }
}
