//! Requantisation: candle has SIMD dot products for Q8_0 but runs Q4_1 (the shipped decoder's
//! format) through a scalar loop, so the weights are converted once to Q8_0 and cached. Q8_0
//! holds every Q4_1 value to within its 8-bit step, so quality is unchanged.

use crate::{Error, Result};
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Whether a tensor type is run by candle without SIMD.
fn slow(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// Whether any tensor of the file would run without SIMD.
pub fn needs_requant(ct: &Content) -> bool {
    ct.tensor_infos.values().any(|t| slow(t.ggml_dtype))
}

/// Writes `src` with its slow tensors requantised to Q8_0 to `dst` (through a temporary file
/// renamed into place, so `dst` is complete or absent).
pub fn requantize_q8(src: &Path, dst: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Model(format!("requantising {}: {e}", src.display()));
    let mut file = File::open(src).map_err(|e| err(&e))?;
    let ct = crate::read_gguf(&mut file).map_err(|e| err(&e))?;
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let t = ct.tensor(&mut file, name, &Device::Cpu).map_err(|e| err(&e))?;
        let last = t.shape().dims().last().copied().unwrap_or(0);
        let t = if slow(t.dtype()) && last % GgmlDType::Q8_0.block_size() == 0 {
            let f = t.dequantize(&Device::Cpu).map_err(|e| err(&e))?;
            QTensor::quantize(&f, GgmlDType::Q8_0).map_err(|e| err(&e))?
        } else {
            t
        };
        tensors.push((name.clone(), t));
    }
    // candle's writer aligns to 32 bytes and writes no alignment key; drop any stale one.
    let mut metadata: Vec<(&str, &Value)> =
        ct.metadata.iter().filter(|(k, _)| k.as_str() != "general.alignment").map(|(k, v)| (k.as_str(), v)).collect();
    let file_type = Value::U32(7); // LLAMA_FTYPE_MOSTLY_Q8_0
    metadata.retain(|(k, _)| *k != "general.file_type");
    metadata.push(("general.file_type", &file_type));
    metadata.sort_by_key(|(k, _)| *k);
    let dir = dst.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    sousuo_common::fs::atomic_write_with(dst, |w| {
        gguf_file::write(w, &metadata, &refs).map_err(std::io::Error::other)
    })?;
    Ok(())
}

/// The file to load for the decoder `src`: `src` itself when candle runs it at full speed,
/// else its Q8_0 conversion under `cache_dir` (made on first use; the name carries the
/// source's size so a replaced file is converted again).
pub fn prepare_gguf(src: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let mut file = File::open(src).map_err(|e| Error::Io { path: src.to_path_buf(), source: e })?;
    let ct = crate::read_gguf(&mut file)
        .map_err(|e| Error::Model(format!("{}: not a readable GGUF file: {e}", src.display())))?;
    if !needs_requant(&ct) {
        return Ok(src.to_path_buf());
    }
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let stem = src.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "decoder".into());
    let dst = cache_dir.join(format!("{stem}.{len}.q8_0.gguf"));
    if !dst.is_file() {
        tracing::info!("requantising {} to Q8_0 (once) at {}", src.display(), dst.display());
        requantize_q8(src, &dst)?;
    }
    Ok(dst)
}
