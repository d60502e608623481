//! `sousuo bench hnsw`: the HNSW graph alone, on a collection's vectors and on seeded noised
//! copies of them: build time, then recall@k against exact search and queries per second on
//! one thread at several search widths (ef). `--export DIR` writes the same vectors and
//! queries as .npy files, so that a peer (`scripts/hnsw-peer`: faiss's HNSW from PyPI) can be
//! measured on exactly the same data in the same session.

use crate::cli::{BenchHnswArgs, Global};
use crate::paths::load_encoder;
use anyhow::{bail, Result};
use npyz::WriterBuilder;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sousuo_encoder::EncoderOptions;
use sousuo_indexer::vectors::{HnswParams, MemoryGraph};
use std::path::Path;
use std::time::Instant;

/// One way to search the graph: (query, ef) -> ids.
type SearchFn<'a> = dyn Fn(&[f32], usize) -> Vec<usize> + 'a;

#[derive(Serialize)]
struct Row {
    /// `flat` (the walk queries take: int8 scores, f32 rescoring) or `hnsw_rs` (its own search).
    search: &'static str,
    ef: usize,
    recall: f64,
    queries_per_s: f64,
    ms_per_query: f64,
}

pub fn run(g: &Global, args: BenchHnswArgs) -> Result<()> {
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let collection = crate::collections::open(g, &args.collection, &encoder, None)?;
    let base: Vec<Vec<f32>> =
        collection.store().vectors().map(|r| r.map(|(_, v)| v)).collect::<sousuo_indexer::Result<_>>()?;
    let base = match args.base {
        Some(n) => base.into_iter().take(n).collect(),
        None => base,
    };
    if base.is_empty() {
        bail!("collection {:?} holds no vectors", args.collection);
    }
    let dim = base[0].len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut data = base.clone();
    for _ in 0..args.copies {
        for v in &base {
            data.push(noised(v, args.noise, &mut rng));
        }
    }
    let texts = sousuo_query::beir::read_query_lines(&args.queries, args.max_queries)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let queries: Vec<Vec<f32>> = encoder.encode(&refs)?.rows().map(<[f32]>::to_vec).collect();
    eprintln!(
        "{} vectors ({} + {} noised copies), {} queries, dim {dim}",
        data.len(),
        base.len(),
        args.copies,
        queries.len()
    );
    let scratch = tempfile::tempdir()?;
    let export = args.export.clone().or_else(|| args.peer.then(|| scratch.path().to_path_buf()));
    if let Some(dir) = &export {
        std::fs::create_dir_all(dir)?;
        write_npy(&dir.join("base.npy"), &data, dim)?;
        write_npy(&dir.join("queries.npy"), &queries, dim)?;
    }
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let truth: Vec<Vec<usize>> = queries
        .iter()
        .map(|q| sousuo_kernels::top_k_dot(&flat, dim, q, args.k).map(|h| h.into_iter().map(|h| h.index).collect()))
        .collect::<sousuo_kernels::Result<_>>()?;
    drop(flat);
    let params = HnswParams { m: args.m, ef_construction: args.ef_construction, keep_pruned: args.keep_pruned };
    let started = Instant::now();
    let graph = MemoryGraph::build(&data, params);
    let build_s = started.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    let searches: [(&'static str, &SearchFn); 2] =
        [("flat", &|q, ef| graph.search(q, args.k, ef)), ("hnsw_rs", &|q, ef| graph.search_hnsw_rs(q, args.k, ef))];
    for (&ef, (search, run)) in args.ef.iter().flat_map(|ef| searches.iter().map(move |s| (ef, s))) {
        let t = Instant::now();
        let found: Vec<Vec<usize>> = queries.iter().map(|q| run(q, ef)).collect();
        let secs = t.elapsed().as_secs_f64();
        let hits: usize = found.iter().zip(&truth).map(|(f, t)| f.iter().filter(|i| t.contains(i)).count()).sum();
        rows.push(Row {
            search,
            ef,
            recall: hits as f64 / (truth.len() * args.k).max(1) as f64,
            queries_per_s: queries.len() as f64 / secs,
            ms_per_query: secs * 1000.0 / queries.len().max(1) as f64,
        });
    }
    if args.json {
        let v = serde_json::json!({"points": data.len(), "dim": dim, "m": args.m,
            "ef_construction": args.ef_construction, "build_s": build_s, "k": args.k, "runs": rows});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_rows(&args, data.len(), build_s, &rows);
    if let (true, Some(dir)) = (args.peer, &export) {
        run_peer(&args, dir)?;
    }
    Ok(())
}

fn print_rows(args: &BenchHnswArgs, points: usize, build_s: f64, rows: &[Row]) {
    println!(
        "hnsw_rs: {points} points, M {}, ef_construction {}, built in {build_s:.1} s ({} threads)",
        args.m,
        args.ef_construction,
        rayon::current_num_threads()
    );
    let recall = format!("recall@{}", args.k);
    println!("{:<8} {:>5} {:>10} {:>14} {:>12}", "search", "ef", recall, "queries/s (1)", "ms/query");
    for r in rows {
        println!("{:<8} {:>5} {:>10.4} {:>14.0} {:>12.3}", r.search, r.ef, r.recall, r.queries_per_s, r.ms_per_query);
    }
}

/// Runs scripts/hnsw-peer on the exported vectors; its table goes to standard output.
fn run_peer(args: &BenchHnswArgs, dir: &Path) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hnsw-peer");
    let ef: Vec<String> = args.ef.iter().map(usize::to_string).collect();
    let status = std::process::Command::new(&script)
        .arg(dir)
        .args(["--m", &args.m.to_string(), "--ef-construction", &args.ef_construction.to_string()])
        .args(["--ef", &ef.join(","), "--k", &args.k.to_string()])
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

/// `v` plus Gaussian noise of standard deviation `sigma` per coordinate, L2-normalised.
pub(crate) fn noised(v: &[f32], sigma: f32, rng: &mut impl Rng) -> Vec<f32> {
    let mut out: Vec<f32> = v
        .iter()
        .map(|x| {
            // Box-Muller.
            let (u1, u2) = (rng.random::<f32>().max(f32::MIN_POSITIVE), rng.random::<f32>());
            x + sigma * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    out.iter_mut().for_each(|x| *x /= norm);
    out
}

fn write_npy(path: &Path, rows: &[Vec<f32>], dim: usize) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let shape = [rows.len() as u64, dim as u64];
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(&mut out).begin_nd()?;
    w.extend(rows.iter().flatten().copied())?;
    w.finish()?;
    Ok(())
}
