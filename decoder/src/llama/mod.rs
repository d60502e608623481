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
//! Supported: the GGUF architectures `llama` (without experts; interleaved, "NORM", RoPE),
//! `qwen2` (biases on Q, K and V) and `qwen3` (RMS norms on each query and key head, heads wider
//! than `dim / heads`), the two Qwen ones with RoPE over the two halves of each head ("NEOX");
//! RMSNorm, SiLU-gated MLP, grouped-query attention. Others load through candle (see `Backend`).

//!
//! - `mod.rs`: the model's shape and the forward call (input checks, embedding, layers, head).
//! - `blocks`: one layer's attention and feed-forward blocks, and their scratch buffers.
//! - `load`: reading the GGUF weights, and the requantised-weights cache.

mod blocks;
mod load;
pub(crate) use load::check_tensors;

use crate::{Error, Result};
use blocks::{attention, feed_forward, kerr, rms_norm, Layer, Scratch, Step};
use candle_core::quantized::gguf_file::Content;
use sousuo_kernels::blockq::{matmul_block, BlockMatrix};

/// The GGUF architectures the native pass runs (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `llama` (SmolLM2, Llama 2/3, Mistral without sliding windows).
    Llama,
    /// `qwen2`: Qwen 2 and 2.5, biases on the query, key and value products.
    Qwen2,
    /// `qwen3`: Qwen 3, RMS norms on each query and key head.
    Qwen3,
}

impl Family {
    /// The file's architecture, refused by name when it is none of these.
    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let arch = ct.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned();
        match arch.as_deref().unwrap_or_default() {
            "llama" => Ok(Family::Llama),
            "qwen2" => Ok(Family::Qwen2),
            "qwen3" => Ok(Family::Qwen3),
            other => Err(Error::Unsupported(format!(
                "architecture {other:?} (Sousuo runs the GGUF architectures llama, qwen2 and qwen3)"
            ))),
        }
    }

    /// The prefix of the file's metadata keys (`llama.embedding_length`, `qwen3.block_count`...).
    pub fn key(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }

    /// Whether RoPE turns the two halves of each head against each other (llama.cpp's NEOX
    /// style, which Qwen's files keep) rather than interleaved pairs (llama's files, whose
    /// converter permutes Q and K for it).
    pub fn rope_halves(self) -> bool {
        self != Family::Llama
    }
}

/// The shape of a llama-family model, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// The architecture.
    pub family: Family,
    /// Width of the residual stream.
    pub dim: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention shares each among `heads / kv_heads`).
    pub kv_heads: usize,
    /// Width of one head (`dim / heads` unless the file says otherwise, as Qwen 3's do).
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
        let family = Family::from_gguf(ct)?;
        let arch = family.key();
        let md = |key: &str| ct.metadata.get(&format!("{arch}.{key}"));
        let opt = |key: &str| md(key).and_then(|v| v.to_u32().ok()).map(|v| v as usize);
        let int = |key: &str| -> Result<usize> {
            opt(key).ok_or_else(|| Error::Model(format!("the GGUF metadata lacks `{arch}.{key}`")))
        };
        let experts = opt("expert_count").unwrap_or(0);
        if experts > 1 {
            return Err(Error::Unsupported(format!("mixture-of-experts models ({experts} experts)")));
        }
        let dim = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = opt("attention.head_count_kv").unwrap_or(heads);
        // Qwen 3 gives its heads' width; otherwise the heads split the stream.
        let key_length = opt("attention.key_length");
        let head_dim = key_length.unwrap_or_else(|| dim.checked_div(heads).unwrap_or(0));
        let inconsistent = heads == 0
            || kv_heads == 0
            || head_dim == 0
            || heads % kv_heads != 0
            || (key_length.is_none() && dim % heads != 0);
        if inconsistent {
            return Err(Error::Model(format!(
                "inconsistent attention shape: {dim} dims, {heads} heads of {head_dim}, {kv_heads} key/value heads"
            )));
        }
        if let Some(v) = opt("attention.value_length").filter(|&v| v != head_dim) {
            return Err(Error::Unsupported(format!("value heads of {v} dimensions with key heads of {head_dim}")));
        }
        let rope_dim = opt("rope.dimension_count").unwrap_or(head_dim);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(Error::Unsupported(format!("RoPE over {rope_dim} of {head_dim} head dimensions")));
        }
        let vocab = ct
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims().first().copied().unwrap_or(0))
            .ok_or_else(|| Error::Model("the GGUF file has no `token_embd.weight`".into()))?;
        Ok(LlamaConfig {
            family,
            dim,
            heads,
            kv_heads,
            head_dim,
            ffn: int("feed_forward_length")?,
            vocab,
            layers: int("block_count")?,
            context: opt("context_length").unwrap_or(2048),
            eps: md("attention.layer_norm_rms_epsilon").and_then(|v| v.to_f32().ok()).unwrap_or(1e-5),
            rope_base: md("rope.freq_base").and_then(|v| v.to_f32().ok()).unwrap_or(10_000.0),
            rope_dim,
        })
    }

    /// Width of the queries (and of the attention's output): `heads x head_dim`.
    fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
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

impl NativeLlama {
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
        self.run(tokens, pos, logits, false)
    }

    /// Like [`Self::forward`], but writes every position's logits (`tokens.len() x vocab`):
    /// what scoring a continuation needs.
    pub fn forward_all(&mut self, tokens: &[u32], pos: usize, logits: &mut Vec<f32>) -> Result<()> {
        self.run(tokens, pos, logits, true)
    }

    fn run(&mut self, tokens: &[u32], pos: usize, logits: &mut Vec<f32>, all: bool) -> Result<()> {
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
        // The head, on the last position only unless every one is asked for.
        let rows = if all { t } else { 1 };
        rms_norm(&s.x[(t - rows) * dim..], &mut s.h, &self.output_norm, dim, c.eps);
        s.rows.quantize(&s.h, rows, dim).map_err(kerr)?;
        logits.resize(rows * c.vocab, 0.0);
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
