//! `sousuo index | delete | compact | stats | collections`.

use crate::cli::{Global, IndexArgs};
use crate::paths::{data_dir, load_encoder};
use crate::util::{human_bytes, progress};
use anyhow::{bail, Context, Result};
use sousuo_common::fs::dir_size;
use sousuo_encoder::{Encoder, EncoderOptions};
use sousuo_indexer::formats::JsonFields;
use sousuo_indexer::{
    index_paths, ChunkParams, Collection, EncoderInfo, IndexOptions, IndexSummary, OpenMode, Progress,
};
use std::io::Write;
use std::sync::Mutex;

/// Opens a collection for the loaded encoder (creating it when `create` is given).
pub fn open(g: &Global, name: &str, encoder: &Encoder, create: Option<ChunkParams>) -> Result<Collection> {
    let data = data_dir(g)?;
    let info = EncoderInfo::of(encoder)?;
    let mode = create.map(OpenMode::Create).unwrap_or(OpenMode::Existing);
    Ok(Collection::open(&data, name, &info, mode)?)
}

/// The JSON field names an index run reads.
fn fields(args: &IndexArgs) -> JsonFields {
    JsonFields { id: args.id_field.clone(), title: args.title_field.clone(), text: args.text_field.clone() }
}

pub fn index(g: &Global, args: IndexArgs) -> Result<()> {
    sousuo_indexer::validate_name(&args.collection)?;
    // Before anything is created: a typo in a path must not leave an empty collection behind.
    if let Some(p) = args.paths.iter().find(|p| !p.exists()) {
        return Err(sousuo_indexer::Error::NoSuchPath(p.clone()).into());
    }
    let options = IndexOptions {
        fields: fields(&args),
        sync: args.sync,
        min_free_bytes: Some(args.min_free_mb << 20),
        ..Default::default()
    };
    if let Some(nats) = &args.nats {
        if args.sync || args.commit_log.is_some() {
            bail!("--sync and --commit-log are for local collections, not with --nats");
        }
        let encoder = load_encoder(g, EncoderOptions::default())?;
        let remote = crate::remote::Remote::open(nats, &args.collection)?;
        remote.index(&encoder, &args.paths, &options, args.no_wait, args.embed_here)?;
        return Ok(());
    }
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let default = ChunkParams::for_encoder(&encoder);
    let chunking =
        ChunkParams { max_tokens: args.max_tokens.unwrap_or(default.max_tokens).max(16), overlap_tokens: args.overlap };
    let collection = open(g, &args.collection, &encoder, Some(chunking))?;
    let mut commit_log = match &args.commit_log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => None,
    };
    let bar = progress(0, "docs");
    let chunks = std::sync::atomic::AtomicUsize::new(0);
    let log_error = Mutex::new(None::<std::io::Error>);
    let commit_log_ref = Mutex::new(commit_log.as_mut());
    let on = |p: Progress| match p {
        Progress::Planned { estimated_docs, .. } => bar.set_length(estimated_docs as u64),
        Progress::Seen { docs } => bar.set_position(docs as u64),
        Progress::Embedded { chunks: n } => {
            chunks.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        Progress::Committed { doc_ids } => {
            if let Ok(mut guard) = commit_log_ref.lock() {
                if let Some(f) = guard.as_mut() {
                    let text: String = doc_ids.iter().map(|id| format!("{id}\n")).collect();
                    if let Err(e) = f.write_all(text.as_bytes()).and_then(|_| f.sync_data()) {
                        if let Ok(mut slot) = log_error.lock() {
                            *slot = Some(e);
                        }
                    }
                }
            }
        }
        Progress::Warning(w) => bar.suspend(|| tracing::warn!("{w}")),
        Progress::Error(e) => bar.suspend(|| tracing::error!("{e}")),
    };
    let summary = index_paths(&collection, &encoder, &args.paths, &options, &on)?;
    bar.finish_and_clear();
    if let Ok(Some(e)) = log_error.into_inner() {
        bail!("cannot write the commit log: {e}");
    }
    if args.json {
        let mut v = serde_json::to_value(&summary)?;
        v["peak_memory_bytes"] = crate::util::peak_rss_bytes().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_summary(&args, &summary);
    Ok(())
}

/// The summary of an index run, for people.
fn print_summary(args: &IndexArgs, summary: &IndexSummary) {
    println!(
        "indexed {} into {:?}: {} documents seen, {} new or changed, {} unchanged, {} deleted; {} chunks embedded",
        args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        args.collection,
        summary.documents_seen,
        summary.documents_indexed,
        summary.documents_unchanged,
        summary.documents_deleted,
        summary.chunks_embedded
    );
    if !summary.skipped.is_empty() {
        let s: Vec<String> = summary.skipped.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!("skipped: {}", s.join(", "));
    }
    if !summary.errors.is_empty() {
        println!("{} errors (the rest was indexed):", summary.errors.len());
        for e in summary.errors.iter().take(20) {
            println!("  {e}");
        }
    }
    let docs_per_s = summary.documents_indexed as f64 / summary.seconds.max(1e-9);
    println!(
        "{:.1} s ({:.1} s embedding, {:.0} docs/s), {} on disk",
        summary.seconds,
        summary.embed_seconds,
        docs_per_s,
        human_bytes(summary.bytes_on_disk)
    );
}

pub fn delete(g: &Global, name: &str, ids: &[String]) -> Result<()> {
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let collection = open(g, name, &encoder, None)?;
    let n = collection.delete(ids)?;
    println!("deleted {n} of {} documents from {name:?}", ids.len());
    Ok(())
}

pub fn compact(g: &Global, name: &str) -> Result<()> {
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let collection = open(g, name, &encoder, None)?;
    let dropped = collection.compact()?;
    println!("rebuilt the vector graph of {name:?}: {dropped} deleted entries dropped");
    Ok(())
}

pub fn stats(g: &Global, name: &str, json: bool) -> Result<()> {
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let s = open(g, name, &encoder, None)?.stats()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("collection   {}", s.name);
    println!("documents    {}", s.documents);
    println!(
        "chunks       {} (BM25 {}, vectors {} with {} deleted)",
        s.chunks, s.bm25_chunks, s.hnsw_points, s.tombstones
    );
    println!(
        "encoder      {} (dim {}, sha256 {})",
        s.encoder.name,
        s.encoder.dim,
        &s.encoder.weights_sha256[..12.min(s.encoder.weights_sha256.len())]
    );
    println!("chunking     {} tokens, {} overlap", s.chunking.max_tokens, s.chunking.overlap_tokens);
    println!("on disk      {}", human_bytes(s.bytes_on_disk));
    println!("operations   {}", s.seq);
    if let Some(t) = s.last_update {
        println!("updated      {}", when(t));
    }
    Ok(())
}

/// Seconds since the epoch as a UTC date and time ("2026-12-05 16:52 UTC").
fn when(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| format!("{secs} (unix time)"))
}

pub fn list(g: &Global, json: bool) -> Result<()> {
    let data = data_dir(g)?;
    let names = sousuo_indexer::list_collections(&data)?;
    let rows: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            let m = sousuo_indexer::read_manifest(&data, n).ok();
            let dir = data.join(n);
            let counts = sousuo_indexer::read_counts(&data, n);
            serde_json::json!({
                "name": n,
                "encoder": m.as_ref().map(|m| m.encoder.name.clone()),
                "dim": m.as_ref().map(|m| m.encoder.dim),
                "bytes_on_disk": dir_size(&dir),
                "documents": counts.map(|c| c.documents),
                "chunks": counts.map(|c| c.chunks),
                "updated": std::fs::metadata(dir.join("store")).and_then(|m| m.modified()).ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no collections in {} (create one with `sousuo index PATH --collection NAME`)", data.display());
    }
    for r in rows {
        println!(
            "{:<24} {:>9} docs {:>9} chunks  {:<20} {:>10}  updated {}",
            r["name"].as_str().unwrap_or(""),
            r["documents"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            r["chunks"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            r["encoder"].as_str().unwrap_or("?"),
            human_bytes(r["bytes_on_disk"].as_u64().unwrap_or(0)),
            r["updated"].as_u64().map(when).unwrap_or_else(|| "?".into())
        );
    }
    Ok(())
}

pub fn reindex(g: &Global, name: &str) -> Result<()> {
    let data = data_dir(g)?;
    let before = sousuo_indexer::read_manifest(&data, name)?;
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let info = EncoderInfo::of(&encoder)?;
    if info.weights_sha256 == before.encoder.weights_sha256 {
        println!("{name:?} is already embedded with {}: nothing to do", info.name);
        return Ok(());
    }
    let bar = progress(0, "docs");
    let n = sousuo_indexer::reindex(&data, name, &encoder, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    println!(
        "re-embedded {n} documents of {name:?}: {} (dim {}) -> {} (dim {})",
        before.encoder.name, before.encoder.dim, info.name, info.dim
    );
    Ok(())
}
