//! Where models and data live, and how the encoder is found.

use crate::cli::{DecoderArgs, Global};
use anyhow::{Context, Result};
use sousuo_common::models::{default_cache_root, ModelCache, PinnedModel};
use sousuo_decoder::Decoder;
use sousuo_decoder::SMOLLM2;
use sousuo_encoder::models::MINILM;
use sousuo_encoder::{Device, Encoder, EncoderOptions, ModelDir, Precision};
use std::path::PathBuf;

/// Every model the binary pins: the default encoder and the default decoder.
pub const PINNED: &[PinnedModel] = &[MINILM, SMOLLM2];

/// The model cache: `HOME/models`, or the user's cache directory.
pub fn model_cache(g: &Global) -> Result<ModelCache> {
    let root = default_cache_root(g.home.as_deref(), dirs::cache_dir().as_deref())
        .context("no cache directory for this user: set SOUSUO_HOME")?;
    Ok(ModelCache::new(root).with_index(g.index_url.clone()).with_progress(download_bar()))
}

/// A progress bar per model download, on standard error.
fn download_bar() -> sousuo_common::models::ProgressFn {
    let bar: std::sync::Mutex<Option<(String, indicatif::ProgressBar)>> = std::sync::Mutex::new(None);
    std::sync::Arc::new(move |name: &str, done: u64, total: Option<u64>| {
        let Ok(mut slot) = bar.lock() else { return };
        if slot.as_ref().is_none_or(|(n, _)| n != name) {
            let b = indicatif::ProgressBar::new(total.unwrap_or(0));
            b.set_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(name.to_string());
            *slot = Some((name.to_string(), b));
        }
        if let Some((_, b)) = slot.as_ref() {
            b.set_position(done);
            if total == Some(done) {
                b.finish();
            }
        }
    })
}

/// Where collections live: `HOME/data`, or the user's data directory.
pub fn data_dir(g: &Global) -> Result<PathBuf> {
    Ok(match &g.home {
        Some(home) => home.join("data"),
        None => dirs::data_dir().context("no data directory for this user: set SOUSUO_HOME")?.join("sousuo/data"),
    })
}

/// A pinned model's directory, fetched first (saying so in one line) when missing.
pub fn ensure_model(g: &Global, model: &PinnedModel) -> Result<PathBuf> {
    let cache = model_cache(g)?;
    cache
        .ensure(model, |m| {
            eprintln!("{} is not in the model cache: fetching it into {} ...", m.name, cache.root().display())
        })
        .with_context(|| format!("cannot get the {} model", model.name))
}

/// The encoder model directory: `--encoder PATH`, or the default MiniLM from the cache.
pub fn encoder_dir(g: &Global) -> Result<ModelDir> {
    let dir = match &g.encoder {
        Some(p) => p.clone(),
        None => ensure_model(g, &MINILM)?,
    };
    Ok(ModelDir::open(&dir)?)
}

/// Loads the encoder with the given options.
pub fn load_encoder(g: &Global, mut options: EncoderOptions) -> Result<Encoder> {
    options.device = g.device;
    options.precision = precision(g)?;
    let dir = encoder_dir(g)?;
    Encoder::load(&dir, options).with_context(|| format!("cannot load the encoder from {}", dir.dir.display()))
}

/// The encoder precision: `--precision`, else the one every collection in the data directory
/// was built with, else int8 for the default encoder on the CPU (f32 for another encoder, which
/// may need candle's f32 forward pass, or a GPU).
pub fn precision(g: &Global) -> Result<Precision> {
    if let Some(p) = g.precision {
        return Ok(p);
    }
    let dir = data_dir(g)?;
    let mut seen = std::collections::BTreeSet::new();
    for name in sousuo_indexer::list_collections(&dir).unwrap_or_default() {
        if let Ok(m) = sousuo_indexer::read_manifest(&dir, &name) {
            seen.insert(m.encoder.precision);
        }
    }
    if let (1, Some(p)) = (seen.len(), seen.first()) {
        return Ok(p.parse()?);
    }
    Ok(match (&g.encoder, g.device) {
        (None, Device::Cpu) => Precision::Int8,
        _ => Precision::F32,
    })
}

/// The GGUF file to run: `path`, or the default SmolLM2 from the cache (fetched if missing).
pub fn decoder_file(g: &Global, path: Option<&std::path::Path>) -> Result<PathBuf> {
    Ok(match path {
        Some(p) => p.to_path_buf(),
        None => ensure_model(g, &SMOLLM2)?.join(SMOLLM2.files[0].dest),
    })
}

/// Loads the decoder (`--decoder PATH` or the default) on `args`' backend with `queue_depth`
/// waiting requests. candle runs Q4/Q5 files through their Q8_0 conversion, made once under
/// `models/requantized`.
pub fn load_decoder(g: &Global, args: &DecoderArgs, queue_depth: usize) -> Result<Decoder> {
    let file = decoder_file(g, args.decoder.as_deref())?;
    let requant = model_cache(g)?.root().join("requantized");
    Decoder::load_with(&file, queue_depth, args.decoder_backend, Some(&requant))
        .with_context(|| format!("cannot load the decoder from {}", file.display()))
}
