//! A BERT model's weights as plain f32 arrays, laid out for Sousuo's own forward passes (the
//! CPU one in `native.rs`, the CUDA one in `cuda.rs`): read from a safetensors file, or made
//! up deterministically for benchmarks that must not need a weights file.

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{Config, HiddenAct};
use std::collections::HashMap;
use std::path::Path;

/// The shape of a BERT encoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BertShape {
    /// Vocabulary size.
    pub vocab: usize,
    /// Width of the hidden states.
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Longest sequence the position embeddings cover.
    pub max_positions: usize,
    /// Token types (segments).
    pub type_vocab: usize,
    /// Epsilon of the layer norms.
    pub eps: f32,
}

impl BertShape {
    /// The shape of a config this crate's own forward passes can run (absolute positions,
    /// erf GELU, heads dividing the width), or why not.
    pub fn from_config(c: &Config) -> std::result::Result<Self, String> {
        if c.hidden_act != HiddenAct::Gelu {
            return Err(format!("hidden_act {:?} (only the erf GELU is implemented)", c.hidden_act));
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(format!("{} heads do not divide hidden size {}", c.num_attention_heads, c.hidden_size));
        }
        Ok(BertShape {
            vocab: c.vocab_size,
            hidden: c.hidden_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            max_positions: c.max_position_embeddings,
            type_vocab: c.type_vocab_size.max(1),
            eps: c.layer_norm_eps as f32,
        })
    }

    /// A candle config of this shape (for the reference model in tests and benchmarks).
    pub fn to_config(&self) -> Config {
        Config {
            vocab_size: self.vocab,
            hidden_size: self.hidden,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            intermediate_size: self.intermediate,
            max_position_embeddings: self.max_positions,
            type_vocab_size: self.type_vocab,
            layer_norm_eps: self.eps as f64,
            ..Config::default()
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Floating-point operations of one sequence of `len` tokens (multiply-add = 2).
    pub fn flops(&self, len: usize) -> f64 {
        let (h, i, l) = (self.hidden as f64, self.intermediate as f64, len as f64);
        let dense = 2.0 * l * (4.0 * h * h + 2.0 * h * i);
        let attention = 2.0 * 2.0 * l * l * h;
        self.layers as f64 * (dense + attention)
    }
}

/// One transformer layer. Dense weights are `[out x in]` row-major (PyTorch's layout); the
/// query, key and value projections are stacked into one `[3h x h]` matrix.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Fused query, key and value projection, `[3 * hidden, hidden]`.
    pub qkv_w: Vec<f32>,
    /// Its bias.
    pub qkv_b: Vec<f32>,
    /// Attention output projection.
    pub out_w: Vec<f32>,
    /// Its bias.
    pub out_b: Vec<f32>,
    /// First layer norm's scale.
    pub ln1_g: Vec<f32>,
    /// First layer norm's shift.
    pub ln1_b: Vec<f32>,
    /// Feed-forward up projection.
    pub ff1_w: Vec<f32>,
    /// Its bias.
    pub ff1_b: Vec<f32>,
    /// Feed-forward down projection.
    pub ff2_w: Vec<f32>,
    /// Its bias.
    pub ff2_b: Vec<f32>,
    /// Second layer norm's scale.
    pub ln2_g: Vec<f32>,
    /// Second layer norm's shift.
    pub ln2_b: Vec<f32>,
}

/// A BERT encoder's weights as flat row-major `f32` arrays, for the native and CUDA passes.
#[derive(Debug, Clone)]
pub struct BertWeights {
    /// The model's shape.
    pub shape: BertShape,
    /// Word embeddings, `[vocab, hidden]`.
    pub word: Vec<f32>,
    /// Position embeddings, `[max_positions, hidden]`.
    pub position: Vec<f32>,
    /// Token type embeddings, `[type_vocab, hidden]`.
    pub token_type: Vec<f32>,
    /// Embedding layer norm's scale.
    pub emb_ln_g: Vec<f32>,
    /// Embedding layer norm's shift.
    pub emb_ln_b: Vec<f32>,
    /// The transformer layers, in order.
    pub layers: Vec<LayerWeights>,
}

impl BertWeights {
    /// Reads a safetensors file of a BERT model (names with or without a `bert.` prefix,
    /// LayerNorm as `weight`/`bias` or `gamma`/`beta`), checking every shape.
    pub fn load(path: &Path, shape: BertShape) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::BadModelFile { path: path.to_path_buf(), reason };
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
        let mut source = Source { tensors, prefix: "" };
        if !source.tensors.contains_key("embeddings.word_embeddings.weight") {
            source.prefix = "bert.";
        }
        Self::build(shape, |name, dims| source.get(name, dims)).map_err(bad)
    }

    /// Deterministic weights of `shape` (uniform, scaled like an initialised model, LayerNorm
    /// near identity), for benchmarks that need no weights file.
    pub fn random(shape: BertShape, seed: u64) -> Self {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let result: std::result::Result<Self, String> = Self::build(shape, |name, dims| {
            let n: usize = dims.iter().product();
            let (centre, spread) = if name.ends_with("LayerNorm.weight") {
                (1.0, 0.05)
            } else if name.ends_with("bias") {
                (0.0, 0.02)
            } else if name.starts_with("embeddings.word") {
                // Words far apart and positions close (positions are shared by every input
                // of a length), so different inputs give clearly different vectors and a
                // comparison between forward passes means something.
                (0.0, 1.0)
            } else if name.starts_with("embeddings") {
                (0.0, 0.05)
            } else {
                (0.0, 0.08)
            };
            Ok((0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let u = (state >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
                    centre + spread * (2.0 * u - 1.0)
                })
                .collect())
        });
        match result {
            Ok(w) => w,
            Err(_) => unreachable!("random weights always have the asked shapes"),
        }
    }

    fn build(
        shape: BertShape,
        mut get: impl FnMut(&str, &[usize]) -> std::result::Result<Vec<f32>, String>,
    ) -> std::result::Result<Self, String> {
        let (h, i) = (shape.hidden, shape.intermediate);
        let ln = |get: &mut Getter<'_>, p: &str| {
            Ok::<_, String>((get(&format!("{p}.weight"), &[h])?, get(&format!("{p}.bias"), &[h])?))
        };
        let (emb_ln_g, emb_ln_b) = ln(&mut get, "embeddings.LayerNorm")?;
        let word = get("embeddings.word_embeddings.weight", &[shape.vocab, h])?;
        let position = get("embeddings.position_embeddings.weight", &[shape.max_positions, h])?;
        let token_type = get("embeddings.token_type_embeddings.weight", &[shape.type_vocab, h])?;
        let mut layers = Vec::with_capacity(shape.layers);
        for l in 0..shape.layers {
            let p = format!("encoder.layer.{l}");
            let mut qkv_w = Vec::with_capacity(3 * h * h);
            let mut qkv_b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                qkv_w.extend(get(&format!("{p}.attention.self.{part}.weight"), &[h, h])?);
                qkv_b.extend(get(&format!("{p}.attention.self.{part}.bias"), &[h])?);
            }
            let (ln1_g, ln1_b) = ln(&mut get, &format!("{p}.attention.output.LayerNorm"))?;
            let (ln2_g, ln2_b) = ln(&mut get, &format!("{p}.output.LayerNorm"))?;
            layers.push(LayerWeights {
                qkv_w,
                qkv_b,
                out_w: get(&format!("{p}.attention.output.dense.weight"), &[h, h])?,
                out_b: get(&format!("{p}.attention.output.dense.bias"), &[h])?,
                ln1_g,
                ln1_b,
                ff1_w: get(&format!("{p}.intermediate.dense.weight"), &[i, h])?,
                ff1_b: get(&format!("{p}.intermediate.dense.bias"), &[i])?,
                ff2_w: get(&format!("{p}.output.dense.weight"), &[h, i])?,
                ff2_b: get(&format!("{p}.output.dense.bias"), &[h])?,
                ln2_g,
                ln2_b,
            });
        }
        Ok(BertWeights { shape, word, position, token_type, emb_ln_g, emb_ln_b, layers })
    }

    /// The weights as candle tensors under Hugging Face's names, for candle's `BertModel`
    /// (the reference the tests and benchmarks hold our forward passes to).
    pub fn to_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let (h, i) = (self.shape.hidden, self.shape.intermediate);
        let mut map = HashMap::new();
        let mut put = |name: String, data: &[f32], dims: &[usize]| -> Result<()> {
            map.insert(name, Tensor::from_slice(data, dims, &Device::Cpu)?);
            Ok(())
        };
        put("embeddings.word_embeddings.weight".into(), &self.word, &[self.shape.vocab, h])?;
        put("embeddings.position_embeddings.weight".into(), &self.position, &[self.shape.max_positions, h])?;
        put("embeddings.token_type_embeddings.weight".into(), &self.token_type, &[self.shape.type_vocab, h])?;
        put("embeddings.LayerNorm.weight".into(), &self.emb_ln_g, &[h])?;
        put("embeddings.LayerNorm.bias".into(), &self.emb_ln_b, &[h])?;
        for (l, w) in self.layers.iter().enumerate() {
            let p = format!("encoder.layer.{l}");
            for (k, part) in ["query", "key", "value"].iter().enumerate() {
                put(format!("{p}.attention.self.{part}.weight"), &w.qkv_w[k * h * h..(k + 1) * h * h], &[h, h])?;
                put(format!("{p}.attention.self.{part}.bias"), &w.qkv_b[k * h..(k + 1) * h], &[h])?;
            }
            put(format!("{p}.attention.output.dense.weight"), &w.out_w, &[h, h])?;
            put(format!("{p}.attention.output.dense.bias"), &w.out_b, &[h])?;
            put(format!("{p}.attention.output.LayerNorm.weight"), &w.ln1_g, &[h])?;
            put(format!("{p}.attention.output.LayerNorm.bias"), &w.ln1_b, &[h])?;
            put(format!("{p}.intermediate.dense.weight"), &w.ff1_w, &[i, h])?;
            put(format!("{p}.intermediate.dense.bias"), &w.ff1_b, &[i])?;
            put(format!("{p}.output.dense.weight"), &w.ff2_w, &[h, i])?;
            put(format!("{p}.output.dense.bias"), &w.ff2_b, &[h])?;
            put(format!("{p}.output.LayerNorm.weight"), &w.ln2_g, &[h])?;
            put(format!("{p}.output.LayerNorm.bias"), &w.ln2_b, &[h])?;
        }
        Ok(map)
    }
}

/// Reads one named tensor of the given dimensions.
type Getter<'a> = dyn FnMut(&str, &[usize]) -> std::result::Result<Vec<f32>, String> + 'a;

struct Source {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Source {
    fn get(&self, name: &str, dims: &[usize]) -> std::result::Result<Vec<f32>, String> {
        let full = format!("{}{name}", self.prefix);
        let legacy = full.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta");
        let t = self
            .tensors
            .get(&full)
            .or_else(|| self.tensors.get(&legacy))
            .ok_or_else(|| format!("tensor {full} is missing"))?;
        if t.dims() != dims {
            return Err(format!("tensor {full} has shape {:?}, the config implies {dims:?}", t.dims()));
        }
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("tensor {full}: {e}"))
    }
}
