//! A first pass over a GGUF file's metadata, before candle reads it: candle-core 0.11 divides
//! by `general.alignment` without checking it (a file saying 0 panics the reader; found by
//! fuzzing). The pass reads only the keys and skips every value but that one.

use candle_core::quantized::gguf_file::Content;
use std::io::{BufReader, Read, Seek, SeekFrom};

/// Nested arrays deeper than this are refused (candle reads them recursively).
const MAX_DEPTH: usize = 8;

/// Reads a GGUF file's header and metadata with candle, after checking what candle does not.
/// The error says why the file is not a readable GGUF file.
pub fn read_gguf<R: Read + Seek>(r: &mut R) -> Result<Content, String> {
    check(r)?;
    Content::read(r).map_err(|e| e.to_string())
}

/// Why the file's metadata cannot be read safely, if it cannot. Leaves `r` at its start.
pub(crate) fn check<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    let end = r.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let result = scan(&mut Meta { r: BufReader::new(&mut *r), at: 0, end });
    r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    result
}

/// The metadata read through a buffer, its position counted here (no seek per value).
struct Meta<R> {
    r: BufReader<R>,
    at: u64,
    end: u64,
}

impl<R: Read + Seek> Meta<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|_| PAST_END.to_string())?;
        self.at += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A length or count: 32 bits in GGUF version 1, 64 after.
    fn count(&mut self, version: u32) -> Result<u64, String> {
        if version == 1 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        match self.at.checked_add(n) {
            Some(to) if to <= self.end => {
                let by = i64::try_from(n).map_err(|_| PAST_END.to_string())?;
                self.r.seek_relative(by).map_err(|e| e.to_string())?;
                self.at = to;
                Ok(())
            }
            _ => Err(PAST_END.into()),
        }
    }
}

const PAST_END: &str = "the metadata runs past the end of the file";

fn scan<R: Read + Seek>(m: &mut Meta<R>) -> Result<(), String> {
    // A short or foreign file: candle's own reader says what is wrong.
    if !matches!(m.bytes::<4>(), Ok(magic) if &magic == b"GGUF") {
        return Ok(());
    }
    let version = m.u32()?;
    let _tensors = m.count(version)?;
    let keys = m.count(version)?;
    for _ in 0..keys {
        let len = m.count(version)?;
        let alignment = if len == 17 {
            &m.bytes::<17>()? == b"general.alignment"
        } else {
            m.skip(len)?;
            false
        };
        let kind = m.u32()?;
        let value = match kind {
            0 | 1 if alignment => u64::from(m.bytes::<1>()?[0]),
            2 | 3 if alignment => u64::from(u16::from_le_bytes(m.bytes()?)),
            4 | 5 if alignment => u64::from(m.u32()?),
            _ => {
                skip_value(m, kind, version, 0)?;
                continue;
            }
        };
        if value == 0 {
            return Err("`general.alignment` is 0 (tensor data must be aligned to at least 1 byte)".into());
        }
    }
    Ok(())
}

fn skip_value<R: Read + Seek>(m: &mut Meta<R>, kind: u32, version: u32, depth: usize) -> Result<(), String> {
    let fixed = |kind: u32| match kind {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    };
    if let Some(size) = fixed(kind) {
        return m.skip(size);
    }
    match kind {
        8 => {
            let len = m.count(version)?;
            m.skip(len)
        }
        9 if depth < MAX_DEPTH => {
            let inner = m.u32()?;
            let n = m.count(version)?;
            match fixed(inner) {
                Some(size) => m.skip(n.checked_mul(size).ok_or("an array's size overflows")?),
                None => (0..n).try_for_each(|_| skip_value(m, inner, version, depth + 1)),
            }
        }
        9 => Err(format!("arrays nested deeper than {MAX_DEPTH}")),
        other => Err(format!("unknown metadata value type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn file(alignment: u32) -> Vec<u8> {
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(0u64.to_le_bytes()); // tensors
        f.extend(2u64.to_le_bytes()); // keys
        f.extend(3u64.to_le_bytes());
        f.extend(b"abc");
        f.extend(9u32.to_le_bytes()); // an array of two strings
        f.extend(8u32.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        for s in ["x", "yz"] {
            f.extend((s.len() as u64).to_le_bytes());
            f.extend(s.as_bytes());
        }
        f.extend(17u64.to_le_bytes());
        f.extend(b"general.alignment");
        f.extend(4u32.to_le_bytes());
        f.extend(alignment.to_le_bytes());
        f
    }

    #[test]
    fn an_alignment_of_zero_is_refused_before_candle_divides_by_it() {
        assert!(check(&mut Cursor::new(file(32))).is_ok());
        let err = read_gguf(&mut Cursor::new(file(0))).map(|_| ()).unwrap_err();
        assert!(err.contains("general.alignment"), "{err}");
        // Truncated metadata is an error, not a read past the end.
        let mut short = file(32);
        short.truncate(40);
        assert!(check(&mut Cursor::new(short)).is_err());
        // And candle reads the good one.
        let ct = read_gguf(&mut Cursor::new(file(32))).unwrap();
        assert_eq!(ct.tensor_data_offset % 32, 0);
    }
}
