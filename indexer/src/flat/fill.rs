//! Incoming links for every node of layer 0.
//!
//! hnsw_rs adds a reverse link to each neighbour a node picks, and a neighbour whose list is
//! full drops its farthest link to make room. On data made of tight clusters (near-duplicates)
//! the same few nodes are everyone's neighbours, their lists overflow, and the nodes whose
//! links they dropped keep their own out-links but nothing links *to* them: measured on 100,000
//! points in clusters of 100, 18.6% of the nodes had no incoming layer-0 link, so no walk could
//! reach them, whatever its width. The flat copy gives each node at least [`MIN_INCOMING`]
//! incoming links, from its nearest neighbours' neighbours that have a free slot (lists use ~9
//! of their 32 slots on average; the table is padded to 32 anyway, so this costs no memory).

use super::NONE;
use rayon::prelude::*;

/// Incoming links each node is given, where free slots allow.
pub(crate) const MIN_INCOMING: usize = 8;

/// Gives each node of `links0` (`m0` slots per node) at least `min` incoming links: a node
/// short of them is linked from its out-neighbours and their out-neighbours, nearest first by
/// `score` (higher is nearer), where those have a free slot. Existing links are kept.
pub(crate) fn ensure_incoming(links0: &mut [u32], m0: usize, min: usize, score: &(dyn Fn(u32, u32) -> f32 + Sync)) {
    let n = links0.len().checked_div(m0).unwrap_or(0);
    let mut incoming = vec![0usize; n];
    for &l in links0.iter().filter(|&&l| l != NONE) {
        incoming[l as usize] += 1;
    }
    let mut used: Vec<usize> =
        links0.chunks(m0.max(1)).map(|list| list.iter().take_while(|&&l| l != NONE).count()).collect();
    let short: Vec<usize> = (0..n).filter(|&a| incoming[a] < min).collect();
    // The candidates of every short node, nearest first, from the links as hnsw_rs left them.
    let table: &[u32] = links0;
    let out = |a: usize| table[a * m0..(a + 1) * m0].iter().copied().take_while(|&l| l != NONE);
    let ranked: Vec<Vec<u32>> = short
        .par_iter()
        .map(|&a| {
            let mut cands: Vec<u32> =
                out(a).chain(out(a).flat_map(|l| out(l as usize))).filter(|&c| c as usize != a).collect();
            cands.sort_unstable();
            cands.dedup();
            let mut scored: Vec<(f32, u32)> = cands.into_iter().map(|c| (score(a as u32, c), c)).collect();
            scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            scored.into_iter().map(|(_, c)| c).collect()
        })
        .collect();
    for (&a, cands) in short.iter().zip(ranked) {
        for b in cands {
            if incoming[a] >= min {
                break;
            }
            let b = b as usize;
            let list = &mut links0[b * m0..(b + 1) * m0];
            if used[b] >= m0 || list[..used[b]].contains(&(a as u32)) {
                continue;
            }
            list[used[b]] = a as u32;
            used[b] += 1;
            incoming[a] += 1;
        }
    }
}
