//! Criterion benchmark: fusing two 100-document lists (RRF and convex).

use criterion::{criterion_group, criterion_main, Criterion};
use sousuo_query::search::fuse_for_bench;
use sousuo_query::Fusion;

fn bench(c: &mut Criterion) {
    let bm25: Vec<(String, f32)> = (0..100).map(|i| (format!("d{i}"), 100.0 - i as f32)).collect();
    let dense: Vec<(String, f32)> = (0..100).map(|i| (format!("d{}", (i * 7) % 150), 1.0 - i as f32 / 100.0)).collect();
    let mut g = c.benchmark_group("fuse_100x100");
    for (name, f) in [("rrf", Fusion::Rrf { k: 60.0 }), ("convex", Fusion::Convex { semantic_ratio: 0.5 })] {
        g.bench_function(name, |b| b.iter(|| fuse_for_bench(f, &bm25, &dense)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
