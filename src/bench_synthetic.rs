//! `sousuo bench query --synthetic N`: a collection of N chunks made from a source collection's
//! chunk texts and vectors (seeded noised copies beyond the first pass), built in a temporary
//! directory through the write path the indexer uses (sled, tantivy, HNSW); reports build time,
//! bytes per chunk on disk and in memory, query latency per mode, and dense recall@10 against
//! exact search over all N vectors.

use crate::bench::run_queries;
use crate::bench_hnsw::noised;
use crate::cli::{BenchQueryArgs, Global};
use anyhow::{bail, Result};
use rand::SeedableRng;
use sousuo_encoder::Encoder;
use sousuo_indexer::store::{Change, DocRecord};
use sousuo_indexer::{Collection, OpenMode};
use std::collections::BTreeMap;
use std::time::Instant;

const BATCH: usize = 5_000;

pub fn run(g: &Global, args: &BenchQueryArgs, n: usize, encoder: &Encoder, queries: &[String]) -> Result<()> {
    let source = crate::collections::open(g, &args.collection, encoder, None)?;
    let mut chunks = Vec::new();
    for item in source.store().vectors() {
        let (key, vector) = item?;
        if let Some(chunk) = source.store().get_chunk(key)? {
            chunks.push((chunk.text, vector));
        }
    }
    if chunks.is_empty() {
        bail!("collection {:?} holds no chunks", args.collection);
    }
    let info = source.manifest().encoder.clone();
    let chunking = source.manifest().chunking;
    drop(source);
    let tmp = tempfile::tempdir()?;
    let rss_before = crate::bench_memory::rss_mib()?;
    let started = Instant::now();
    let all_vectors = build(tmp.path(), &info, chunking, &chunks, n)?;
    let build_s = started.elapsed().as_secs_f64();
    let disk = sousuo_common::fs::dir_size(tmp.path());
    let c = Collection::open(tmp.path(), "synthetic", &info, OpenMode::Existing)?;
    // The exact-search matrix this benchmark keeps is not the collection's memory.
    let rss_after = crate::bench_memory::rss_mib()? - (all_vectors.len() * 4) as f64 / 1048576.0;
    println!(
        "synthetic collection: {n} chunks from {} source chunks, built in {build_s:.1} s ({:.0} chunks/s)",
        chunks.len(),
        n as f64 / build_s
    );
    println!(
        "on disk {:.1} MiB ({:.0} bytes per chunk); resident after reopening {:.1} MiB over the process before the build ({:.0} bytes per chunk; an upper bound: what the build freed may stay mapped)",
        disk as f64 / 1048576.0,
        disk as f64 / n as f64,
        rss_after - rss_before,
        (rss_after - rss_before) * 1048576.0 / n as f64
    );
    // Dense recall@10 against exact search over every vector (the first 100 queries).
    let p = sousuo_query::SearchParams::default();
    let (mut agree, mut total) = (0usize, 0usize);
    for q in queries.iter().take(100) {
        let v = encoder.encode(&[q.as_str()])?;
        let exact: Vec<u64> = sousuo_kernels::top_k_dot(&all_vectors, info.dim, v.row(0), 10)?
            .into_iter()
            .map(|h| h.index as u64 + 1)
            .collect();
        let found = c.search_vectors(v.row(0), 10, p.ef)?;
        agree += found.iter().filter(|h| exact.contains(&h.chunk_key)).count();
        total += exact.len();
    }
    println!("dense recall@10 against exact search: {:.4} (ef {})", agree as f64 / total.max(1) as f64, p.ef);
    println!("{:<8} {:>8} {:>9} {:>9} {:>11}", "mode", "clients", "p50 ms", "p99 ms", "queries/s");
    for mode in [sousuo_query::Mode::Bm25, sousuo_query::Mode::Dense, sousuo_query::Mode::Hybrid] {
        let p = sousuo_query::SearchParams { mode, snippets: true, ..Default::default() };
        let r = run_queries(&c, encoder, queries, &p, 1)?;
        println!("{:<8} {:>8} {:>9.2} {:>9.2} {:>11.1}", r.mode, r.clients, r.p50_ms, r.p99_ms, r.queries_per_s);
    }
    Ok(())
}

/// Builds the collection of `n` one-chunk documents in `dir` through the write path; returns
/// every vector in order (chunk key `i + 1` holds row `i`), for exact search.
fn build(
    dir: &std::path::Path,
    info: &sousuo_indexer::EncoderInfo,
    chunking: sousuo_indexer::ChunkParams,
    chunks: &[(String, Vec<f32>)],
    n: usize,
) -> Result<Vec<f32>> {
    let c = Collection::open(dir, "synthetic", info, OpenMode::Create(chunking))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let bar = crate::util::progress(n as u64, "chunks");
    let mut all_vectors: Vec<f32> = Vec::with_capacity(n * info.dim);
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let mut changes = Vec::with_capacity(end - i);
        for j in i..end {
            let (text, v) = &chunks[j % chunks.len()];
            let v = if j < chunks.len() { v.clone() } else { noised(v, 0.015, &mut rng) };
            all_vectors.extend_from_slice(&v);
            let id = format!("s{j}");
            let metadata: BTreeMap<String, serde_json::Value> =
                [("bucket".to_string(), serde_json::json!(j % 100))].into_iter().collect();
            let doc = DocRecord {
                id: id.clone(),
                title: String::new(),
                source: "synthetic".into(),
                metadata,
                content_hash: id.clone(),
                chunk_keys: vec![],
                seq: 0,
            };
            let chunk = sousuo_indexer::Chunk {
                doc_id: id,
                ordinal: 0,
                text: text.clone(),
                start: 0,
                end: text.len(),
                heading: None,
                page: None,
            };
            changes.push(Change::Upsert { doc, chunks: vec![chunk], vectors: vec![v] });
        }
        c.apply(&changes)?;
        bar.inc((end - i) as u64);
        i = end;
    }
    c.commit()?;
    bar.finish_and_clear();
    Ok(all_vectors)
}
