//! Free disk space before writing: an index run stops with [`Error::DiskFull`] (naming the
//! collection's directory) while enough space is left for the collection to open and be
//! searched, instead of failing half-way through a write at "No space left on device" (sled
//! even needs a little space to open). The reserve is what a run leaves free.

use crate::{Error, Result};
use std::path::Path;

/// Bytes an index run leaves free on the collection's file system unless told otherwise.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;

/// Fails unless `dir`'s file system has `next + reserve` bytes free. A file system that cannot
/// say (an error from statvfs) passes: the write itself will tell.
pub fn ensure_free(dir: &Path, next: u64, reserve: u64) -> Result<()> {
    let Ok(available) = fs4::available_space(dir) else { return Ok(()) };
    let needed = next.saturating_add(reserve);
    if available < needed {
        return Err(Error::DiskFull { path: dir.to_path_buf(), available, needed, reserve });
    }
    Ok(())
}

/// What storing a batch will write, at most: sled keeps the text and the vectors, tantivy the
/// text again, the graph the vectors; log-structured writes count twice.
pub fn batch_bytes(text_bytes: u64, vector_bytes: u64) -> u64 {
    2 * (2 * text_bytes + 2 * vector_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_naming_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_free(dir.path(), 0, 0).is_ok());
        let err = ensure_free(dir.path(), 1, u64::MAX - 1).unwrap_err();
        assert!(matches!(err, Error::DiskFull { .. }));
        let text = err.to_string();
        assert!(text.starts_with(&dir.path().display().to_string()) && text.contains("free"), "{text}");
    }
}
