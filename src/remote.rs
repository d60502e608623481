//! The existing commands on a clustered collection (`--nats URL`): `index` appends to the shard
//! logs, `search`/`ask`/`eval` search by scatter-gather, `stats` counts over the shards,
//! `delete` appends deletions.

use crate::cluster::runtime;
use anyhow::{bail, Result};
use sousuo_cluster::sink::{LogSink, WorkSink};
use sousuo_cluster::snapshot::Snapshots;
use sousuo_cluster::work::WorkQueue;
use sousuo_cluster::{connect, ClusterCollection, CollectionSpec, Context, Meta, ShardLog};
use sousuo_common::now_secs;
use sousuo_encoder::Encoder;
use sousuo_indexer::store::Change;
use sousuo_indexer::{index_into, ChunkParams, EncoderInfo, IndexOptions, IndexSummary, Progress, Sink};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the index client keeps asking a work queue that fails to answer before it gives up.
const QUEUE_SILENCE: Duration = Duration::from_secs(120);

/// A clustered collection opened from the command line, with the runtime its calls block on.
pub struct Remote {
    pub js: Context,
    pub meta: Meta,
    pub collection: ClusterCollection,
    // Dropped last: the client above runs on it.
    pub rt: tokio::runtime::Runtime,
}

impl Remote {
    /// Connects and reads `name`'s spec.
    pub fn open(nats: &str, name: &str) -> Result<Self> {
        let rt = runtime()?;
        let (js, meta, spec) = rt.block_on(async {
            let js = connect(nats).await?;
            let meta = Meta::open(&js, 1).await?;
            let spec = meta.collection(name).await?;
            anyhow::Ok((js, meta, spec))
        })?;
        let collection = ClusterCollection::new(js.client(), spec, rt.handle().clone(), Arc::default());
        Ok(Remote { js, meta, collection, rt })
    }

    pub fn spec(&self) -> &CollectionSpec {
        self.collection.spec()
    }

    /// Fails unless `encoder` is the one the collection's vectors come from.
    pub fn check_encoder(&self, encoder: &Encoder) -> Result<()> {
        let (info, spec) = (EncoderInfo::of(encoder)?, self.spec());
        if info != spec.encoder {
            bail!(
                "cluster collection {:?} is built with encoder {} ({}, dim {}); this process loaded {} ({}, dim {})",
                spec.name,
                spec.encoder.name,
                spec.encoder.precision,
                spec.encoder.dim,
                info.name,
                info.precision,
                info.dim
            );
        }
        Ok(())
    }

    /// Appends `paths` to the shard logs: parsed and chunked here, embedded by the cluster's
    /// embedding workers when any is running (and `embed_here` is not asked), else here. Then,
    /// unless `no_wait`, waits until every replica has applied them.
    pub fn index(
        &self,
        encoder: &Encoder,
        paths: &[PathBuf],
        options: &IndexOptions,
        no_wait: bool,
        embed_here: bool,
    ) -> Result<IndexSummary> {
        self.check_encoder(encoder)?;
        let workers = self.rt.block_on(self.meta.nodes())?.into_iter().filter(|n| n.worker.is_some()).count();
        if workers > 0 && !embed_here {
            return self.index_via_workers(encoder, paths, options, no_wait, workers);
        }
        let log = self.rt.block_on(ShardLog::open(&self.js, self.spec()))?;
        let sink = LogSink::new(log.clone(), self.rt.handle().clone());
        let summary = run_with_bar(&sink, encoder, paths, options)?;
        eprintln!(
            "appended {} documents ({} chunks) to {:?}'s shard logs in {:.1} s; {} errors",
            summary.documents_indexed,
            summary.chunks_embedded,
            self.spec().name,
            summary.seconds,
            summary.errors.len()
        );
        if !no_wait {
            let targets = sink.appended();
            self.rt.block_on(wait_for_replicas(&self.meta, &log, self.spec(), &targets))?;
        }
        Ok(summary)
    }

    /// [`Self::index`] through the work queue: returns once the workers have appended every
    /// queued document to the shard logs (and, unless `no_wait`, the replicas applied them).
    fn index_via_workers(
        &self,
        encoder: &Encoder,
        paths: &[PathBuf],
        options: &IndexOptions,
        no_wait: bool,
        workers: usize,
    ) -> Result<IndexSummary> {
        let queue = self.rt.block_on(WorkQueue::open(&self.js, self.spec()))?;
        let sink = WorkSink::new(queue.clone(), self.spec().chunking, self.rt.handle().clone());
        let summary = run_with_bar(&sink, encoder, paths, options)?;
        eprintln!(
            "queued {} documents of {:?} for {workers} embedding workers in {:.1} s; {} errors",
            summary.documents_indexed,
            self.spec().name,
            summary.seconds,
            summary.errors.len()
        );
        let log = self.rt.block_on(ShardLog::open(&self.js, self.spec()))?;
        let targets = self.rt.block_on(async {
            let started = Instant::now();
            let mut said = Instant::now();
            let mut failing_since: Option<Instant> = None;
            loop {
                // A server restarting or a stream electing its leader: ask again, for a while.
                let pending = match queue.pending().await {
                    Ok(0) => break,
                    Ok(n) => {
                        failing_since = None;
                        n
                    }
                    Err(e) => {
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > QUEUE_SILENCE {
                            bail!(
                                "the work queue has not answered for {} s ({e}): is JetStream up? \
                                 (`sousuo cluster status`; a server whose disk is full stops answering)",
                                QUEUE_SILENCE.as_secs()
                            );
                        }
                        tracing::warn!("reading the work queue failed: {e}; asking again");
                        u64::MAX
                    }
                };
                if said.elapsed() > Duration::from_secs(10) && pending != u64::MAX {
                    eprintln!("{pending} documents wait for an embedding worker");
                    said = Instant::now();
                }
                if started.elapsed() > Duration::from_secs(3600) {
                    bail!("{pending} documents are still queued after an hour: are the workers running? (`sousuo cluster status`)");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut targets = BTreeMap::new();
            for shard in 0..self.spec().shards {
                targets.insert(shard, patiently(|| log.last_seq(shard)).await?);
            }
            eprintln!("the workers appended them to the shard logs ({:.1} s)", started.elapsed().as_secs_f64());
            anyhow::Ok(targets)
        })?;
        if !no_wait {
            self.rt.block_on(wait_for_replicas(&self.meta, &log, self.spec(), &targets))?;
        }
        Ok(summary)
    }

    /// Appends deletions of `ids` to their shards' logs.
    pub fn delete(&self, ids: &[String]) -> Result<()> {
        let log = self.rt.block_on(ShardLog::open(&self.js, self.spec()))?;
        let sink = LogSink::new(log, self.rt.handle().clone());
        let changes: Vec<Change> = ids.iter().map(|id| Change::Delete { doc_id: id.clone() }).collect();
        sink.store(&changes)?;
        println!("appended {} deletions to {:?}'s shard logs", ids.len(), self.spec().name);
        Ok(())
    }

    /// Waits until every shard has a live replica (a new collection's are claimed within a
    /// node's discovery round).
    pub fn wait_for_holders(&self, within: Duration) -> Result<()> {
        let started = Instant::now();
        self.rt.block_on(async {
            loop {
                let live: Vec<String> =
                    self.meta.nodes().await?.into_iter().filter(|n| n.worker.is_none()).map(|n| n.id).collect();
                if live.is_empty() {
                    bail!("no node is running: start some with `sousuo node --nats URL` (docs/cluster.md)");
                }
                let mut held = 0;
                for shard in 0..self.spec().shards {
                    let holders = self.meta.replicas_of(&self.spec().name, shard).await?;
                    held += usize::from(holders.iter().any(|h| live.contains(h)));
                }
                if held == self.spec().shards as usize {
                    return Ok(());
                }
                if started.elapsed() > within {
                    bail!("only {held} of {} shards have a live replica after {within:?}", self.spec().shards);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}

/// An index run into `sink` with a progress bar.
fn run_with_bar(sink: &dyn Sink, encoder: &Encoder, paths: &[PathBuf], options: &IndexOptions) -> Result<IndexSummary> {
    let bar = crate::util::progress(0, "docs");
    let on = |p: Progress| match p {
        Progress::Planned { estimated_docs, .. } => bar.set_length(estimated_docs as u64),
        Progress::Seen { docs } => bar.set_position(docs as u64),
        Progress::Warning(w) => bar.suspend(|| tracing::warn!("{w}")),
        Progress::Error(e) => bar.suspend(|| tracing::error!("{e}")),
        _ => {}
    };
    let summary = index_into(sink, encoder, paths, options, &on)?;
    bar.finish_and_clear();
    Ok(summary)
}

/// A clustered collection made for one run (`eval --nats`), dropped at the end.
pub struct Temporary(pub Remote);

impl Temporary {
    /// Creates `name` with `shards` shards (one replica each, one log copy).
    pub fn create(nats: &str, name: &str, shards: u32, encoder: &Encoder) -> Result<Self> {
        let default = ChunkParams::for_encoder(encoder);
        let spec = CollectionSpec {
            name: name.to_string(),
            shards,
            replicas: 1,
            log_replicas: 1,
            encoder: EncoderInfo::of(encoder)?,
            chunking: default,
            created_at: now_secs(),
        };
        runtime()?.block_on(async {
            let js = connect(nats).await?;
            Meta::open(&js, 1).await?.create_collection(&spec).await?;
            ShardLog::open(&js, &spec).await?;
            anyhow::Ok(())
        })?;
        Ok(Temporary(Remote::open(nats, name)?))
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        let r = &self.0;
        let dropped = r.rt.block_on(async {
            ShardLog::open(&r.js, r.spec()).await?.delete().await?;
            WorkQueue::open(&r.js, r.spec()).await?.delete().await?;
            Snapshots::open(&r.js, 1).await?.delete(&r.spec().name, r.spec().shards).await?;
            r.meta.drop_collection(r.spec()).await
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the temporary collection {:?}: {e} (`sousuo cluster drop`)", r.spec().name);
        }
    }
}

/// `stats -c NAME --nats URL`: documents and chunks summed over the shards.
pub fn stats(nats: &str, name: &str, json: bool) -> Result<()> {
    let remote = Remote::open(nats, name)?;
    let count = remote.collection.count_blocking()?;
    let spec = remote.spec();
    if json {
        let v = serde_json::json!({
            "name": spec.name, "documents": count.documents, "chunks": count.chunks,
            "shards": spec.shards, "replicas": spec.replicas, "missing_shards": count.missing_shards,
            "encoder": spec.encoder, "chunking": spec.chunking,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("collection   {} (clustered: {} shards x {} replicas)", spec.name, spec.shards, spec.replicas);
    println!("documents    {}", count.documents);
    println!("chunks       {}", count.chunks);
    println!("encoder      {} (dim {})", spec.encoder.name, spec.encoder.dim);
    if !count.missing_shards.is_empty() {
        println!("missing      shards {:?} have no replica answering: not counted", count.missing_shards);
    }
    Ok(())
}

/// Waits until every replica of every shard written to has acknowledged its last change (a
/// replica acknowledges the change that drains its stream once it is searchable).
async fn wait_for_replicas(
    meta: &Meta,
    log: &ShardLog,
    spec: &CollectionSpec,
    targets: &BTreeMap<u32, u64>,
) -> Result<()> {
    let started = Instant::now();
    for (&shard, &target) in targets {
        let nodes = patiently(|| meta.replicas_of(&spec.name, shard)).await?;
        if nodes.is_empty() {
            eprintln!("shard {shard} has no replica yet: its log holds the documents until a node takes it");
            continue;
        }
        for node in nodes {
            loop {
                if patiently(|| log.acknowledged(shard, &node)).await?.is_some_and(|a| a >= target) {
                    break;
                }
                if !patiently(|| meta.nodes()).await?.iter().any(|n| n.id == node) {
                    eprintln!("replica {node} of shard {shard} is down: it catches up from the log when it returns");
                    break;
                }
                if started.elapsed() > Duration::from_secs(600) {
                    bail!("replica {node} of shard {shard} has not applied sequence {target} after 10 minutes (is it running? `sousuo cluster status`)");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    eprintln!("every replica applied them ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// The collection name of a temporary clustered collection.
pub fn temporary_name(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), now_secs())
}

/// What `search` and `ask` run on: a local collection, or a clustered one.
pub enum Target {
    Local(Box<sousuo_indexer::Collection>),
    Cluster(Box<Remote>),
}

impl Target {
    /// The local collection `name`, or with `nats` the clustered one (checked against `encoder`).
    pub fn open(g: &crate::cli::Global, name: &str, encoder: &Encoder, nats: Option<&str>) -> Result<Self> {
        match nats {
            None => Ok(Target::Local(Box::new(crate::collections::open(g, name, encoder, None)?))),
            Some(nats) => {
                let remote = Remote::open(nats, name)?;
                remote.check_encoder(encoder)?;
                Ok(Target::Cluster(Box::new(remote)))
            }
        }
    }

    pub fn retriever(&self) -> &dyn sousuo_query::Retriever {
        match self {
            Target::Local(c) => &**c,
            Target::Cluster(r) => &r.collection,
        }
    }
}

/// Says which shards' documents a result lacks.
pub fn warn_missing(missing: &[u32]) {
    if !missing.is_empty() {
        eprintln!(
            "warning: shards {missing:?} have no replica answering: their documents are missing from these results"
        );
    }
}

/// Runs a cluster read until it succeeds, for up to a minute: a NATS server restarting or a
/// stream electing its leader fails reads for a few seconds.
async fn patiently<T, F, Fut>(mut read: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sousuo_cluster::Result<T>>,
{
    let started = Instant::now();
    loop {
        match read().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                tracing::warn!("reading the cluster failed: {e}; asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
