//! The command line of the cluster: `cluster`, `node`, `worker`, `bench cluster` (the rest of
//! the CLI is in `cli.rs`).

use crate::cli::ServeOptions;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Where the NATS servers are.
#[derive(Args, Clone, Debug)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated (nats://host:4222,...).
    #[arg(long, env = "SOUSUO_NATS")]
    pub nats: String,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Create a clustered collection for the loaded encoder: its metadata and shard logs.
    Create {
        name: String,
        /// Shards its documents are hashed over.
        #[arg(long, default_value_t = 2)]
        shards: u32,
        /// Nodes that hold a replica of each shard.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Copies of each shard's log JetStream keeps (1 on one server, 3 on a 3-server cluster).
        #[arg(long, default_value_t = 1)]
        log_replicas: usize,
        #[command(flatten)]
        nats: NatsArgs,
        /// Chunk size in tokens (default: the encoder's maximum).
        #[arg(long)]
        max_tokens: Option<usize>,
        /// Tokens of overlap between neighbouring chunks.
        #[arg(long, default_value_t = 32)]
        overlap: usize,
    },
    /// Live nodes, and per shard: changes stored, each replica's applied sequence and lag.
    Status {
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long)]
        json: bool,
    },
    /// Delete a clustered collection's logs and metadata.
    Drop {
        name: String,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

#[derive(Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The node's id (default: the one kept in the data directory's `node-id`).
    #[arg(long)]
    pub id: Option<String>,
    /// Copies of the metadata buckets, when this node is the first and creates them.
    #[arg(long, default_value_t = 1)]
    pub meta_replicas: usize,
    /// Also serve the HTTP API and the page on this address, coordinating searches of the
    /// cluster's collections (scatter-gather).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Store a snapshot of a replica every this many applied changes, then trim its shard's
    /// stream below what the snapshot and every replica hold (0: never).
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,
    #[command(flatten)]
    pub serve: ServeOptions,
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The worker's id (default: made from the process id and time).
    #[arg(long)]
    pub id: Option<String>,
    /// Documents per batch (default: 512 on a GPU, 32 on the CPU).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seconds before a batch a worker took and did not finish goes to another worker.
    #[arg(long, default_value_t = 30)]
    pub ack_wait_secs: u64,
}

#[derive(Args)]
pub struct BenchClusterArgs {
    /// A BEIR directory: the first --docs documents of its corpus are ingested, its queries run.
    #[arg(long, default_value = "../shared/corpora/scifact")]
    pub beir: PathBuf,
    /// Documents ingested (each way).
    #[arg(long, default_value_t = 500)]
    pub docs: usize,
    /// Queries run (each way).
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Concurrent clients for the throughput runs.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    #[arg(long)]
    pub json: bool,
}
