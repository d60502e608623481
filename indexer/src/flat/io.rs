//! Making the flat graph from hnsw_rs's, and its files: `meta.json` and arrays in the host's
//! byte order, little-endian (`ids`, `links0`, `upper`, `codes`, `scales`, `vectors`; the last
//! is memory-mapped on load), written and read as whole slices.

#[cfg(target_endian = "big")]
compile_error!("the flat graph files are little-endian arrays read in place");

use super::{FlatGraph, Rows, UpperLayer, NONE};
use crate::{Error, Result};
use hnsw_rs::prelude::{DistDot, Hnsw};
use serde::{Deserialize, Serialize};
use sousuo_kernels::dot8::quantize_i8;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// 2: every layer-0 node given incoming links (`super::fill`); a copy of version 1 is made
/// again from the graph's dump on open.
const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Meta {
    version: u32,
    dim: usize,
    seq: u64,
    nodes: usize,
    m0: usize,
    entry: u32,
    /// Per upper layer: (nodes on it, links per node).
    upper: Vec<(usize, usize)>,
}

impl FlatGraph {
    /// The flat copy of an hnsw_rs graph of `dim`-wide vectors including operation `seq`.
    pub fn from_hnsw(g: &Hnsw<'_, f32, DistDot>, dim: usize, seq: u64) -> FlatGraph {
        let pi = g.get_point_indexation();
        let counts: Vec<usize> = (0..16).map(|l| pi.get_layer_nb_point(l)).collect();
        let offsets: Vec<usize> = counts.iter().scan(0, |acc, c| Some(std::mem::replace(acc, *acc + c))).collect();
        let n: usize = counts.iter().sum();
        let top = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
        let index = |layer: u8, rank: i32| (offsets[layer as usize] + rank.max(0) as usize) as u32;
        let m0 = 2 * g.get_max_nb_connection() as usize;
        let (mut ids, mut links0) = (vec![0u64; n], vec![NONE; n * m0]);
        let (mut codes, mut scales, mut rows) = (vec![0i8; n * dim], vec![0f32; n], vec![0f32; n * dim]);
        let mut uppers: Vec<Vec<(u32, Vec<u32>)>> = vec![Vec::new(); top];
        if n > 0 {
            for p in pi {
                let (level, rank) = (p.get_point_id().0, p.get_point_id().1);
                let node = index(level, rank) as usize;
                ids[node] = p.get_origin_id() as u64;
                let v = p.get_v();
                if v.len() == dim {
                    rows[node * dim..(node + 1) * dim].copy_from_slice(v);
                    scales[node] = quantize_i8(v, &mut codes[node * dim..(node + 1) * dim]);
                }
                for (layer, list) in p.get_neighborhood_id().into_iter().enumerate() {
                    let links = list.iter().map(|nb| index(nb.p_id.0, nb.p_id.1));
                    if layer == 0 {
                        for (slot, l) in links0[node * m0..(node + 1) * m0].iter_mut().zip(links) {
                            *slot = l;
                        }
                    } else if layer <= top && !list.is_empty() {
                        uppers[layer - 1].push((node as u32, links.collect()));
                    }
                }
            }
        }
        let score = |a: u32, b: u32| {
            let (a, b) = (a as usize * dim, b as usize * dim);
            sousuo_kernels::dot(&rows[a..a + dim], &rows[b..b + dim])
        };
        super::fill::ensure_incoming(&mut links0, m0, super::fill::MIN_INCOMING, &score);
        let upper = uppers.into_iter().map(upper_layer).collect();
        let entry = if n > 0 { index(top as u8, 0) } else { 0 };
        let node_of = FlatGraph::node_table(&ids);
        FlatGraph { dim, seq, ids, m0, links0, upper, entry, codes, scales, rows: Rows::Owned(rows), node_of }
    }

    /// Writes the graph's files into `dir` (which must exist), synced.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let meta = Meta {
            version: VERSION,
            dim: self.dim,
            seq: self.seq,
            nodes: self.ids.len(),
            m0: self.m0,
            entry: self.entry,
            upper: self.upper.iter().map(|l| (l.slot.len(), l.stride)).collect(),
        };
        write(dir, "ids", bytemuck::cast_slice(&self.ids))?;
        write(dir, "links0", bytemuck::cast_slice(&self.links0))?;
        let upper: Vec<u32> = self
            .upper
            .iter()
            .flat_map(|l| {
                let mut nodes: Vec<(u32, u32)> = l.slot.iter().map(|(&n, &s)| (n, s)).collect();
                nodes.sort_unstable();
                let links =
                    nodes.iter().flat_map(|&(_, s)| &l.links[s as usize * l.stride..(s as usize + 1) * l.stride]);
                nodes.iter().map(|&(n, _)| n).chain(links.copied()).collect::<Vec<u32>>()
            })
            .collect();
        write(dir, "upper", bytemuck::cast_slice(&upper))?;
        write(dir, "codes", bytemuck::cast_slice(&self.codes))?;
        write(dir, "scales", bytemuck::cast_slice(&self.scales))?;
        write(dir, "vectors", bytemuck::cast_slice(self.rows.all()))?;
        let meta = serde_json::to_vec(&meta).map_err(|e| Error::Vectors(e.to_string()))?;
        std::fs::write(dir.join("meta.json"), meta).map_err(|e| Error::io(dir.join("meta.json"), e))
    }

    /// Serves the f32 vectors from `dir/vectors` (just saved there) instead of memory.
    pub(crate) fn map_rows(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join("vectors");
        let map = sousuo_kernels::mapped::MappedF32::open(&path).map_err(|e| Error::io(&path, e))?;
        if map.as_slice().len() != self.rows.all().len() {
            return Err(Error::Vectors(format!("{} does not hold the vectors just written", path.display())));
        }
        self.rows = Rows::Mapped(map);
        Ok(())
    }

    /// Reads the graph in `dir`, checking every size and link; the vectors are mapped.
    pub fn load(dir: &Path, dim: usize) -> Result<FlatGraph> {
        let bad =
            |reason: String| Error::Vectors(format!("the graph files in {} are damaged: {reason}", dir.display()));
        let meta_path = dir.join("meta.json");
        let meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?)
            .map_err(|e| bad(format!("meta.json: {e}")))?;
        if meta.version < VERSION {
            return Err(Error::Vectors(format!(
                "the graph files in {} were written by an older version ({}, now {VERSION})",
                dir.display(),
                meta.version
            )));
        }
        if meta.version != VERSION || meta.dim != dim {
            return Err(bad(format!("version {} dim {} (expected {VERSION}, {dim})", meta.version, meta.dim)));
        }
        let n = meta.nodes;
        let ids: Vec<u64> = read(dir, "ids", n)?;
        let links0: Vec<u32> = read(dir, "links0", n * meta.m0)?;
        let upper_words: usize = meta.upper.iter().map(|&(nodes, stride)| nodes * (1 + stride)).sum();
        let mut words = read::<u32>(dir, "upper", upper_words)?.into_iter();
        let mut upper = Vec::new();
        for &(nodes, stride) in &meta.upper {
            let ids: Vec<u32> = words.by_ref().take(nodes).collect();
            let links: Vec<u32> = words.by_ref().take(nodes * stride).collect();
            upper.push(UpperLayer { slot: ids.into_iter().zip(0..).collect(), stride, links });
        }
        let codes: Vec<i8> = read(dir, "codes", n * dim)?;
        let scales: Vec<f32> = read(dir, "scales", n)?;
        let path = dir.join("vectors");
        // Written once before CURRENT named its directory, never modified after.
        let map = sousuo_kernels::mapped::MappedF32::open(&path).map_err(|e| Error::io(&path, e))?;
        if map.as_slice().len() != n * dim {
            return Err(bad(format!("vectors holds {} values, expected {}", map.as_slice().len(), n * dim)));
        }
        let node_of = FlatGraph::node_table(&ids);
        let g = FlatGraph {
            node_of,
            dim,
            seq: meta.seq,
            ids,
            m0: meta.m0,
            links0,
            upper,
            entry: meta.entry,
            codes,
            scales,
            rows: Rows::Mapped(map),
        };
        g.check().map_err(bad)?;
        Ok(g)
    }

    /// Every link and the entry name a node.
    fn check(&self) -> std::result::Result<(), String> {
        let n = self.ids.len() as u32;
        let ok = |l: &u32| *l == NONE || *l < n;
        if (n > 0 && self.entry >= n) || !self.links0.iter().all(ok) {
            return Err("a link names no node".into());
        }
        for layer in &self.upper {
            if !layer.links.iter().all(ok) || !layer.slot.keys().all(|k| *k < n) {
                return Err("an upper-layer link names no node".into());
            }
        }
        Ok(())
    }
}

fn upper_layer(nodes: Vec<(u32, Vec<u32>)>) -> UpperLayer {
    let stride = nodes.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
    let mut links = vec![NONE; nodes.len() * stride];
    let mut slot = HashMap::with_capacity(nodes.len());
    for (i, (node, list)) in nodes.into_iter().enumerate() {
        links[i * stride..i * stride + list.len()].copy_from_slice(&list);
        slot.insert(node, i as u32);
    }
    UpperLayer { slot, stride, links }
}

/// Writes `bytes` to `dir/name`, synced.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| Error::io(&path, e))
}

/// Reads `count` values of `T` from `dir/name`, which must hold exactly that many.
fn read<T: bytemuck::Pod>(dir: &Path, name: &str, count: usize) -> Result<Vec<T>> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let want = count * std::mem::size_of::<T>();
    if bytes.len() != want {
        return Err(Error::Vectors(format!(
            "the graph file {} holds {} bytes, expected {want}",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}
