use super::*;
use crate::vectors::HnswParams;
use hnsw_rs::prelude::{DistDot, Hnsw};

fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    // A small LCG: deterministic, no extra dependency.
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..dim).map(|_| next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn graph(data: &[Vec<f32>]) -> FlatGraph {
    let p = HnswParams::default();
    let g: Hnsw<'_, f32, DistDot> = Hnsw::new(p.m, data.len(), 16, p.ef_construction, DistDot);
    let refs: Vec<(&Vec<f32>, usize)> = data.iter().enumerate().map(|(i, v)| (v, i * 10 + 3)).collect();
    g.parallel_insert(&refs);
    FlatGraph::from_hnsw(&g, data[0].len(), 42)
}

fn exact(data: &[Vec<f32>], q: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Vec<u64> {
    let mut all: Vec<(u64, f32)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| ((i * 10 + 3) as u64, v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
        .filter(|(id, _)| keep(*id))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.into_iter().take(k).map(|(id, _)| id).collect()
}

fn recall(flat: &FlatGraph, data: &[Vec<f32>], queries: &[Vec<f32>], keep: Option<&dyn Fn(u64) -> bool>) -> f64 {
    let mut hits = 0;
    for q in queries {
        let truth = exact(data, q, 10, |id| keep.is_none_or(|f| f(id)));
        let found = flat.search(q, 10, 100, keep);
        assert!(found.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
        hits += found.iter().filter(|(id, _)| truth.contains(id)).count();
    }
    hits as f64 / (queries.len() * 10) as f64
}

#[test]
fn finds_the_exact_neighbours_with_exact_scores() {
    let data = unit_vectors(3000, 32, 1);
    let queries = unit_vectors(50, 32, 2);
    let flat = graph(&data);
    assert_eq!(flat.len(), 3000);
    let r = recall(&flat, &data, &queries, None);
    assert!(r >= 0.95, "recall {r}");
    let (id, score) = flat.search(&data[7], 1, 50, None)[0];
    assert_eq!(id, 73);
    assert!((score - 1.0).abs() < 1e-5, "{score}");
}

#[test]
fn a_filter_is_walked_through_not_returned() {
    let data = unit_vectors(3000, 32, 3);
    let queries = unit_vectors(30, 32, 4);
    let flat = graph(&data);
    let even = |id: u64| (id / 10).is_multiple_of(2);
    let r = recall(&flat, &data, &queries, Some(&even));
    assert!(r >= 0.9, "recall {r}");
    for q in &queries {
        assert!(flat.search(q, 10, 50, Some(&even)).iter().all(|(id, _)| even(*id)));
        assert!(flat.search(q, 10, 50, Some(&|_| false)).is_empty());
    }
}

#[test]
fn saved_and_loaded_searches_alike_and_damage_is_an_error() {
    let data = unit_vectors(500, 16, 5);
    let flat = graph(&data);
    let dir = tempfile::tempdir().unwrap();
    flat.save(dir.path()).unwrap();
    let loaded = FlatGraph::load(dir.path(), 16).unwrap();
    assert_eq!(loaded.seq(), 42);
    assert!(matches!(loaded.rows, Rows::Mapped(_)));
    for q in unit_vectors(10, 16, 6) {
        assert_eq!(flat.search(&q, 5, 40, None), loaded.search(&q, 5, 40, None));
    }
    assert!(FlatGraph::load(dir.path(), 8).is_err(), "another width");
    let links = dir.path().join("links0");
    let mut bytes = std::fs::read(&links).unwrap();
    bytes[..4].copy_from_slice(&100_000u32.to_le_bytes());
    std::fs::write(&links, &bytes).unwrap();
    assert!(FlatGraph::load(dir.path(), 16).is_err(), "a link past the end");
    std::fs::write(&links, &bytes[..bytes.len() - 4]).unwrap();
    assert!(FlatGraph::load(dir.path(), 16).is_err(), "a short file");
}

#[test]
fn odd_queries_answer_nothing_rather_than_fail() {
    let data = unit_vectors(100, 8, 7);
    let flat = graph(&data);
    assert!(flat.search(&[0.0; 4], 5, 10, None).is_empty(), "wrong width");
    assert!(flat.search(&data[0], 0, 10, None).is_empty());
    let zero = flat.search(&[0.0; 8], 5, 10, None);
    assert!(zero.len() <= 5);
}

/// `count` clusters of `size` near-duplicates each (`sigma` of noise per coordinate).
fn clusters(count: usize, size: usize, dim: usize, sigma: f32, seed: u64) -> Vec<Vec<f32>> {
    let centres = unit_vectors(count, dim, seed);
    let noise = unit_vectors(count * size, dim, seed + 1);
    let scale = sigma * (dim as f32).sqrt();
    (0..count * size)
        .map(|i| {
            let v: Vec<f32> = centres[i % count].iter().zip(&noise[i]).map(|(c, n)| c + scale * n).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

#[test]
fn every_node_of_clustered_data_is_reachable() {
    let data = clusters(30, 100, 32, 0.05, 8);
    let flat = graph(&data);
    let mut incoming = vec![0usize; flat.len()];
    for &l in flat.links0.iter().filter(|&&l| l != NONE) {
        incoming[l as usize] += 1;
    }
    let short = incoming.iter().filter(|&&c| c < fill::MIN_INCOMING).count();
    assert_eq!(short, 0, "{short} of {} nodes have fewer than {} incoming links", flat.len(), fill::MIN_INCOMING);
    let queries = unit_vectors(40, 32, 9);
    let r = recall(&flat, &data, &queries, None);
    assert!(r >= 0.95, "recall on clusters {r}");
}

#[test]
fn incoming_links_fill_free_slots_and_keep_the_old_ones() {
    // Node 3 links to 0, nothing links to it; 0's list is full.
    let m0 = 4;
    let mut links = vec![
        1, 2, 4, 5, // 0: full
        0, 2, NONE, NONE, // 1
        0, 1, NONE, NONE, // 2
        0, NONE, NONE, NONE, // 3
        0, 1, NONE, NONE, // 4
        0, 1, NONE, NONE, // 5
    ];
    let before = links.clone();
    // Nearness: |a - b| smaller is nearer.
    let score = |a: u32, b: u32| -(a as f32 - b as f32).abs();
    fill::ensure_incoming(&mut links, m0, 2, &score);
    for (node, (old, new)) in before.chunks(m0).zip(links.chunks(m0)).enumerate() {
        let kept = old.iter().take_while(|&&l| l != NONE);
        assert!(kept.clone().zip(new).all(|(a, b)| a == b), "node {node}: {old:?} -> {new:?}");
    }
    let into = |n: u32| links.iter().filter(|&&l| l == n).count();
    assert!((0..6).all(|n| into(n) >= 2), "{links:?}");
    // 3's candidates nearest first: 2 and 4 (0 is full); 1 only if needed.
    assert!(links[2 * m0..3 * m0].contains(&3) && links[4 * m0..5 * m0].contains(&3), "{links:?}");
}
