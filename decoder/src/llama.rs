//! Sousuo's own forward pass for llama-family GGUF decoders (SmolLM2 and the like).
//!
//! candle's quantized llama runs each product as one dot product per (row, column) pair, grows
//! its KV cache with a concatenation per step and spends half its time in small tensor ops
//! (docs/benchmarks.md). This pass runs every product through `kernels::blockq` (VNNI where the
//! CPU has it): weights requantised at load to 8 bits with a scale and minimum per 32 inputs
//! (the shipped Q4_1 values fit that grid), activations to 8 bits per 32 inputs of each token,
//! the scheme of llama.cpp's Q4_1 x Q8_1 products; Q, K and V are one fused product, as are
//! the gate and up projections; the KV cache is preallocated per layer and written in place;
//! attention runs on strided views of the cache through the f32 matmul. The output head reuses
//! the embedding table when the file ties them, so the embeddings are held once, quantised.
//!
//! Supported: GGUF architecture `llama` without experts, interleaved ("NORM") RoPE, RMSNorm,
//! SiLU-gated MLP, grouped-query attention. Others load through candle (see `Backend`).

use crate::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::Device;
use rayon::prelude::*;
use sousuo_kernels::blockq::{matmul_block, BlockMatrix, BlockRows};
use sousuo_kernels::matmul::{matmul, MatMut, MatRef};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The first bytes of a requantised-weights cache file (the version is in the text).
const CACHE_MAGIC: &[u8; 16] = b"sousuo-llama-b1\n";

/// The shape of a llama-family model, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Width of the residual stream.
    pub dim: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention shares each among `heads / kv_heads`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the feed-forward layer.
    pub ffn: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Context length the model was trained for.
    pub context: usize,
    /// Epsilon of the RMS norms.
    pub eps: f32,
    /// Base of the rotary position frequencies.
    pub rope_base: f32,
    /// Dimensions of each head that rotate.
    pub rope_dim: usize,
}

impl LlamaConfig {
    /// Reads the shape, refusing what this pass does not implement.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let md = |key: &str| ct.metadata.get(key);
        let int = |key: &str| -> Result<usize> {
            md(key)
                .and_then(|v| v.to_u32().ok())
                .map(|v| v as usize)
                .ok_or_else(|| Error::Model(format!("the GGUF metadata lacks `{key}`")))
        };
        let experts = md("llama.expert_count").and_then(|v| v.to_u32().ok()).unwrap_or(0);
        if experts > 1 {
            return Err(Error::Unsupported(format!("mixture-of-experts models ({experts} experts)")));
        }
        let dim = int("llama.embedding_length")?;
        let heads = int("llama.attention.head_count")?;
        let kv_heads = md("llama.attention.head_count_kv").and_then(|v| v.to_u32().ok()).map_or(heads, |v| v as usize);
        if heads == 0 || kv_heads == 0 || dim % heads != 0 || heads % kv_heads != 0 {
            return Err(Error::Model(format!(
                "inconsistent attention shape: {dim} dims, {heads} heads, {kv_heads} key/value heads"
            )));
        }
        let head_dim = dim / heads;
        let rope_dim = md("llama.rope.dimension_count").and_then(|v| v.to_u32().ok()).map_or(head_dim, |v| v as usize);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(Error::Unsupported(format!("RoPE over {rope_dim} of {head_dim} head dimensions")));
        }
        let vocab = ct
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims().first().copied().unwrap_or(0))
            .ok_or_else(|| Error::Model("the GGUF file has no `token_embd.weight`".into()))?;
        Ok(LlamaConfig {
            dim,
            heads,
            kv_heads,
            head_dim,
            ffn: int("llama.feed_forward_length")?,
            vocab,
            layers: int("llama.block_count")?,
            context: md("llama.context_length").and_then(|v| v.to_u32().ok()).map_or(2048, |v| v as usize),
            eps: md("llama.attention.layer_norm_rms_epsilon").and_then(|v| v.to_f32().ok()).unwrap_or(1e-5),
            rope_base: md("llama.rope.freq_base").and_then(|v| v.to_f32().ok()).unwrap_or(10_000.0),
            rope_dim,
        })
    }

    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Q, K and V stacked: `dim + 2 * kv_dim` output channels.
    qkv: BlockMatrix,
    wo: BlockMatrix,
    ffn_norm: Vec<f32>,
    /// Gate then up: `2 * ffn` output channels.
    gate_up: BlockMatrix,
    down: BlockMatrix,
    /// The cache: one row of `kv_dim` per position, RoPE already applied to the keys.
    k: Vec<f32>,
    v: Vec<f32>,
}

/// Working buffers, kept between calls.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    out: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
    scores: Vec<f32>,
    /// Per head, when heads run in parallel: scores and output.
    heads: Vec<(Vec<f32>, Vec<f32>)>,
    rows: BlockRows,
}

/// One layer's attention inputs for a chunk of `t` tokens at `pos`: the fused Q/K/V rows
/// (RoPE applied) and the layer's cache (holding the chunk already).
struct Attention<'a> {
    qkv: &'a [f32],
    qkv_cols: usize,
    k: &'a [f32],
    v: &'a [f32],
    kv: usize,
    hd: usize,
    pos: usize,
    t: usize,
    scale: f32,
}

impl Attention<'_> {
    /// Query head `h` (key/value head `g`) into `out` (`t x hd`), with `scores` as scratch.
    fn head(&self, g: usize, h: usize, scores: &mut Vec<f32>, out: MatMut<'_>) -> Result<()> {
        let (t, hd, total) = (self.t, self.hd, self.pos + self.t);
        scores.resize(t * total, 0.0);
        let q = MatRef::new(&self.qkv[h * hd..], t, hd, self.qkv_cols, 1).map_err(kerr)?;
        let k = MatRef::new(&self.k[g * hd..], total, hd, self.kv, 1).map_err(kerr)?;
        matmul(MatMut::row_major(scores, t, total).map_err(kerr)?, q, k.t(), self.scale, false, 1).map_err(kerr)?;
        for (i, row) in scores.chunks_exact_mut(total).enumerate() {
            // Causal: position pos + i sees positions 0..=pos + i.
            let seen = self.pos + i + 1;
            sousuo_kernels::ops::softmax(&mut row[..seen], seen).map_err(kerr)?;
            row[seen..].fill(0.0);
        }
        let p = MatRef::row_major(scores, t, total).map_err(kerr)?;
        let v = MatRef::new(&self.v[g * hd..], total, hd, self.kv, 1).map_err(kerr)?;
        matmul(out, p, v, 1.0, false, 1).map_err(kerr)
    }
}

/// A loaded llama-family model and its KV cache.
pub struct NativeLlama {
    cfg: LlamaConfig,
    embed: BlockMatrix,
    /// `None`: tied to the embeddings.
    output: Option<BlockMatrix>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// `cos`/`sin` of each position's angles, `rope_dim / 2` per position, grown on demand.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Positions held in the KV cache.
    len: usize,
    threads: usize,
    s: Scratch,
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
        let (dim, kv, ffn) = (cfg.dim, cfg.kv_dim(), cfg.ffn);
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
            layers.push(Layer {
                attn_norm: vector(ct, file, &n("attn_norm"), dim)?,
                qkv: stacked(ct, file, &[(&n("attn_q"), dim), (&n("attn_k"), kv), (&n("attn_v"), kv)], dim)?,
                wo: stacked(ct, file, &[(&n("attn_output"), dim)], dim)?,
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
        let cached = dir.join(format!("{stem}.{len}.blocks-v1.bin"));
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
        let floats = |r: &mut dyn Read, len: usize| -> Result<Vec<f32>> {
            if word(r)? != len as u64 {
                return Err(corrupt(format!("a vector is not {len} long")));
            }
            let mut bytes = vec![0u8; len * 4];
            r.read_exact(&mut bytes).map_err(io)?;
            Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        let matrix =
            |r: &mut dyn Read, out, inputs| BlockMatrix::read(r, out, inputs).map_err(|e| corrupt(e.to_string()));
        let (dim, kv, ffn) = (cfg.dim, cfg.kv_dim(), cfg.ffn);
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
                qkv: matrix(r, dim + 2 * kv, dim)?,
                wo: matrix(r, dim, dim)?,
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

    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Empties the KV cache (keeping its memory).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Makes room for `positions` in the KV cache up front, so decoding never reallocates.
    pub fn reserve(&mut self, positions: usize) {
        let kv = self.cfg.kv_dim();
        for l in &mut self.layers {
            l.k.reserve(positions * kv - l.k.len().min(positions * kv));
            l.v.reserve(positions * kv - l.v.len().min(positions * kv));
        }
    }

    /// Runs `tokens` at positions `pos..pos + tokens.len()` (`pos`: tokens already in the
    /// cache; 0 starts over) and writes the last position's logits into `logits`.
    pub fn forward(&mut self, tokens: &[u32], pos: usize, logits: &mut Vec<f32>) -> Result<()> {
        self.check_input(tokens, pos)?;
        let c = self.cfg.clone();
        let t = tokens.len();
        self.rope_table(pos + t);
        let dim = c.dim;
        let s = &mut self.s;
        s.x.resize(t * dim, 0.0);
        for (row, &id) in s.x.chunks_exact_mut(dim).zip(tokens) {
            self.embed.row_into(id as usize, row).map_err(kerr)?;
        }
        // One token's products are too small to split: waking other threads costs more than
        // the product (measured: 18 us on one thread, 38 us split over two).
        let step = Step { pos, t, threads: if t == 1 { 1 } else { self.threads } };
        for layer in &mut self.layers {
            attention(&c, layer, s, (&self.cos, &self.sin), step)?;
            feed_forward(&c, layer, s, step)?;
        }
        self.len = pos + t;
        // The head, on the last position only.
        rms_norm(&s.x[(t - 1) * dim..], &mut s.h, &self.output_norm, dim, c.eps);
        s.rows.quantize(&s.h, 1, dim).map_err(kerr)?;
        logits.resize(c.vocab, 0.0);
        let head = self.output.as_ref().unwrap_or(&self.embed);
        matmul_block(logits, &s.rows, head, step.threads).map_err(kerr)?;
        Ok(())
    }

    /// Refuses what `forward` cannot run: no tokens, a gap after the cache, too many positions,
    /// ids outside the vocabulary.
    fn check_input(&self, tokens: &[u32], pos: usize) -> Result<()> {
        let c = &self.cfg;
        if tokens.is_empty() {
            return Err(Error::BadParameter { name: "tokens", reason: "empty".into() });
        }
        if pos > self.len {
            return Err(Error::BadParameter {
                name: "position",
                reason: format!("{pos} is past the {} cached tokens", self.len),
            });
        }
        let total = pos + tokens.len();
        if total > c.context {
            return Err(Error::BadParameter {
                name: "tokens",
                reason: format!("{total} positions exceed the model's context of {}", c.context),
            });
        }
        if let Some(bad) = tokens.iter().find(|&&id| id as usize >= c.vocab) {
            return Err(Error::BadParameter {
                name: "tokens",
                reason: format!("token id {bad} is outside the vocabulary of {}", c.vocab),
            });
        }
        Ok(())
    }

    /// Extends the RoPE tables to `positions`.
    fn rope_table(&mut self, positions: usize) {
        let half = self.cfg.rope_dim / 2;
        let have = self.cos.len() / half.max(1);
        if half == 0 || have >= positions {
            return;
        }
        // Angles as candle computes them (f32 inverse frequencies times the position).
        let inv: Vec<f32> =
            (0..half).map(|i| 1.0 / self.cfg.rope_base.powf((2 * i) as f32 / self.cfg.rope_dim as f32)).collect();
        for p in have..positions {
            for f in &inv {
                let a = p as f32 * f;
                self.cos.push(a.cos());
                self.sin.push(a.sin());
            }
        }
    }
}

/// Where one forward call is: its first position, its token count, the threads its products use.
#[derive(Clone, Copy)]
struct Step {
    pos: usize,
    t: usize,
    threads: usize,
}

/// One layer's attention block: norm, QKV, RoPE, the KV cache, the heads, the output
/// projection, the residual.
fn attention(
    c: &LlamaConfig,
    layer: &mut Layer,
    s: &mut Scratch,
    (cos, sin): (&[f32], &[f32]),
    step: Step,
) -> Result<()> {
    let Step { pos, t, threads } = step;
    let (dim, kv, hd) = (c.dim, c.kv_dim(), c.head_dim);
    let total = pos + t;
    let qkv_cols = dim + 2 * kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let group = c.heads / c.kv_heads;
    rms_norm(&s.x, &mut s.h, &layer.attn_norm, dim, c.eps);
    s.rows.quantize(&s.h, t, dim).map_err(kerr)?;
    s.qkv.resize(t * qkv_cols, 0.0);
    matmul_block(&mut s.qkv, &s.rows, &layer.qkv, threads).map_err(kerr)?;
    let half = c.rope_dim / 2;
    for (i, row) in s.qkv.chunks_exact_mut(qkv_cols).enumerate() {
        let p = pos + i;
        let (cos, sin) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        for head in row[..dim + kv].chunks_exact_mut(hd) {
            rope(&mut head[..c.rope_dim], cos, sin);
        }
    }
    layer.k.resize(total * kv, 0.0);
    layer.v.resize(total * kv, 0.0);
    for (i, row) in s.qkv.chunks_exact(qkv_cols).enumerate() {
        let p = pos + i;
        layer.k[p * kv..(p + 1) * kv].copy_from_slice(&row[dim..dim + kv]);
        layer.v[p * kv..(p + 1) * kv].copy_from_slice(&row[dim + kv..]);
    }
    s.att.resize(t * dim, 0.0);
    let a = Attention { qkv: &s.qkv, qkv_cols, k: &layer.k, v: &layer.v, kv, hd, pos, t, scale };
    if threads > 1 {
        // Prompt chunks: heads in parallel, each into its own buffers, then gathered.
        s.heads.resize_with(c.heads, Default::default);
        s.heads.par_iter_mut().enumerate().try_for_each(|(h, (scores, out))| {
            out.resize(t * hd, 0.0);
            a.head(h / group, h, scores, MatMut::row_major(out, t, hd).map_err(kerr)?)
        })?;
        for (h, (_, out)) in s.heads.iter().enumerate() {
            for (dst, src) in s.att.chunks_exact_mut(dim).zip(out.chunks_exact(hd)) {
                dst[h * hd..(h + 1) * hd].copy_from_slice(src);
            }
        }
    } else {
        for h in 0..c.heads {
            let out = MatMut::new(&mut s.att[h * hd..], t, hd, dim).map_err(kerr)?;
            a.head(h / group, h, &mut s.scores, out)?;
        }
    }
    s.rows.quantize(&s.att, t, dim).map_err(kerr)?;
    s.out.resize(t * dim, 0.0);
    matmul_block(&mut s.out, &s.rows, &layer.wo, threads).map_err(kerr)?;
    add(&mut s.x, &s.out);
    Ok(())
}

/// One layer's feed-forward block: norm, gate and up, SiLU, down, the residual.
fn feed_forward(c: &LlamaConfig, layer: &Layer, s: &mut Scratch, step: Step) -> Result<()> {
    let Step { t, threads, .. } = step;
    rms_norm(&s.x, &mut s.h, &layer.ffn_norm, c.dim, c.eps);
    s.rows.quantize(&s.h, t, c.dim).map_err(kerr)?;
    s.gate_up.resize(t * 2 * c.ffn, 0.0);
    matmul_block(&mut s.gate_up, &s.rows, &layer.gate_up, threads).map_err(kerr)?;
    s.act.resize(t * c.ffn, 0.0);
    for (a, gu) in s.act.chunks_exact_mut(c.ffn).zip(s.gate_up.chunks_exact(2 * c.ffn)) {
        let (gate, up) = gu.split_at(c.ffn);
        for ((a, g), u) in a.iter_mut().zip(gate).zip(up) {
            *a = g / (1.0 + (-g).exp()) * u;
        }
    }
    s.rows.quantize(&s.act, t, c.ffn).map_err(kerr)?;
    matmul_block(&mut s.out, &s.rows, &layer.down, threads).map_err(kerr)?;
    add(&mut s.x, &s.out);
    Ok(())
}

fn kerr(e: sousuo_kernels::Error) -> Error {
    Error::Kernel(e)
}

/// `out = x / rms(x) * w` per row of `dim`.
fn rms_norm(x: &[f32], out: &mut Vec<f32>, w: &[f32], dim: usize, eps: f32) {
    out.resize(x.len(), 0.0);
    for (row, o) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let ss: f32 = row.iter().map(|v| v * v).sum();
        let r = 1.0 / (ss / dim as f32 + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(w) {
            *o = v * r * w;
        }
    }
}

/// Interleaved rotary embedding: pairs `(2i, 2i + 1)` turned by the position's angle `i`.
fn rope(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((pair, c), s) in x.chunks_exact_mut(2).zip(cos).zip(sin) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * c - b * s;
        pair[1] = a * s + b * c;
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}
