//! Criterion benchmark: exact top-k, scalar vs the run-time chosen SIMD level.

use criterion::{criterion_group, criterion_main, Criterion};
use sousuo_kernels::topk::{top_k_dot_with, SimdLevel};

fn bench(c: &mut Criterion) {
    let (n, dim) = (20_000, 384);
    let m: Vec<f32> = (0..n * dim).map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0 - 0.5).collect();
    let q: Vec<f32> = (0..dim).map(|i| (i as f32).sin()).collect();
    let mut group = c.benchmark_group("top10_20k_x_384");
    for level in SimdLevel::available() {
        group.bench_function(format!("{level:?}"), |b| b.iter(|| top_k_dot_with(level, &m, dim, &q, 10).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
