//! Criterion benchmark: token-budget batching vs fixed batches of 32 on a mixed-length input.

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use sousuo_encoder::{Batching, Encoder, EncoderOptions};

fn texts() -> Vec<String> {
    (0..64)
        .map(|i| {
            if i % 2 == 0 {
                format!("short claim number {i} about vitamins")
            } else {
                format!("A long abstract {i}. ").repeat(40)
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = common::minilm_dir();
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("encode_mixed_64");
    group.sample_size(10);
    for (name, batching) in [("fixed32", Batching::Fixed(32)), ("token_budget", Batching::default())] {
        let enc = Encoder::load(&dir, EncoderOptions { batching, ..Default::default() }).unwrap();
        group.bench_function(name, |b| b.iter(|| enc.encode(&refs).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
