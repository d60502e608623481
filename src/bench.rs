//! `sousuo bench ...`: whole-pipeline figures, each variant measured in the same run.

use crate::cli::{BenchEncodeArgs, Global};
use crate::paths::load_encoder;
use crate::util::{human_bytes, peak_rss_bytes, progress};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use sousuo_encoder::weights::{BertShape, BertWeights};
use sousuo_encoder::{Backend, Batching, Device, EncoderOptions, Parallelism, Pooling, Precision, RawKind, RawModel};
use sousuo_query::beir;
use std::path::Path;
use std::time::Instant;

#[derive(Serialize)]
struct EncodeFigures {
    variant: String,
    docs: usize,
    tokens: u64,
    padded_tokens: u64,
    batches: u64,
    wall_s: f64,
    cpu_s: f64,
    docs_per_s: f64,
    tokens_per_s: f64,
    tokens_per_cpu_s: f64,
    padding_fraction: f64,
    peak_rss_bytes: u64,
}

pub fn encode(g: &Global, args: BenchEncodeArgs) -> Result<()> {
    if args.random_weights {
        return encode_random(g, &args);
    }
    let texts = load_texts(&args.corpus, args.limit, args.mixed)?;
    let threads = g.threads.map(|t| t.to_string()).unwrap_or_else(|| "default".into());
    // Every variant is loaded first, then the texts are encoded in rounds, each round by every
    // variant in turn (the order rotating): load on a shared machine changes over a run, and
    // interleaving gives each variant the same conditions, so the ratios hold.
    let mut encoders = Vec::new();
    for name in &args.variants {
        let Some(options) = encode_variant(name) else {
            bail!("unknown variant {name:?}: use naive, candle, fp32, fp32-matmul or int8, optionally with :THREADS and @TOKENS");
        };
        let g = &Global { precision: Some(options.precision), ..g.clone() };
        let encoder = load_encoder(g, options)?;
        encoder.encode(&texts[..texts.len().min(8)].iter().map(String::as_str).collect::<Vec<_>>())?; // warm-up
        let before = encoder.stats();
        encoders.push((name, encoder, before, 0.0f64, 0.0f64));
    }
    let rounds = args.rounds.clamp(1, texts.len().max(1));
    let bar = progress((texts.len() * encoders.len()) as u64, "encoding");
    for round in 0..rounds {
        let slice = &texts[texts.len() * round / rounds..texts.len() * (round + 1) / rounds];
        let n = encoders.len();
        for i in 0..n {
            let (_, encoder, _, wall_s, cpu_s) = &mut encoders[(i + round) % n];
            let (wall, cpu) = (Instant::now(), cpu_time::ProcessTime::now());
            for chunk in slice.chunks(args.chunk.max(1)) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                encoder.encode(&refs)?;
                bar.inc(chunk.len() as u64);
            }
            *wall_s += wall.elapsed().as_secs_f64();
            *cpu_s += cpu.elapsed().as_secs_f64();
        }
    }
    bar.finish_and_clear();
    let mut results = Vec::new();
    for (name, encoder, before, wall_s, cpu_s) in encoders {
        let s = encoder.stats();
        let (tokens, padded) = (s.tokens - before.tokens, s.padded_tokens - before.padded_tokens);
        results.push(EncodeFigures {
            variant: name.to_string(),
            docs: texts.len(),
            tokens,
            padded_tokens: padded,
            batches: s.batches - before.batches,
            wall_s,
            cpu_s,
            docs_per_s: texts.len() as f64 / wall_s,
            tokens_per_s: tokens as f64 / wall_s,
            tokens_per_cpu_s: tokens as f64 / cpu_s.max(1e-9),
            padding_fraction: 1.0 - tokens as f64 / (padded as f64).max(1.0),
            peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        });
    }
    let base = results.first().map(|r| r.tokens_per_cpu_s).unwrap_or(1.0).max(1e-9);
    let ratios: Vec<f64> = results.iter().map(|r| r.tokens_per_cpu_s / base).collect();
    if args.json {
        let v = serde_json::json!({
            "corpus": args.corpus, "mixed": args.mixed, "threads": threads,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "variants": results, "ratios_tokens_per_cpu_s": ratios,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_encode_table(&args, texts.len(), &threads, &results, &ratios);
    Ok(())
}

fn print_encode_table(args: &BenchEncodeArgs, docs: usize, threads: &str, results: &[EncodeFigures], ratios: &[f64]) {
    println!(
        "encoder benchmark: {} texts from {}{}, threads {threads}",
        docs,
        args.corpus.display(),
        if args.mixed { " (mixed with queries)" } else { "" }
    );
    println!(
        "{:<22} {:>9} {:>11} {:>14} {:>7} {:>9} {:>10} {:>10}",
        "variant", "docs/s", "tokens/s", "tokens/cpu-s", "ratio", "padding", "wall s", "peak RSS"
    );
    for (r, ratio) in results.iter().zip(ratios) {
        println!(
            "{:<22} {:>9.1} {:>11.0} {:>14.0} {:>6.2}x {:>8.1}% {:>10.2} {:>10}",
            r.variant,
            r.docs_per_s,
            r.tokens_per_s,
            r.tokens_per_cpu_s,
            ratio,
            100.0 * r.padding_fraction,
            r.wall_s,
            human_bytes(r.peak_rss_bytes)
        );
    }
    println!(
        "ratio: tokens per CPU-second against the first variant, measured in this run ({} rounds, variants interleaved); peak RSS: the process, every variant loaded",
        args.rounds.clamp(1, docs.max(1))
    );
}

/// The encoder options of a named benchmark variant: `NAME[:THREADS][@TOKENS]` (threads of
/// the pool one batch may use, default all; the token budget of a batch, default 1,024).
fn encode_variant(spec: &str) -> Option<EncoderOptions> {
    let (spec, budget) = match spec.split_once('@') {
        Some((s, b)) => (s, Some(b.parse::<usize>().ok()?)),
        None => (spec, None),
    };
    let (name, threads) = match spec.split_once(':') {
        Some((n, t)) => (n, t.parse().ok()?),
        None => (spec, 0),
    };
    let (batching, backend, parallelism, precision) = match name {
        "naive" => (Batching::Fixed(32), Backend::Candle, Parallelism::Sequences, Precision::F32),
        "candle" => (Batching::default(), Backend::Candle, Parallelism::Sequences, Precision::F32),
        "fp32" => (Batching::default(), Backend::Native, Parallelism::Sequences, Precision::F32),
        "fp32-matmul" => (Batching::default(), Backend::Native, Parallelism::Matmul, Precision::F32),
        "int8" => (Batching::default(), Backend::Native, Parallelism::Sequences, Precision::Int8),
        _ => return None,
    };
    let batching = match (budget, batching) {
        (Some(budget), Batching::TokenBudget { max_seqs, .. }) if budget > 0 => {
            Batching::TokenBudget { budget, max_seqs }
        }
        (Some(_), _) => return None,
        (None, b) => b,
    };
    Some(EncoderOptions { batching, backend, parallelism, precision, threads, ..EncoderOptions::default() })
}

/// Title + " " + text of each document; with `mixed`, the queries interleaved one for one.
fn load_texts(dir: &Path, limit: Option<usize>, mixed: bool) -> Result<Vec<String>> {
    let docs: Vec<String> = beir::read_corpus(dir, limit)
        .context("is --corpus a BEIR directory?")?
        .into_iter()
        .map(|d| format!("{} {}", d.title, d.text).trim().to_string())
        .collect();
    if !mixed {
        return Ok(docs);
    }
    let queries = beir::read_queries(dir, limit)?;
    let mut out = Vec::with_capacity(docs.len() + queries.len());
    let mut q = queries.into_iter().map(|d| d.text);
    for d in docs {
        out.push(d);
        out.extend(q.next());
    }
    out.extend(q);
    Ok(out)
}

#[derive(Serialize, Clone)]
pub struct QueryFigures {
    pub mode: String,
    pub clients: usize,
    pub queries: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub queries_per_s: f64,
}

/// `sousuo bench query`: each mode with one client, then with N clients sharing the
/// collection and the encoder (whose worker batches their query embeddings together).
pub fn query(g: &Global, args: crate::cli::BenchQueryArgs) -> Result<()> {
    let queries = beir::read_query_lines(&args.queries, args.max_queries)?;
    if queries.is_empty() {
        bail!("{} holds no queries", args.queries.display());
    }
    let encoder = load_encoder(g, EncoderOptions::default())?;
    if let Some(n) = args.synthetic {
        return crate::bench_synthetic::run(g, &args, n, &encoder, &queries);
    }
    let rss_before = crate::bench_memory::rss_parts_mib()?;
    let collection = crate::collections::open(g, &args.collection, &encoder, None)?;
    let mut rows = vec![embed_queries(&encoder, &queries)?];
    for mode in [sousuo_query::Mode::Bm25, sousuo_query::Mode::Dense, sousuo_query::Mode::Hybrid] {
        let p = sousuo_query::SearchParams { mode, snippets: true, ..Default::default() };
        for clients in [1, args.concurrency.max(1)] {
            rows.push(run_queries(&collection, &encoder, &queries, &p, clients)?);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("query benchmark: {} queries on {:?}", queries.len(), args.collection);
    println!("{:<8} {:>8} {:>9} {:>9} {:>11}", "mode", "clients", "p50 ms", "p99 ms", "queries/s");
    for r in rows {
        println!("{:<8} {:>8} {:>9.2} {:>9.2} {:>11.1}", r.mode, r.clients, r.p50_ms, r.p99_ms, r.queries_per_s);
    }
    if args.rss {
        let (anon, file) = crate::bench_memory::rss_parts_mib()?;
        let (anon, file) = (anon - rss_before.0, file - rss_before.1);
        let chunks = collection.live_chunks().max(1) as f64;
        println!(
            "resident over the process before opening the collection: {:.1} MiB anonymous ({:.0} bytes per chunk), {:.1} MiB of mapped files' pages ({:.0} bytes per chunk; page cache, which the kernel may drop), {chunks} chunks",
            anon,
            anon * 1048576.0 / chunks,
            file,
            file * 1048576.0 / chunks
        );
    }
    Ok(())
}

/// The query embedding alone (tokenizer and forward pass, one client): the part of a dense
/// or hybrid query's latency that the encoder owns.
fn embed_queries(encoder: &sousuo_encoder::Encoder, queries: &[String]) -> Result<QueryFigures> {
    let started = Instant::now();
    let mut lat = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        encoder.encode(&[q.as_str()])?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let wall = started.elapsed().as_secs_f64();
    let (_, p50, p99) = sousuo_query::metrics::latency_summary(&lat);
    Ok(QueryFigures {
        mode: "embed".into(),
        clients: 1,
        queries: lat.len(),
        p50_ms: p50,
        p99_ms: p99,
        queries_per_s: lat.len() as f64 / wall,
    })
}

#[derive(Serialize)]
struct RandomFigures {
    length: usize,
    batch: usize,
    runs: usize,
    docs_per_s: f64,
    tokens_per_s: f64,
    tflops: f64,
}

/// Runs `queries` on `collection` from `clients` threads at once: latency percentiles and
/// throughput.
pub fn run_queries(
    collection: &dyn sousuo_query::Retriever,
    encoder: &sousuo_encoder::Encoder,
    queries: &[String],
    p: &sousuo_query::SearchParams,
    clients: usize,
) -> Result<QueryFigures> {
    let started = Instant::now();
    let latencies = std::sync::Mutex::new(Vec::with_capacity(queries.len()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..clients.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(q) = queries.get(i) else { break };
                let t = Instant::now();
                if let Err(e) = collection.search(encoder, q, p) {
                    if let Ok(mut f) = failed.lock() {
                        *f = Some(e.to_string());
                    }
                    break;
                }
                if let Ok(mut l) = latencies.lock() {
                    l.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        bail!("a query failed: {e}");
    }
    let wall = started.elapsed().as_secs_f64();
    let lat = latencies.into_inner().unwrap_or_default();
    let (_, p50, p99) = sousuo_query::metrics::latency_summary(&lat);
    Ok(QueryFigures {
        mode: p.mode.as_str().to_string(),
        clients,
        queries: lat.len(),
        p50_ms: p50,
        p99_ms: p99,
        queries_per_s: lat.len() as f64 / wall,
    })
}

/// `bench encode --random-weights`: the device's forward pass against candle's on random ids.
fn encode_random(g: &Global, args: &BenchEncodeArgs) -> Result<()> {
    let shape = BertShape {
        vocab: args.vocab,
        hidden: args.hidden,
        layers: args.layers,
        heads: args.heads,
        intermediate: args.intermediate,
        max_positions: args.lengths.iter().copied().max().unwrap_or(512).max(2),
        type_vocab: 2,
        eps: 1e-12,
    };
    if shape.heads == 0 || !shape.hidden.is_multiple_of(shape.heads) || shape.vocab < 2 || shape.layers == 0 {
        bail!("--heads must divide --hidden, and --vocab and --layers must be positive");
    }
    let device = g.device.resolve()?;
    let kind = match device {
        Device::Cuda(n) => RawKind::Cuda(n),
        _ => RawKind::Native { threads: 0, parallelism: Parallelism::Sequences, precision: Precision::F32 },
    };
    let weights = BertWeights::random(shape, 42);
    let model = RawModel::new(&weights, Pooling::Mean, kind)?;
    let reference = RawModel::new(&weights, Pooling::Mean, RawKind::Candle)?;
    let mut ids = RandomIds { state: 0x2545_F491_4F6C_DD1D, vocab: shape.vocab as u64 };
    println!(
        "random-weights encoder benchmark on {device}: {} layers, hidden {}, {} heads, ffn {}, vocab {}",
        shape.layers, shape.hidden, shape.heads, shape.intermediate, shape.vocab
    );
    let (max_diff, min_cos, spread) = agreement(&model, &reference, args, shape.hidden, &mut ids)?;
    println!("agreement with candle (CPU, f32): max |difference| {max_diff:.2e}, min cosine {min_cos:.6}");
    println!("(for scale: cosine between different inputs' vectors goes down to {spread:.4})");
    let results = throughput(&model, &shape, args, &mut ids)?;
    if args.json {
        let v = serde_json::json!({
            "device": device.to_string(), "shape": format!("{shape:?}"),
            "max_abs_difference": max_diff, "min_cosine": min_cos, "min_cosine_between_inputs": spread,
            "runs": results,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

/// Deterministic token ids (xorshift), the same on every run.
struct RandomIds {
    state: u64,
    vocab: u64,
}

impl RandomIds {
    fn take(&mut self, len: usize) -> Vec<u32> {
        (0..len)
            .map(|_| {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                (self.state % self.vocab) as u32
            })
            .collect()
    }
}

/// Agreement of `model` with candle's reference on mixed lengths (the packed forward pass must
/// not depend on what a sequence is batched with): the largest difference, the lowest cosine,
/// and for scale the lowest cosine between different inputs' vectors.
fn agreement(
    model: &RawModel,
    reference: &RawModel,
    args: &BenchEncodeArgs,
    hidden: usize,
    ids: &mut RandomIds,
) -> Result<(f32, f32, f32)> {
    let (mut max_diff, mut min_cos, mut spread) = (0f32, 1f32, 1f32);
    for &len in &args.lengths {
        let seqs: Vec<Vec<u32>> = (0..args.compare.max(1)).map(|i| ids.take(len - (i * 7) % len.max(1) / 2)).collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let got = model.forward(&refs)?;
        let want = reference.forward(&refs)?;
        let first = &want[..hidden];
        for other in want.chunks(hidden).skip(1) {
            spread = spread.min(first.iter().zip(other).map(|(x, y)| x * y).sum());
        }
        for (a, b) in got.chunks(hidden).zip(want.chunks(hidden)) {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            min_cos = min_cos.min(dot);
            max_diff = a.iter().zip(b).fold(max_diff, |m, (x, y)| m.max((x - y).abs()));
        }
    }
    Ok((max_diff, min_cos, spread))
}

/// Docs/s, tokens/s and TFLOP/s at each length and batch size, printed as they come.
fn throughput(
    model: &RawModel,
    shape: &BertShape,
    args: &BenchEncodeArgs,
    ids: &mut RandomIds,
) -> Result<Vec<RandomFigures>> {
    let mut results = Vec::new();
    for &len in &args.lengths {
        for &batch in &args.batch_sizes {
            let seqs: Vec<Vec<u32>> = (0..batch).map(|_| ids.take(len)).collect();
            let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            model.forward(&refs)?; // warm-up (and kernel compilation)
            let start = Instant::now();
            let mut runs = 0;
            // Four batches queued at a time, as the encoder worker pipelines them.
            let group: Vec<Vec<&[u32]>> = vec![refs.clone(); 4];
            while runs == 0 || start.elapsed().as_secs_f64() < args.seconds {
                model.forward_batches(&group, |_, _| ())?;
                runs += group.len();
            }
            let secs = start.elapsed().as_secs_f64();
            let docs = (runs * batch) as f64 / secs;
            let r = RandomFigures {
                length: len,
                batch,
                runs,
                docs_per_s: docs,
                tokens_per_s: docs * len as f64,
                tflops: docs * shape.flops(len) / 1e12,
            };
            println!(
                "length {:>4}  batch {:>4}  {:>10.1} docs/s  {:>12.0} tokens/s  {:>7.2} TFLOP/s",
                r.length, r.batch, r.docs_per_s, r.tokens_per_s, r.tflops
            );
            results.push(r);
        }
    }
    Ok(results)
}
