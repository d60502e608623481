//! The API over a cluster (`sousuo node --bind`): a collection the cluster holds is searched
//! and answered by scatter-gather ([`ClusterCollection`]); every other name is a local
//! collection as before.

use crate::error::{ApiError, ApiResult};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use sousuo_cluster::sink::{LogSink, WorkSink};
use sousuo_cluster::work::WorkQueue;
use sousuo_cluster::{ClusterCollection, ClusterCount, CollectionSpec, FanoutMetrics, Meta, ShardLog};
use sousuo_indexer::store::Change;
use sousuo_indexer::{EncoderInfo, Sink};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A collection's spec is read again after this long (a dropped and recreated collection).
const SPEC_TTL: Duration = Duration::from_secs(10);

/// A replica's place, labelling its lag.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    collection: String,
    shard: String,
    node: String,
}

/// The cluster as the API sees it.
pub struct ClusterView {
    js: sousuo_cluster::Context,
    meta: Meta,
    handle: tokio::runtime::Handle,
    metrics: Arc<FanoutMetrics>,
    encoder: EncoderInfo,
    cache: Mutex<HashMap<String, (Instant, Option<ClusterCollection>)>>,
}

impl ClusterView {
    /// The view through `js` for a server whose encoder is `encoder`; blocking lookups run on
    /// `handle`.
    pub fn new(js: sousuo_cluster::Context, meta: Meta, handle: tokio::runtime::Handle, encoder: EncoderInfo) -> Self {
        ClusterView { js, meta, handle, metrics: Arc::default(), encoder, cache: Mutex::default() }
    }

    /// Fails unless this server's encoder made the collection's vectors.
    fn check_encoder(&self, spec: &CollectionSpec) -> ApiResult<()> {
        let (built, mine) = (&spec.encoder, &self.encoder);
        if built.name != mine.name || built.dim != mine.dim || built.weights_sha256 != mine.weights_sha256 {
            return Err(sousuo_indexer::Error::EncoderMismatch {
                collection: spec.name.clone(),
                built_with: built.name.clone(),
                built_dim: built.dim,
                requested: mine.name.clone(),
                requested_dim: mine.dim,
            }
            .into());
        }
        if built.precision != mine.precision {
            return Err(sousuo_indexer::Error::PrecisionMismatch {
                collection: spec.name.clone(),
                built: built.precision.to_string(),
                requested: mine.precision.to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// The clustered collection `name`, `None` when the cluster has none of that name. Blocks:
    /// call it from a blocking thread.
    pub fn get(&self, name: &str) -> ApiResult<Option<ClusterCollection>> {
        if let Some((at, c)) = self.cache.lock().map_err(|_| poisoned())?.get(name) {
            if at.elapsed() < SPEC_TTL {
                return Ok(c.clone());
            }
        }
        let found = match self.handle.block_on(self.meta.collection(name)) {
            Ok(spec) => {
                self.check_encoder(&spec)?;
                Some(ClusterCollection::new(self.js.client(), spec, self.handle.clone(), self.metrics.clone()))
            }
            Err(sousuo_cluster::Error::NoSuchCollection(_)) => None,
            Err(e) => return Err(e.into()),
        };
        self.cache.lock().map_err(|_| poisoned())?.insert(name.to_string(), (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Where an index run into `c` goes: the embedding workers' queue when a worker is running,
    /// else the shard logs, embedded here (blocking).
    pub fn sink(&self, c: &ClusterCollection) -> ApiResult<Box<dyn Sink>> {
        let h = &self.handle;
        let workers = h.block_on(self.meta.nodes())?.iter().filter(|n| n.worker.is_some()).count();
        Ok(match workers {
            0 => Box::new(LogSink::new(h.block_on(ShardLog::open(&self.js, c.spec()))?, h.clone())),
            _ => {
                Box::new(WorkSink::new(h.block_on(WorkQueue::open(&self.js, c.spec()))?, c.spec().chunking, h.clone()))
            }
        })
    }

    /// Deletes document `id` of `c` (through its shard's log); `NoSuchDocument` when the
    /// shard does not hold it (blocking).
    pub fn delete(&self, c: &ClusterCollection, id: &str) -> ApiResult<()> {
        if c.document_blocking(id)?.is_none() {
            return Err(sousuo_indexer::Error::NoSuchDocument(id.to_string()).into());
        }
        let log = self.handle.block_on(ShardLog::open(&self.js, c.spec()))?;
        LogSink::new(log, self.handle.clone()).store(&[Change::Delete { doc_id: id.to_string() }])?;
        Ok(())
    }

    /// Whether every live replica of `c` has applied everything its shard logs hold, and no
    /// document waits for an embedding worker: what a finished task's `replicated` reports.
    pub async fn replicated(&self, c: &ClusterCollection) -> ApiResult<bool> {
        let spec = c.spec();
        if WorkQueue::open(&self.js, spec).await?.pending().await? > 0 {
            return Ok(false);
        }
        let live: Vec<String> = self.meta.nodes().await?.into_iter().map(|n| n.id).collect();
        let log = ShardLog::open(&self.js, spec).await?;
        for shard in 0..spec.shards {
            let stored = log.last_seq(shard).await?;
            for node in self.meta.replicas_of(&spec.name, shard).await?.iter().filter(|n| live.contains(n)) {
                if log.acknowledged(shard, node).await?.is_none_or(|a| a < stored) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The clustered collections' names and sizes (blocking).
    pub fn list(&self) -> ApiResult<Vec<(String, ClusterCount)>> {
        let specs = self.handle.block_on(self.meta.collections())?;
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let c = ClusterCollection::new(self.js.client(), spec, self.handle.clone(), self.metrics.clone());
            let count = c.count_blocking().unwrap_or_default();
            out.push((c.spec().name.clone(), count));
        }
        Ok(out)
    }

    /// The cluster's metrics, into a scrape's registry: fan-out rounds and their time, shards
    /// missing, retries, and each replica's lag (changes stored in its shard's log that it has
    /// not applied).
    pub async fn register_metrics(&self, root: &mut Registry) {
        let m = &self.metrics;
        let r = root.sub_registry_with_prefix("sousuo_cluster");
        r.register_with_unit(
            "fanout",
            "Time in scatter-gather rounds to the shards.",
            Unit::Seconds,
            ConstCounter::new(m.micros.load(Ordering::Relaxed) as f64 / 1e6),
        );
        r.register(
            "fanout_rounds",
            "Scatter-gather rounds to the shards.",
            ConstCounter::new(m.rounds.load(Ordering::Relaxed)),
        );
        r.register(
            "shard_missing",
            "Shards that no replica answered in a round.",
            ConstCounter::new(m.missing.load(Ordering::Relaxed)),
        );
        r.register(
            "shard_retries",
            "Second tries of a shard within a round.",
            ConstCounter::new(m.retries.load(Ordering::Relaxed)),
        );
        let lag: Family<LagLabels, Gauge> = Family::default();
        if let Ok(specs) = self.meta.collections().await {
            for spec in specs {
                let Ok(log) = ShardLog::open(&self.js, &spec).await else { continue };
                for shard in 0..spec.shards {
                    let Ok(stored) = log.last_seq(shard).await else { continue };
                    for node in self.meta.replicas_of(&spec.name, shard).await.unwrap_or_default() {
                        if let Ok(Some(applied)) = log.acknowledged(shard, &node).await {
                            let labels = LagLabels { collection: spec.name.clone(), shard: shard.to_string(), node };
                            lag.get_or_create(&labels).set(stored.saturating_sub(applied) as i64);
                        }
                    }
                }
            }
        }
        r.register("replica_lag", "Changes in a shard's log that a replica has not applied.", lag);
    }
}

fn poisoned() -> ApiError {
    ApiError::internal("the cluster cache lock was poisoned by a panic")
}
