//! Sousuo across machines: a collection split into shards, each shard's history an append-only,
//! replicated NATS JetStream stream, and every shard replica a local collection that applies
//! that stream in order. NATS does the distributed hard parts (consensus on the log,
//! replication, membership by heartbeat, delivery); this crate maps Sousuo onto it.
//!
//! - [`meta`]: cluster metadata in a replicated JetStream key-value bucket: collections (shards,
//!   replication, the encoder every node must load), which node holds which shard replica, and
//!   the nodes themselves, registered with a heartbeat that expires.
//! - [`shard`]: a document's shard (a stable hash of its id) and the names of shard streams.
//! - [`log`]: appending document changes (upserts with their embedded chunks, deletes) to a
//!   shard's stream; a change is acknowledged only once JetStream has stored it.
//! - [`replica`]: a durable consumer that applies a shard's stream to a local collection; the
//!   stream sequence is recorded with each change, so applying is idempotent and a restarted
//!   replica resumes where it was.
//! - [`protocol`], [`serve`], [`coordinator`]: scatter-gather search. A caught-up replica
//!   answers its shard's requests in the shard's queue group; a coordinator embeds the query
//!   once, sums the shards' BM25 term statistics, merges their lists, fuses once, and fetches
//!   the page's hits, naming any shard that no replica answered for.
//! - [`sink`]: an index run's documents into the shard logs, or to the workers' queue.
//! - [`snapshot`]: replicas' snapshots in an object store, the streams trimmed below them,
//!   new replicas bootstrapped from them.
//! - [`work`]: embedding workers: upserts without vectors queued on a work-queue stream,
//!   embedded in device-sized batches, appended to the shard logs, then acknowledged.
//! - [`server`]: a local `nats-server` for tests and benchmarks.
//!
//! Everything here is `async` (NATS I/O); index writes run on blocking threads.

#![warn(missing_docs)]

pub mod coordinator;
mod error;
pub mod log;
pub mod meta;
pub mod protocol;
pub mod replica;
pub mod serve;
pub mod server;
pub mod shard;
pub mod sink;
pub mod snapshot;
pub mod work;

pub use async_nats::jetstream::Context;
pub use async_nats::Client;
pub use coordinator::{ClusterCollection, ClusterCount, FanoutMetrics};
pub use error::{Error, Result};
pub use log::{Appended, ShardLog};
pub use meta::{CollectionSpec, Meta, NodeInfo};
pub use replica::{Replica, Stepped};
pub use shard::shard_of;

/// Connects to a NATS server (or cluster: several comma-separated URLs) and opens its
/// JetStream context.
pub async fn connect(urls: &str) -> Result<Context> {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|u| u.trim().parse().map_err(|e| Error::BadUrl { url: u.trim().to_string(), reason: format!("{e}") }))
        .collect::<Result<_>>()?;
    let client =
        async_nats::ConnectOptions::new().name("sousuo").connect(addrs).await.map_err(|e| Error::nats("connect", e))?;
    Ok(async_nats::jetstream::new(client))
}
