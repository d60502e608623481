//! Cluster metadata in replicated JetStream key-value buckets:
//!
//! - `sousuo-collections`: collection name -> [`CollectionSpec`] (shards, replication, the
//!   encoder every node must load, the chunking).
//! - `sousuo-replicas`: `<collection>.<shard>` -> the ids of the nodes holding a replica.
//! - `sousuo-nodes`: node id -> [`NodeInfo`], rewritten by each node's heartbeat; the bucket's
//!   `max_age` is [`NODE_TTL`], so a node that stops beating disappears from it.

use crate::{Error, Result};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::{stream, Context};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sousuo_indexer::{ChunkParams, EncoderInfo};
use std::time::Duration;

const COLLECTIONS: &str = "sousuo-collections";
const REPLICAS: &str = "sousuo-replicas";
const NODES: &str = "sousuo-nodes";

/// How long a node stays listed after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(15);

/// Most shards a collection may have.
pub const MAX_SHARDS: u32 = 256;

/// Most node replicas a shard may have.
pub const MAX_REPLICAS: usize = 16;

/// A clustered collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// Its name (the indexer's rules: `[A-Za-z0-9_-]`).
    pub name: String,
    /// How many shards its documents are hashed over.
    pub shards: u32,
    /// Nodes that hold a replica of each shard (each a full local copy that applies the log).
    pub replicas: usize,
    /// Copies of each shard's log JetStream keeps (1 on a single server, 3 on a 3-server
    /// cluster).
    pub log_replicas: usize,
    /// The encoder whose vectors the log carries: every node must load this one.
    pub encoder: EncoderInfo,
    /// How documents are chunked before embedding.
    pub chunking: ChunkParams,
    /// Unix seconds at creation.
    pub created_at: u64,
}

impl CollectionSpec {
    /// Checks the name, the shard count and the replication factor.
    pub fn validate(&self) -> Result<()> {
        sousuo_indexer::validate_name(&self.name)?;
        let bad = |reason: String| Err(Error::BadSpec { name: self.name.clone(), reason });
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return bad(format!("{} shards: use 1 to {MAX_SHARDS}", self.shards));
        }
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            return bad(format!("{} replicas per shard: use 1 to {MAX_REPLICAS}", self.replicas));
        }
        if self.log_replicas == 0 || self.log_replicas > 5 {
            return bad(format!("{} copies of the log: JetStream keeps 1 to 5", self.log_replicas));
        }
        Ok(())
    }
}

/// A node as it registers itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id (unique in the cluster; durable consumer names derive from it).
    pub id: String,
    /// Where it serves the HTTP API, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The shard replicas it holds: (collection, shard).
    #[serde(default)]
    pub shards: Vec<(String, u32)>,
    /// For an embedding worker (`sousuo worker`), its device and batch size; `None` for a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Unix seconds of this heartbeat.
    pub heartbeat_at: u64,
}

/// The metadata buckets.
#[derive(Clone)]
pub struct Meta {
    collections: kv::Store,
    replicas: kv::Store,
    nodes: kv::Store,
}

impl Meta {
    /// Opens the buckets, creating them with `replicas` copies (1 on a single server, 3 on a
    /// 3-server cluster) when they do not exist.
    pub async fn open(js: &Context, replicas: usize) -> Result<Self> {
        Self::open_with_ttl(js, replicas, NODE_TTL).await
    }

    /// [`Self::open`] with another node TTL, for a cluster whose nodes bucket does not exist
    /// yet (an existing bucket keeps its own).
    pub async fn open_with_ttl(js: &Context, replicas: usize, node_ttl: Duration) -> Result<Self> {
        Ok(Meta {
            collections: bucket(js, COLLECTIONS, replicas, Duration::ZERO).await?,
            replicas: bucket(js, REPLICAS, replicas, Duration::ZERO).await?,
            nodes: bucket(js, NODES, replicas, node_ttl).await?,
        })
    }

    /// Records a new collection; refused when one of that name exists.
    pub async fn create_collection(&self, spec: &CollectionSpec) -> Result<()> {
        spec.validate()?;
        match self.collections.create(&spec.name, to_json(spec)).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Err(Error::CollectionExists(spec.name.clone())),
            Err(e) => Err(Error::nats("create collection", e)),
        }
    }

    /// A collection's spec.
    pub async fn collection(&self, name: &str) -> Result<CollectionSpec> {
        sousuo_indexer::validate_name(name)?;
        let entry = self.collections.entry(name).await.map_err(|e| Error::nats("read collection", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => from_json(COLLECTIONS, e.revision, &e.value),
            _ => Err(Error::NoSuchCollection(name.to_string())),
        }
    }

    /// Every collection's spec, by name.
    pub async fn collections(&self) -> Result<Vec<CollectionSpec>> {
        let names = sorted_keys(&self.collections, "list collections").await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match self.collection(&name).await {
                Ok(spec) => out.push(spec),
                Err(Error::NoSuchCollection(_)) => {} // dropped meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Forgets a collection and its replica assignments (its streams are [`crate::ShardLog`]'s).
    pub async fn drop_collection(&self, spec: &CollectionSpec) -> Result<()> {
        for shard in 0..spec.shards {
            self.replicas.purge(replica_key(&spec.name, shard)).await.map_err(|e| Error::nats("drop replicas", e))?;
        }
        self.collections.purge(&spec.name).await.map_err(|e| Error::nats("drop collection", e))
    }

    /// Claims a replica of `shard` for `node` when fewer than `max` nodes are listed for it,
    /// or, when the list is full, fewer than `max` of them are `live` (the dead ones then give
    /// up their places; a holder is only judged when its place is needed, so a node that has
    /// not beaten its first heartbeat yet keeps its claim). Returns
    /// whether `node` holds the replica (already, or now). Concurrent claims are serialised by
    /// the bucket's revision check, so a shard never gets more than `max` live holders.
    pub async fn claim_replica(
        &self,
        collection: &str,
        shard: u32,
        node: &str,
        live: &[String],
        max: usize,
    ) -> Result<bool> {
        let key = replica_key(collection, shard);
        loop {
            let entry = self.replicas.entry(key.as_str()).await.map_err(|e| Error::nats("read replicas", e))?;
            let (nodes, revision): (Vec<String>, Option<u64>) = match entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (from_json(REPLICAS, e.revision, &e.value)?, Some(e.revision))
                }
                Some(e) => (Vec::new(), Some(e.revision)),
                None => (Vec::new(), None),
            };
            if nodes.iter().any(|n| n == node) {
                return Ok(true);
            }
            let mut holders = nodes;
            if holders.len() >= max {
                holders.retain(|n| live.contains(n));
            }
            if holders.len() >= max {
                return Ok(false);
            }
            holders.push(node.to_string());
            match self.write_replicas(&key, &holders, revision).await? {
                true => return Ok(true),
                false => continue, // another writer won: read again
            }
        }
    }

    /// Writes a shard's holder list if its revision is still `revision`; `false` when another
    /// writer came first.
    async fn write_replicas(&self, key: &str, nodes: &[String], revision: Option<u64>) -> Result<bool> {
        let written = match revision {
            Some(r) => self.replicas.update(key, to_json(&nodes), r).await.map_err(|e| e.kind()),
            None => self.replicas.create(key, to_json(&nodes)).await.map_err(|e| match e.kind() {
                CreateErrorKind::AlreadyExists => UpdateErrorKind::WrongLastRevision,
                _ => UpdateErrorKind::Other,
            }),
        };
        match written {
            Ok(_) => Ok(true),
            Err(UpdateErrorKind::WrongLastRevision) => Ok(false),
            Err(kind) => Err(Error::nats("write replicas", kind)),
        }
    }

    /// The nodes holding a replica of `shard`.
    pub async fn replicas_of(&self, collection: &str, shard: u32) -> Result<Vec<String>> {
        let entry =
            self.replicas.entry(replica_key(collection, shard)).await.map_err(|e| Error::nats("read replicas", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => from_json(REPLICAS, e.revision, &e.value),
            _ => Ok(Vec::new()),
        }
    }

    /// Registers or refreshes a node (its heartbeat: call well within [`NODE_TTL`]).
    pub async fn heartbeat(&self, node: &NodeInfo) -> Result<()> {
        self.nodes.put(&node.id, to_json(node)).await.map_err(|e| Error::nats("heartbeat", e))?;
        Ok(())
    }

    /// The live nodes: those whose last heartbeat is younger than [`NODE_TTL`].
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let ids = sorted_keys(&self.nodes, "list nodes").await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = self.nodes.entry(id.as_str()).await.map_err(|e| Error::nats("read node", e))? {
                if e.operation == kv::Operation::Put {
                    out.push(from_json(NODES, e.revision, &e.value)?);
                }
            }
        }
        Ok(out)
    }
}

/// The keys of a bucket, sorted.
async fn sorted_keys(bucket: &kv::Store, op: &'static str) -> Result<Vec<String>> {
    let keys = bucket.keys().await.map_err(|e| Error::nats(op, e))?;
    let mut keys: Vec<String> = keys.try_collect().await.map_err(|e| Error::nats(op, e))?;
    keys.sort();
    Ok(keys)
}

fn replica_key(collection: &str, shard: u32) -> String {
    format!("{collection}.{shard}")
}

async fn bucket(js: &Context, name: &str, replicas: usize, max_age: Duration) -> Result<kv::Store> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    // The bucket's stream, as `create_key_value` would make it; that call first reads the
    // account's info in a shape servers before 2.10 (Debian's 2.9) do not send.
    let config = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 5,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.get_or_create_stream(config).await.map_err(|e| Error::nats("create metadata bucket", e))?;
    js.get_key_value(name).await.map_err(|e| Error::nats("open metadata bucket", e))
}

fn to_json<T: Serialize>(v: &T) -> bytes::Bytes {
    // Plain structs of strings and numbers: serialising them cannot fail.
    serde_json::to_vec(v).unwrap_or_default().into()
}

fn from_json<T: for<'de> Deserialize<'de>>(bucket: &str, seq: u64, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Decode { subject: bucket.to_string(), seq, reason: e.to_string() })
}
