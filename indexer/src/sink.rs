//! Where an index run's documents go: a local [`Collection`], or anything else that stores
//! [`Change`]s durably (a cluster's shard logs).

use crate::chunk::ChunkParams;
use crate::collection::Collection;
use crate::store::Change;
use crate::Result;
use std::path::Path;

/// The destination of an index run ([`crate::index_into`]).
pub trait Sink: Sync {
    /// How documents are chunked.
    fn chunking(&self) -> ChunkParams;
    /// The content hash of the stored version of a document, when the sink knows it: a
    /// document whose hash is unchanged is not embedded again.
    fn stored_hash(&self, id: &str) -> Result<Option<String>>;
    /// Stores `changes` durably; returns once they are.
    fn store(&self, changes: &[Change]) -> Result<()>;
    /// Whether the run embeds the chunks. A sink that has them embedded elsewhere (a
    /// cluster's embedding workers) gets upserts with no vectors.
    fn embeds(&self) -> bool {
        true
    }
    /// The local directory the sink writes into, whose free space a run watches (none for a
    /// remote sink).
    fn local_dir(&self) -> Option<&Path> {
        None
    }
}

impl Sink for Collection {
    fn chunking(&self) -> ChunkParams {
        self.manifest().chunking
    }

    fn stored_hash(&self, id: &str) -> Result<Option<String>> {
        Ok(self.get_doc(id)?.map(|d| d.content_hash))
    }

    fn store(&self, changes: &[Change]) -> Result<()> {
        self.apply(changes).map(|_| ())
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(self.dir())
    }
}
