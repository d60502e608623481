//! The vector index: an hnsw_rs graph over chunk vectors (dot product on unit vectors = cosine),
//! with chunk keys as point ids, and its flat searching copy ([`FlatGraph`]).
//!
//! hnsw_rs has no delete: a removed chunk stays in the graph as a tombstone and searches skip
//! it through a filter (the caller's liveness check); `compact` rebuilds the graph without them.
//! The graph is dumped to `hnsw/g-<seq>/`, its flat copy to `hnsw/f-<seq>/`, and `hnsw/CURRENT`
//! (written atomically) names both and the sled sequence number they include; the oplog after
//! that is replayed on open.
//!
//! Opening loads the flat copy only (its vectors mapped, not read): hnsw_rs's graph, which
//! holds every vector and an `Arc` per link, is loaded from its dump on the first insert.
//! Queries walk the flat copy while it holds every point, else (inserts not yet persisted)
//! hnsw_rs's graph; each persist makes a new flat copy.

use crate::flat::FlatGraph;
use crate::store::{Op, Store};
use crate::{Error, Result};
use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::{DistDot, FilterT, Hnsw};
use serde::{Deserialize, Serialize};
use sousuo_common::fs::atomic_write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Graph parameters.
#[derive(Debug, Clone, Copy)]
pub struct HnswParams {
    /// Links per node.
    pub m: usize,
    /// Search breadth while building.
    pub ef_construction: usize,
    /// Fill each node's links up to `m` with the candidates the diversity heuristic pruned
    /// (hnsw_rs's `keep_pruned`): denser links inside tight clusters of near-duplicates.
    pub keep_pruned: bool,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, ef_construction: 200, keep_pruned: false }
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
    /// The flat copy's directory (absent in collections written before it existed).
    #[serde(default)]
    flat: Option<String>,
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
    /// hnsw_rs's graph, for inserts; `None` until the first insert after opening a dump.
    graph: RwLock<Option<Holder>>,
    /// The searching copy: current while it holds `points` points.
    flat: RwLock<Option<Arc<FlatGraph>>>,
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
    /// Opens the graph in `dir` if there is one (its flat copy; a collection without one, or
    /// with a damaged one, gets it made from the dump), else starts an empty graph.
    pub fn open(dir: &Path, dim: usize, params: HnswParams) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let current = read_current(dir).filter(|c| dir.join(&c.dir).is_dir());
        let (seq, points) = current.as_ref().map_or((0, 0), |c| (c.seq, c.points));
        let index = VectorIndex {
            dir: dir.to_path_buf(),
            dim,
            params,
            graph: RwLock::new(None),
            flat: RwLock::new(None),
            seq: AtomicU64::new(seq),
            dumped_seq: AtomicU64::new(seq),
            points: AtomicUsize::new(points),
        };
        let Some(c) = current else {
            *index.graph.write().map_err(|_| poisoned())? = Some(Holder::Fresh(Box::new(new_graph(params, 10_000))));
            return Ok(index);
        };
        let loaded = c.flat.as_ref().map(|f| FlatGraph::load(&dir.join(f), dim));
        match loaded {
            Some(Ok(flat)) if flat.len() == c.points => {
                *index.flat.write().map_err(|_| poisoned())? = Some(Arc::new(flat))
            }
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!("{e}; making it again from the graph's dump");
                }
                index.ensure_graph()?;
                index.write_flat(&c.dir)?;
            }
        }
        index.remove_stale_dumps();
        Ok(index)
    }

    /// Loads hnsw_rs's graph from the dump `CURRENT` names, if not loaded yet.
    fn ensure_graph(&self) -> Result<()> {
        if self.graph.read().map_err(|_| poisoned())?.is_some() {
            return Ok(());
        }
        let mut slot = self.graph.write().map_err(|_| poisoned())?;
        if slot.is_some() {
            return Ok(());
        }
        let mut holder = match read_current(&self.dir).filter(|c| self.dir.join(&c.dir).is_dir()) {
            Some(c) => {
                let io = HnswIo::new(&self.dir.join(&c.dir), "graph");
                Holder::Loaded(Loaded::try_new(io, |io| {
                    io.load_hnsw_with_dist(DistDot).map_err(|e| Error::Vectors(format!("cannot reload the graph: {e}")))
                })?)
            }
            None => Holder::Fresh(Box::new(new_graph(self.params, 10_000))),
        };
        holder.with_mut(|g| g.set_searching_mode(true));
        *slot = Some(holder);
        Ok(())
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
        if !data.is_empty() {
            self.ensure_graph()?;
            let graph = self.graph.read().map_err(|_| poisoned())?;
            if let Some(g) = graph.as_ref() {
                g.with(|g| insert_shuffled(g, data.iter().map(|(v, k)| (v, *k)).collect()));
            }
            self.points.fetch_add(data.len(), Ordering::SeqCst);
        }
        if let Some(last) = ops.last() {
            self.seq.fetch_max(last.seq, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The flat copy, if it holds every point.
    fn current_flat(&self) -> Result<Option<Arc<FlatGraph>>> {
        let flat = self.flat.read().map_err(|_| poisoned())?.clone();
        Ok(flat.filter(|f| f.len() == self.points()))
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
        if let Some(flat) = self.current_flat()? {
            let found = flat.search(query, k, ef, live);
            return Ok(found.into_iter().map(|(chunk_key, score)| VectorHit { chunk_key, score }).collect());
        }
        let graph = self.graph.read().map_err(|_| poisoned())?;
        let Some(graph) = graph.as_ref() else { return Ok(Vec::new()) };
        let found = match live {
            Some(live) => {
                let filter = Live(&live);
                graph.with(|g| g.search_filter(query, k, ef.max(k), Some(&filter)))
            }
            None => graph.with(|g| g.search_filter(query, k, ef.max(k), None)),
        };
        Ok(found.into_iter().map(|n| VectorHit { chunk_key: n.d_id as u64, score: 1.0 - n.distance }).collect())
    }

    /// The vectors of those `keys` the flat copy holds, appended to `out` with their keys to
    /// `present`; false (nothing appended) when the copy is stale or has no id table, so the
    /// caller reads the store instead.
    pub fn gather(&self, keys: &[u64], present: &mut Vec<u64>, out: &mut Vec<f32>) -> Result<bool> {
        let Some(flat) = self.current_flat()?.filter(|f| !f.node_of.is_empty()) else { return Ok(false) };
        for &k in keys {
            if let Some(v) = flat.vector(k) {
                present.push(k);
                out.extend_from_slice(v);
            }
        }
        Ok(true)
    }

    /// Every point id in the graph (tombstones included), for consistency checks.
    pub fn all_ids(&self) -> Result<Vec<u64>> {
        if self.points() == 0 {
            return Ok(Vec::new()); // hnsw_rs's point iterator panics on an empty graph
        }
        if let Some(flat) = self.current_flat()? {
            return Ok(flat.ids().to_vec());
        }
        let graph = self.graph.read().map_err(|_| poisoned())?;
        Ok(graph.as_ref().map_or_else(Vec::new, |g| {
            g.with(|g| g.get_point_indexation().into_iter().map(|p| p.get_origin_id() as u64).collect())
        }))
    }

    /// Writes the graph and its flat copy to disk if they changed since the last dump.
    pub fn persist(&self) -> Result<()> {
        let seq = self.seq();
        if seq == self.dumped_seq.load(Ordering::SeqCst) || self.points() == 0 {
            return Ok(());
        }
        if self.current_flat()?.is_some() {
            // Only deletions since: the files hold every point already; record the sequence.
            if let Some(c) = read_current(&self.dir) {
                return self.write_current(Current { seq, points: self.points(), ..c });
            }
        }
        let name = format!("g-{seq}");
        let target = self.dir.join(&name);
        fresh_dir(&target)?;
        let graph = self.graph.read().map_err(|_| poisoned())?;
        let Some(graph) = graph.as_ref() else { return Ok(()) };
        graph
            .with(|g| g.file_dump(&target, "graph"))
            .map_err(|e| Error::Vectors(format!("cannot write the graph to {}: {e}", target.display())))?;
        sync_dir(&target)?;
        self.write_flat(&name)
    }

    /// Makes the flat copy of the loaded graph, writes it to `f-<seq>/`, maps its vectors and
    /// records both directories in `CURRENT`.
    fn write_flat(&self, graph_dir: &str) -> Result<()> {
        let seq = self.seq();
        let name = format!("f-{seq}");
        let target = self.dir.join(&name);
        fresh_dir(&target)?;
        let mut flat = {
            let graph = self.graph.read().map_err(|_| poisoned())?;
            let Some(graph) = graph.as_ref() else { return Ok(()) };
            graph.with(|g| FlatGraph::from_hnsw(g, self.dim, seq))
        };
        flat.save(&target)?;
        sousuo_common::fs::sync_dir(&target)?;
        flat.map_rows(&target)?;
        let points = flat.len();
        *self.flat.write().map_err(|_| poisoned())? = Some(Arc::new(flat));
        self.write_current(Current { dir: graph_dir.to_string(), seq, points, flat: Some(name) })
    }

    fn write_current(&self, current: Current) -> Result<()> {
        let seq = current.seq;
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
        let count = refs.len();
        insert_shuffled(&graph, refs);
        graph.set_searching_mode(true);
        *self.graph.write().map_err(|_| poisoned())? = Some(Holder::Fresh(Box::new(graph)));
        *self.flat.write().map_err(|_| poisoned())? = None;
        self.points.store(count, Ordering::SeqCst);
        self.seq.store(store.seq()?, Ordering::SeqCst);
        self.dumped_seq.store(u64::MAX, Ordering::SeqCst);
        self.persist()
    }

    fn remove_stale_dumps(&self) {
        let keep: Vec<String> =
            read_current(&self.dir).map(|c| [Some(c.dir), c.flat].into_iter().flatten().collect()).unwrap_or_default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.starts_with("g-") || name.starts_with("f-")) && !keep.contains(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn read_current(dir: &Path) -> Option<Current> {
    std::fs::read(dir.join("CURRENT")).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// An empty directory at `path` (whatever was there removed).
fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
    }
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))
}

fn poisoned() -> Error {
    Error::Vectors("the vector index lock is poisoned (a thread panicked while holding it)".into())
}

/// A graph over plain vectors in memory (no store, no dump), built the way collections build
/// theirs, with its flat copy: for benchmarks of the graph itself (`sousuo bench hnsw`).
pub struct MemoryGraph {
    graph: Box<Graph<'static>>,
    flat: FlatGraph,
}

impl MemoryGraph {
    /// Inserts `vectors` (unit length, for the dot product) with ids 0.. in parallel.
    pub fn build(vectors: &[Vec<f32>], params: HnswParams) -> Self {
        let mut graph = new_graph(params, vectors.len().max(1000));
        insert_shuffled(&graph, vectors.iter().enumerate().map(|(i, v)| (v, i)).collect());
        graph.set_searching_mode(true);
        let flat = FlatGraph::from_hnsw(&graph, vectors.first().map_or(0, Vec::len), 0);
        MemoryGraph { graph: Box::new(graph), flat }
    }

    /// The ids of the `k` nearest vectors to `query`, searching `ef` wide: the walk queries
    /// take (the flat copy, int8 scores, f32 rescoring).
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<usize> {
        self.flat.search(query, k, ef, None).into_iter().map(|(id, _)| id as usize).collect()
    }

    /// The same through hnsw_rs's own search (f32 throughout), for comparison.
    pub fn search_hnsw_rs(&self, query: &[f32], k: usize, ef: usize) -> Vec<usize> {
        self.graph.search_filter(query, k, ef.max(k), None).into_iter().map(|n| n.d_id).collect()
    }
}

/// Inserts a batch in a seeded random order, as faiss does "to get rid of dataset order bias":
/// points arriving in sweeps (every document, then a variant of every document, ...) fill
/// the first members' lists with their later near-duplicates in hnsw_rs, whose reverse links
/// drop the farthest link on overflow, and cut the cluster's ways out (recall@10 of clusters
/// of 100 near-duplicates at ef 128: 0.49 in sweep order, 0.66 shuffled; docs/benchmarks.md).
fn insert_shuffled(g: &Graph<'_>, mut refs: Vec<(&Vec<f32>, usize)>) {
    use rand::{seq::SliceRandom, SeedableRng};
    let seed = refs.first().map_or(0, |r| r.1 as u64) ^ refs.len() as u64;
    refs.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    g.parallel_insert(&refs);
}

fn new_graph(params: HnswParams, expected: usize) -> Graph<'static> {
    let mut g = Hnsw::new(params.m.min(256), expected, 16, params.ef_construction, DistDot);
    g.set_keeping_pruned(params.keep_pruned);
    g
}

/// Makes the graph's files durable before `CURRENT` names them.
fn sync_dir(path: &Path) -> Result<()> {
    for e in std::fs::read_dir(path).map_err(|e| Error::io(path, e))?.flatten() {
        std::fs::File::open(e.path()).and_then(|f| f.sync_all()).map_err(|err| Error::io(e.path(), err))?;
    }
    Ok(sousuo_common::fs::sync_dir(path)?)
}
