//! `sousuo serve`: the HTTP API and the search page.

use crate::cli::{Global, ServeArgs, ServeOptions};
use crate::paths::{data_dir, load_decoder, load_encoder};
use anyhow::{Context, Result};
use sousuo_encoder::{Encoder, EncoderOptions};
use sousuo_web::{AppState, Config};

pub fn serve(g: &Global, args: ServeArgs) -> Result<()> {
    let encoder = load_encoder(g, EncoderOptions::default())?;
    run(g, &args, encoder)
}

/// Loads the decoder (unless disabled) and serves until Ctrl-C / SIGTERM.
pub fn run(g: &Global, args: &ServeArgs, encoder: Encoder) -> Result<()> {
    let state = state(g, args.bind, &args.options, encoder, None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sousuo-http")
        .build()
        .context("cannot start the async runtime")?;
    let insecure = args.options.insecure_no_auth;
    runtime.block_on(sousuo_web::serve(state, args.bind, insecure, |addr| {
        println!("Sousuo is serving http://{addr}/ (Ctrl-C to stop)");
    }))?;
    Ok(())
}

/// The server's state for `bind` (refused when insecure): the decoder loaded unless disabled,
/// and the cluster's view when this is a node's coordinator.
pub fn state(
    g: &Global,
    bind: std::net::SocketAddr,
    args: &ServeOptions,
    encoder: Encoder,
    cluster: Option<sousuo_web::ClusterView>,
) -> Result<std::sync::Arc<AppState>> {
    sousuo_web::check_bind(bind, args.master_key.is_some(), args.insecure_no_auth)?;
    let decoder = if args.no_answers { None } else { Some(load_decoder(g, &args.decoder, sousuo_web::DECODER_QUEUE)?) };
    let mut config = Config::new(match &args.data_dir {
        Some(d) => d.clone(),
        None => data_dir(g)?,
    });
    config.master_key = args.master_key.clone().filter(|k| !k.is_empty());
    config.max_upload_bytes = args.max_upload_mb.max(1) << 20;
    config.loopback_hosts_only = bind.ip().is_loopback();
    config.cors_origins = args.cors_origins.clone();
    config.rate_limit_per_minute = args.rate_limit;
    config.min_free_bytes = args.min_free_mb << 20;
    config.cpu_queue = args.cpu_queue;
    config.task_retention = sousuo_web::Retention {
        count: args.keep_tasks,
        max_age: std::time::Duration::from_secs(args.keep_tasks_days.saturating_mul(24 * 3600)),
    };
    AppState::with_cluster(config, encoder, decoder, cluster).map_err(|e| anyhow::anyhow!("{e}"))
}
