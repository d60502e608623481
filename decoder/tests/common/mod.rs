//! The shipped decoder model for the decoder tests, fetched into the cache if missing.

use sousuo_common::models::{default_cache_root, ModelCache};
use sousuo_decoder::SMOLLM2;
use std::path::PathBuf;

pub fn cache() -> ModelCache {
    let home = std::env::var_os("SOUSUO_HOME").map(PathBuf::from);
    ModelCache::new(default_cache_root(home.as_deref(), dirs::cache_dir().as_deref()).expect("set SOUSUO_HOME"))
}

/// The shipped Q4_1 file, fetched if missing.
pub fn shipped() -> PathBuf {
    let c = cache();
    let dir = c
        .ensure(&SMOLLM2, |m| eprintln!("fetching {} for the tests", m.name))
        .unwrap_or_else(|e| panic!("the decoder tests need {}: {e}; run `cargo run -- models fetch`", SMOLLM2.name));
    dir.join(SMOLLM2.files[0].dest)
}
