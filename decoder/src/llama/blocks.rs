//! One layer of the forward pass: the attention block (norm, fused QKV, RoPE, the KV cache,
//! the heads, the output projection) and the feed-forward block (norm, fused gate/up, SiLU,
//! down), with the scratch buffers kept between calls.

use super::LlamaConfig;
use crate::{Error, Result};
use rayon::prelude::*;
use sousuo_kernels::blockq::{matmul_block, BlockMatrix, BlockRows};
use sousuo_kernels::matmul::{matmul, MatMut, MatRef};

pub(super) struct Layer {
    pub(super) attn_norm: Vec<f32>,
    /// Q, K and V stacked: `q_dim + 2 * kv_dim` output channels.
    pub(super) qkv: BlockMatrix,
    /// Their biases, stacked the same way (Qwen 2).
    pub(super) qkv_bias: Option<Vec<f32>>,
    /// RMS norm weights of each query and each key head, `head_dim` each (Qwen 3).
    pub(super) q_norm: Option<Vec<f32>>,
    pub(super) k_norm: Option<Vec<f32>>,
    pub(super) wo: BlockMatrix,
    pub(super) ffn_norm: Vec<f32>,
    /// Gate then up: `2 * ffn` output channels.
    pub(super) gate_up: BlockMatrix,
    pub(super) down: BlockMatrix,
    /// The cache: one row of `kv_dim` per position, RoPE already applied to the keys.
    pub(super) k: Vec<f32>,
    pub(super) v: Vec<f32>,
}

/// Working buffers, kept between calls.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) x: Vec<f32>,
    pub(super) h: Vec<f32>,
    pub(super) qkv: Vec<f32>,
    pub(super) att: Vec<f32>,
    pub(super) out: Vec<f32>,
    pub(super) gate_up: Vec<f32>,
    pub(super) act: Vec<f32>,
    pub(super) scores: Vec<f32>,
    /// Per head, when heads run in parallel: scores and output.
    pub(super) heads: Vec<(Vec<f32>, Vec<f32>)>,
    pub(super) rows: BlockRows,
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

/// Where one forward call is: its first position, its token count, the threads its products use.
#[derive(Clone, Copy)]
pub(super) struct Step {
    pub(super) pos: usize,
    pub(super) t: usize,
    pub(super) threads: usize,
}

/// One layer's attention block: norm, QKV, RoPE, the KV cache, the heads, the output
/// projection, the residual.
pub(super) fn attention(
    c: &LlamaConfig,
    layer: &mut Layer,
    s: &mut Scratch,
    (cos, sin): (&[f32], &[f32]),
    step: Step,
) -> Result<()> {
    let Step { pos, t, threads } = step;
    let (dim, qd, kv, hd) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim);
    let total = pos + t;
    let qkv_cols = qd + 2 * kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let group = c.heads / c.kv_heads;
    rms_norm(&s.x, &mut s.h, &layer.attn_norm, dim, c.eps);
    s.rows.quantize(&s.h, t, dim).map_err(kerr)?;
    s.qkv.resize(t * qkv_cols, 0.0);
    matmul_block(&mut s.qkv, &s.rows, &layer.qkv, threads).map_err(kerr)?;
    let half = c.rope_dim / 2;
    let turn = if c.family.rope_halves() { rope_halves } else { rope };
    for (i, row) in s.qkv.chunks_exact_mut(qkv_cols).enumerate() {
        if let Some(b) = &layer.qkv_bias {
            add(row, b);
        }
        let (q, k) = row[..qd + kv].split_at_mut(qd);
        for (heads, w) in [(q, &layer.q_norm), (k, &layer.k_norm)] {
            if let Some(w) = w {
                heads.chunks_exact_mut(hd).for_each(|h| rms_norm_in_place(h, w, c.eps));
            }
        }
        let p = pos + i;
        let (cos, sin) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        for head in row[..qd + kv].chunks_exact_mut(hd) {
            turn(&mut head[..c.rope_dim], cos, sin);
        }
    }
    layer.k.resize(total * kv, 0.0);
    layer.v.resize(total * kv, 0.0);
    for (i, row) in s.qkv.chunks_exact(qkv_cols).enumerate() {
        let p = pos + i;
        layer.k[p * kv..(p + 1) * kv].copy_from_slice(&row[qd..qd + kv]);
        layer.v[p * kv..(p + 1) * kv].copy_from_slice(&row[qd + kv..]);
    }
    s.att.resize(t * qd, 0.0);
    let a = Attention { qkv: &s.qkv, qkv_cols, k: &layer.k, v: &layer.v, kv, hd, pos, t, scale };
    if threads > 1 {
        // Prompt chunks: heads in parallel, each into its own buffers, then gathered.
        s.heads.resize_with(c.heads, Default::default);
        s.heads.par_iter_mut().enumerate().try_for_each(|(h, (scores, out))| {
            out.resize(t * hd, 0.0);
            a.head(h / group, h, scores, MatMut::row_major(out, t, hd).map_err(kerr)?)
        })?;
        for (h, (_, out)) in s.heads.iter().enumerate() {
            for (dst, src) in s.att.chunks_exact_mut(qd).zip(out.chunks_exact(hd)) {
                dst[h * hd..(h + 1) * hd].copy_from_slice(src);
            }
        }
    } else {
        for h in 0..c.heads {
            let out = MatMut::new(&mut s.att[h * hd..], t, hd, qd).map_err(kerr)?;
            a.head(h / group, h, &mut s.scores, out)?;
        }
    }
    s.rows.quantize(&s.att, t, qd).map_err(kerr)?;
    s.out.resize(t * dim, 0.0);
    matmul_block(&mut s.out, &s.rows, &layer.wo, threads).map_err(kerr)?;
    add(&mut s.x, &s.out);
    Ok(())
}

/// One layer's feed-forward block: norm, gate and up, SiLU, down, the residual.
pub(super) fn feed_forward(c: &LlamaConfig, layer: &Layer, s: &mut Scratch, step: Step) -> Result<()> {
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

pub(super) fn kerr(e: sousuo_kernels::Error) -> Error {
    Error::Kernel(e)
}

/// `1 / rms(x)`.
fn inverse_rms(x: &[f32], eps: f32) -> f32 {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    1.0 / (ss / x.len() as f32 + eps).sqrt()
}

/// `out = x / rms(x) * w` per row of `dim`.
pub(super) fn rms_norm(x: &[f32], out: &mut Vec<f32>, w: &[f32], dim: usize, eps: f32) {
    out.resize(x.len(), 0.0);
    for (row, o) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let r = inverse_rms(row, eps);
        for ((o, v), w) in o.iter_mut().zip(row).zip(w) {
            *o = v * r * w;
        }
    }
}

/// `x = x / rms(x) * w` (one head).
fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let r = inverse_rms(x, eps);
    for (v, w) in x.iter_mut().zip(w) {
        *v *= r * w;
    }
}

/// Rotary embedding over the two halves: pairs `(i, i + half)` turned by angle `i`.
fn rope_halves(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let (lo, hi) = x.split_at_mut(x.len() / 2);
    for (((a, b), c), s) in lo.iter_mut().zip(hi).zip(cos).zip(sin) {
        let (x1, x2) = (*a, *b);
        *a = x1 * c - x2 * s;
        *b = x2 * c + x1 * s;
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
