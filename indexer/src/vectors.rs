//! The vector index: an hnsw_rs graph over chunk vectors (dot product on unit vectors = cosine),
//! with chunk keys as point ids.
//!
//! hnsw_rs has no delete: a removed chunk stays in the graph as a tombstone and searches skip
//! it through a filter (the caller's liveness check); `compact` rebuilds the graph without them.
//! The graph is dumped to `hnsw/g-<seq>/` and `hnsw/CURRENT` (written atomically) names the dump
//! and the sled sequence number it includes; the oplog after that is replayed on open.

use crate::store::{Op, Store};
use crate::{Error, Result};
use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::{DistDot, FilterT, Hnsw};
use serde::{Deserialize, Serialize};
use sousuo_common::fs::atomic_write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Graph parameters.
#[derive(Debug, Clone, Copy)]
pub struct HnswParams {
    /// Links per node.
    pub m: usize,
    /// Search breadth while building.
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, ef_construction: 200 }
    }
}

type Graph<'a> = Hnsw<'a, f32, DistDot>;

self_cell::self_cell!(
    /// A graph reloaded from a dump borrows its loader: keep both in one owner.
    struct Loaded {
        owner: HnswIo,
        #[not_covariant]
        dependent: Graph,
    }
);

enum Holder {
    Fresh(Box<Graph<'static>>),
    Loaded(Loaded),
}

impl Holder {
    fn with<R>(&self, f: impl FnOnce(&Graph<'_>) -> R) -> R {
        match self {
            Holder::Fresh(g) => f(g),
            Holder::Loaded(l) => l.with_dependent(|_, g| f(g)),
        }
    }
    fn with_mut<R>(&mut self, f: impl FnOnce(&mut Graph<'_>) -> R) -> R {
        match self {
            Holder::Fresh(g) => f(g),
            Holder::Loaded(l) => l.with_dependent_mut(|_, g| f(g)),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Current {
    dir: String,
    seq: u64,
    points: usize,
}

/// A vector found by HNSW: chunk key and cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorHit {
    /// The chunk's key in the store.
    pub chunk_key: u64,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// The HNSW graph of a collection's vectors, derived from the store.
pub struct VectorIndex {
    dir: PathBuf,
    dim: usize,
    params: HnswParams,
    graph: Holder,
    /// The sled sequence number of the last operation inserted.
    seq: AtomicU64,
    /// The sequence number included in the dump on disk.
    dumped_seq: AtomicU64,
    points: AtomicUsize,
}

struct Live<'a, F: Fn(u64) -> bool>(&'a F);

impl<F: Fn(u64) -> bool> FilterT for Live<'_, F> {
    fn hnsw_filter(&self, id: &usize) -> bool {
        (self.0)(*id as u64)
    }
}

impl VectorIndex {
    /// Opens the dump in `dir` if there is one, else starts an empty graph.
    pub fn open(dir: &Path, dim: usize, params: HnswParams) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let current: Option<Current> = match std::fs::read(dir.join("CURRENT")) {
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(_) => None,
        };
        let (graph, seq, points) = match current {
            Some(c) if dir.join(&c.dir).is_dir() => {
                let io = HnswIo::new(&dir.join(&c.dir), "graph");
                let loaded = Loaded::try_new(io, |io| {
                    io.load_hnsw_with_dist(DistDot).map_err(|e| Error::Vectors(format!("cannot reload the graph: {e}")))
                })?;
                (Holder::Loaded(loaded), c.seq, c.points)
            }
            _ => (Holder::Fresh(Box::new(new_graph(params, 10_000))), 0, 0),
        };
        let mut index = VectorIndex {
            dir: dir.to_path_buf(),
            dim,
            params,
            graph,
            seq: AtomicU64::new(seq),
            dumped_seq: AtomicU64::new(seq),
            points: AtomicUsize::new(points),
        };
        index.graph.with_mut(|g| g.set_searching_mode(true));
        index.remove_stale_dumps();
        Ok(index)
    }

    /// The sequence number of the last operation in the graph.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Points in the graph, tombstones included.
    pub fn points(&self) -> usize {
        self.points.load(Ordering::SeqCst)
    }

    /// Inserts an operation's added chunks (those still in sled).
    pub fn apply(&self, ops: &[Op], store: &Store) -> Result<()> {
        let mut data: Vec<(Vec<f32>, usize)> = Vec::new();
        for op in ops {
            for &k in &op.added {
                if let Some(v) = store.get_vector(k)? {
                    if v.len() != self.dim {
                        return Err(Error::DimensionMismatch { expected: self.dim, got: v.len() });
                    }
                    data.push((v, k as usize));
                }
            }
        }
        let refs: Vec<(&Vec<f32>, usize)> = data.iter().map(|(v, k)| (v, *k)).collect();
        if !refs.is_empty() {
            self.graph.with(|g| g.parallel_insert(&refs));
            self.points.fetch_add(refs.len(), Ordering::SeqCst);
        }
        if let Some(last) = ops.last() {
            self.seq.fetch_max(last.seq, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The `k` nearest live chunks to `query`; `live: None` when every point of the graph is
    /// live and wanted (the walk then skips the filter).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        live: Option<&dyn Fn(u64) -> bool>,
    ) -> Result<Vec<VectorHit>> {
        if query.len() != self.dim {
            return Err(Error::DimensionMismatch { expected: self.dim, got: query.len() });
        }
        if self.points() == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let found = match live {
            Some(live) => {
                let filter = Live(&live);
                self.graph.with(|g| g.search_filter(query, k, ef.max(k), Some(&filter)))
            }
            None => self.graph.with(|g| g.search_filter(query, k, ef.max(k), None)),
        };
        Ok(found.into_iter().map(|n| VectorHit { chunk_key: n.d_id as u64, score: 1.0 - n.distance }).collect())
    }

    /// Every point id in the graph (tombstones included), for consistency checks.
    pub fn all_ids(&self) -> Vec<u64> {
        if self.points() == 0 {
            return Vec::new(); // hnsw_rs's point iterator panics on an empty graph
        }
        self.graph.with(|g| {
            let mut ids = Vec::new();
            for p in g.get_point_indexation().into_iter() {
                ids.push(p.get_origin_id() as u64);
            }
            ids
        })
    }

    /// Writes the graph to disk if it changed since the last dump.
    pub fn persist(&self) -> Result<()> {
        let seq = self.seq();
        if seq == self.dumped_seq.load(Ordering::SeqCst) || self.points() == 0 {
            return Ok(());
        }
        let name = format!("g-{seq}");
        let target = self.dir.join(&name);
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        }
        std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        self.graph
            .with(|g| g.file_dump(&target, "graph"))
            .map_err(|e| Error::Vectors(format!("cannot write the graph to {}: {e}", target.display())))?;
        sync_dir(&target)?;
        let current = Current { dir: name, seq, points: self.points() };
        atomic_write(&self.dir.join("CURRENT"), &serde_json::to_vec(&current).unwrap_or_default())?;
        self.dumped_seq.store(seq, Ordering::SeqCst);
        self.remove_stale_dumps();
        Ok(())
    }

    /// Replaces the graph with one built from the live vectors only (drops tombstones).
    pub fn rebuild(&mut self, store: &Store) -> Result<()> {
        let vectors: Vec<(u64, Vec<f32>)> = store.vectors().collect::<Result<_>>()?;
        let mut graph = new_graph(self.params, vectors.len().max(1000));
        let refs: Vec<(&Vec<f32>, usize)> = vectors.iter().map(|(k, v)| (v, *k as usize)).collect();
        graph.parallel_insert(&refs);
        graph.set_searching_mode(true);
        self.graph = Holder::Fresh(Box::new(graph));
        self.points.store(refs.len(), Ordering::SeqCst);
        self.seq.store(store.seq()?, Ordering::SeqCst);
        self.dumped_seq.store(u64::MAX, Ordering::SeqCst);
        self.persist()
    }

    fn remove_stale_dumps(&self) {
        let keep = std::fs::read(self.dir.join("CURRENT"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Current>(&b).ok())
            .map(|c| c.dir);
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("g-") && Some(&name) != keep.as_ref() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A graph over plain vectors in memory (no store, no dump), built the way collections build
/// theirs: for benchmarks of the graph itself (`sousuo bench hnsw`).
pub struct MemoryGraph(Box<Graph<'static>>);

impl MemoryGraph {
    /// Inserts `vectors` (unit length, for the dot product) with ids 0.. in parallel.
    pub fn build(vectors: &[Vec<f32>], params: HnswParams) -> Self {
        let mut graph = new_graph(params, vectors.len().max(1000));
        let refs: Vec<(&Vec<f32>, usize)> = vectors.iter().enumerate().map(|(i, v)| (v, i)).collect();
        graph.parallel_insert(&refs);
        graph.set_searching_mode(true);
        MemoryGraph(Box::new(graph))
    }

    /// The ids of the `k` nearest vectors to `query`, searching `ef` wide.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<usize> {
        self.0.search_filter(query, k, ef.max(k), None).into_iter().map(|n| n.d_id).collect()
    }
}

fn new_graph(params: HnswParams, expected: usize) -> Graph<'static> {
    Hnsw::new(params.m.min(256), expected, 16, params.ef_construction, DistDot)
}

/// Makes the graph's files durable before `CURRENT` names them.
fn sync_dir(path: &Path) -> Result<()> {
    for e in std::fs::read_dir(path).map_err(|e| Error::io(path, e))?.flatten() {
        std::fs::File::open(e.path()).and_then(|f| f.sync_all()).map_err(|err| Error::io(e.path(), err))?;
    }
    Ok(sousuo_common::fs::sync_dir(path)?)
}
