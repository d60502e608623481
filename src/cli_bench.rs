//! The command line of the benchmarks: `sousuo bench ...` (the rest of the CLI is in
//! `cli.rs`).

use crate::cli::DecoderArgs;
use crate::cli_cluster::BenchClusterArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

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
    /// The answers' support check on real text: sentences as written and with a swapped
    /// number, a swapped name or an added negation; precision and recall of `supported`.
    Verifier(BenchVerifierArgs),
}

#[derive(Args)]
pub struct BenchVerifierArgs {
    /// Corpora (JSONL with a `text` field), e.g. ../shared/corpora/squad2-qa/corpus.jsonl
    /// ../shared/corpora/scifact/corpus.jsonl.
    #[arg(required = true)]
    pub corpora: Vec<PathBuf>,
    /// Paragraphs sampled from each corpus (one sentence each).
    #[arg(long, default_value_t = 150)]
    pub paragraphs: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
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
    /// A question-answering set instead (a directory with corpus.jsonl and questions.jsonl
    /// as ../shared/corpora/squad2-qa lays them out): answer correctness, short-answer F1,
    /// citations of the gold paragraph and abstention, per question kind.
    #[arg(long, value_name = "DIR")]
    pub qa: Option<PathBuf>,
    /// With --qa: questions per kind, a seeded sample (0: every question, the long run).
    #[arg(long, default_value_t = 60)]
    pub sample: usize,
    /// With --qa: the sample's seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// With --qa: also run the pipeline without the direct short answer (the decoder writes
    /// the whole answer), on the same sample, for comparison.
    #[arg(long)]
    pub baseline: bool,
    /// With --qa: measure follow-up rewrites instead, on two-turn conversations built from the
    /// set (an article's name in a question replaced by a pronoun; --sample of them).
    #[arg(long)]
    pub follow_ups: bool,
    /// With --qa: the question-likelihood gain a passage must reach to be answered from
    /// (default: the shipped one; a large negative value measures the gain without gating,
    /// for calibration with --per-question).
    #[arg(long, value_name = "NATS", allow_hyphen_values = true)]
    pub gain_floor: Option<f32>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// With --qa: write every question's whole answer to FILE, a JSON line each (the run, the
    /// question, its kind, gold paragraph and answers, the short answer's F1, the answer).
    #[arg(long, value_name = "FILE")]
    pub per_question: Option<std::path::PathBuf>,
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
