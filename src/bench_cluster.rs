//! `sousuo bench cluster`: a cluster on this machine (its own nats-server, two nodes, one then
//! two embedding workers) measured in one run against a single node on the same data:
//! ingest throughput with 1 and 2 workers, query throughput and latency with 2 and 1 replicas
//! per shard, the coordinator's overhead, and the CPU time per document and per query that
//! projects the figures to N machines (docs/benchmarks.md, "The cluster").

use crate::bench::{run_queries, QueryFigures};
use crate::cli::{BenchClusterArgs, Global};
use crate::paths::{load_encoder, model_cache};
use crate::remote::Remote;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use sousuo_cluster::server::NatsServer;
use sousuo_cluster::{connect, CollectionSpec, Meta, ShardLog};
use sousuo_encoder::{Encoder, EncoderOptions};
use sousuo_indexer::{ChunkParams, Collection, EncoderInfo, IndexOptions, OpenMode};
use sousuo_query::{beir, Mode, SearchParams};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds of CPU a process has used (user + system; /proc reports in USER_HZ = 100).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The processes of the bench cluster, killed when dropped.
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn cpu(&self, names: &[&str]) -> f64 {
        let others: f64 =
            self.0.iter().filter(|(n, _)| names.contains(&n.as_str())).map(|(_, c)| cpu_seconds(c.id())).sum();
        others + cpu_seconds(std::process::id())
    }

    fn stop(&mut self, name: &str) {
        if let Some((_, c)) = self.0.iter_mut().find(|(n, _)| n == name) {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Serialize)]
struct Ingest {
    way: String,
    documents: usize,
    seconds: f64,
    docs_per_s: f64,
    cpu_ms_per_doc: f64,
}

#[derive(Serialize)]
struct Queries {
    way: String,
    figures: QueryFigures,
    cpu_ms_per_query: f64,
}

pub fn run(g: &Global, args: BenchClusterArgs) -> Result<()> {
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let queries = beir::read_query_lines(&args.beir.join("queries.jsonl"), args.queries)?;
    let root = tempfile::Builder::new().prefix("sousuo-bench-cluster-").tempdir()?;
    let slice = write_slice(&args.beir.join("corpus.jsonl"), args.docs, root.path())?;
    let server = NatsServer::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let url = server.url();
    let models = model_cache(g)?.root().to_path_buf();
    let spawn = |name: &str, args: &[&str]| member(root.path(), &models, name, args);
    let mut procs = Procs(vec![
        spawn("n1", &["node", "--nats", &url, "--id", "n1"])?,
        spawn("n2", &["node", "--nats", &url, "--id", "n2"])?,
        spawn("w1", &["worker", "--nats", &url, "--id", "w1"])?,
    ]);
    let rt = crate::cluster::runtime()?;
    let (js, meta) = rt.block_on(async {
        let js = connect(&url).await?;
        let meta = Meta::open(&js, 1).await?;
        anyhow::Ok((js, meta))
    })?;
    let members = |nodes: usize, workers: usize| -> Result<()> {
        wait(Duration::from_secs(120), "the nodes and workers to register", || {
            let all = rt.block_on(meta.nodes()).unwrap_or_default();
            all.iter().filter(|n| n.worker.is_none()).count() >= nodes
                && all.iter().filter(|n| n.worker.is_some()).count() >= workers
        })
    };
    members(2, 1)?;
    let mut ingests = Vec::new();
    for (way, workers) in [("cluster, 1 worker", 1usize), ("cluster, 2 workers", 2)] {
        if workers == 2 {
            procs.0.push(spawn("w2", &["worker", "--nats", &url, "--id", "w2"])?);
            members(2, 2)?;
        }
        let spec = spec(&format!("bench-w{workers}"), &encoder)?;
        rt.block_on(async {
            meta.create_collection(&spec).await?;
            ShardLog::open(&js, &spec).await
        })?;
        ingests.push(cluster_ingest(way, &url, &spec.name, &encoder, &slice, &procs)?);
    }
    let local = Collection::open(
        &root.path().join("local"),
        "bench",
        &EncoderInfo::of(&encoder)?,
        OpenMode::Create(ChunkParams::for_encoder(&encoder)),
    )?;
    let (cpu, t) = (procs.cpu(&[]), Instant::now());
    let s = sousuo_indexer::index_paths(&local, &encoder, &[slice], &IndexOptions::default(), &|_| {})?;
    ingests.insert(0, ingest("single node", s.documents_seen, t, procs.cpu(&[]) - cpu));

    let p = SearchParams { mode: Mode::Hybrid, ..SearchParams::default() };
    let clustered = Remote::open(&url, "bench-w2")?;
    let mut runs = Vec::new();
    let mut measure = |way: &str, on: &dyn sousuo_query::Retriever, procs: &Procs, names: &[&str]| -> Result<()> {
        for clients in [1, args.clients.max(1)] {
            let cpu = procs.cpu(names);
            let figures = run_queries(on, &encoder, &queries, &p, clients)?;
            let cpu_ms_per_query = (procs.cpu(names) - cpu) * 1000.0 / figures.queries.max(1) as f64;
            runs.push(Queries { way: way.to_string(), figures, cpu_ms_per_query });
        }
        Ok(())
    };
    measure("single node", &local, &procs, &[])?;
    measure("cluster, 2 replicas/shard", &clustered.collection, &procs, &["n1", "n2"])?;
    procs.stop("n2");
    measure("cluster, 1 replica/shard", &clustered.collection, &procs, &["n1"])?;
    report(&args, &ingests, &runs)
}

/// Ingests the slice into clustered collection `name` through the running workers.
fn cluster_ingest(way: &str, url: &str, name: &str, encoder: &Encoder, slice: &Path, procs: &Procs) -> Result<Ingest> {
    let remote = Remote::open(url, name)?;
    remote.wait_for_holders(Duration::from_secs(60))?;
    let all = ["n1", "n2", "w1", "w2"];
    let (cpu, t) = (procs.cpu(&all), Instant::now());
    let s = remote.index(encoder, &[slice.to_path_buf()], &IndexOptions::default(), false, false)?;
    Ok(ingest(way, s.documents_seen, t, procs.cpu(&all) - cpu))
}

/// Starts `sousuo ARGS` as process `name`, with its own home beside the others.
fn member(root: &Path, models: &Path, name: &str, args: &[&str]) -> Result<(String, Child)> {
    let home = root.join(name);
    std::fs::create_dir_all(&home)?;
    std::os::unix::fs::symlink(models, home.join("models"))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(&home)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((name.to_string(), child))
}

fn spec(name: &str, encoder: &Encoder) -> Result<CollectionSpec> {
    Ok(CollectionSpec {
        name: name.to_string(),
        shards: 2,
        replicas: 2,
        log_replicas: 1,
        encoder: EncoderInfo::of(encoder)?,
        chunking: ChunkParams::for_encoder(encoder),
        created_at: sousuo_common::now_secs(),
    })
}

fn ingest(way: &str, documents: usize, t: Instant, cpu: f64) -> Ingest {
    let seconds = t.elapsed().as_secs_f64();
    Ingest {
        way: way.to_string(),
        documents,
        seconds,
        docs_per_s: documents as f64 / seconds,
        cpu_ms_per_doc: cpu * 1000.0 / documents.max(1) as f64,
    }
}

fn wait(within: Duration, what: &str, done: impl Fn() -> bool) -> Result<()> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > within {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The first `n` lines of a BEIR corpus, in `dir`.
fn write_slice(corpus: &Path, n: usize, dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(corpus).with_context(|| format!("cannot read {}", corpus.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(n).collect();
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(path)
}

fn report(args: &BenchClusterArgs, ingests: &[Ingest], runs: &[Queries]) -> Result<()> {
    if args.json {
        let v = serde_json::json!({"ingest": ingests, "queries": runs, "cores": cores()});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let base = ingests.first().map_or(1.0, |i| i.docs_per_s);
    println!("ingest of {} documents ({} cores)", ingests.first().map_or(0, |i| i.documents), cores());
    println!("{:<28} {:>9} {:>9} {:>7} {:>13}", "way", "seconds", "docs/s", "ratio", "CPU ms/doc");
    for i in ingests {
        let r = i.docs_per_s / base;
        println!("{:<28} {:>9.1} {:>9.1} {:>6.2}x {:>13.1}", i.way, i.seconds, i.docs_per_s, r, i.cpu_ms_per_doc);
    }
    // Each run against the single node with as many clients.
    let single = |clients: usize| {
        runs.iter().find(|r| r.way == "single node" && r.figures.clients == clients).map_or(1.0, |r| r.figures.p50_ms)
    };
    println!(
        "\nhybrid queries ({} each; p50 ratio: against the single node with as many clients)",
        runs.first().map_or(0, |r| r.figures.queries)
    );
    println!(
        "{:<28} {:>7} {:>8} {:>8} {:>9} {:>12} {:>13}",
        "way", "clients", "p50 ms", "p99 ms", "queries/s", "p50 ratio", "CPU ms/query"
    );
    for r in runs {
        let f = &r.figures;
        println!(
            "{:<28} {:>7} {:>8.2} {:>8.2} {:>9.1} {:>11.2}x {:>13.1}",
            r.way,
            f.clients,
            f.p50_ms,
            f.p99_ms,
            f.queries_per_s,
            f.p50_ms / single(f.clients),
            r.cpu_ms_per_query
        );
    }
    if let (Some(w), Some(q)) = (ingests.last(), runs.iter().find(|r| r.way.contains("2 replicas"))) {
        println!(
            "\nprojection: one core embeds about {:.1} documents/s ({:.0} CPU ms each, all processes); N machines of C \
             cores ingest about N x C x {:.1}/s and answer about N x C x {:.1} queries/s ({:.0} CPU ms each), until NATS \
             or the coordinator's fan-out binds",
            1000.0 / w.cpu_ms_per_doc,
            w.cpu_ms_per_doc,
            1000.0 / w.cpu_ms_per_doc,
            1000.0 / q.cpu_ms_per_query.max(0.001),
            q.cpu_ms_per_query
        );
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
