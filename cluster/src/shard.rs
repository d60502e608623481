//! Which shard holds a document, and what its stream is called.

use sha2::{Digest, Sha256};

/// The shard of a document: the first 8 bytes of the SHA-256 of its id, modulo the shard
/// count. Stable across machines, builds and versions (never Rust's `Hash`, which is not).
pub fn shard_of(doc_id: &str, shards: u32) -> u32 {
    let digest = Sha256::digest(doc_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(shards.max(1))) as u32
}

/// The JetStream stream of a collection's shard (collection names are `[A-Za-z0-9_-]`, which
/// stream names allow).
pub fn stream_name(collection: &str, shard: u32) -> String {
    format!("SOUSUO-{collection}-{shard}")
}

/// The subject a shard's changes are published on.
pub fn subject(collection: &str, shard: u32) -> String {
    format!("sousuo.log.{collection}.{shard}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Fixed values: a change here would move every document of every cluster.
        assert_eq!(shard_of("doc-1", 4), shard_of("doc-1", 4));
        assert_eq!(shard_of("anything", 1), 0);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("doc-{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
    }

    #[test]
    fn the_hash_is_pinned() {
        // SHA-256("a") starts ca978112ca1bbdca: 0xca978112ca1bbdca % 7.
        assert_eq!(shard_of("a", 7), (0xca97_8112_ca1b_bdca_u64 % 7) as u32);
    }
}
