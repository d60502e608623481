//! Sousuo's own CPU forward pass of a BERT encoder.
//!
//! Why not candle's: candle pads every sequence of a batch to the longest and masks, copies
//! tensors between layouts at each attention, runs the GELU, softmax and LayerNorm as separate
//! passes, and (0.11) uses only AVX2 matmul kernels. Here the tokens of a batch are packed
//! (no padding at all: a dense layer is one `[tokens x in] * [in x out]` product), attention
//! runs per sequence and head on strided views of the packed Q/K/V (no copies), bias + GELU and
//! bias + residual + LayerNorm are fused (`sousuo_kernels::ops`), and the matmuls use gemm's
//! AVX-512 kernels where the CPU has them. With [`Precision::Int8`] the dense layers run in
//! integers (`sousuo_kernels::int8`); the attention stays f32 (in integers it cost SciFact's
//! dense nDCG@10 0.003 against f32 for 15% of indexing speed: docs/benchmarks.md).
//!
//! Threads: [`Parallelism::Sequences`] gives each thread whole sequences (no synchronisation
//! inside the forward pass); [`Parallelism::Matmul`] splits each product across threads.
//! `docs/performance.md` measures both.

use crate::weights::{BertShape, BertWeights};
use crate::{Error, Pooling, Result};
use rayon::prelude::*;
use sousuo_kernels::int8::{matmul_int8, matmul_int8_bias, QuantizedMatrix, QuantizedRows};
use sousuo_kernels::matmul::{matmul, MatMut, MatRef};
use sousuo_kernels::ops;
use sousuo_kernels::packed::{matmul_packed, PackedMatrix};
use std::sync::Mutex;

/// How a batch is spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parallelism {
    /// Whole sequences per thread (the default: no barrier per layer).
    #[default]
    Sequences,
    /// Every product split across the threads.
    Matmul,
}

impl std::str::FromStr for Parallelism {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sequences" => Ok(Parallelism::Sequences),
            "matmul" => Ok(Parallelism::Matmul),
            _ => Err(Error::Model(format!("unknown parallelism {s:?}: use sequences or matmul"))),
        }
    }
}

/// The arithmetic of the dense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 weights and activations (exact to candle's forward pass).
    #[default]
    F32,
    /// int8 weights (per output channel) and activations (per token), i32 accumulation
    /// (AVX-512 VNNI where the CPU has it); attention, norms and GELU stay f32.
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            _ => Err(Error::Model(format!("unknown precision {s:?}: use f32 or int8"))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        })
    }
}

/// One layer's four dense weight matrices in another form: quantised to int8
/// ([`QuantizedLayer`]) or packed for few-row products ([`PackedLayer`]).
struct LayerMatrices<T> {
    qkv: T,
    out: T,
    ff1: T,
    ff2: T,
}

type QuantizedLayer = LayerMatrices<QuantizedMatrix>;
type PackedLayer = LayerMatrices<PackedMatrix>;

/// Every layer's matrices converted by `convert(weights, rows, cols)`.
fn convert_layers<T>(
    weights: &BertWeights,
    convert: impl Fn(&[f32], usize, usize) -> sousuo_kernels::Result<T>,
) -> Result<Vec<LayerMatrices<T>>> {
    let (h, i) = (weights.shape.hidden, weights.shape.intermediate);
    let mut layers = Vec::with_capacity(weights.layers.len());
    for l in &weights.layers {
        layers.push(LayerMatrices {
            qkv: convert(&l.qkv_w, 3 * h, h)?,
            out: convert(&l.out_w, h, h)?,
            ff1: convert(&l.ff1_w, i, h)?,
            ff2: convert(&l.ff2_w, h, i)?,
        });
    }
    Ok(layers)
}

/// Batches of at most this many tokens (a query, a short passage) multiply the f32 weights
/// packed once at load ([`PackedMatrix`]) instead of gemm, which packs them on every call.
const PACKED_MAX_TOKENS: usize = 64;

pub(crate) struct NativeBert {
    pub(crate) weights: BertWeights,
    quantized: Option<Vec<QuantizedLayer>>,
    packed: Option<Vec<PackedLayer>>,
    pooling: Pooling,
    threads: usize,
    parallelism: Parallelism,
    scratch: Mutex<Vec<Scratch>>,
    /// A pool of `threads` threads when that differs from rayon's global pool.
    pool: Option<rayon::ThreadPool>,
}

/// The scratch buffers of one forward pass, kept between batches (fresh allocations of
/// tens of megabytes cost page faults on every batch).
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
    inv: Vec<f32>,
    q: QuantizedRows,
}

impl NativeBert {
    pub(crate) fn new(
        weights: BertWeights,
        pooling: Pooling,
        threads: usize,
        parallelism: Parallelism,
        precision: Precision,
    ) -> Result<Self> {
        let (quantized, packed) = match precision {
            Precision::Int8 => (Some(convert_layers(&weights, QuantizedMatrix::quantize)?), None),
            Precision::F32 => (None, Some(convert_layers(&weights, PackedMatrix::pack)?)),
        };
        // 0: every thread of rayon's pool (the `--threads` flag sizes it).
        let threads = sousuo_common::threads::resolve(threads);
        let pool = if threads > 1 && threads != rayon::current_num_threads() {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("sousuo-encoder-{i}"))
                .build()
                .ok()
        } else {
            None
        };
        Ok(NativeBert {
            pool,
            weights,
            quantized,
            packed,
            pooling,
            threads,
            parallelism,
            scratch: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn dim(&self) -> usize {
        self.weights.shape.hidden
    }

    /// Embeds several batches, in order. With whole sequences per thread, several batches run
    /// at once, one per thread (no barrier after each batch); a lone batch is split instead.
    ///
    /// The threads take work in order from one queue, and the last batches are cut into
    /// quarters: the batches come longest sequences first, so the work ends with small pieces
    /// and the threads finish together (a whole batch left to one thread at the end cost up to
    /// a tenth of a call's wall time on 2 threads).
    pub(crate) fn forward_many(&self, batches: &[Vec<&[u32]>]) -> Result<Vec<Vec<f32>>> {
        let threads = self.threads;
        if threads <= 1 || self.parallelism == Parallelism::Matmul || batches.len() < 2 {
            return batches.iter().map(|b| self.forward(b)).collect();
        }
        // Work units: (batch, its sequences from..to).
        let tail = batches.len().saturating_sub(2 * threads);
        let mut units = Vec::new();
        for (b, seqs) in batches.iter().enumerate() {
            let pieces = if b >= tail { 4.min(seqs.len()).max(1) } else { 1 };
            units.extend((0..pieces).map(|p| (b, seqs.len() * p / pieces..seqs.len() * (p + 1) / pieces)));
        }
        let results: Vec<Mutex<Option<Result<Vec<f32>>>>> = units.iter().map(|_| Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((b, range)) = units.get(i) else { break };
            let out = self.forward_split(&batches[*b][range.clone()], 1);
            if let Ok(mut slot) = results[i].lock() {
                *slot = Some(out);
            }
        };
        let run = || rayon::scope(|s| (0..threads).for_each(|_| s.spawn(|_| work())));
        match &self.pool {
            Some(pool) => pool.install(run),
            None => run(),
        }
        let mut out: Vec<Vec<f32>> = batches.iter().map(|b| Vec::with_capacity(b.len() * self.dim())).collect();
        for ((b, _), slot) in units.iter().zip(results) {
            let rows =
                slot.into_inner().ok().flatten().ok_or_else(|| Error::Model("an encoder thread failed".into()))?;
            out[*b].extend_from_slice(&rows?);
        }
        Ok(out)
    }

    /// Embeds one batch; returns `seqs.len() * dim` floats, each row L2-normalised.
    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        match &self.pool {
            Some(pool) => pool.install(|| self.forward_split(seqs, self.threads)),
            None => self.forward_split(seqs, self.threads),
        }
    }

    /// One batch, its sequences split over at most `threads` threads.
    fn forward_split(&self, seqs: &[&[u32]], threads: usize) -> Result<Vec<f32>> {
        let shape = &self.weights.shape;
        for s in seqs {
            if s.len() > shape.max_positions {
                return Err(Error::Model(format!(
                    "a sequence of {} tokens is longer than the model's {} positions",
                    s.len(),
                    shape.max_positions
                )));
            }
            if let Some(&id) = s.iter().find(|&&id| id as usize >= shape.vocab) {
                return Err(Error::Model(format!("token id {id} is outside the vocabulary of {}", shape.vocab)));
            }
        }
        let dim = shape.hidden;
        let mut out = vec![0f32; seqs.len() * dim];
        if threads <= 1 || self.parallelism == Parallelism::Matmul || seqs.len() < 2 {
            let threads = if self.parallelism == Parallelism::Matmul { self.threads } else { 1 };
            self.forward_group(seqs, threads, &mut out)?;
            return Ok(out);
        }
        // Split into `threads` runs of consecutive sequences with about equal work (tokens
        // weighted by length, since attention grows with the square).
        let cost: Vec<f64> = seqs.iter().map(|s| (s.len() * (s.len() + 4 * dim)) as f64).collect();
        let total: f64 = cost.iter().sum();
        let groups = threads.min(seqs.len());
        let mut bounds = vec![0usize];
        let mut acc = 0.0;
        for (i, c) in cost.iter().enumerate() {
            acc += c;
            if bounds.len() < groups && acc >= total * bounds.len() as f64 / groups as f64 && i + 1 < seqs.len() {
                bounds.push(i + 1);
            }
        }
        bounds.push(seqs.len());
        let mut parts: Vec<(&[&[u32]], &mut [f32])> = Vec::with_capacity(groups);
        let mut rest = out.as_mut_slice();
        for w in bounds.windows(2) {
            let (head, tail) = rest.split_at_mut((w[1] - w[0]) * dim);
            parts.push((&seqs[w[0]..w[1]], head));
            rest = tail;
        }
        parts.into_par_iter().try_for_each(|(group, out)| self.forward_group(group, 1, out))?;
        Ok(out)
    }

    fn forward_group(&self, seqs: &[&[u32]], threads: usize, out: &mut [f32]) -> Result<()> {
        let BertShape { hidden: h, intermediate: inter, .. } = self.weights.shape;
        let tokens: usize = seqs.iter().map(|s| s.len()).sum();
        if tokens == 0 {
            return Ok(());
        }
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut s = self.scratch.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
        // Every buffer is fully written before it is read, so old contents may stay.
        for (buf, len) in [
            (&mut s.x, tokens * h),
            (&mut s.qkv, tokens * 3 * h),
            (&mut s.ctx, tokens * h),
            (&mut s.tmp, tokens * h),
            (&mut s.inter, tokens * inter),
            // The attention's score matrix (one head of one sequence at a time).
            (&mut s.scores, longest * longest),
            (&mut s.inv, longest),
        ] {
            buf.resize(len, 0.0);
        }
        let result = self.layers(seqs, threads, &mut s, out);
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(s);
        }
        result
    }

    fn layers(&self, seqs: &[&[u32]], threads: usize, s: &mut Scratch, out: &mut [f32]) -> Result<()> {
        let w = &self.weights;
        let BertShape { hidden: h, heads, eps, .. } = w.shape;
        let dh = w.shape.head_dim();
        let tokens: usize = seqs.iter().map(|s| s.len()).sum();
        // Embeddings: word + position + token type 0, then LayerNorm.
        let mut row = 0;
        for seq in seqs {
            for (pos, &id) in seq.iter().enumerate() {
                let dst = &mut s.x[row * h..(row + 1) * h];
                let (wd, ps, ty) = (id as usize * h, pos * h, 0);
                for (k, d) in dst.iter_mut().enumerate() {
                    *d = w.word[wd + k] + w.position[ps + k] + w.token_type[ty + k];
                }
                row += 1;
            }
        }
        ops::layer_norm(&mut s.x, h, &w.emb_ln_g, &w.emb_ln_b, eps)?;
        let scale = 1.0 / (dh as f32).sqrt();
        for (li, l) in w.layers.iter().enumerate() {
            let q = self.quantized.as_ref().map(|q| &q[li]);
            // The packed weights serve batches of few tokens; gemm the rest.
            let pk = self.packed.as_ref().filter(|_| tokens <= PACKED_MAX_TOKENS).map(|p| &p[li]);
            let dense = |dst: &mut [f32], x: &[f32], w: Weights<'_>, bias, rows: &mut QuantizedRows| {
                dense(dst, x, w, bias, rows, tokens, threads)
            };
            let qkv = Weights { w: &l.qkv_w, quantized: q.map(|q| &q.qkv), packed: pk.map(|p| &p.qkv) };
            dense(&mut s.qkv, &s.x, qkv, Some(&l.qkv_b), &mut s.q)?;
            let mut off = 0;
            for seq in seqs {
                let len = seq.len();
                let block = &s.qkv[off * 3 * h..(off + len) * 3 * h];
                let ctx = &mut s.ctx[off * h..(off + len) * h];
                for hd in 0..heads {
                    attention_f32(block, len, h, hd, dh, scale, threads, &mut s.scores, &mut s.inv, ctx)?;
                }
                off += len;
            }
            let out_w = Weights { w: &l.out_w, quantized: q.map(|q| &q.out), packed: pk.map(|p| &p.out) };
            dense(&mut s.tmp, &s.ctx, out_w, None, &mut s.q)?;
            ops::bias_residual_layer_norm(&mut s.tmp, &s.x, &l.out_b, &l.ln1_g, &l.ln1_b, eps)?;
            std::mem::swap(&mut s.x, &mut s.tmp);
            let ff1 = Weights { w: &l.ff1_w, quantized: q.map(|q| &q.ff1), packed: pk.map(|p| &p.ff1) };
            dense(&mut s.inter, &s.x, ff1, None, &mut s.q)?;
            match q {
                // Bias + GELU and the quantisation in one pass over each row.
                Some(q) => {
                    let inter = q.ff1.out();
                    let act = &mut s.inter[..tokens * inter];
                    s.q.quantize_each(act, tokens, inter, |row| ops::bias_gelu(row, &l.ff1_b))?;
                    matmul_int8(&mut s.tmp[..tokens * h], &s.q, &q.ff2)?;
                }
                None => {
                    ops::bias_gelu(&mut s.inter, &l.ff1_b)?;
                    let ff2 = Weights { w: &l.ff2_w, quantized: None, packed: pk.map(|p| &p.ff2) };
                    dense(&mut s.tmp, &s.inter, ff2, None, &mut s.q)?;
                }
            }
            ops::bias_residual_layer_norm(&mut s.tmp, &s.x, &l.ff2_b, &l.ln2_g, &l.ln2_b, eps)?;
            std::mem::swap(&mut s.x, &mut s.tmp);
        }
        let mut off = 0;
        for (i, seq) in seqs.iter().enumerate() {
            let rows = match self.pooling {
                Pooling::Mean => &s.x[off * h..(off + seq.len()) * h],
                Pooling::Cls => &s.x[off * h..(off + 1) * h],
            };
            ops::mean_pool_l2(rows, h, &mut out[i * h..(i + 1) * h])?;
            off += seq.len();
        }
        Ok(())
    }
}

/// One head's attention over one sequence in f32: `block` is the sequence's packed Q/K/V
/// (`len` rows of `3 * h`), `ctx` its context rows (`len` rows of `h`), head `hd`'s columns.
#[allow(clippy::too_many_arguments)]
fn attention_f32(
    block: &[f32],
    len: usize,
    h: usize,
    hd: usize,
    dh: usize,
    scale: f32,
    threads: usize,
    scores: &mut [f32],
    inv: &mut [f32],
    ctx: &mut [f32],
) -> Result<()> {
    let q = MatRef::new(&block[hd * dh..], len, dh, 3 * h, 1)?;
    let k = MatRef::new(&block[h + hd * dh..], len, dh, 3 * h, 1)?;
    let v = MatRef::new(&block[2 * h + hd * dh..], len, dh, 3 * h, 1)?;
    let scores = &mut scores[..len * len];
    matmul(MatMut::row_major(scores, len, len)?, q, k.t(), scale, false, threads)?;
    // Softmax without its last pass: the context rows (head_dim wide) are scaled by 1 / sum
    // instead of the score rows (len wide).
    let inv = &mut inv[..len];
    ops::exp_rows(scores, len, inv)?;
    let dst = MatMut::new(&mut ctx[hd * dh..], len, dh, h)?;
    matmul(dst, MatRef::row_major(scores, len, len)?, v, 1.0, false, threads)?;
    for (i, f) in inv.iter().enumerate() {
        for c in &mut ctx[i * h + hd * dh..i * h + hd * dh + dh] {
            *c *= f;
        }
    }
    Ok(())
}

/// A dense layer's weights: PyTorch's `[out x in]` f32 matrix, and where the model has them,
/// its int8 quantisation or its panel packing for few-row products.
#[derive(Clone, Copy)]
struct Weights<'a> {
    w: &'a [f32],
    quantized: Option<&'a QuantizedMatrix>,
    packed: Option<&'a PackedMatrix>,
}

/// `dst[tokens x out] = x[tokens x in] * w^T (+ bias)`, in int8 when the layer's quantised
/// weights are given (the bias then added where the integers are scaled), through the packed
/// weights when given, else through gemm.
fn dense(
    dst: &mut [f32],
    x: &[f32],
    weights: Weights<'_>,
    bias: Option<&[f32]>,
    rows: &mut QuantizedRows,
    tokens: usize,
    threads: usize,
) -> Result<()> {
    let w = weights.w;
    let d_in = x.len() / tokens.max(1);
    let d_out = w.len() / d_in.max(1);
    let dst = &mut dst[..tokens * d_out];
    if let Some(qm) = weights.quantized {
        rows.quantize(&x[..tokens * d_in], tokens, d_in)?;
        match bias {
            Some(b) => matmul_int8_bias(dst, rows, qm, b)?,
            None => matmul_int8(dst, rows, qm)?,
        }
        return Ok(());
    }
    if let Some(pm) = weights.packed {
        matmul_packed(dst, &x[..tokens * d_in], tokens, pm, bias)?;
        return Ok(());
    }
    matmul(
        MatMut::row_major(dst, tokens, d_out)?,
        MatRef::row_major(x, tokens, d_in)?,
        MatRef::row_major(w, d_out, d_in)?.t(),
        1.0,
        false,
        threads,
    )?;
    if let Some(b) = bias {
        ops::add_bias(dst, b)?;
    }
    Ok(())
}
