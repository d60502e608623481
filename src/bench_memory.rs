//! `sousuo bench memory`: the resident memory of one process holding many open collections,
//! as a server does. The collections are built from slices of a BEIR corpus in a temporary
//! directory; then a fresh child process (so that nothing freed by the build inflates the
//! figure) loads the encoder, opens them one by one, runs a query on each, and reports its
//! resident set size after each step.

use crate::cli::{BenchMemoryArgs, Global};
use crate::paths::load_encoder;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use sousuo_encoder::EncoderOptions;
use sousuo_indexer::{ChunkParams, Collection, EncoderInfo, IndexOptions, OpenMode};
use std::io::Write;
use std::path::Path;

#[derive(Serialize)]
struct Step {
    collections: usize,
    chunks: usize,
    rss_mib: f64,
}

pub fn run(g: &Global, args: BenchMemoryArgs) -> Result<()> {
    if let Some(dir) = &args.open_only {
        return open_all(g, dir, args.collections, args.json);
    }
    let records = sousuo_query::beir::read_corpus(&args.corpus, Some(args.collections * args.docs))?;
    if records.len() < args.collections * args.docs {
        bail!(
            "{} holds {} documents; {} x {} wanted",
            args.corpus.display(),
            records.len(),
            args.collections,
            args.docs
        );
    }
    let tmp = tempfile::tempdir()?;
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let info = EncoderInfo::of(&encoder)?;
    let chunking = ChunkParams::for_encoder(&encoder);
    eprintln!("building {} collections of {} documents in {}", args.collections, args.docs, tmp.path().display());
    for (i, slice) in records.chunks(args.docs).enumerate() {
        let file = tmp.path().join(format!("slice-{i}.jsonl"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for r in slice {
            serde_json::to_writer(&mut out, &serde_json::json!({"_id": r.id, "title": r.title, "text": r.text}))?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        drop(out);
        let c = Collection::open(tmp.path(), &format!("mem-{i}"), &info, OpenMode::Create(chunking))?;
        sousuo_indexer::index_paths(&c, &encoder, &[file], &IndexOptions::default(), &|_| {})?;
    }
    drop(encoder);
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--precision")
        .arg(crate::paths::precision(g)?.to_string())
        .arg("--store-cache-mb")
        .arg(g.store_cache_mb.to_string());
    if let Some(home) = &g.home {
        cmd.arg("--home").arg(home);
    }
    if let Some(enc) = &g.encoder {
        cmd.arg("--encoder").arg(enc);
    }
    cmd.args(["bench", "memory", "--collections"]).arg(args.collections.to_string()).arg("--open-only").arg(tmp.path());
    if args.json {
        cmd.arg("--json");
    }
    let status = cmd.status().context("cannot run the measuring process")?;
    if !status.success() {
        bail!("the measuring process failed ({status})");
    }
    Ok(())
}

/// The child: encoder, then each collection opened and queried, RSS after each.
fn open_all(g: &Global, dir: &Path, n: usize, json: bool) -> Result<()> {
    let mut steps = vec![Step { collections: 0, chunks: 0, rss_mib: rss_mib()? }];
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let info = EncoderInfo::of(&encoder)?;
    steps.push(Step { collections: 0, chunks: 0, rss_mib: rss_mib()? });
    let params = sousuo_query::SearchParams::default();
    let mut open = Vec::with_capacity(n);
    let mut chunks = 0;
    for i in 0..n {
        let c = Collection::open(dir, &format!("mem-{i}"), &info, OpenMode::Existing)?;
        sousuo_query::search(&c, &encoder, "what causes the disease", &params)?;
        chunks += c.live_chunks();
        open.push(c);
        steps.push(Step { collections: i + 1, chunks, rss_mib: rss_mib()? });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&steps)?);
        return Ok(());
    }
    let (start, encoder_rss) = (steps[0].rss_mib, steps[1].rss_mib);
    println!("resident memory (VmRSS): process start {start:.1} MiB, encoder loaded {encoder_rss:.1} MiB");
    println!(
        "{:>11} {:>8} {:>9} {:>16} {:>15}",
        "collections", "chunks", "RSS MiB", "over encoder MiB", "KiB per chunk"
    );
    for s in &steps[2..] {
        let over = s.rss_mib - encoder_rss;
        println!(
            "{:>11} {:>8} {:>9.1} {:>16.1} {:>15.2}",
            s.collections,
            s.chunks,
            s.rss_mib,
            over,
            over * 1024.0 / s.chunks.max(1) as f64
        );
    }
    Ok(())
}

/// This process's resident set size (Linux's /proc/self/status).
pub(crate) fn rss_mib() -> Result<f64> {
    status_mib("VmRSS")
}

/// Resident memory in two parts, MiB: anonymous (the heap: what the process holds) and
/// file-backed (pages of mapped files: page cache the kernel may drop and read again).
pub(crate) fn rss_parts_mib() -> Result<(f64, f64)> {
    Ok((status_mib("RssAnon")?, status_mib("RssFile")? + status_mib("RssShmem")?))
}

fn status_mib(field: &str) -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("resident memory needs /proc (Linux)")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} line in /proc/self/status"))?;
    Ok(kib / 1024.0)
}
