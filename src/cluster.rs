//! The binary's side of the cluster (docs/cluster.md): `sousuo cluster create|status|drop`,
//! and `sousuo node` (holds and applies shard replicas, and answers their searches once caught
//! up). The other commands' `--nats` variants are in `remote.rs`.

use crate::cli::{ClusterCommand, Global, NatsArgs, NodeArgs};
use crate::paths::{data_dir, load_encoder};
use anyhow::{Context, Result};
use serde::Serialize;
use sousuo_cluster::meta::NodeInfo;
use sousuo_cluster::replica::Replica;
use sousuo_cluster::serve::serve;
use sousuo_cluster::snapshot::Snapshots;
use sousuo_cluster::work::WorkQueue;
use sousuo_cluster::{connect, CollectionSpec, Meta, ShardLog};
use sousuo_common::now_secs;
use sousuo_encoder::EncoderOptions;
use sousuo_indexer::{ChunkParams, EncoderInfo};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

pub fn command(g: &Global, command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Create { name, shards, replicas, log_replicas, nats, max_tokens, overlap } => {
            let encoder = load_encoder(g, EncoderOptions::default())?;
            let default = ChunkParams::for_encoder(&encoder);
            let spec = CollectionSpec {
                name,
                shards,
                replicas,
                log_replicas,
                encoder: EncoderInfo::of(&encoder)?,
                chunking: ChunkParams {
                    max_tokens: max_tokens.unwrap_or(default.max_tokens).max(16),
                    overlap_tokens: overlap,
                },
                created_at: now_secs(),
            };
            runtime()?.block_on(async {
                let js = connect(&nats.nats).await?;
                Meta::open(&js, log_replicas).await?.create_collection(&spec).await?;
                ShardLog::open(&js, &spec).await?;
                anyhow::Ok(())
            })?;
            println!(
                "created {:?}: {} shards, {} node replicas of each, {} copies of each shard's log",
                spec.name, spec.shards, spec.replicas, spec.log_replicas
            );
            Ok(())
        }
        ClusterCommand::Status { nats, json } => status(&nats, json),
        ClusterCommand::Drop { name, nats } => runtime()?.block_on(async {
            let js = connect(&nats.nats).await?;
            let meta = Meta::open(&js, 1).await?;
            let spec = meta.collection(&name).await?;
            ShardLog::open(&js, &spec).await?.delete().await?;
            WorkQueue::open(&js, &spec).await?.delete().await?;
            Snapshots::open(&js, 1).await?.delete(&spec.name, spec.shards).await?;
            meta.drop_collection(&spec).await?;
            println!("dropped {name:?} (nodes keep their local copies until deleted)");
            Ok(())
        }),
    }
}

#[derive(Serialize)]
struct ReplicaStatus {
    node: String,
    alive: bool,
    applied: Option<u64>,
    lag: Option<u64>,
}

#[derive(Serialize)]
struct ShardStatus {
    collection: String,
    shard: u32,
    stored: u64,
    /// The first sequence the stream holds (trimmed below a snapshot).
    first: u64,
    replicas: Vec<ReplicaStatus>,
}

#[derive(Serialize)]
struct QueueStatus {
    collection: String,
    /// Documents waiting for an embedding worker.
    queued: u64,
}

fn status(nats: &NatsArgs, json: bool) -> Result<()> {
    let (nodes, shards, queues) = runtime()?.block_on(async {
        let js = connect(&nats.nats).await?;
        let meta = Meta::open(&js, 1).await?;
        let nodes = meta.nodes().await?;
        let (mut shards, mut queues) = (Vec::new(), Vec::new());
        for spec in meta.collections().await? {
            let queued = WorkQueue::open(&js, &spec).await?.pending().await?;
            queues.push(QueueStatus { collection: spec.name.clone(), queued });
            let log = ShardLog::open(&js, &spec).await?;
            for shard in 0..spec.shards {
                let stored = log.last_seq(shard).await?;
                let first = log.first_seq(shard).await?;
                let mut replicas = Vec::new();
                for node in meta.replicas_of(&spec.name, shard).await? {
                    let applied = log.acknowledged(shard, &node).await?;
                    let alive = nodes.iter().any(|n| n.id == node);
                    replicas.push(ReplicaStatus {
                        lag: applied.map(|a| stored.saturating_sub(a)),
                        node,
                        alive,
                        applied,
                    });
                }
                shards.push(ShardStatus { collection: spec.name.clone(), shard, stored, first, replicas });
            }
        }
        anyhow::Ok((nodes, shards, queues))
    })?;
    let (workers, nodes): (Vec<NodeInfo>, Vec<NodeInfo>) = nodes.into_iter().partition(|n| n.worker.is_some());
    if json {
        let v = serde_json::json!({"nodes": nodes, "workers": workers, "shards": shards, "queues": queues});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} live nodes: {}", nodes.len(), nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", "));
    let w: Vec<String> = workers.iter().map(|w| format!("{} ({})", w.id, w.worker.as_deref().unwrap_or(""))).collect();
    println!("{} embedding workers: {}", workers.len(), w.join(", "));
    for q in queues.iter().filter(|q| q.queued > 0) {
        println!("{:?}: {} documents wait for a worker", q.collection, q.queued);
    }
    println!("{:<20} {:>5} {:>9}  replicas (node: applied, lag)", "collection", "shard", "stored");
    for s in &shards {
        let r: Vec<String> = s
            .replicas
            .iter()
            .map(|r| {
                let dead = if r.alive { "" } else { " (down)" };
                format!("{}{dead}: {}, {}", r.node, opt(r.applied), opt(r.lag))
            })
            .collect();
        println!("{:<20} {:>5} {:>9}  {}", s.collection, s.shard, s.stored, r.join("; "));
    }
    Ok(())
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The node's id: `--id`, else the one kept in `<data>/node-id` (made once).
fn node_id(data: &Path, given: Option<String>) -> Result<String> {
    if let Some(id) = given {
        return Ok(id);
    }
    let path = data.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = format!("node-{:08x}", (now_secs() as u32) ^ std::process::id().rotate_left(16));
    sousuo_common::fs::atomic_write(&path, id.as_bytes())?;
    Ok(id)
}

/// A replica this node holds: its apply loop and the switch that stops it.
type Held = BTreeMap<(String, u32), (tokio::task::JoinHandle<()>, watch::Sender<bool>)>;

/// `sousuo node`: claims replicas of the shards that have fewer live holders than their
/// collection asks for, applies their logs as they grow, beats its heartbeat, stops applying
/// a dropped collection, and commits and stops on Ctrl-C or SIGTERM.
pub fn node(g: &Global, args: NodeArgs) -> Result<()> {
    let data = data_dir(g)?;
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let id = node_id(&data, args.id.clone())?;
    let rt = runtime()?;
    let api = args.bind.map(|b| format!("http://{b}"));
    let http = match args.bind {
        Some(bind) => Some(coordinator(g, &rt, bind, &args)?),
        None => None,
    };
    rt.block_on(async move {
        let (js, meta) = join(&args.nats.nats, args.meta_replicas).await?;
        let mut held = Held::new();
        println!("node {id} holds its replicas in {} (Ctrl-C to stop)", data.display());
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            // The heartbeat first: a node claims replicas only once others can see it is alive.
            let shards = held.keys().cloned().collect();
            if let Err(e) = meta
                .heartbeat(&NodeInfo {
                    id: id.clone(),
                    api: api.clone(),
                    shards,
                    worker: None,
                    heartbeat_at: now_secs(),
                })
                .await
            {
                tracing::warn!("heartbeat failed: {e}");
            }
            if let Err(e) = discover(&js, &meta, &id, &data, &mut held, args.snapshot_every).await {
                tracing::warn!("cannot read the cluster's collections: {e:#}");
            }
            if stopped_within(&mut terminate, Duration::from_secs(2)).await {
                break;
            }
        }
        for (_, (task, stop)) in held {
            let _ = stop.send(true);
            let _ = task.await;
        }
        if let Some(http) = http {
            let _ = http.await; // it stops on the same signal, after its in-flight requests
        }
        println!("node {id} stopped");
        anyhow::Ok(())
    })
}

/// `node --bind`: the HTTP API and page on `bind`, clustered collections searched by
/// scatter-gather from here.
fn coordinator(
    g: &Global,
    rt: &tokio::runtime::Runtime,
    bind: std::net::SocketAddr,
    args: &NodeArgs,
) -> Result<tokio::task::JoinHandle<()>> {
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let info = EncoderInfo::of(&encoder)?;
    let (js, meta) = rt.block_on(join(&args.nats.nats, args.meta_replicas))?;
    let view = sousuo_web::ClusterView::new(js, meta, rt.handle().clone(), info);
    let state = crate::serve::state(g, bind, &args.serve, encoder, Some(view))?;
    let insecure = args.serve.insecure_no_auth;
    Ok(rt.spawn(async move {
        let served = sousuo_web::serve(state, bind, insecure, |addr| {
            println!("node serving http://{addr}/ (the cluster's collections by scatter-gather)");
        });
        if let Err(e) = served.await {
            tracing::error!("the HTTP server stopped: {e}");
        }
    }))
}

/// Stops the replicas of dropped collections and those whose place went to another node (this
/// one was judged dead), and opens a replica (and its apply loop) for every shard this node
/// can claim and does not hold yet, up to its share of all replicas over the live nodes
/// (nodes that join later take places that are free or whose holder died; nothing moves a
/// replica that has a live holder).
async fn discover(
    js: &sousuo_cluster::Context,
    meta: &Meta,
    id: &str,
    data: &Path,
    held: &mut Held,
    snapshot_every: u64,
) -> Result<()> {
    let mut snapshots: Option<Option<Snapshots>> = None; // opened when a shard is taken
    let specs = meta.collections().await?;
    let nodes = meta.nodes().await?;
    let holders = nodes.iter().filter(|n| n.worker.is_none() && n.id != id).count() + 1;
    let mut live: Vec<String> = nodes.into_iter().map(|n| n.id).collect();
    live.push(id.to_string());
    // Replicas spread over the live nodes: this one takes new ones only below its share.
    let slots: usize = specs.iter().map(|s| s.shards as usize * s.replicas).sum();
    let share = slots.div_ceil(holders);
    let mut lost = Vec::new();
    for (collection, shard) in held.keys() {
        match specs.iter().find(|s| &s.name == collection) {
            None => lost.push(((collection.clone(), *shard), "the collection was dropped")),
            // Re-claiming is a no-op while this node is listed; it fails when this node was
            // judged dead and its place went to another.
            Some(spec) if !meta.claim_replica(collection, *shard, id, &live, spec.replicas).await? => {
                lost.push(((collection.clone(), *shard), "another node took its place"))
            }
            Some(_) => {}
        }
    }
    for (key, why) in lost {
        if let Some((task, stop)) = held.remove(&key) {
            let _ = stop.send(true);
            let _ = task.await;
            let dir = data.join(sousuo_cluster::replica::local_name(&key.0, key.1));
            tracing::warn!("stopped applying {:?} shard {}: {why}; its copy stays in {}", key.0, key.1, dir.display());
        }
    }
    for spec in specs {
        // Opened only when a shard is to be taken: most rounds take none.
        let mut log = None;
        for shard in 0..spec.shards {
            if held.contains_key(&(spec.name.clone(), shard))
                || held.len() >= share
                || !meta.claim_replica(&spec.name, shard, id, &live, spec.replicas).await?
            {
                continue;
            }
            let log = match &mut log {
                Some(log) => log,
                None => log.insert(ShardLog::open(js, &spec).await?),
            };
            let replica = Replica::open(log, shard, id, data).await?;
            tracing::info!(collection = %spec.name, shard, "holding a replica");
            let (stop_tx, stop) = watch::channel(false);
            if snapshots.is_none() && snapshot_every > 0 {
                snapshots = Some(Snapshots::open(js, spec.log_replicas).await.ok());
            }
            let snapshotting =
                snapshots.clone().flatten().map(|snapshots| Snapshotting { snapshots, every: snapshot_every });
            let task = tokio::spawn(apply_loop(Arc::new(replica), js.client(), spec.name.clone(), snapshotting, stop));
            held.insert((spec.name.clone(), shard), (task, stop_tx));
        }
    }
    Ok(())
}

/// When a node snapshots its replicas (`--snapshot-every`).
#[derive(Clone)]
struct Snapshotting {
    snapshots: Snapshots,
    every: u64,
}

/// Applies a shard's log as it grows; commits (BM25, graph) within 2 s of a change, and on stop.
/// Once it has caught up with the log, the replica also answers its shard's searches; every
/// `--snapshot-every` changes it stores a snapshot and trims the stream.
async fn apply_loop(
    replica: Arc<Replica>,
    client: sousuo_cluster::Client,
    name: String,
    snapshotting: Option<Snapshotting>,
    stop: watch::Receiver<bool>,
) {
    let mut dirty = false;
    let mut last_commit = Instant::now();
    let mut serving = None;
    let mut last_snapshot = match &snapshotting {
        Some(s) => s.snapshots.latest(&name, replica.shard()).await.ok().flatten().unwrap_or(0),
        None => 0,
    };
    while !*stop.borrow() {
        if serving.is_none() && replica.lag().await.is_ok_and(|lag| lag == 0) && replica.commit().await.is_ok() {
            serving = Some(start_serving(&replica, &client, &name, &stop));
        }
        match replica.step(Duration::from_secs(1)).await {
            Ok(s) => dirty |= s.applied > 0,
            Err(e) => {
                tracing::warn!(shard = replica.shard(), "applying the shard log failed: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if dirty && last_commit.elapsed() > Duration::from_secs(2) {
            match replica.commit().await {
                Ok(()) => (dirty, last_commit) = (false, Instant::now()),
                Err(e) => tracing::warn!(shard = replica.shard(), "commit failed: {e}"),
            }
            if let Some(s) = &snapshotting {
                snapshot_if_due(&replica, &name, s, &mut last_snapshot).await;
            }
        }
    }
    if let Some(task) = serving {
        let _ = task.await;
    }
    if let Err(e) = replica.commit().await {
        tracing::warn!(shard = replica.shard(), "final commit failed: {e}");
    }
}

/// Answers the replica's shard's searches until `stop`.
fn start_serving(
    replica: &Replica,
    client: &sousuo_cluster::Client,
    name: &str,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (collection, shard) = (replica.collection().clone(), replica.shard());
    tracing::info!(collection = %name, shard, "caught up: answering searches");
    let (client, name, stop) = (client.clone(), name.to_string(), stop.clone());
    tokio::spawn(async move {
        if let Err(e) = serve(client, collection, name, shard, parallel, stop).await {
            tracing::error!(shard, "cannot answer searches: {e}");
        }
    })
}

/// Stores a snapshot when the replica has applied `every` changes since the shard's latest
/// one (this replica's or another's).
async fn snapshot_if_due(replica: &Replica, name: &str, s: &Snapshotting, last: &mut u64) {
    let Ok(applied) = replica.applied() else { return };
    if s.every == 0 || applied < *last + s.every {
        return;
    }
    if let Ok(Some(latest)) = s.snapshots.latest(name, replica.shard()).await {
        *last = (*last).max(latest);
        if applied < *last + s.every {
            return;
        }
    }
    match replica.snapshot(&s.snapshots).await {
        Ok(seq) => *last = seq,
        Err(e) => tracing::warn!(shard = replica.shard(), "snapshot failed: {e}"),
    }
}

/// Connects and opens the metadata buckets, trying again for up to two minutes: a cluster that
/// is starting (JetStream electing its leaders) or a server that is restarting refuses for a
/// while, and a node or worker should not give up then.
pub async fn join(nats: &str, meta_replicas: usize) -> Result<(sousuo_cluster::Context, Meta)> {
    let started = Instant::now();
    loop {
        let attempt = async {
            let js = connect(nats).await?;
            let meta = Meta::open(&js, meta_replicas).await?;
            sousuo_cluster::Result::Ok((js, meta))
        };
        match attempt.await {
            Ok(joined) => return Ok(joined),
            Err(e @ sousuo_cluster::Error::BadUrl { .. }) => return Err(e.into()),
            Err(e) if started.elapsed() < Duration::from_secs(120) => {
                tracing::warn!("cannot join the cluster yet: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits `wait`; true when Ctrl-C or SIGTERM came first (a node's or worker's round loop).
pub async fn stopped_within(terminate: &mut tokio::signal::unix::Signal, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => true,
        _ = terminate.recv() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}
