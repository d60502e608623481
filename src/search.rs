//! `sousuo search | eval | demo`.

use crate::cli::{DemoArgs, EvalArgs, Global, RetrievalArgs, SearchArgs};
use crate::collections::open;
use crate::paths::PINNED;
use crate::paths::{ensure_model, load_encoder};
use crate::remote::{warn_missing, Target, Temporary};
use anyhow::{bail, Result};
use sousuo_decoder::Decoder;
use sousuo_encoder::Encoder;
use sousuo_encoder::EncoderOptions;
use sousuo_indexer::{index_paths, ChunkParams, IndexOptions, Progress};
use sousuo_query::beir::{load_judged, Judged};
use sousuo_query::eval::{evaluate, ModeReport};
use sousuo_query::Retriever;
use sousuo_query::{search as run_search, Filter, Fusion, Mode, SearchParams, DEFAULT_FUSION};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn fusion(r: &RetrievalArgs) -> Fusion {
    match (r.rrf, r.semantic_ratio) {
        (Some(k), _) => Fusion::Rrf { k },
        (None, Some(w)) => Fusion::Convex { semantic_ratio: w },
        (None, None) => DEFAULT_FUSION,
    }
}

fn params(r: &RetrievalArgs, mode: Mode) -> SearchParams {
    SearchParams { mode, fusion: fusion(r), depth: r.depth, ef: r.ef, ..SearchParams::default() }
}

pub fn search(g: &Global, args: SearchArgs) -> Result<()> {
    let started = Instant::now();
    let mode = args.mode;
    let filter = Filter::parse(&args.filter)?;
    if args.query.trim().is_empty() {
        bail!("the query is empty: type some words to search for");
    }
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let target = Target::open(g, &args.collection, &encoder, args.nats.as_deref())?;
    let p = SearchParams {
        limit: args.limit,
        offset: args.offset,
        syntax: args.syntax,
        filter,
        complete: args.complete,
        ..params(&args.retrieval, mode)
    };
    let results = if args.rerank {
        let d = crate::paths::load_decoder(g, &args.decoder, 1)?;
        sousuo_query::rerank::search_reranked(target.retriever(), &encoder, &d, &args.query, &p)?
    } else {
        target.retriever().search(&encoder, &args.query, &p)?
    };
    warn_missing(&results.missing_shards);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    if results.hits.is_empty() {
        println!("no results for {:?} in {:?}", args.query, args.collection);
    }
    for (i, h) in results.hits.iter().enumerate() {
        let place = match (h.page, &h.heading) {
            (Some(p), _) => format!(" (page {p})"),
            (None, Some(hd)) if *hd != h.title => format!(" ({hd})"),
            _ => String::new(),
        };
        println!("{:>2}. {}{}  [{:.3}]", i + 1 + args.offset, h.title, place, h.score);
        println!("    {}", h.source);
        println!("    {}", terminal_snippet(&h.snippet));
        if args.explain {
            let show = |s: Option<sousuo_query::search::RetrieverScore>| {
                s.map(|s| format!("#{} ({:.3})", s.rank, s.score)).unwrap_or_else(|| "-".into())
            };
            println!("    bm25 {}  dense {}  doc {}  chunk {}", show(h.bm25), show(h.dense), h.doc_id, h.chunk_key);
        }
    }
    eprintln!(
        "{} of {} candidates, search {:.1} ms, total {:.0} ms (model load included)",
        results.hits.len(),
        results.candidates,
        results.took_ms,
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// The snippet's HTML as terminal text: highlights in bold, entities decoded.
fn terminal_snippet(html: &str) -> String {
    let bold = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (on, off) = if bold { ("\x1b[1m", "\x1b[0m") } else { ("", "") };
    html.replace("<b>", on)
        .replace("</b>", off)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
        .replace('\n', " ")
}

pub fn eval(g: &Global, args: EvalArgs) -> Result<()> {
    if args.beir.len() > 1 && args.collection.is_some() {
        bail!("--collection names one collection: use it with one --beir directory");
    }
    let encoder = load_encoder(g, EncoderOptions::default())?;
    // Loaded once for every data set.
    let reranker = if args.rerank { Some(crate::paths::load_decoder(g, &args.decoder, 1)?) } else { None };
    let mut results = Vec::with_capacity(args.beir.len());
    for dir in &args.beir {
        results.push(eval_dir(g, &args, dir, &encoder, reranker.as_ref())?);
    }
    match results.as_slice() {
        [one] => print_one(&args, one),
        _ => print_many(&args, &results),
    }
}

/// One data set's evaluation: its collection's label, the data set's directory, the number of
/// judged queries, and each mode's report.
struct DirReport {
    label: String,
    dir: PathBuf,
    queries: usize,
    modes: Vec<(String, ModeReport)>,
}

fn eval_dir(
    g: &Global,
    args: &EvalArgs,
    dir: &Path,
    encoder: &Encoder,
    reranker: Option<&Decoder>,
) -> Result<DirReport> {
    let corpus = dir.join("corpus.jsonl");
    if !corpus.is_file() {
        bail!("{} has no corpus.jsonl: --beir takes a BEIR directory", dir.display());
    }
    let mut judged = load_judged(dir, &args.split)?;
    if let Some(n) = args.max_queries {
        judged.queries.truncate(n);
    }
    let done = |label: String, modes| DirReport { label, dir: dir.to_path_buf(), queries: judged.queries.len(), modes };
    if let Some(nats) = &args.nats {
        let (label, modes) = eval_cluster(args, nats, dir, encoder, &judged, reranker)?;
        return Ok(done(label, modes));
    }
    let tmp;
    let (collection, name) = match &args.collection {
        Some(name) => (open(g, name, encoder, Some(ChunkParams::for_encoder(encoder)))?, name.clone()),
        None => {
            tmp = tempfile_dir()?;
            let info = sousuo_indexer::EncoderInfo::of(encoder)?;
            let c = sousuo_indexer::Collection::open(
                tmp.path(),
                "eval",
                &info,
                sousuo_indexer::OpenMode::Create(ChunkParams::for_encoder(encoder)),
            )?;
            (c, "eval (temporary)".to_string())
        }
    };
    let bar = crate::util::progress(0, "docs");
    let on = |p: Progress| match p {
        Progress::Planned { estimated_docs, .. } => bar.set_length(estimated_docs as u64),
        Progress::Seen { docs } => bar.set_position(docs as u64),
        _ => {}
    };
    let summary = index_paths(&collection, encoder, &[corpus], &IndexOptions::default(), &on)?;
    bar.finish_and_clear();
    eprintln!(
        "collection {name}: {} documents ({} embedded now, {:.0} s)",
        summary.documents_seen, summary.documents_indexed, summary.seconds
    );
    let modes = measure(args, &collection, encoder, &judged, reranker)?;
    Ok(done(name, modes))
}

/// `eval --nats`: the corpus in a temporary clustered collection of `--shards` shards, held by
/// the running nodes, evaluated by scatter-gather.
fn eval_cluster(
    args: &EvalArgs,
    nats: &str,
    dir: &Path,
    encoder: &Encoder,
    judged: &Judged,
    reranker: Option<&Decoder>,
) -> Result<(String, Vec<(String, ModeReport)>)> {
    let name = crate::remote::temporary_name("eval");
    let tmp = Temporary::create(nats, &name, args.shards.max(1), encoder)?;
    tmp.0.wait_for_holders(std::time::Duration::from_secs(60))?;
    let summary = tmp.0.index(encoder, &[dir.join("corpus.jsonl")], &IndexOptions::default(), false, false)?;
    eprintln!("collection {name}: {} documents in {} shards", summary.documents_seen, args.shards);
    let label = format!("{name} ({} shards)", args.shards);
    Ok((label, measure(args, &tmp.0.collection, encoder, judged, reranker)?))
}

/// Evaluates each asked mode (and the sweep) on `collection`.
fn measure(
    args: &EvalArgs,
    collection: &dyn Retriever,
    encoder: &Encoder,
    judged: &Judged,
    reranker: Option<&Decoder>,
) -> Result<Vec<(String, ModeReport)>> {
    let modes: Vec<(String, SearchParams)> =
        args.mode.modes().into_iter().map(|m| (m.as_str().to_string(), params(&args.retrieval, m))).collect();
    let mut reports: Vec<(String, ModeReport)> = Vec::new();
    for (name, p) in &modes {
        reports.push((name.clone(), evaluate(collection, encoder, judged, p, None)?));
    }
    if let Some(d) = reranker {
        let p = params(&args.retrieval, Mode::Hybrid);
        reports.push(("hybrid+rerank".into(), evaluate(collection, encoder, judged, &p, Some(d))?));
    }
    if args.sweep {
        let mut grid: Vec<(String, Fusion)> =
            [20.0, 40.0, 60.0, 100.0].iter().map(|&k| (format!("rrf k={k}"), Fusion::Rrf { k })).collect();
        grid.extend((1..10).map(|i| {
            let w = i as f32 / 10.0;
            (format!("convex w={w:.1}"), Fusion::Convex { semantic_ratio: w })
        }));
        for (name, f) in grid {
            let p = SearchParams { fusion: f, ..params(&args.retrieval, Mode::Hybrid) };
            reports.push((name, evaluate(collection, encoder, judged, &p, None)?));
        }
    }
    Ok(reports)
}

/// A data set's name: its directory's, or `parent/beir` for a `beir/` view inside a data set.
fn dataset_name(dir: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match (name(dir), dir.parent().and_then(name)) {
        (Some(n), Some(parent)) if n == "beir" => format!("{parent}/{n}"),
        (Some(n), _) => n,
        (None, _) => dir.display().to_string(),
    }
}

fn modes_json(modes: &[(String, ModeReport)]) -> serde_json::Map<String, serde_json::Value> {
    modes.iter().map(|(n, r)| (n.clone(), serde_json::to_value(r).unwrap_or_default())).collect()
}

/// One data set: its table, or its JSON object.
fn print_one(args: &EvalArgs, r: &DirReport) -> Result<()> {
    if args.json {
        let v = serde_json::json!({"dataset": dataset_name(&r.dir), "split": args.split, "queries": r.queries,
            "modes": modes_json(&r.modes)});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} on {} ({} queries, split {})", r.label, r.dir.display(), r.queries, args.split);
    println!(
        "{:<16} {:>8} {:>8} {:>10} {:>9} {:>8} {:>8}",
        "mode", "nDCG@10", "MRR@10", "R@100", "mean ms", "p50 ms", "p99 ms"
    );
    for (n, r) in &r.modes {
        println!(
            "{:<16} {:>8.4} {:>8.4} {:>10.4} {:>9.2} {:>8.2} {:>8.2}",
            n, r.ndcg_10, r.mrr_10, r.recall_100, r.latency_ms.mean, r.latency_ms.p50, r.latency_ms.p99
        );
    }
    Ok(())
}

/// Several data sets: one table (per data set and mode), then each mode's mean over them.
fn print_many(args: &EvalArgs, results: &[DirReport]) -> Result<()> {
    let mut means: Vec<(String, [f64; 3])> = Vec::new();
    for r in results {
        for (mode, m) in &r.modes {
            match means.iter_mut().find(|(n, _)| n == mode) {
                Some((_, sums)) => {
                    sums[0] += m.ndcg_10;
                    sums[1] += m.mrr_10;
                    sums[2] += m.recall_100;
                }
                None => means.push((mode.clone(), [m.ndcg_10, m.mrr_10, m.recall_100])),
            }
        }
    }
    let n = results.len() as f64;
    if args.json {
        let sets: Vec<serde_json::Value> = results
            .iter()
            .map(|r| serde_json::json!({"dataset": dataset_name(&r.dir), "queries": r.queries, "modes": modes_json(&r.modes)}))
            .collect();
        let mean: serde_json::Map<String, serde_json::Value> = means
            .iter()
            .map(|(m, s)| {
                (m.clone(), serde_json::json!({"ndcg@10": s[0] / n, "mrr@10": s[1] / n, "recall@100": s[2] / n}))
            })
            .collect();
        let v = serde_json::json!({"split": args.split, "datasets": sets, "mean": mean});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} data sets, split {}", results.len(), args.split);
    println!(
        "{:<20} {:<16} {:>8} {:>8} {:>10} {:>8} {:>8}",
        "data set", "mode", "nDCG@10", "MRR@10", "R@100", "p50 ms", "queries"
    );
    for r in results {
        for (mode, m) in &r.modes {
            println!(
                "{:<20} {:<16} {:>8.4} {:>8.4} {:>10.4} {:>8.2} {:>8}",
                dataset_name(&r.dir),
                mode,
                m.ndcg_10,
                m.mrr_10,
                m.recall_100,
                m.latency_ms.p50,
                r.queries
            );
        }
    }
    for (mode, s) in &means {
        println!("{:<20} {:<16} {:>8.4} {:>8.4} {:>10.4}", "mean", mode, s[0] / n, s[1] / n, s[2] / n);
    }
    Ok(())
}

fn tempfile_dir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("sousuo-eval-").tempdir()?)
}

/// The main job for a new user: models, the sample corpus indexed, and searches over it.
pub fn demo(g: &Global, args: DemoArgs) -> Result<()> {
    for m in PINNED {
        ensure_model(g, m)?;
    }
    if !args.corpus.is_dir() {
        bail!("{} is not a folder: run the demo from the repository root, or pass --corpus", args.corpus.display());
    }
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let collection = open(g, "demo", &encoder, Some(ChunkParams::for_encoder(&encoder)))?;
    let summary = index_paths(
        &collection,
        &encoder,
        std::slice::from_ref(&args.corpus),
        &IndexOptions { sync: true, ..Default::default() },
        &|_| {},
    )?;
    println!(
        "demo collection: {} documents ({} indexed now, {} unchanged, {:.1} s)",
        summary.documents_seen, summary.documents_indexed, summary.documents_unchanged, summary.seconds
    );
    for q in ["how does a search engine rank documents by keywords", "why do language models hallucinate", "向量检索"]
    {
        let r = run_search(&collection, &encoder, q, &SearchParams { limit: 3, ..SearchParams::default() })?;
        println!("\nsearch: {q}");
        for (i, h) in r.hits.iter().enumerate() {
            println!("  {}. {}  ({})", i + 1, h.title, h.doc_id);
        }
    }
    drop(collection);
    if args.no_serve {
        println!("\nsearch it yourself: sousuo search \"your question\" --collection demo");
        return Ok(());
    }
    crate::serve::run(g, &args.serve, encoder)
}
