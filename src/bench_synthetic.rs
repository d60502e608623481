//! `sousuo bench query --synthetic N`: a collection of N chunks made from a source collection's
//! chunk texts and vectors (seeded noised copies beyond the first pass), built in a temporary
//! directory through the write path the indexer uses (sled, tantivy, HNSW); reports build time,
//! bytes per chunk on disk and in memory, query latency per mode, and dense recall@10 against
//! exact search over all N vectors.

use crate::bench_hnsw::noised;
use crate::cli::{BenchQueryArgs, Global};
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
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
    let data = tmp.path().join("data");
    let started = Instant::now();
    let all_vectors = build(&data, &info, chunking, &chunks, n)?;
    let build_s = started.elapsed().as_secs_f64();
    let disk = sousuo_common::fs::dir_size(&data);
    println!(
        "synthetic collection: {n} chunks from {} source chunks, built in {build_s:.1} s ({:.0} chunks/s); on disk {:.1} MiB ({:.0} bytes per chunk)",
        chunks.len(),
        n as f64 / build_s,
        disk as f64 / 1048576.0,
        disk as f64 / n as f64
    );
    // Dense recall@10 against exact search over every vector (the first 100 queries).
    let c = Collection::open(&data, "synthetic", &info, OpenMode::Existing)?;
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
    drop((c, all_vectors));
    // Latency and memory in a fresh process that only opens the collection and queries it:
    // what this one built and freed would blur its resident size.
    std::os::unix::fs::symlink(crate::paths::model_cache(g)?.root(), tmp.path().join("models"))?;
    let mut child = std::process::Command::new(std::env::current_exe()?);
    child.arg("--home").arg(tmp.path()).arg("--precision").arg(&info.precision);
    child.arg("--store-cache-mb").arg(g.store_cache_mb.to_string());
    if let Some(e) = &g.encoder {
        child.arg("--encoder").arg(e);
    }
    if let Some(t) = g.threads {
        child.arg("--threads").arg(t.to_string());
    }
    child.args(["bench", "query", "-c", "synthetic", "--rss", "--concurrency", &args.concurrency.to_string()]);
    child.arg("--queries").arg(&args.queries).args(["--max-queries", &args.max_queries.to_string()]);
    let status = child.status()?;
    if !status.success() {
        bail!("the query run on the synthetic collection failed ({status})");
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
    // After one pass over the source, the copies come in a random order, not in sweeps.
    let mut later: Vec<usize> = (chunks.len()..n.max(chunks.len())).map(|j| j % chunks.len()).collect();
    later.shuffle(&mut rng);
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let mut changes = Vec::with_capacity(end - i);
        for j in i..end {
            let (text, v) = &chunks[if j < chunks.len() { j } else { later[j - chunks.len()] }];
            let v = if j < chunks.len() { v.clone() } else { noised(v, 0.015, &mut rng) };
            all_vectors.extend_from_slice(&v);
            let id = format!("s{j}");
            let metadata: BTreeMap<String, serde_json::Value> =
                [("bucket".to_string(), serde_json::json!(j % 100))].into_iter().collect();
            let doc = DocRecord { metadata, ..DocRecord::new(id.clone(), "", "synthetic", id) };
            changes.push(Change::one_chunk(doc, text.clone(), v));
        }
        c.apply(&changes)?;
        bar.inc((end - i) as u64);
        i = end;
    }
    c.commit()?;
    bar.finish_and_clear();
    Ok(all_vectors)
}
