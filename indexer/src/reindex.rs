//! Re-embedding a collection with another encoder: the new stores are built beside the old
//! ones (`<data>/.reindex/<name>/`) and swapped in by renames when complete, so the collection
//! stays usable, and intact if the run is interrupted.

use crate::collection::{read_manifest, Collection, EncoderInfo, OpenMode};
use crate::pipeline::embed_text;
use crate::store::{Change, DocRecord};
use crate::{Error, Result};
use sousuo_encoder::Encoder;
use std::path::Path;

/// Re-embeds every document of collection `name` with `encoder`; returns the documents moved.
pub fn reindex(data_dir: &Path, name: &str, encoder: &Encoder, on_progress: &dyn Fn(usize, usize)) -> Result<usize> {
    let manifest = read_manifest(data_dir, name)?;
    let new_info = EncoderInfo::of(encoder)?;
    let staging_root = data_dir.join(".reindex");
    let staging = staging_root.join(name);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?; // a previous interrupted run
    }
    let moved = {
        let old = Collection::open(data_dir, name, &manifest.encoder, OpenMode::Existing)?;
        let new = Collection::open(&staging_root, name, &new_info, OpenMode::Create(manifest.chunking))?;
        let total = old.store().doc_count();
        let mut batch: Vec<DocRecord> = Vec::new();
        let mut moved = 0;
        for doc in old.store().docs() {
            batch.push(doc?);
            if batch.len() >= 64 {
                moved += copy_batch(&old, &new, encoder, std::mem::take(&mut batch))?;
                on_progress(moved, total);
            }
        }
        moved += copy_batch(&old, &new, encoder, batch)?;
        on_progress(moved, total);
        new.commit()?;
        moved
    };
    // Swap: old -> .reindex/<name>.old, new -> <name>, then drop the old stores.
    let live = data_dir.join(name);
    let retired = staging_root.join(format!("{name}.old"));
    if retired.exists() {
        std::fs::remove_dir_all(&retired).map_err(|e| Error::io(&retired, e))?;
    }
    std::fs::rename(&live, &retired).map_err(|e| Error::io(&live, e))?;
    std::fs::rename(&staging, &live).map_err(|e| Error::io(&staging, e))?;
    std::fs::remove_dir_all(&retired).map_err(|e| Error::io(&retired, e))?;
    Ok(moved)
}

fn copy_batch(old: &Collection, new: &Collection, encoder: &Encoder, docs: Vec<DocRecord>) -> Result<usize> {
    let mut changes = Vec::with_capacity(docs.len());
    for doc in docs {
        let mut chunks = Vec::with_capacity(doc.chunk_keys.len());
        for &k in &doc.chunk_keys {
            if let Some(c) = old.store().get_chunk(k)? {
                chunks.push(c);
            }
        }
        let texts: Vec<String> = chunks.iter().map(|c| embed_text(&doc.title, &c.text)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = encoder.encode(&refs)?;
        let vectors: Vec<Vec<f32>> = vectors.rows().map(<[f32]>::to_vec).collect();
        changes.push(Change::Upsert { doc: DocRecord { chunk_keys: Vec::new(), ..doc }, chunks, vectors });
    }
    let n = changes.len();
    new.apply(&changes)?;
    Ok(n)
}
