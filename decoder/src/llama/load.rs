//! Loading a llama-family model: the GGUF weights dequantised and requantised to 8-bit
//! blocks, and the cache of those blocks written once beside the model.

use super::blocks::{Layer, Scratch};
use super::{LlamaConfig, NativeLlama};
use crate::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::Device;
use sousuo_kernels::blockq::BlockMatrix;
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The first bytes of a requantised-weights cache file (the version is in the text).
const CACHE_MAGIC: &[u8; 16] = b"sousuo-llama-b2\n";

/// Checks every tensor's shape and place against the file before any is read: a file whose
/// sizes lie (dimensions whose product overflows, data past the end of the file) is refused by
/// name instead of overflowing or allocating what the file does not hold.
pub fn check_tensors<R: Seek>(ct: &Content, file: &mut R) -> Result<()> {
    let len = file.seek(std::io::SeekFrom::End(0)).map_err(|e| Error::Model(format!("cannot read the file: {e}")))?;
    for (name, info) in &ct.tensor_infos {
        let dtype = info.ggml_dtype;
        // No elements is no tensor (and candle would build a slice over a dangling pointer).
        let elems = info.shape.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n > 0);
        let bytes = elems.and_then(|n| (n / dtype.block_size().max(1)).checked_mul(dtype.type_size()));
        let end = bytes.and_then(|b| ct.tensor_data_offset.checked_add(info.offset)?.checked_add(b as u64));
        if end.is_none_or(|end| end > len) {
            return Err(Error::Model(format!(
                "tensor `{name}`: shape {:?} of {dtype:?} at offset {} does not fit in the file ({len} bytes): \
                 the file is damaged or its header lies",
                info.shape.dims(),
                info.offset
            )));
        }
    }
    Ok(())
}

/// A tensor's values, dequantised to f32 in row-major order.
fn weight<R: Read + Seek>(ct: &Content, file: &mut R, name: &str) -> Result<Vec<f32>> {
    let err = |e: candle_core::Error| Error::Model(format!("tensor `{name}`: {e}"));
    let t = ct.tensor(file, name, &Device::Cpu).map_err(err)?;
    t.dequantize(&Device::Cpu).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).map_err(err)
}

fn vector<R: Read + Seek>(ct: &Content, file: &mut R, name: &str, len: usize) -> Result<Vec<f32>> {
    let data = weight(ct, file, name)?;
    if data.len() != len {
        return Err(Error::Model(format!("tensor `{name}` holds {} values, expected {len}", data.len())));
    }
    Ok(data)
}

/// The tensor `name` when the file has it (a vector of `len`), else `None`.
fn optional<R: Read + Seek>(ct: &Content, file: &mut R, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
    if ct.tensor_infos.contains_key(name) {
        vector(ct, file, name, len).map(Some)
    } else {
        Ok(None)
    }
}

/// Loads and quantises `[out x inputs]` matrices stacked along the output channels.
fn stacked<R: Read + Seek>(ct: &Content, file: &mut R, names: &[(&str, usize)], inputs: usize) -> Result<BlockMatrix> {
    let mut all = Vec::new();
    let mut out = 0;
    for (name, rows) in names {
        let data = weight(ct, file, name)?;
        if data.len() != rows * inputs {
            return Err(Error::Model(format!(
                "tensor `{name}` holds {} values, expected {rows} x {inputs}",
                data.len()
            )));
        }
        all.extend_from_slice(&data);
        out += rows;
    }
    BlockMatrix::quantize(&all, out, inputs).map_err(|e| Error::Model(format!("quantising {}: {e}", names[0].0)))
}

impl NativeLlama {
    /// Loads every weight of `ct` (read from `file`) and requantises it for the int8 kernels.
    /// `threads`: how many of rayon's threads the products may use (1: the caller's only).
    pub fn from_gguf<R: Read + Seek>(ct: &Content, file: &mut R, threads: usize) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(ct)?;
        check_tensors(ct, file)?;
        let (dim, qd, kv, ffn, hd) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn, cfg.head_dim);
        let embed = stacked(ct, file, &[("token_embd.weight", cfg.vocab)], dim)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            Some(stacked(ct, file, &[("output.weight", cfg.vocab)], dim)?)
        } else {
            None
        };
        let output_norm = vector(ct, file, "output_norm.weight", dim)?;
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let b = |s: &str| format!("blk.{i}.{s}.bias");
            // Biases come as the three or none.
            let qkv_bias = match optional(ct, file, &b("attn_q"), qd)? {
                Some(mut all) => {
                    all.extend(vector(ct, file, &b("attn_k"), kv)?);
                    all.extend(vector(ct, file, &b("attn_v"), kv)?);
                    Some(all)
                }
                None => None,
            };
            layers.push(Layer {
                attn_norm: vector(ct, file, &n("attn_norm"), dim)?,
                qkv: stacked(ct, file, &[(&n("attn_q"), qd), (&n("attn_k"), kv), (&n("attn_v"), kv)], dim)?,
                qkv_bias,
                q_norm: optional(ct, file, &n("attn_q_norm"), hd)?,
                k_norm: optional(ct, file, &n("attn_k_norm"), hd)?,
                wo: stacked(ct, file, &[(&n("attn_output"), dim)], qd)?,
                ffn_norm: vector(ct, file, &n("ffn_norm"), dim)?,
                gate_up: stacked(ct, file, &[(&n("ffn_gate"), ffn), (&n("ffn_up"), ffn)], dim)?,
                down: stacked(ct, file, &[(&n("ffn_down"), dim)], ffn)?,
                k: Vec::new(),
                v: Vec::new(),
            });
        }
        Ok(Self::assemble(cfg, embed, output, output_norm, layers, threads))
    }

    /// Loads the model of the GGUF file `path` (`ct` its header, `file` the open file). With
    /// `cache_dir`, the requantised weights are read from a cache file there when one exists for
    /// this source (named by its file name and size), else built and written there (through a
    /// temporary file, so a cache file is whole or absent); a damaged cache file is rebuilt.
    pub fn load<R: Read + Seek>(
        path: &Path,
        ct: &Content,
        file: &mut R,
        threads: usize,
        cache_dir: Option<&Path>,
    ) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(ct)?;
        let Some(dir) = cache_dir else { return Self::from_gguf(ct, file, threads) };
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "decoder".into());
        let cached = dir.join(format!("{stem}.{len}.blocks-v2.bin"));
        match std::fs::File::open(&cached) {
            Ok(f) => match Self::from_cache(&mut std::io::BufReader::new(f), cfg, threads) {
                Ok(m) => return Ok(m),
                Err(e) => tracing::warn!("{}: {e}; rebuilding it", cached.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!("requantising {} for the native decoder (once) at {}", path.display(), cached.display())
            }
            Err(e) => tracing::warn!("{}: {e}; rebuilding it", cached.display()),
        }
        let m = Self::from_gguf(ct, file, threads)?;
        if let Err(e) = m.write_cache(&cached) {
            tracing::warn!("cannot cache the requantised decoder at {}: {e}", cached.display());
        }
        Ok(m)
    }

    fn write_cache(&self, dst: &Path) -> Result<()> {
        let dir = dst.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
        sousuo_common::fs::atomic_write_with(dst, |w| {
            let floats = |w: &mut sousuo_common::fs::FileWriter, v: &[f32]| -> std::io::Result<()> {
                w.write_all(&(v.len() as u64).to_le_bytes())?;
                v.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
            };
            // An absent vector is written as one of length 0.
            let maybe =
                |w: &mut sousuo_common::fs::FileWriter, v: &Option<Vec<f32>>| floats(w, v.as_deref().unwrap_or(&[]));
            w.write_all(CACHE_MAGIC)?;
            floats(w, &self.output_norm)?;
            self.embed.write(w)?;
            w.write_all(&[u8::from(self.output.is_some())])?;
            if let Some(o) = &self.output {
                o.write(w)?;
            }
            w.write_all(&(self.layers.len() as u64).to_le_bytes())?;
            for l in &self.layers {
                floats(w, &l.attn_norm)?;
                l.qkv.write(w)?;
                maybe(w, &l.qkv_bias)?;
                maybe(w, &l.q_norm)?;
                maybe(w, &l.k_norm)?;
                l.wo.write(w)?;
                floats(w, &l.ffn_norm)?;
                l.gate_up.write(w)?;
                l.down.write(w)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Reads a cache file written by `write_cache`, checking every shape against `cfg` before
    /// reading what it sizes.
    fn from_cache(r: &mut impl Read, cfg: LlamaConfig, threads: usize) -> Result<Self> {
        let corrupt = |what: String| Error::CorruptCache(what);
        let io = |e: std::io::Error| corrupt(e.to_string());
        let word = |r: &mut dyn Read| -> Result<u64> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).map_err(io)?;
            Ok(u64::from_le_bytes(b))
        };
        let mut magic = [0u8; 16];
        r.read_exact(&mut magic).map_err(io)?;
        if &magic != CACHE_MAGIC {
            return Err(corrupt("unknown format".into()));
        }
        // A vector of `len`, or (`optional`) an absent one, written with length 0.
        let maybe = |r: &mut dyn Read, len: usize, optional: bool| -> Result<Option<Vec<f32>>> {
            match word(r)? {
                0 if optional => Ok(None),
                n if n == len as u64 => {
                    let mut bytes = vec![0u8; len * 4];
                    r.read_exact(&mut bytes).map_err(io)?;
                    Ok(Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
                }
                _ => Err(corrupt(format!("a vector is not {len} long"))),
            }
        };
        let floats = |r: &mut dyn Read, len: usize| maybe(r, len, false).map(Option::unwrap_or_default);
        let matrix =
            |r: &mut dyn Read, out, inputs| BlockMatrix::read(r, out, inputs).map_err(|e| corrupt(e.to_string()));
        let (dim, qd, kv, ffn, hd) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn, cfg.head_dim);
        let output_norm = floats(r, dim)?;
        let embed = matrix(r, cfg.vocab, dim)?;
        let mut flag = [0u8; 1];
        r.read_exact(&mut flag).map_err(io)?;
        let output = if flag[0] == 1 { Some(matrix(r, cfg.vocab, dim)?) } else { None };
        if word(r)? != cfg.layers as u64 {
            return Err(corrupt("another number of layers".into()));
        }
        let mut layers = Vec::with_capacity(cfg.layers);
        for _ in 0..cfg.layers {
            layers.push(Layer {
                attn_norm: floats(r, dim)?,
                qkv: matrix(r, qd + 2 * kv, dim)?,
                qkv_bias: maybe(r, qd + 2 * kv, true)?,
                q_norm: maybe(r, hd, true)?,
                k_norm: maybe(r, hd, true)?,
                wo: matrix(r, dim, qd)?,
                ffn_norm: floats(r, dim)?,
                gate_up: matrix(r, 2 * ffn, dim)?,
                down: matrix(r, dim, ffn)?,
                k: Vec::new(),
                v: Vec::new(),
            });
        }
        if r.read(&mut flag).map_err(io)? != 0 {
            return Err(corrupt("trailing bytes".into()));
        }
        Ok(Self::assemble(cfg, embed, output, output_norm, layers, threads))
    }

    fn assemble(
        cfg: LlamaConfig,
        embed: BlockMatrix,
        output: Option<BlockMatrix>,
        output_norm: Vec<f32>,
        layers: Vec<Layer>,
        threads: usize,
    ) -> Self {
        NativeLlama {
            cfg,
            embed,
            output,
            output_norm,
            layers,
            cos: Vec::new(),
            sin: Vec::new(),
            len: 0,
            threads: threads.max(1),
            s: Scratch::default(),
        }
    }
}
