//! The shipped decoder model for the decoder tests, fetched into the cache if missing, and the
//! comparison of two forward passes' logits.
#![allow(dead_code)] // each test binary uses a part

use sousuo_common::models::{default_cache_root, ModelCache};
use sousuo_decoder::{NativeLlama, SMOLLM2};
use std::path::PathBuf;

pub fn cache() -> ModelCache {
    let home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
    ModelCache::new(default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).expect("set SOUSUO_HOME"))
}

/// The shipped Q4_1 file, fetched if missing.
pub fn shipped() -> PathBuf {
    let c = cache();
    let dir = c
        .ensure(&SMOLLM2, |m| eprintln!("fetching {} for the tests", m.name))
        .unwrap_or_else(|e| panic!("the decoder tests need {}: {e}; run `cargo run -- models fetch`", SMOLLM2.name));
    dir.join(SMOLLM2.files[0].dest)
}

/// Logits at each position after the first `prefix` tokens of `ids`: the prefix in one call
/// (prefill), then one token per call (decoding from the cache).
pub fn stepwise(mut forward: impl FnMut(&[u32], usize) -> Vec<f32>, ids: &[u32], prefix: usize) -> Vec<Vec<f32>> {
    let mut out = vec![forward(&ids[..prefix], 0)];
    for (i, id) in ids[prefix..].iter().enumerate() {
        out.push(forward(&[*id], prefix + i));
    }
    out
}

/// `stepwise` through Sousuo's own pass.
pub fn native_stepwise(m: &mut NativeLlama, ids: &[u32], prefix: usize) -> Vec<Vec<f32>> {
    let mut logits = Vec::new();
    stepwise(
        |t, pos| {
            m.forward(t, pos, &mut logits).unwrap();
            logits.clone()
        },
        ids,
        prefix,
    )
}

/// How closely two runs' logits agree: the share of positions with the same top token, and the
/// lowest cosine.
pub fn agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32) {
    let argmax = |v: &[f32]| v.iter().enumerate().fold(0, |best, (i, x)| if *x > v[best] { i } else { best });
    let same = a.iter().zip(b).filter(|(x, y)| argmax(x) == argmax(y)).count() as f32 / a.len() as f32;
    let cos = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let n = |v: &[f32]| v.iter().map(|p| p * p).sum::<f32>().sqrt();
            dot / (n(x) * n(y))
        })
        .fold(1.0f32, f32::min);
    (same, cos)
}
