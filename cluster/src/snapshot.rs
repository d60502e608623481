//! Snapshots of shard replicas in a JetStream object store, so that a shard's stream can be
//! trimmed and a new replica still bootstraps: it restores the latest snapshot and consumes
//! the stream after the snapshot's sequence.
//!
//! A snapshot is the local collection's directory (after a commit, with no change being
//! applied) as a tar archive, named `<collection>.<shard>`, its stream sequence in the
//! object's description. Once it is stored, the shard's stream is purged below the lower of
//! that sequence and every consumer's acknowledged floor, so no replica loses a change it has
//! not applied yet.

use crate::error::blocking;
use crate::log::ShardLog;
use crate::{Error, Result};
use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};
use async_nats::jetstream::Context;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};

/// The object store bucket of snapshots.
pub const BUCKET: &str = "sousuo-snapshots";

/// The snapshots bucket.
#[derive(Clone)]
pub struct Snapshots {
    store: ObjectStore,
}

fn object(collection: &str, shard: u32) -> String {
    format!("{collection}.{shard}")
}

impl Snapshots {
    /// Opens the bucket, creating it (with `replicas` copies) when absent.
    pub async fn open(js: &Context, replicas: usize) -> Result<Self> {
        if let Ok(store) = js.get_object_store(BUCKET).await {
            return Ok(Snapshots { store });
        }
        let config = object_store::Config { bucket: BUCKET.into(), num_replicas: replicas, ..Default::default() };
        match js.create_object_store(config).await {
            Ok(store) => Ok(Snapshots { store }),
            // Another node created it meanwhile.
            Err(e) => js
                .get_object_store(BUCKET)
                .await
                .map(|store| Snapshots { store })
                .map_err(|_| Error::nats("create snapshot bucket", e)),
        }
    }

    /// The stream sequence of the latest snapshot of a shard, if any.
    pub async fn latest(&self, collection: &str, shard: u32) -> Result<Option<u64>> {
        match self.store.info(object(collection, shard)).await {
            Ok(info) if !info.deleted => Ok(info.description.and_then(|d| d.parse().ok())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::nats("read snapshot info", e)),
        }
    }

    /// Stores `dir` (a committed replica's collection directory, quiet while this runs) as the
    /// shard's snapshot at stream sequence `seq`.
    pub async fn put(&self, collection: &str, shard: u32, seq: u64, dir: &Path) -> Result<()> {
        let dir = dir.to_path_buf();
        let archive = blocking(move || pack(&dir)).await?;
        let mut file = tokio::fs::File::open(archive.path()).await.map_err(|e| io(archive.path(), e))?;
        let meta = ObjectMetadata {
            name: object(collection, shard),
            description: Some(seq.to_string()),
            ..Default::default()
        };
        self.store.put(meta, &mut file).await.map_err(|e| Error::nats("store a snapshot", e))?;
        Ok(())
    }

    /// Deletes the snapshots of a collection's shards (with the collection).
    pub async fn delete(&self, collection: &str, shards: u32) -> Result<()> {
        for shard in 0..shards {
            match self.store.delete(object(collection, shard)).await {
                Ok(()) => {}
                Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => {}
                Err(e) => return Err(Error::nats("delete a snapshot", e)),
            }
        }
        Ok(())
    }

    /// Restores the shard's latest snapshot as directory `into` (which must not exist); its
    /// stream sequence, or `None` when there is none.
    pub async fn restore(&self, collection: &str, shard: u32, into: &Path) -> Result<Option<u64>> {
        let Some(seq) = self.latest(collection, shard).await? else { return Ok(None) };
        let mut object =
            self.store.get(object(collection, shard)).await.map_err(|e| Error::nats("read a snapshot", e))?;
        let parent = into.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
        let archive = tempfile::NamedTempFile::new_in(&parent).map_err(|e| io(&parent, e))?;
        let mut file = tokio::fs::File::create(archive.path()).await.map_err(|e| io(archive.path(), e))?;
        tokio::io::copy(&mut object, &mut file).await.map_err(|e| io(archive.path(), e))?;
        drop(file);
        let into = into.to_path_buf();
        blocking(move || unpack(archive.path(), &into)).await?;
        Ok(Some(seq))
    }
}

/// Purges a shard's stream below the lower of `upto + 1` and every consumer's acknowledged
/// floor + 1: what a snapshot at `upto` holds and every replica has applied. Returns the
/// first sequence kept.
pub async fn trim(log: &ShardLog, shard: u32, upto: u64) -> Result<u64> {
    let mut stream = log.stream(shard).await?;
    let mut floor = upto;
    let mut consumers = stream.consumers();
    while let Some(c) = consumers.next().await {
        let c = c.map_err(|e| Error::nats("list shard consumers", e))?;
        floor = floor.min(c.ack_floor.stream_sequence);
    }
    let first = stream.info().await.map_err(|e| Error::nats("shard stream info", e))?.state.first_sequence;
    if floor < first {
        return Ok(first);
    }
    stream.purge().sequence(floor + 1).await.map_err(|e| Error::nats("trim a shard stream", e))?;
    Ok(floor + 1)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), source: e }
}

fn pack(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let file = tempfile::NamedTempFile::new_in(parent).map_err(|e| io(parent, e))?;
    let mut builder = tar::Builder::new(file.reopen().map_err(|e| io(file.path(), e))?);
    // The collection's lock file is the running node's, not the snapshot's.
    for entry in walk(dir)? {
        let rel = entry.strip_prefix(dir).unwrap_or(&entry);
        if rel == Path::new("LOCK") {
            continue;
        }
        builder.append_path_with_name(&entry, rel).map_err(|e| io(&entry, e))?;
    }
    builder.finish().map_err(|e| io(file.path(), e))?;
    Ok(file)
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let path = entry.map_err(|e| io(&d, e))?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// Unpacks beside `into`, then renames into place, so a failed restore leaves nothing.
fn unpack(archive: &Path, into: &Path) -> Result<()> {
    let parent = into.parent().unwrap_or(Path::new("."));
    let staging = tempfile::tempdir_in(parent).map_err(|e| io(parent, e))?;
    let file = std::fs::File::open(archive).map_err(|e| io(archive, e))?;
    tar::Archive::new(file).unpack(staging.path()).map_err(|e| io(staging.path(), e))?;
    std::fs::rename(staging.keep(), into).map_err(|e| io(into, e))
}
