//! A first pass over a GGUF file's metadata, before candle reads it: candle-core 0.11 divides
//! by `general.alignment` without checking it (a file saying 0 panics the reader; found by
//! fuzzing). The pass reads only the keys and skips every value but that one.

use candle_core::quantized::gguf_file::Content;
use std::io::{Read, Seek, SeekFrom};

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
    let result = scan(r);
    r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    result
}

fn scan<R: Read + Seek>(r: &mut R) -> Result<(), String> {
    r.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 4];
    // A short or foreign file: candle's own reader says what is wrong.
    if r.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
        return Ok(());
    }
    let version = u32_(r)?;
    let count = |r: &mut R| if version == 1 { u32_(r).map(u64::from) } else { u64_(r) };
    let _tensors = count(r)?;
    let keys = count(r)?;
    for _ in 0..keys {
        let len = count(r)?;
        let key = if len == 17 {
            let mut k = [0u8; 17];
            r.read_exact(&mut k).map_err(|e| e.to_string())?;
            &k == b"general.alignment"
        } else {
            skip(r, len)?;
            false
        };
        let kind = u32_(r)?;
        if key {
            let value = match kind {
                0 | 1 => u64::from(byte(r)?),
                2 | 3 => u64::from(u16::from_le_bytes(bytes(r)?)),
                4 | 5 => u64::from(u32_(r)?),
                _ => {
                    skip_value(r, kind, version, 0)?;
                    continue;
                }
            };
            if value == 0 {
                return Err("`general.alignment` is 0 (tensor data must be aligned to at least 1 byte)".into());
            }
        } else {
            skip_value(r, kind, version, 0)?;
        }
    }
    Ok(())
}

fn skip_value<R: Read + Seek>(r: &mut R, kind: u32, version: u32, depth: usize) -> Result<(), String> {
    match kind {
        0 | 1 | 7 => skip(r, 1),
        2 | 3 => skip(r, 2),
        4..=6 => skip(r, 4),
        10..=12 => skip(r, 8),
        8 => {
            let len = if version == 1 { u64::from(u32_(r)?) } else { u64_(r)? };
            skip(r, len)
        }
        9 if depth < MAX_DEPTH => {
            let inner = u32_(r)?;
            let n = if version == 1 { u64::from(u32_(r)?) } else { u64_(r)? };
            let fixed = match inner {
                0 | 1 | 7 => Some(1),
                2 | 3 => Some(2),
                4..=6 => Some(4),
                10..=12 => Some(8),
                _ => None,
            };
            match fixed {
                Some(size) => skip(r, n.checked_mul(size).ok_or("an array's size overflows")?),
                None => (0..n).try_for_each(|_| skip_value(r, inner, version, depth + 1)),
            }
        }
        9 => Err(format!("arrays nested deeper than {MAX_DEPTH}")),
        other => Err(format!("unknown metadata value type {other}")),
    }
}

fn skip<R: Read + Seek>(r: &mut R, n: u64) -> Result<(), String> {
    let at = r.stream_position().map_err(|e| e.to_string())?;
    let end = r.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    if at.checked_add(n).is_none_or(|to| to > end) {
        return Err("the metadata runs past the end of the file".into());
    }
    r.seek(SeekFrom::Start(at + n)).map(|_| ()).map_err(|e| e.to_string())
}

fn bytes<R: Read, const N: usize>(r: &mut R) -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).map_err(|_| "the metadata runs past the end of the file".to_string())?;
    Ok(b)
}

fn byte<R: Read>(r: &mut R) -> Result<u8, String> {
    Ok(bytes::<R, 1>(r)?[0])
}

fn u32_<R: Read>(r: &mut R) -> Result<u32, String> {
    Ok(u32::from_le_bytes(bytes(r)?))
}

fn u64_<R: Read>(r: &mut R) -> Result<u64, String> {
    Ok(u64::from_le_bytes(bytes(r)?))
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
