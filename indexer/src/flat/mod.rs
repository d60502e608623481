//! The searching copy of the HNSW graph: hnsw_rs builds the graph (and keeps it for inserts);
//! queries walk this flat copy instead, made when the graph is persisted.
//!
//! - Nodes are dense `u32` indexes; layer 0's links are one `n x m0` array padded with
//!   [`NONE`], the few upper-layer nodes' links sit in small per-layer tables.
//! - The walk scores int8 copies of the vectors (one symmetric scale per vector:
//!   `kernels::dot8`), a quarter of the bytes f32 would read, and the `ef` candidates it keeps
//!   are rescored exactly in f32 from [`Rows`] (a memory map of the persisted vectors), so the
//!   order returned is the exact cosine order of what the walk found.
//! - The walk enters layer 0 at the `ef` nodes a beam over layer 1 keeps, not at the one
//!   node a greedy descent reaches, and every layer-0 node has incoming links ([`fill`]): on
//!   data made of clusters of near-duplicates the two together take recall@10 at ef 256 from
//!   0.72 to 0.99 (100,000 points in clusters of 100, docs/benchmarks.md).
//! - Per-thread scratch (visited marks with an epoch, both heaps, the quantised query, the
//!   entries) is reused from query to query: a search allocates only its answer.

mod fill;
mod io;

use sousuo_kernels::dot8::{dot_i8, quantize_i8};
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

/// Padding in link tables.
pub(crate) const NONE: u32 = u32::MAX;

/// The f32 vectors for rescoring: in memory (a graph just built) or mapped from the file.
pub(crate) enum Rows {
    Owned(Vec<f32>),
    Mapped(sousuo_kernels::mapped::MappedF32),
}

impl Rows {
    fn all(&self) -> &[f32] {
        match self {
            Rows::Owned(v) => v,
            Rows::Mapped(m) => m.as_slice(),
        }
    }
}

/// One upper layer: the links of the nodes that reach it.
pub(crate) struct UpperLayer {
    pub(crate) slot: HashMap<u32, u32>,
    pub(crate) stride: usize,
    pub(crate) links: Vec<u32>,
}

impl UpperLayer {
    fn links(&self, node: u32) -> &[u32] {
        match self.slot.get(&node) {
            Some(&s) => &self.links[s as usize * self.stride..(s as usize + 1) * self.stride],
            None => &[],
        }
    }
}

/// The graph laid out flat for searching, with its int8 and f32 vectors.
pub struct FlatGraph {
    pub(crate) dim: usize,
    /// The sled sequence number of the last operation the graph includes.
    pub(crate) seq: u64,
    /// Node -> the point's id (chunk key).
    pub(crate) ids: Vec<u64>,
    pub(crate) m0: usize,
    pub(crate) links0: Vec<u32>,
    /// Layers 1.. (index 0 is layer 1).
    pub(crate) upper: Vec<UpperLayer>,
    pub(crate) entry: u32,
    pub(crate) codes: Vec<i8>,
    pub(crate) scales: Vec<f32>,
    pub(crate) rows: Rows,
    /// Point id -> node ([`NONE`] where absent): ids are chunk keys, allocated in sequence, so
    /// a table (4 bytes per key) serves; empty when the ids are too sparse for one.
    pub(crate) node_of: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Cand(f32, u32);

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
    }
}

#[derive(Default)]
struct Scratch {
    marks: Vec<u32>,
    epoch: u32,
    query: Vec<i8>,
    cand: BinaryHeap<Cand>,
    found: BinaryHeap<Reverse<Cand>>,
    /// Where the walk enters layer 0.
    entries: Vec<Cand>,
}

impl Scratch {
    /// Starts a walk over `n` nodes: every mark is stale after this.
    fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
        self.cand.clear();
        self.found.clear();
    }

    /// Marks `node` visited; false if it already was.
    fn visit(&mut self, node: u32) -> bool {
        let m = &mut self.marks[node as usize];
        if *m == self.epoch {
            return false;
        }
        *m = self.epoch;
        true
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl FlatGraph {
    /// Nodes (tombstones included).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The sled sequence number the graph includes.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Every point id (tombstones included).
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The table from point id to node, or an empty one when the ids are sparse (more than 16
    /// slots per node would be wasted).
    pub(crate) fn node_table(ids: &[u64]) -> Vec<u32> {
        let Some(&max) = ids.iter().max() else { return Vec::new() };
        if max > 16 * ids.len() as u64 + 1024 {
            return Vec::new();
        }
        let mut table = vec![NONE; max as usize + 1];
        for (node, &id) in ids.iter().enumerate() {
            table[id as usize] = node as u32;
        }
        table
    }

    /// The f32 vector of point `id`, if the graph holds it (and its id table was built).
    pub fn vector(&self, id: u64) -> Option<&[f32]> {
        let node = *self.node_of.get(usize::try_from(id).ok()?)?;
        (node != NONE).then(|| self.row(node))
    }

    /// A node's f32 vector.
    fn row(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dim;
        self.rows.all().get(start..start + self.dim).unwrap_or(&[])
    }

    fn score8(&self, query: &[i8], scale: f32, node: u32) -> f32 {
        let start = node as usize * self.dim;
        dot_i8(query, &self.codes[start..start + self.dim]) as f32 * scale * self.scales[node as usize]
    }

    /// The `k` best of the `ef` nodes nearest to `query` (unit length) that `keep` accepts,
    /// as (point id, exact cosine), best first. Rejected nodes are walked through, not returned.
    pub fn search(&self, query: &[f32], k: usize, ef: usize, keep: Option<&dyn Fn(u64) -> bool>) -> Vec<(u64, f32)> {
        if self.ids.is_empty() || k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let ef = ef.max(k);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            s.start(self.ids.len());
            s.query.resize(self.dim, 0);
            let qscale = quantize_i8(query, &mut s.query);
            let q = std::mem::take(&mut s.query);
            if self.upper.is_empty() {
                let entry = self.descend(&q, qscale, 0);
                s.entries.clear();
                s.entries.push(entry);
            } else {
                self.beam_layer1(s, &q, qscale, ef);
            }
            s.start(self.ids.len());
            self.walk_layer0(s, &q, qscale, ef, keep);
            s.query = q;
            let mut hits: Vec<(u64, f32)> = s
                .found
                .drain()
                .map(|Reverse(Cand(_, node))| (self.ids[node as usize], sousuo_kernels::dot(query, self.row(node))))
                .collect();
            hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            hits.truncate(k);
            hits
        })
    }

    /// Greedy descent through the upper layers down to layer `stop + 1`: the closest node found.
    fn descend(&self, q: &[i8], qscale: f32, stop: usize) -> Cand {
        let mut best = Cand(self.score8(q, qscale, self.entry), self.entry);
        for layer in self.upper.iter().skip(stop).rev() {
            loop {
                let mut moved = false;
                for &n in layer.links(best.1) {
                    if n == NONE {
                        break;
                    }
                    let s = self.score8(q, qscale, n);
                    if s > best.0 {
                        best = Cand(s, n);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        best
    }

    /// A best-first walk of layer 1, `width` wide, from the greedy descent's node on layer 2:
    /// the nodes it keeps go to `s.entries`, where the walk of layer 0 starts. One entry
    /// (hnsw_rs's descent) lands in one region; on clustered data a query's true neighbours
    /// sit in two or three clusters of near-duplicates with few links between them, and a walk
    /// from one cluster rarely finds the next (1,003,400 points in clusters of 100, ef 200:
    /// recall@10 0.97-0.98 from ef/2 entries, 0.99 from ef; docs/benchmarks.md).
    fn beam_layer1(&self, s: &mut Scratch, q: &[i8], qscale: f32, width: usize) {
        let entry = self.descend(q, qscale, 1);
        let layer = &self.upper[0];
        s.entries.clear();
        s.entries.push(entry);
        self.walk(s, q, qscale, width, |n| layer.links(n), None);
        s.entries.clear();
        s.entries.extend(s.found.drain().map(|Reverse(c)| c));
    }

    /// The best-first walk of layer 0 keeping the `ef` best accepted nodes in `s.found`.
    fn walk_layer0(&self, s: &mut Scratch, q: &[i8], qscale: f32, ef: usize, keep: Option<&dyn Fn(u64) -> bool>) {
        let m0 = self.m0;
        self.walk(s, q, qscale, ef, |n| &self.links0[n as usize * m0..(n as usize + 1) * m0], keep);
    }

    /// A best-first walk of one layer (its links by `links`) from every node of `s.entries`,
    /// keeping the `width` best nodes `keep` accepts in `s.found`.
    fn walk<'a>(
        &self,
        s: &mut Scratch,
        q: &[i8],
        qscale: f32,
        width: usize,
        links: impl Fn(u32) -> &'a [u32],
        keep: Option<&dyn Fn(u64) -> bool>,
    ) {
        let accepts = |node: u32| keep.is_none_or(|f| f(self.ids[node as usize]));
        for i in 0..s.entries.len() {
            let entry = s.entries[i];
            s.visit(entry.1);
            s.cand.push(entry);
            if accepts(entry.1) {
                s.found.push(Reverse(entry));
                if s.found.len() > width {
                    s.found.pop();
                }
            }
        }
        while let Some(c) = s.cand.pop() {
            let worst = s.found.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
            if s.found.len() >= width && c.0 < worst {
                break;
            }
            for &n in links(c.1) {
                if n == NONE {
                    break;
                }
                if !s.visit(n) {
                    continue;
                }
                let score = self.score8(q, qscale, n);
                let worst = s.found.peek().map_or(f32::NEG_INFINITY, |r| r.0 .0);
                if s.found.len() < width || score > worst {
                    s.cand.push(Cand(score, n));
                    if accepts(n) {
                        s.found.push(Reverse(Cand(score, n)));
                        if s.found.len() > width {
                            s.found.pop();
                        }
                    }
                }
            }
        }
        s.cand.clear();
    }
}

#[cfg(test)]
mod tests;
