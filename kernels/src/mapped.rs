//! A read-only f32 matrix mapped from a file (little-endian rows, no header): the vector
//! index rescores candidates from it without holding every vector in memory. This crate is
//! the workspace's one home of `unsafe`, hence here.

use std::path::Path;

/// A file of f32 values, mapped.
pub struct MappedF32 {
    /// None for an empty file (which cannot be mapped).
    map: Option<memmap2::Mmap>,
}

impl MappedF32 {
    /// Maps `path`; fails if its size is not a whole number of f32.
    ///
    /// The file must not change while mapped: callers map files written once and never
    /// modified (a new version goes to a new file).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(MappedF32 { map: None });
        }
        // SAFETY: see above: the callers' files are immutable once written; a file truncated
        // by someone else would fault on access (as with any mmap), not read out of bounds.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        if bytemuck::try_cast_slice::<u8, f32>(&map[..]).is_err() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "size is not a whole number of f32"));
        }
        Ok(MappedF32 { map: Some(map) })
    }

    /// The values (native byte order: little-endian on every platform this builds for).
    pub fn as_slice(&self) -> &[f32] {
        // Checked in `open`; the map is page-aligned.
        match &self.map {
            Some(m) => bytemuck::try_cast_slice(&m[..]).unwrap_or(&[]),
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_values_and_refuses_odd_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v");
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(MappedF32::open(&p).unwrap().as_slice(), &[1.5, -2.0]);
        std::fs::write(&p, b"").unwrap();
        assert!(MappedF32::open(&p).unwrap().as_slice().is_empty());
        std::fs::write(&p, &bytes[..5]).unwrap();
        assert!(MappedF32::open(&p).is_err());
    }
}
