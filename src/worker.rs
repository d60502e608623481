//! `sousuo worker`: an embedding worker. It serves every clustered collection built with its
//! encoder: pulls batches sized for its device from the collection's work queue, embeds them,
//! appends them to the shard logs, and acknowledges them (docs/cluster.md).

use crate::cli::{Global, WorkerArgs};
use crate::cluster::runtime;
use crate::paths::load_encoder;
use anyhow::Result;
use sousuo_cluster::meta::NodeInfo;
use sousuo_cluster::work::Worker;
use sousuo_common::now_secs;
use sousuo_encoder::{Device, EncoderOptions};
use sousuo_indexer::EncoderInfo;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Documents per batch by default: a GPU takes large batches, a CPU core about a second's work.
fn default_batch(device: Device) -> usize {
    match device {
        Device::Cuda(_) => 512,
        _ => 32,
    }
}

pub fn worker(g: &Global, args: WorkerArgs) -> Result<()> {
    let device = g.device.resolve()?;
    let encoder = load_encoder(g, EncoderOptions::default())?;
    let info = EncoderInfo::of(&encoder)?;
    let batch = args.batch.unwrap_or_else(|| default_batch(device)).max(1);
    let id = args.id.clone().unwrap_or_else(|| format!("worker-{:08x}", std::process::id() ^ now_secs() as u32));
    let ack_wait = Duration::from_secs(args.ack_wait_secs.max(1));
    runtime()?.block_on(async move {
        let (js, meta) = crate::cluster::join(&args.nats.nats, 1).await?;
        let what = format!("{device}, batches of {batch} documents");
        println!("worker {id} embeds on {what} (Ctrl-C to stop)");
        let mut running: BTreeMap<String, (tokio::task::JoinHandle<()>, watch::Sender<bool>)> = BTreeMap::new();
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let me = NodeInfo {
                id: id.clone(),
                api: None,
                shards: Vec::new(),
                worker: Some(what.clone()),
                heartbeat_at: now_secs(),
            };
            if let Err(e) = meta.heartbeat(&me).await {
                tracing::warn!("heartbeat failed: {e}");
            }
            match meta.collections().await {
                Ok(specs) => {
                    running.retain(|name, (_, stop)| {
                        let keep = specs.iter().any(|s| &s.name == name);
                        if !keep {
                            let _ = stop.send(true);
                        }
                        keep
                    });
                    let fresh: Vec<_> =
                        specs.into_iter().filter(|s| s.encoder == info && !running.contains_key(&s.name)).collect();
                    for spec in fresh {
                        match Worker::open(&js, &spec, encoder.clone(), batch, ack_wait).await {
                            Ok(w) => {
                                let (tx, rx) = watch::channel(false);
                                running.insert(
                                    spec.name.clone(),
                                    (tokio::spawn(work_loop(Arc::new(w), spec.name, rx)), tx),
                                );
                            }
                            Err(e) => tracing::warn!(collection = %spec.name, "cannot join the work queue: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot read the cluster's collections: {e}"),
            }
            if crate::cluster::stopped_within(&mut terminate, Duration::from_secs(2)).await {
                break;
            }
        }
        for (_, (task, stop)) in running {
            let _ = stop.send(true);
            let _ = task.await;
        }
        println!("worker {id} stopped");
        anyhow::Ok(())
    })
}

/// Embeds a collection's queued documents until stopped.
async fn work_loop(worker: Arc<Worker>, name: String, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match worker.step(Duration::from_secs(1)).await {
            Ok(w) if w.documents > 0 => {
                tracing::info!(collection = %name, documents = w.documents, chunks = w.chunks, "embedded")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(collection = %name, "embedding a batch failed: {e}; it will be delivered again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
