//! The coordinator's side of scatter-gather: a clustered collection searched as one.
//!
//! A search embeds the query once here, then asks every shard (NATS request-reply to the
//! shard's queue group: one replica answers; on a timeout the request is sent again and may
//! reach another) in up to three rounds: BM25 term statistics (summed, so every shard scores
//! with the whole collection's IDF and mean length), candidate lists (merged by score, fused
//! once here), and the bodies of the page's hits (from the shard that holds each document; an
//! answer asks for its passages' chunk vectors afterwards). A
//! shard with no replica answering is named in `missing_shards`, or fails the search with
//! `ShardsUnavailable` when complete results were asked for.

use crate::protocol::{subject, ShardReply, ShardRequest};
use crate::{shard_of, CollectionSpec};
use futures_util::future::join_all;
use sousuo_encoder::Encoder;
use sousuo_indexer::TermStats;
use sousuo_query::search::{check, query_vector};
use sousuo_query::shard::Lists;
use sousuo_query::{Error, Hit, Mode, Result, Retriever, SearchParams, SearchResults};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one try at a shard waits for its reply.
pub const SHARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Tries per shard request (each may reach another replica of the queue group).
pub const TRIES: usize = 2;

/// Fan-out counters for `/metrics`.
#[derive(Debug, Default)]
pub struct FanoutMetrics {
    /// Fan-out rounds run.
    pub rounds: AtomicU64,
    /// Their total time, in microseconds (slowest shard of each round).
    pub micros: AtomicU64,
    /// Shard requests that no replica answered.
    pub missing: AtomicU64,
    /// Shard requests sent again after a timeout.
    pub retries: AtomicU64,
}

/// A clustered collection, searched by scatter-gather. Its [`Retriever`] methods block on the
/// given runtime: call them from blocking threads.
#[derive(Clone)]
pub struct ClusterCollection {
    client: async_nats::Client,
    spec: CollectionSpec,
    handle: tokio::runtime::Handle,
    metrics: Arc<FanoutMetrics>,
}

/// A clustered collection's size, summed over the shards that answered.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClusterCount {
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// Shards no replica answered for (not counted).
    pub missing_shards: Vec<u32>,
}

impl ClusterCollection {
    /// A coordinator for `spec` over `client`; blocking calls run on `handle`.
    pub fn new(
        client: async_nats::Client,
        spec: CollectionSpec,
        handle: tokio::runtime::Handle,
        metrics: Arc<FanoutMetrics>,
    ) -> Self {
        ClusterCollection { client, spec, handle, metrics }
    }

    /// The collection's spec.
    pub fn spec(&self) -> &CollectionSpec {
        &self.spec
    }

    /// One shard's reply: `None` when no replica answered within [`TRIES`] x [`SHARD_TIMEOUT`].
    async fn ask(&self, shard: u32, req: &ShardRequest) -> Result<Option<ShardReply>> {
        let body = serde_json::to_vec(req).map_err(|e| Error::Cluster { reason: e.to_string() })?;
        for attempt in 0..TRIES {
            if attempt > 0 {
                self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            }
            let request = async_nats::Request::new().payload(body.clone().into()).timeout(Some(SHARD_TIMEOUT));
            match self.client.send_request(subject(&self.spec.name, shard), request).await {
                Ok(m) => {
                    return serde_json::from_slice(&m.payload)
                        .map(Some)
                        .map_err(|e| Error::Cluster { reason: format!("unreadable reply from shard {shard}: {e}") })
                }
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    // No replica is subscribed; one may be resubscribing after a restart.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {}
                Err(e) => return Err(Error::Cluster { reason: format!("request to shard {shard}: {e}") }),
            }
        }
        self.metrics.missing.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    /// Sends each shard its request at once; the replies by shard, and the shards without one.
    async fn round(&self, requests: Vec<(u32, ShardRequest)>) -> Result<(BTreeMap<u32, ShardReply>, Vec<u32>)> {
        let started = Instant::now();
        let replies = join_all(requests.iter().map(|(shard, req)| self.ask(*shard, req))).await;
        self.metrics.rounds.fetch_add(1, Ordering::Relaxed);
        self.metrics.micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let (mut got, mut missing) = (BTreeMap::new(), Vec::new());
        for ((shard, _), reply) in requests.iter().zip(replies) {
            match reply? {
                Some(ShardReply::Failed { bad_request: true, reason }) => {
                    return Err(Error::BadParameter { name: "query", reason })
                }
                Some(ShardReply::Failed { bad_request: false, reason }) => {
                    return Err(Error::Cluster { reason: format!("shard {shard}: {reason}") })
                }
                Some(r) => {
                    got.insert(*shard, r);
                }
                None => missing.push(*shard),
            }
        }
        Ok((got, missing))
    }

    fn all_shards(&self) -> impl Iterator<Item = u32> {
        0..self.spec.shards
    }

    /// The search after the query's embedding: statistics, lists, bodies.
    pub async fn search_with(&self, query: &str, vector: Option<Vec<f32>>, p: &SearchParams) -> Result<SearchResults> {
        let started = Instant::now();
        let mut missing = Vec::new();
        let stats = if p.mode == Mode::Dense {
            None
        } else {
            let reqs = self.all_shards().map(|s| (s, ShardRequest::Stats { query: query.into(), params: p.clone() }));
            let (replies, gone) = self.round(reqs.collect()).await?;
            missing.extend(gone);
            let mut total: Option<TermStats> = None;
            for reply in replies.into_values() {
                if let ShardReply::Stats(Some(s)) = reply {
                    total.get_or_insert_with(TermStats::default).add(&s);
                }
            }
            total
        };
        let reqs = self.all_shards().filter(|s| !missing.contains(s)).map(|s| {
            let params = p.clone();
            (s, ShardRequest::Lists { query: query.into(), vector: vector.clone(), stats: stats.clone(), params })
        });
        let (replies, gone) = self.round(reqs.collect()).await?;
        missing.extend(gone);
        self.complete_or_fail(p, &mut missing)?;
        let depth = p.depth.max(p.offset + p.limit);
        let lists = Lists::merge(
            replies.into_values().filter_map(|r| match r {
                ShardReply::Lists(l) => Some(l),
                _ => None,
            }),
            depth,
        );
        let page = lists.fuse_page(p);
        let mut by_shard: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
        for placed in &page.placed {
            by_shard
                .entry(shard_of(&placed.doc_id, self.spec.shards))
                .or_default()
                .push((placed.doc_id.clone(), placed.chunk_key));
        }
        let reqs = by_shard.iter().map(|(s, items)| {
            (*s, ShardRequest::Bodies { query: query.into(), params: p.clone(), items: items.clone() })
        });
        let (replies, gone) = self.round(reqs.collect()).await?;
        missing.extend(gone);
        self.complete_or_fail(p, &mut missing)?;
        let mut bodies: BTreeMap<(String, u64), sousuo_query::shard::HitBody> = BTreeMap::new();
        for (shard, reply) in replies {
            if let (ShardReply::Bodies(got), Some(items)) = (reply, by_shard.get(&shard)) {
                for (item, body) in items.iter().zip(got) {
                    if let Some(b) = body {
                        bodies.insert(item.clone(), b);
                    }
                }
            }
        }
        let hits: Vec<Hit> = page
            .placed
            .into_iter()
            .filter_map(|placed| bodies.remove(&(placed.doc_id.clone(), placed.chunk_key)).map(|b| placed.into_hit(b)))
            .collect();
        Ok(SearchResults {
            query: query.to_string(),
            mode: p.mode,
            hits,
            candidates: page.candidates,
            semantic_ratio: page.semantic_ratio,
            missing_shards: missing,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    fn complete_or_fail(&self, p: &SearchParams, missing: &mut Vec<u32>) -> Result<()> {
        missing.sort_unstable();
        missing.dedup();
        if p.complete && !missing.is_empty() {
            return Err(Error::ShardsUnavailable { collection: self.spec.name.clone(), missing: missing.clone() });
        }
        Ok(())
    }

    /// The collection's size over the shards that answer.
    pub async fn count(&self) -> Result<ClusterCount> {
        let (replies, missing_shards) =
            self.round(self.all_shards().map(|s| (s, ShardRequest::Count)).collect()).await?;
        let mut out = ClusterCount { missing_shards, ..ClusterCount::default() };
        for reply in replies.into_values() {
            if let ShardReply::Count { documents, chunks, .. } = reply {
                out.documents += documents;
                out.chunks += chunks;
            }
        }
        Ok(out)
    }

    /// The reply of the shard holding document `id` (`ShardsUnavailable` when no replica
    /// answers).
    async fn ask_owner(&self, id: &str, req: ShardRequest) -> Result<ShardReply> {
        let shard = shard_of(id, self.spec.shards);
        match self.ask(shard, &req).await? {
            Some(ShardReply::Failed { reason, .. }) => {
                Err(Error::Cluster { reason: format!("shard {shard}: {reason}") })
            }
            Some(reply) => Ok(reply),
            None => Err(Error::ShardsUnavailable { collection: self.spec.name.clone(), missing: vec![shard] }),
        }
    }

    /// A stored document, from its shard.
    pub async fn document(&self, id: &str) -> Result<Option<crate::protocol::StoredDocument>> {
        match self.ask_owner(id, ShardRequest::Document { id: id.to_string() }).await? {
            ShardReply::Document(d) => Ok(d),
            _ => Err(Error::Cluster { reason: "a shard answered another request".into() }),
        }
    }

    /// [`Self::document`], blocking.
    pub fn document_blocking(&self, id: &str) -> Result<Option<crate::protocol::StoredDocument>> {
        self.handle.block_on(self.document(id))
    }

    /// [`Self::count`], blocking.
    pub fn count_blocking(&self) -> Result<ClusterCount> {
        self.handle.block_on(self.count())
    }
}

impl Retriever for ClusterCollection {
    fn search(&self, encoder: &Encoder, query: &str, p: &SearchParams) -> Result<SearchResults> {
        check(query, p)?;
        let vector = query_vector(encoder, query, p.mode)?;
        self.handle.block_on(self.search_with(query, vector, p))
    }

    /// Asked of the hit's shard when an answer needs it (a search sends no vectors).
    fn chunk_vector(&self, hit: &Hit) -> Result<Option<Vec<f32>>> {
        let req = ShardRequest::Vector { key: hit.chunk_key };
        match self.handle.block_on(self.ask_owner(&hit.doc_id, req))? {
            ShardReply::Vector(v) => Ok(v),
            _ => Err(Error::Cluster { reason: "a shard answered another request".into() }),
        }
    }
}
