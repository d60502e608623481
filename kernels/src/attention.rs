//! Attention of one head over one sequence in integer arithmetic, for the int8 encoder.
//!
//! Q is quantised per query row (symmetric, stored as `q + 128` in a `u8`, the unsigned operand
//! of VNNI's `vpdpbusd`), K per key row and V per channel (symmetric `i8`). The scores
//! accumulate in i32 and are scaled back to f32 (the `+ 128` comes back out through each key's
//! sum); the softmax's `exp(s - max)`, which lies in `[0, 1]`, is quantised to `u8` (x 255) and
//! feeds the value product, again `u8 x i8` in i32; each context row is divided by the sum of
//! its quantised weights.
//!
//! Why not gemm: a head is 32 deep, so the f32 products spend as much time packing as
//! multiplying, and the score matrix (`len x len`) makes a trip through L2 between the
//! products and the softmax. Here K and V are packed once per head into the layouts the
//! micro-kernels read (16 keys x 4 dims per 64 bytes; 16 channels x 4 keys per 64 bytes), and
//! each tile of 8 query rows goes scores -> softmax -> values while it is in L1.
//!
//! Levels as in [`crate::int8`]: AVX-512 VNNI micro-kernels where the CPU has them, the
//! portable loops (compiled for AVX2, or plain) elsewhere; the integers are exact and the f32
//! steps are the same operations at every level, so every level gives identical output.

use crate::int8::Int8Level;
use crate::{Error, Result};

/// Query rows per tile.
const TR: usize = 8;
/// Lanes of a 512-bit register of i32.
const NB: usize = 16;
/// `1.5 * 2^23`: added to a float of magnitude below 2^22, it leaves the nearest integer
/// (ties to even) in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// The scratch buffers of [`AttentionInt8::run`], kept between sequences and layers. Each
/// packed buffer holds every head of the sequence, one after another.
#[derive(Debug, Default)]
pub struct AttentionInt8 {
    /// Quantised Q rows (`+ 128`), `dk` bytes each, padded to whole tiles with zeros (128).
    qu: Vec<u8>,
    /// Per query: its scale times the attention scale.
    qs: Vec<f32>,
    /// K packed for [`scores`]: per 16 keys, per 4 dims, 64 bytes.
    kp: Vec<i8>,
    ksum: Vec<i32>,
    ks: Vec<f32>,
    /// V packed for [`values`]: per 4 keys, per 16 channels, 64 bytes.
    vp: Vec<i8>,
    vs: Vec<f32>,
    row8: Vec<i8>,
    inv: Vec<f32>,
    sacc: Vec<i32>,
    s: Vec<f32>,
    p: Vec<u8>,
    cacc: Vec<i32>,
}

/// A sequence's attention shape.
#[derive(Debug, Clone, Copy)]
struct Shape {
    len: usize,
    hidden: usize,
    heads: usize,
    dh: usize,
    /// Q/K depth padded to 4, V channels to 32, keys to 32 (scores) and 4 (values), queries
    /// to whole tiles.
    dk: usize,
    dv: usize,
    lk: usize,
    lp: usize,
    lq: usize,
}

impl AttentionInt8 {
    /// Self-attention of one sequence, every head: `qkv` holds `len` rows of `3 * hidden`
    /// (Q, K, V side by side, each `heads` heads of `hidden / heads`), `ctx` gets `len` rows
    /// of `hidden`: `softmax(scale * Q K^T) V` per head.
    pub fn run(
        &mut self,
        qkv: &[f32],
        len: usize,
        hidden: usize,
        heads: usize,
        scale: f32,
        ctx: &mut [f32],
    ) -> Result<()> {
        self.run_with(Int8Level::detect(), qkv, len, hidden, heads, scale, ctx)
    }

    /// [`Self::run`] at a chosen level (one the CPU lacks falls back to the best it has).
    #[allow(clippy::too_many_arguments)]
    pub fn run_with(
        &mut self,
        level: Int8Level,
        qkv: &[f32],
        len: usize,
        hidden: usize,
        heads: usize,
        scale: f32,
        ctx: &mut [f32],
    ) -> Result<()> {
        if heads == 0 || hidden == 0 || !hidden.is_multiple_of(heads) {
            return Err(Error::DimensionMismatch { expected: heads.max(1), got: hidden });
        }
        if qkv.len() != len * 3 * hidden {
            return Err(Error::DimensionMismatch { expected: len * 3 * hidden, got: qkv.len() });
        }
        if ctx.len() != len * hidden {
            return Err(Error::DimensionMismatch { expected: len * hidden, got: ctx.len() });
        }
        if len == 0 {
            return Ok(());
        }
        let dh = hidden / heads;
        let shape = Shape {
            len,
            hidden,
            heads,
            dh,
            dk: dh.div_ceil(4) * 4,
            dv: dh.div_ceil(2 * NB) * 2 * NB,
            lk: len.div_ceil(2 * NB) * 2 * NB,
            lp: len.div_ceil(4) * 4,
            lq: len.div_ceil(TR) * TR,
        };
        let level = if level <= Int8Level::detect() { level } else { Int8Level::detect() };
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the level was detected on this CPU.
            Int8Level::Avx512Vnni => unsafe { x86::sequence_vnni(self, shape, qkv, scale, ctx) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Int8Level::Avx2 => unsafe { x86::sequence_avx2(self, shape, qkv, scale, ctx) },
            _ => sequence(self, Int8Level::Portable, shape, qkv, scale, ctx),
        }
        Ok(())
    }
}

/// The whole sequence: quantise and pack every head (reading the rows in order, once), then
/// each head tile by tile. The caller checked the lengths.
#[inline(always)]
fn sequence(a: &mut AttentionInt8, level: Int8Level, sh: Shape, qkv: &[f32], scale: f32, ctx: &mut [f32]) {
    let Shape { len, hidden: h, heads, dh, dk, dv, lk, lp, lq } = sh;
    reset(&mut a.qu, heads * lq * dk, 128);
    reset(&mut a.qs, heads * lq, 0.0);
    reset(&mut a.kp, heads * lk * dk, 0);
    reset(&mut a.ksum, heads * lk, 0);
    reset(&mut a.ks, heads * lk, 0.0);
    reset(&mut a.vp, heads * lp * dv, 0);
    reset(&mut a.vs, heads * dv, 0.0);
    reset(&mut a.row8, 4 * h.max(dk), 0);
    reset(&mut a.inv, h, 0.0);
    reset(&mut a.sacc, TR * lk, 0);
    reset(&mut a.s, len, 0.0);
    reset(&mut a.p, TR * lp, 0);
    reset(&mut a.cacc, TR * dv, 0);

    let (row8, amax) = (&mut a.row8, &mut a.inv);
    for (i, row) in qkv.chunks_exact(3 * h).enumerate() {
        for hd in 0..heads {
            let (qh, kh) = (hd * lq + i, hd * lk + i);
            let q8 = &mut a.qu[qh * dk..qh * dk + dh];
            let (s, _) = quantize_symmetric(&row[hd * dh..(hd + 1) * dh], q8, |x| (x as i32 + 128) as u8);
            a.qs[qh] = s * scale;
            // K: each key's 4-dim groups are 4 contiguous bytes of its lane (pad dims stay 0).
            let (s, sum) = quantize_symmetric(&row[h + hd * dh..h + (hd + 1) * dh], &mut row8[..dh], |x| x);
            (a.ks[kh], a.ksum[kh]) = (s, sum);
            let block = &mut a.kp[(hd * lk + i / NB * NB) * dk..(hd * lk + (i / NB + 1) * NB) * dk];
            for (g, x4) in row8[..dk].chunks_exact(4).enumerate() {
                block[g * NB * 4 + (i % NB) * 4..][..4].copy_from_slice(x4);
            }
        }
        // V per channel: the value product sums over keys, so a channel's scale factors out.
        for (m, x) in amax.iter_mut().zip(&row[2 * h..]) {
            *m = max(*m, x.abs());
        }
    }
    for (c, m) in amax.iter_mut().enumerate() {
        let s = if *m > 0.0 { *m / 127.0 } else { 1.0 };
        a.vs[(c / dh) * dv + c % dh] = s;
        *m = 1.0 / s;
    }
    let inv = &a.inv;
    // Four keys at a time: quantise their V rows, then interleave them channel by channel
    // (channel c of a group of 4 keys is the 4 bytes at 4c).
    for t in 0..lp / 4 {
        for u in 0..4 {
            let dst = &mut row8[u * h..(u + 1) * h];
            match qkv.get((4 * t + u) * 3 * h..(4 * t + u + 1) * 3 * h) {
                Some(row) => {
                    for ((d, x), i) in dst.iter_mut().zip(&row[2 * h..]).zip(inv.iter()) {
                        *d = round_i8(x * i);
                    }
                }
                None => dst.fill(0),
            }
        }
        for hd in 0..heads {
            let group = &mut a.vp[(hd * lp + 4 * t) * dv..(hd * lp + 4 * t) * dv + dh * 4];
            for (c, out) in group.chunks_exact_mut(4).enumerate() {
                let d = hd * dh + c;
                out.copy_from_slice(&[row8[d], row8[h + d], row8[2 * h + d], row8[3 * h + d]]);
            }
        }
    }

    for hd in 0..heads {
        let (qu, qs) = (&a.qu[hd * lq * dk..(hd + 1) * lq * dk], &a.qs[hd * lq..(hd + 1) * lq]);
        let kp = &a.kp[hd * lk * dk..(hd + 1) * lk * dk];
        let (ksum, ks) = (&a.ksum[hd * lk..hd * lk + len], &a.ks[hd * lk..hd * lk + len]);
        let (vp, vs) = (&a.vp[hd * lp * dv..(hd + 1) * lp * dv], &a.vs[hd * dv..(hd + 1) * dv]);
        for i0 in (0..len).step_by(TR) {
            let live = (len - i0).min(TR);
            scores(level, &qu[i0 * dk..(i0 + TR) * dk], kp, dk, lk, &mut a.sacc);
            let mut sums = [0u32; TR];
            for (r, sum) in sums.iter_mut().enumerate().take(live) {
                let acc = &a.sacc[r * lk..r * lk + len];
                let p = &mut a.p[r * lp..(r + 1) * lp];
                *sum = softmax_u8(acc, ksum, ks, qs[i0 + r], &mut a.s, &mut p[..len]);
                p[len..].fill(0);
            }
            values(level, &a.p, vp, lp, dv, &mut a.cacc);
            for (r, sum) in sums.iter().enumerate().take(live) {
                let inv = 1.0 / *sum as f32;
                let dst = &mut ctx[(i0 + r) * h + hd * dh..][..dh];
                for ((o, c), s) in dst.iter_mut().zip(&a.cacc[r * dv..]).zip(vs) {
                    *o = *c as f32 * s * inv;
                }
            }
        }
    }
}

/// Clears `buf` to `len` copies of `value`, keeping its memory.
fn reset<T: Copy>(buf: &mut Vec<T>, len: usize, value: T) {
    buf.clear();
    buf.resize(len, value);
}

/// Nearest integer (ties to even) of `x` clamped to [-127, 127], from the float's bits.
#[inline(always)]
fn round_i8(x: f32) -> i8 {
    (x.clamp(-127.0, 127.0) + ROUND).to_bits().wrapping_sub(0x4B40_0000) as i8
}

/// `row ~ scale * q`, `q` symmetric over [-127, 127], written as `map(q)`; returns the scale
/// and the sum of `q`.
#[inline(always)]
fn quantize_symmetric<T>(row: &[f32], dst: &mut [T], map: impl Fn(i8) -> T) -> (f32, i32) {
    let mut lanes = [0f32; NB];
    let mut chunks = row.chunks_exact(NB);
    for c in &mut chunks {
        for i in 0..NB {
            lanes[i] = max(lanes[i], c[i].abs());
        }
    }
    let amax = chunks.remainder().iter().map(|v| v.abs()).chain(lanes).fold(0f32, max);
    let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
    let inv = 1.0 / s;
    let mut sum = 0i32;
    for (d, x) in dst.iter_mut().zip(row) {
        let q = round_i8(x * inv);
        sum += q as i32;
        *d = map(q);
    }
    (s, sum)
}

/// The larger of two floats by a plain comparison (no NaN handling, which costs a compare
/// and a blend per step; the activations hold no NaN worth propagating).
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// One query row's softmax weights: the scores `(acc - 128 * ksum) * ks * qs`, then
/// `round(255 * exp(s - max))` into `p`; returns the sum of `p` (at least 255: the maximum's
/// own weight).
#[inline(always)]
fn softmax_u8(acc: &[i32], ksum: &[i32], ks: &[f32], qs: f32, s: &mut [f32], p: &mut [u8]) -> u32 {
    let n = p.len();
    let s = &mut s[..n];
    for ((x, a), (sum, k)) in s.iter_mut().zip(&acc[..n]).zip(ksum[..n].iter().zip(&ks[..n])) {
        *x = (a - 128 * sum) as f32 * (k * qs);
    }
    // Lane arrays over whole chunks, so that the reductions vectorise (plain comparisons: the
    // scores hold no NaN worth propagating).
    let mut hi = [f32::MIN; NB];
    let mut chunks = s.chunks_exact(NB);
    for c in &mut chunks {
        for i in 0..NB {
            hi[i] = max(hi[i], c[i]);
        }
    }
    let m = chunks.remainder().iter().chain(&hi).fold(f32::MIN, |m, v| max(m, *v));
    let shift = -m * std::f32::consts::LOG2_E;
    let mut total = [0u32; NB];
    let (mut pc, mut sc) = (p.chunks_exact_mut(NB), s.chunks_exact(NB));
    for (w, x) in (&mut pc).zip(&mut sc) {
        for i in 0..NB {
            w[i] = weight_u8(x[i].mul_add(std::f32::consts::LOG2_E, shift));
            total[i] += w[i] as u32;
        }
    }
    let mut tail = 0;
    for (w, x) in pc.into_remainder().iter_mut().zip(sc.remainder()) {
        *w = weight_u8(x.mul_add(std::f32::consts::LOG2_E, shift));
        tail += *w as u32;
    }
    total.iter().sum::<u32>() + tail
}

/// `round(255 * 2^z)` for `z <= 0`, branch-free: `2^z = 2^n * 2^f` with `n` the nearest
/// integer and `2^f` on [-1/2, 1/2] a cubic (relative error 1.4e-4, a thirtieth of a level).
#[inline(always)]
fn weight_u8(z: f32) -> u8 {
    // Below -24, 255 * 2^z rounds to 0; the clamp keeps 2^n a normal float.
    let z = if z > -24.0 { z } else { -24.0 };
    let t = z + ROUND;
    let f = z - (t - ROUND);
    let mut p: f32 = 0.055_029_27 * 255.0;
    p = p.mul_add(f, 0.242_256_98 * 255.0);
    p = p.mul_add(f, 0.693_253_05 * 255.0);
    p = p.mul_add(f, 0.999_951_34 * 255.0);
    let two_n = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    // At most 255 * 1.00014: the clamp keeps a rounding up inside the byte.
    let w = p * two_n;
    let w = if w < 255.0 { w } else { 255.0 };
    (w + ROUND).to_bits().wrapping_sub(0x4B40_0000) as u8
}

/// `acc[r][j] = sum_d rows[r][d] * k[j][d]` for TR query rows and all `lk` (padded) keys.
#[inline(always)]
fn scores(level: Int8Level, rows: &[u8], kp: &[i8], dk: usize, lk: usize, acc: &mut [i32]) {
    let shape = Tile { row_stride: dk, depth: dk, group_stride: NB * 4, out_stride: lk };
    for b in (0..lk / NB).step_by(2) {
        tile(level, rows, shape, &kp[b * dk * NB..], &kp[(b + 1) * dk * NB..], &mut acc[b * NB..]);
    }
}

/// `acc[r][d] = sum_j p[r][j] * v[j][d]` for TR query rows and all `dv` (padded) channels.
#[inline(always)]
fn values(level: Int8Level, p: &[u8], vp: &[i8], lp: usize, dv: usize, acc: &mut [i32]) {
    let shape = Tile { row_stride: lp, depth: lp, group_stride: dv * 4, out_stride: dv };
    for c in (0..dv / NB).step_by(2) {
        tile(level, p, shape, &vp[c * NB * 4..], &vp[(c + 1) * NB * 4..], &mut acc[c * NB..]);
    }
}

/// The shape of one micro-kernel call: TR rows of `depth` bytes (a multiple of 4),
/// `row_stride` apart, against two operand blocks of `depth / 4` groups (16 lanes x 4 bytes,
/// `group_stride` apart); row r's 2 x 16 sums go to `out[r * out_stride..][..32]`.
#[derive(Debug, Clone, Copy)]
struct Tile {
    row_stride: usize,
    depth: usize,
    group_stride: usize,
    out_stride: usize,
}

/// Both products' micro-kernel: `out[r][16 b + l] = sum_k rows[r][k] * block_b[k / 4][l][k % 4]`.
#[inline(always)]
fn tile(level: Int8Level, rows: &[u8], t: Tile, b0: &[i8], b1: &[i8], out: &mut [i32]) {
    let groups = t.depth / 4;
    let block = (groups.max(1) - 1) * t.group_stride + NB * 4;
    assert!(
        t.depth.is_multiple_of(4)
            && rows.len() >= (TR - 1) * t.row_stride + t.depth
            && b0.len() >= block
            && b1.len() >= block
            && out.len() >= (TR - 1) * t.out_stride + 2 * NB
    );
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller passes this level only on a CPU with VNNI; the extents the kernel
        // reads and writes were asserted above.
        Int8Level::Avx512Vnni => unsafe { x86::tile_vnni(rows, t, b0, b1, out) },
        _ => {
            for r in 0..TR {
                let row = &rows[r * t.row_stride..r * t.row_stride + t.depth];
                for (b, block) in [b0, b1].into_iter().enumerate() {
                    let mut lanes = [0i32; NB];
                    for (g, x4) in row.chunks_exact(4).enumerate() {
                        let w = &block[g * t.group_stride..g * t.group_stride + NB * 4];
                        for (lane, l) in lanes.iter_mut().enumerate() {
                            *l += (0..4).map(|k| x4[k] as i32 * w[lane * 4 + k] as i32).sum::<i32>();
                        }
                    }
                    out[r * t.out_stride + b * NB..r * t.out_stride + (b + 1) * NB].copy_from_slice(&lanes);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{AttentionInt8, Shape, Tile, NB, TR};
    use crate::int8::Int8Level;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F/BW/VL/VNNI, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub unsafe fn sequence_vnni(a: &mut AttentionInt8, shape: Shape, qkv: &[f32], scale: f32, ctx: &mut [f32]) {
        super::sequence(a, Int8Level::Avx512Vnni, shape, qkv, scale, ctx)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sequence_avx2(a: &mut AttentionInt8, shape: Shape, qkv: &[f32], scale: f32, ctx: &mut [f32]) {
        super::sequence(a, Int8Level::Avx2, shape, qkv, scale, ctx)
    }

    /// [`super::tile`] in AVX-512 VNNI: 2 TR accumulators; per 4 bytes of depth, 2 operand
    /// loads, TR broadcasts, 2 TR `vpdpbusd`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F/BW/VNNI; the slices must have the extents `tile` asserts.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile_vnni(rows: &[u8], t: Tile, b0: &[i8], b1: &[i8], out: &mut [i32]) {
        let (x, o) = (rows.as_ptr(), out.as_mut_ptr());
        let mut c = [[_mm512_setzero_si512(); 2]; TR];
        for g in 0..t.depth / 4 {
            // SAFETY: group g's 64 bytes lie inside both blocks, and each row's 4 bytes at
            // r * row_stride + 4 g inside `rows` (the caller's contract).
            unsafe {
                let k0 = _mm512_loadu_si512(b0.as_ptr().add(g * t.group_stride) as *const _);
                let k1 = _mm512_loadu_si512(b1.as_ptr().add(g * t.group_stride) as *const _);
                for (r, cr) in c.iter_mut().enumerate() {
                    let v = _mm512_set1_epi32((x.add(r * t.row_stride + 4 * g) as *const i32).read_unaligned());
                    cr[0] = _mm512_dpbusd_epi32(cr[0], v, k0);
                    cr[1] = _mm512_dpbusd_epi32(cr[1], v, k1);
                }
            }
        }
        for (r, cr) in c.iter().enumerate() {
            // SAFETY: 32 values at r * out_stride, inside `out` (the caller's contract).
            unsafe {
                _mm512_storeu_si512(o.add(r * t.out_stride) as *mut _, cr[0]);
                _mm512_storeu_si512(o.add(r * t.out_stride + NB) as *mut _, cr[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Softmax attention in f64.
    fn reference(q: &[f32], k: &[f32], v: &[f32], len: usize, dh: usize, scale: f32) -> Vec<f64> {
        let mut out = vec![0f64; len * dh];
        for i in 0..len {
            let s: Vec<f64> = (0..len)
                .map(|j| (0..dh).map(|d| q[i * dh + d] as f64 * k[j * dh + d] as f64).sum::<f64>() * scale as f64)
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let total: f64 = e.iter().sum();
            for d in 0..dh {
                out[i * dh + d] = (0..len).map(|j| e[j] * v[j * dh + d] as f64).sum::<f64>() / total;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn every_level_agrees_and_tracks_f64(
            len in 1usize..80, heads in 1usize..4, dh in prop::sample::select(vec![4usize, 12, 32, 40, 64]),
            seed in 0u32..1000, spread in 0.5f32..2.5,
        ) {
            let val = |i: usize| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 9) % 2001) as f32 / 1000.0 - 1.0;
            let h = heads * dh;
            let qkv: Vec<f32> = (0..len * 3 * h).map(|i| val(i) * spread).collect();
            let scale = 1.0 / (dh as f32).sqrt();
            let mut first: Option<Vec<f32>> = None;
            let mut att = AttentionInt8::default();
            for level in Int8Level::available() {
                let mut got = vec![7f32; len * h];
                att.run_with(level, &qkv, len, h, heads, scale, &mut got).unwrap();
                for hd in 0..heads {
                    let pick = |off: usize| -> Vec<f32> {
                        (0..len).flat_map(|i| qkv[i * 3 * h + off..i * 3 * h + off + dh].to_vec()).collect()
                    };
                    let (q, k, v) = (pick(hd * dh), pick(h + hd * dh), pick(2 * h + hd * dh));
                    let want = reference(&q, &k, &v, len, dh, scale);
                    let vmax = v.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
                    for i in 0..len {
                        for d in 0..dh {
                            let (g, w) = (got[i * h + hd * dh + d] as f64, want[i * dh + d]);
                            prop_assert!((g - w).abs() <= 0.04 * vmax + 1e-6, "{} vs {} ({:?})", g, w, level);
                        }
                    }
                }
                match &first {
                    None => first = Some(got),
                    Some(f) => prop_assert_eq!(f, &got, "{:?}", level),
                }
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        let qkv = vec![0.5f32; 4 * 3 * 8];
        let mut a = AttentionInt8::default();
        let mut ctx = vec![0f32; 4 * 8];
        assert!(a.run(&qkv, 4, 8, 3, 1.0, &mut ctx).is_err());
        assert!(a.run(&qkv, 4, 8, 0, 1.0, &mut ctx).is_err());
        assert!(a.run(&qkv[1..], 4, 8, 2, 1.0, &mut ctx).is_err());
        assert!(a.run(&qkv, 4, 8, 2, 1.0, &mut ctx[1..]).is_err());
        a.run(&qkv, 4, 8, 2, 1.0, &mut ctx).unwrap();
        // Uniform attention over equal values returns the value.
        assert!(ctx.iter().all(|o| (o - 0.5).abs() < 1e-2), "{ctx:?}");
        a.run(&[], 0, 8, 2, 1.0, &mut []).unwrap();
    }
}
