//! `sousuo serve`: the HTTP API and the search page.

use crate::cli::{Global, ServeArgs};
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
    sousuo_web::check_bind(args.bind, args.master_key.is_some(), args.insecure_no_auth)?;
    let decoder = if args.no_answers { None } else { Some(load_decoder(g, &args.decoder, sousuo_web::DECODER_QUEUE)?) };
    let mut config = Config::new(match &args.data_dir {
        Some(d) => d.clone(),
        None => data_dir(g)?,
    });
    config.master_key = args.master_key.clone().filter(|k| !k.is_empty());
    config.max_upload_bytes = args.max_upload_mb.max(1) << 20;
    let state = AppState::new(config, encoder, decoder).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sousuo-http")
        .build()
        .context("cannot start the async runtime")?;
    let insecure = args.insecure_no_auth;
    runtime.block_on(sousuo_web::serve(state, args.bind, insecure, |addr| {
        println!("Sousuo is serving http://{addr}/ (Ctrl-C to stop)");
    }))?;
    Ok(())
}
