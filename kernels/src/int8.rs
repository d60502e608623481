//! Integer matrix products for the int8 encoder: weights quantised per output channel,
//! activations per row (token), i32 accumulation.
//!
//! Activations are quantised per row asymmetrically to `u8` (`x ~ scale * q + min`, all 256
//! levels), which is also what VNNI's `vpdpbusd` wants (unsigned by signed bytes); the
//! minimum's share comes back through the weights' row sums. Weights are packed for
//! the micro-kernel: for each block of 16 output channels and each group of 4 inputs, 64
//! bytes (`[16 channels][4 inputs]`), one `vpdpbusd` operand.
//!
//! Levels: AVX-512 VNNI (hand-written 6 x 64 micro-kernel) where the CPU has it, otherwise the
//! portable loop compiled for AVX2 (or plain x86-64). Integer arithmetic is exact, so every
//! level gives bit-identical results; the tests check that.

use crate::split::{panel_ranges, Out};
use crate::{Error, Result};
use std::sync::OnceLock;

/// Output channels per packed block (one 512-bit register of i32 lanes).
const NB: usize = 16;
/// Rows of the micro-kernel.
const MR: usize = 6;
/// Output blocks of the micro-kernel (4 x 16 = 64 channels).
const NBLK: usize = 4;

/// The integer instruction set in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Int8Level {
    /// Plain Rust (any CPU).
    Portable,
    /// AVX2 (`vpmaddubsw`).
    Avx2,
    /// AVX-512 VNNI (`vpdpbusd`).
    Avx512Vnni,
}

impl Int8Level {
    /// The fastest level this CPU supports.
    pub fn detect() -> Self {
        static LEVEL: OnceLock<Int8Level> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                {
                    return Int8Level::Avx512Vnni;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Int8Level::Avx2;
                }
            }
            Int8Level::Portable
        })
    }

    /// Every level this CPU can run, portable first.
    pub fn available() -> Vec<Self> {
        let best = Self::detect();
        let mut v = vec![Int8Level::Portable];
        if matches!(best, Int8Level::Avx2 | Int8Level::Avx512Vnni) {
            v.push(Int8Level::Avx2);
        }
        if best == Int8Level::Avx512Vnni {
            v.push(Int8Level::Avx512Vnni);
        }
        v
    }
}

/// A `[out x in]` weight matrix quantised per output channel and packed.
#[derive(Debug, Clone)]
pub struct QuantizedMatrix {
    out: usize,
    inputs: usize,
    /// `inputs` rounded up to a multiple of 4.
    k4: usize,
    /// `out` rounded up to a multiple of 64.
    n_pad: usize,
    packed: Vec<i8>,
    scale: Vec<f32>,
    /// The sum of each channel's quantised weights (the activations' minimum's contribution).
    sum: Vec<f32>,
}

impl QuantizedMatrix {
    /// Quantises `w` (`out x inputs`, row-major, PyTorch's linear layout).
    pub fn quantize(w: &[f32], out: usize, inputs: usize) -> Result<Self> {
        if w.len() != out * inputs || out == 0 || inputs == 0 {
            return Err(Error::DimensionMismatch { expected: out * inputs, got: w.len() });
        }
        let k4 = inputs.div_ceil(4) * 4;
        let n_pad = out.div_ceil(NB * NBLK) * NB * NBLK;
        let mut packed = vec![0i8; n_pad * k4];
        let mut scale = vec![0f32; n_pad];
        let mut sums = vec![0f32; n_pad];
        for o in 0..out {
            let row = &w[o * inputs..(o + 1) * inputs];
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            scale[o] = s;
            let (blk, lane) = (o / NB, o % NB);
            let mut sum = 0i32;
            for (k, v) in row.iter().enumerate() {
                let q = (v / s).round().clamp(-127.0, 127.0) as i8;
                sum += q as i32;
                packed[blk * k4 * NB + (k / 4) * NB * 4 + lane * 4 + k % 4] = q;
            }
            sums[o] = sum as f32;
        }
        Ok(QuantizedMatrix { out, inputs, k4, n_pad, packed, scale, sum: sums })
    }

    /// Output rows.
    pub fn out(&self) -> usize {
        self.out
    }
    /// Input width.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Output channel `o`'s weights, dequantised into `out` (`inputs` values): an embedding
    /// row when the matrix is a tied embedding table.
    pub fn row_into(&self, o: usize, out: &mut [f32]) -> Result<()> {
        crate::error::check_row(o, self.out, out, self.inputs)?;
        let (blk, lane, s) = (o / NB, o % NB, self.scale[o]);
        let base = &self.packed[blk * self.k4 * NB..(blk + 1) * self.k4 * NB];
        for (g, chunk) in out.chunks_mut(4).enumerate() {
            let q = &base[g * NB * 4 + lane * 4..g * NB * 4 + lane * 4 + 4];
            for (v, q) in chunk.iter_mut().zip(q) {
                *v = *q as f32 * s;
            }
        }
        Ok(())
    }

    /// The dequantised weights (for tests).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.out * self.inputs];
        for o in 0..self.out {
            let (blk, lane) = (o / NB, o % NB);
            for k in 0..self.inputs {
                let q = self.packed[blk * self.k4 * NB + (k / 4) * NB * 4 + lane * 4 + k % 4];
                w[o * self.inputs + k] = q as f32 * self.scale[o];
            }
        }
        w
    }
}

/// Rows of activations quantised per row to `u8` (asymmetric: a scale and a minimum per
/// row), padded to the micro-kernel.
#[derive(Debug, Default)]
pub struct QuantizedRows {
    rows: usize,
    cols: usize,
    k4: usize,
    data: Vec<u8>,
    scale: Vec<f32>,
    min: Vec<f32>,
}

impl QuantizedRows {
    /// Quantises `x` (`rows x cols`), reusing this buffer's memory.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) -> Result<()> {
        self.prepare(x.len(), rows, cols)?;
        let level = Int8Level::detect();
        for (r, row) in x.chunks_exact(cols).enumerate() {
            let dst = &mut self.data[r * self.k4..r * self.k4 + cols];
            (self.scale[r], self.min[r]) = quantize_row_with(level, row, dst);
        }
        Ok(())
    }

    /// Applies `pre` to each row of `x` in place, then quantises the row while it is still in
    /// cache: an element-wise op feeding an int8 product (bias + GELU) and the quantisation
    /// read the activations from memory once instead of twice.
    pub fn quantize_each(
        &mut self,
        x: &mut [f32],
        rows: usize,
        cols: usize,
        mut pre: impl FnMut(&mut [f32]) -> Result<()>,
    ) -> Result<()> {
        self.prepare(x.len(), rows, cols)?;
        let level = Int8Level::detect();
        for (r, row) in x.chunks_exact_mut(cols).enumerate() {
            pre(row)?;
            let dst = &mut self.data[r * self.k4..r * self.k4 + cols];
            (self.scale[r], self.min[r]) = quantize_row_with(level, row, dst);
        }
        Ok(())
    }

    fn prepare(&mut self, len: usize, rows: usize, cols: usize) -> Result<()> {
        if len != rows * cols || cols == 0 {
            return Err(Error::DimensionMismatch { expected: rows * cols, got: len });
        }
        let k4 = cols.div_ceil(4) * 4;
        let padded = rows.div_ceil(MR) * MR;
        self.rows = rows;
        self.cols = cols;
        self.k4 = k4;
        self.data.clear();
        self.data.resize(padded * k4, 0);
        self.scale.clear();
        self.scale.resize(padded, 0.0);
        self.min.clear();
        self.min.resize(padded, 0.0);
        Ok(())
    }
}

fn quantize_row_with(level: Int8Level, row: &[f32], dst: &mut [u8]) -> (f32, f32) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detect` found AVX-512F/BW (and VNNI) on this CPU.
        Int8Level::Avx512Vnni => unsafe { x86::quantize_row_avx512(row, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detect` found AVX2.
        Int8Level::Avx2 => unsafe { x86::quantize_row_avx2(row, dst) },
        _ => quantize_row(row, dst),
    }
}

/// Asymmetric per-row quantisation to all 256 levels of a `u8` (`x ~ scale * q + min`), written
/// so that it vectorises: round to nearest with the 1.5 * 2^23 trick and read the integer from
/// the float's bits (no float-to-int cast). Returns `(scale, min)`.
#[inline(always)]
fn quantize_row(row: &[f32], dst: &mut [u8]) -> (f32, f32) {
    // One reduction per loop: with both in one loop the lane arrays do not stay in registers.
    let mut lo = [f32::INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            lo[i] = lo[i].min(c[i]);
        }
    }
    let min = chunks.remainder().iter().chain(&lo).fold(f32::INFINITY, |m, v| m.min(*v));
    let mut hi = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            hi[i] = hi[i].max(c[i]);
        }
    }
    let max = chunks.remainder().iter().chain(&hi).fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    let inv = 1.0 / scale;
    for (d, v) in dst.iter_mut().zip(row) {
        let t = ((v - min) * inv).clamp(0.0, 255.0) + 12_582_912.0;
        *d = t.to_bits().wrapping_sub(0x4B40_0000) as u8;
    }
    (scale, min)
}

/// `dst[rows x out] = dequantise(a * w^T)` for activations `a` and weights `w`.
pub fn matmul_int8(dst: &mut [f32], a: &QuantizedRows, w: &QuantizedMatrix) -> Result<()> {
    matmul_int8_with(Int8Level::detect(), dst, a, w)
}

/// [`matmul_int8`] at a chosen level (a level the CPU lacks falls back to the best it has).
pub fn matmul_int8_with(level: Int8Level, dst: &mut [f32], a: &QuantizedRows, w: &QuantizedMatrix) -> Result<()> {
    check(dst, a, w)?;
    // Levels are ordered; each implies the ones before it.
    let level = if level <= Int8Level::detect() { level } else { Int8Level::detect() };
    let panels = w.n_pad / (NB * NBLK);
    // SAFETY: `check` verified `dst` holds `a.rows * w.out` values; this call alone writes them.
    unsafe { product(level, Out(dst.as_mut_ptr()), a, w, None, 0..panels) };
    Ok(())
}

/// [`matmul_int8`] plus `bias` (one value per output channel), added in the same pass that
/// scales the integers (the bias pass over the output saved).
pub fn matmul_int8_bias(dst: &mut [f32], a: &QuantizedRows, w: &QuantizedMatrix, bias: &[f32]) -> Result<()> {
    check(dst, a, w)?;
    if bias.len() != w.out {
        return Err(Error::DimensionMismatch { expected: w.out, got: bias.len() });
    }
    let panels = w.n_pad / (NB * NBLK);
    // SAFETY: `check` verified `dst` holds `a.rows * w.out` values; this call alone writes them.
    unsafe { product(Int8Level::detect(), Out(dst.as_mut_ptr()), a, w, Some(bias), 0..panels) };
    Ok(())
}

/// [`matmul_int8`] on up to `threads` threads of rayon's current pool, each taking a
/// contiguous run of 64-channel weight panels (every row of the activations): the split a
/// matrix-vector product needs, since its single row cannot be divided. Results are
/// identical to the one-thread product.
pub fn matmul_int8_threads(dst: &mut [f32], a: &QuantizedRows, w: &QuantizedMatrix, threads: usize) -> Result<()> {
    check(dst, a, w)?;
    let level = Int8Level::detect();
    let out = Out(dst.as_mut_ptr());
    // SAFETY: `check` verified the extent of `dst`; `panel_ranges` hands out disjoint panel
    // ranges, so every task writes its own columns of each row, and returns only when all
    // tasks are done, while `dst` is still borrowed.
    panel_ranges(w.n_pad / (NB * NBLK), threads, |range| unsafe { product(level, out, a, w, None, range) });
    Ok(())
}

fn check(dst: &[f32], a: &QuantizedRows, w: &QuantizedMatrix) -> Result<()> {
    if a.cols != w.inputs {
        return Err(Error::DimensionMismatch { expected: w.inputs, got: a.cols });
    }
    if dst.len() != a.rows * w.out {
        return Err(Error::DimensionMismatch { expected: a.rows * w.out, got: dst.len() });
    }
    Ok(())
}

/// The product for the weight panels `panels` (64 output channels each).
///
/// # Safety
/// `dst` must point at `a.rows * w.out` writable values, and no other code may touch the
/// columns of `panels` while this runs.
unsafe fn product(
    level: Int8Level,
    dst: Out,
    a: &QuantizedRows,
    w: &QuantizedMatrix,
    bias: Option<&[f32]>,
    panels: std::ops::Range<usize>,
) {
    const ZEROS: [f32; NB * NBLK] = [0.0; NB * NBLK];
    let k4 = w.k4;
    let mut acc = [[0i32; NB * NBLK]; MR];
    // Rows in chunks that keep their activations in L2 while every weight panel passes.
    let chunk_rows = MR * 8;
    let padded_rows = a.rows.div_ceil(MR) * MR;
    for r0 in (0..padded_rows).step_by(chunk_rows) {
        let r_end = (r0 + chunk_rows).min(padded_rows);
        for panel_index in panels.clone() {
            let n0 = panel_index * NB * NBLK;
            let panel = &w.packed[n0 * k4..(n0 + NB * NBLK) * k4];
            for m0 in (r0..r_end).step_by(MR) {
                let rows = &a.data[m0 * k4..(m0 + MR) * k4];
                let live = (a.rows - m0).min(MR);
                match level {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the level was detected; `rows` holds MR rows of k4 bytes and
                    // `panel` NBLK blocks of k4 * 16 bytes (checked by construction: both
                    // buffers were padded to whole tiles), which is what the kernel reads.
                    Int8Level::Avx512Vnni => unsafe { x86::tile_vnni_rows(live, rows, panel, k4, &mut acc) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 was detected.
                    Int8Level::Avx2 => unsafe { x86::tile_avx2(rows, panel, k4, &mut acc) },
                    _ => tile(rows, panel, k4, &mut acc),
                }
                let n_end = (n0 + NB * NBLK).min(w.out);
                if n0 >= n_end {
                    continue;
                }
                for (i, acc_row) in acc.iter().enumerate().take(live) {
                    let r = m0 + i;
                    let (sx, mx) = (a.scale[r], a.min[r]);
                    // SAFETY: r < a.rows and n0..n_end < w.out: inside `dst`'s extent, and in
                    // this call's own columns.
                    let out = unsafe { std::slice::from_raw_parts_mut(dst.0.add(r * w.out + n0), n_end - n0) };
                    let (sums, scale) = (&w.sum[n0..n_end], &w.scale[n0..n_end]);
                    let b = bias.map_or(&ZEROS[..n_end - n0], |b| &b[n0..n_end]);
                    match level {
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: AVX-512F was detected with VNNI.
                        Int8Level::Avx512Vnni => unsafe { x86::store_avx512(acc_row, sums, scale, b, sx, mx, out) },
                        _ => store(acc_row, sums, scale, b, sx, mx, out),
                    }
                }
            }
        }
    }
}

/// Dequantises one row of a tile: `x = sx * q + mx` per activation, `w = s * wq` per weight,
/// so `sum(x w) = s * (sx * acc + mx * sum(wq))`, plus the channel's bias.
#[inline(always)]
fn store(acc: &[i32], sums: &[f32], scale: &[f32], bias: &[f32], sx: f32, mx: f32, out: &mut [f32]) {
    // `mul_add(s, 0)` rounds like `* s`: without a bias the results are those of a plain scale.
    for ((((o, a), sum), s), b) in out.iter_mut().zip(acc).zip(sums).zip(scale).zip(bias) {
        *o = (*a as f32).mul_add(sx, mx * sum).mul_add(*s, *b);
    }
}

/// The portable micro-kernel: MR rows by 64 channels over the whole depth.
#[inline(always)]
fn tile(rows: &[u8], panel: &[i8], k4: usize, acc: &mut [[i32; NB * NBLK]; MR]) {
    for a in acc.iter_mut() {
        a.fill(0);
    }
    for b in 0..NBLK {
        let block = &panel[b * k4 * NB..(b + 1) * k4 * NB];
        for (i, a) in acc.iter_mut().enumerate() {
            let row = &rows[i * k4..(i + 1) * k4];
            let mut lanes = [0i32; NB];
            for (g, x4) in row.chunks_exact(4).enumerate() {
                let w = &block[g * NB * 4..(g + 1) * NB * 4];
                for (lane, l) in lanes.iter_mut().enumerate() {
                    let w4 = &w[lane * 4..lane * 4 + 4];
                    *l += x4[0] as i32 * w4[0] as i32
                        + x4[1] as i32 * w4[1] as i32
                        + x4[2] as i32 * w4[2] as i32
                        + x4[3] as i32 * w4[3] as i32;
                }
            }
            a[b * NB..(b + 1) * NB].copy_from_slice(&lanes);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NB, NBLK};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_row_avx2(row: &[f32], dst: &mut [u8]) -> (f32, f32) {
        super::quantize_row(row, dst)
    }

    /// [`super::quantize_row`] with explicit AVX-512: min and max in one pass, then subtract,
    /// scale, clamp, round (to nearest even, as the portable code's float trick) and narrow 16
    /// values at a time. The same operations in the same order: identical bytes.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn quantize_row_avx512(row: &[f32], dst: &mut [u8]) -> (f32, f32) {
        debug_assert_eq!(row.len(), dst.len());
        let n = row.len().min(dst.len());
        let full = n / 16 * 16;
        let (p, d) = (row.as_ptr(), dst.as_mut_ptr());
        let mut lo = _mm512_set1_ps(f32::INFINITY);
        let mut hi = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= full <= row.len().
            let v = unsafe { _mm512_loadu_ps(p.add(i)) };
            lo = _mm512_min_ps(lo, v);
            hi = _mm512_max_ps(hi, v);
            i += 16;
        }
        let mut min = _mm512_reduce_min_ps(lo);
        let mut max = _mm512_reduce_max_ps(hi);
        for v in &row[full..n] {
            min = min.min(*v);
            max = max.max(*v);
        }
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let inv = 1.0 / scale;
        let (vmin, vinv, zero, top) =
            (_mm512_set1_ps(min), _mm512_set1_ps(inv), _mm512_setzero_ps(), _mm512_set1_ps(255.0));
        i = 0;
        while i < full {
            // SAFETY: i + 16 <= full: 16 floats read from `row`, 16 bytes written to `dst`.
            unsafe {
                let v = _mm512_loadu_ps(p.add(i));
                let t = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(v, vmin), vinv), zero), top);
                let q = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(t));
                _mm_storeu_si128(d.add(i) as *mut __m128i, q);
            }
            i += 16;
        }
        for (q, v) in dst[full..n].iter_mut().zip(&row[full..n]) {
            let t = ((v - min) * inv).clamp(0.0, 255.0) + 12_582_912.0;
            *q = t.to_bits().wrapping_sub(0x4B40_0000) as u8;
        }
        (scale, min)
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn store_avx512(
        acc: &[i32],
        sums: &[f32],
        scale: &[f32],
        bias: &[f32],
        sx: f32,
        mx: f32,
        out: &mut [f32],
    ) {
        super::store(acc, sums, scale, bias, sx, mx, out)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(rows: &[u8], panel: &[i8], k4: usize, acc: &mut [[i32; NB * NBLK]; MR]) {
        super::tile(rows, panel, k4, acc)
    }

    /// [`tile_vnni`] for the `live` (1..=6) first rows of a tile: a matrix-vector product
    /// (decoding one token) does one row's work, not six.
    ///
    /// # Safety
    /// As for `tile_vnni`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile_vnni_rows(live: usize, rows: &[u8], panel: &[i8], k4: usize, acc: &mut [[i32; NB * NBLK]; MR]) {
        // SAFETY: the caller's contract, unchanged.
        unsafe {
            match live {
                1 => tile_vnni::<1>(rows, panel, k4, acc),
                2 => tile_vnni::<2>(rows, panel, k4, acc),
                3 => tile_vnni::<3>(rows, panel, k4, acc),
                4 => tile_vnni::<4>(rows, panel, k4, acc),
                5 => tile_vnni::<5>(rows, panel, k4, acc),
                _ => tile_vnni::<MR>(rows, panel, k4, acc),
            }
        }
    }

    /// The VNNI micro-kernel: R (up to 6) rows x 64 channels in 4R accumulators; per group of
    /// 4 inputs, 4 weight loads, R broadcasts and 4R `vpdpbusd`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F/BW/VNNI; `rows` must hold `MR * k4` bytes and `panel`
    /// `NBLK * k4 * 16` bytes, `k4` a multiple of 4.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_vnni<const R: usize>(rows: &[u8], panel: &[i8], k4: usize, acc: &mut [[i32; NB * NBLK]; MR]) {
        debug_assert!(R <= MR && rows.len() >= R * k4 && panel.len() >= NBLK * k4 * NB);
        let mut c = [[_mm512_setzero_si512(); NBLK]; R];
        let a = rows.as_ptr();
        let p = panel.as_ptr();
        let mut g = 0;
        while g < k4 {
            // SAFETY: g + 4 <= k4, so each block read (64 bytes at block * k4 * 16 + g * 16)
            // and each row read (4 bytes at i * k4 + g) stays inside the slices.
            unsafe {
                let b0 = _mm512_loadu_si512(p.add(g * NB) as *const _);
                let b1 = _mm512_loadu_si512(p.add(k4 * NB + g * NB) as *const _);
                let b2 = _mm512_loadu_si512(p.add(2 * k4 * NB + g * NB) as *const _);
                let b3 = _mm512_loadu_si512(p.add(3 * k4 * NB + g * NB) as *const _);
                for (i, ci) in c.iter_mut().enumerate() {
                    let x = _mm512_set1_epi32((a.add(i * k4 + g) as *const i32).read_unaligned());
                    ci[0] = _mm512_dpbusd_epi32(ci[0], x, b0);
                    ci[1] = _mm512_dpbusd_epi32(ci[1], x, b1);
                    ci[2] = _mm512_dpbusd_epi32(ci[2], x, b2);
                    ci[3] = _mm512_dpbusd_epi32(ci[3], x, b3);
                }
            }
            g += 4;
        }
        for (ci, out) in c.iter().zip(acc.iter_mut()) {
            for (b, v) in ci.iter().enumerate() {
                // SAFETY: each store writes 16 i32 into out[b * 16..b * 16 + 16].
                unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(b * NB) as *mut _, *v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_level_gives_the_same_integers_and_tracks_f32(
            rows in 1usize..20, out in 1usize..150, inputs in 1usize..70, seed in 0u32..1000,
        ) {
            let val = |i: usize| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 9) % 2001) as f32 / 1000.0 - 1.0;
            let x: Vec<f32> = (0..rows * inputs).map(val).collect();
            let w: Vec<f32> = (0..out * inputs).map(|i| val(i + 99) * 0.3).collect();
            let q = QuantizedMatrix::quantize(&w, out, inputs).unwrap();
            let mut a = QuantizedRows::default();
            a.quantize(&x, rows, inputs).unwrap();
            // Quantising after an in-place op gives the same rows as quantising its result.
            let (mut x2, mut b) = (x.iter().map(|v| v - 1.0).collect::<Vec<f32>>(), QuantizedRows::default());
            b.quantize_each(&mut x2, rows, inputs, |r| { r.iter_mut().for_each(|v| *v += 1.0); Ok(()) }).unwrap();
            let mut x3 = x.clone();
            x3.iter_mut().for_each(|v| *v = (*v - 1.0) + 1.0);
            a.quantize(&x3, rows, inputs).unwrap();
            prop_assert_eq!((&a.data, &a.scale, &a.min), (&b.data, &b.scale, &b.min));
            prop_assert_eq!(&x2, &x3);
            a.quantize(&x, rows, inputs).unwrap();
            let mut reference = vec![0f32; rows * out];
            matmul_int8_with(Int8Level::Portable, &mut reference, &a, &q).unwrap();
            for level in Int8Level::available() {
                let mut got = vec![0f32; rows * out];
                matmul_int8_with(level, &mut got, &a, &q).unwrap();
                prop_assert_eq!(&got, &reference, "{:?}", level);
            }
            for threads in [2, 3] {
                let mut got = vec![0f32; rows * out];
                matmul_int8_threads(&mut got, &a, &q, threads).unwrap();
                let mut best = vec![0f32; rows * out];
                matmul_int8(&mut best, &a, &q).unwrap();
                prop_assert_eq!(&got, &best, "{} threads", threads);
            }
            let bias: Vec<f32> = (0..out).map(|o| o as f32 * 0.25 - 3.0).collect();
            let mut biased = vec![0f32; rows * out];
            matmul_int8_bias(&mut biased, &a, &q, &bias).unwrap();
            for (i, (b, r)) in biased.iter().zip(&reference).enumerate() {
                prop_assert!((b - r - bias[i % out]).abs() <= 1e-4 * (1.0 + r.abs()), "{} vs {} + {}", b, r, bias[i % out]);
            }
            let all = q.dequantize();
            let mut row = vec![0f32; inputs];
            for o in 0..out {
                q.row_into(o, &mut row).unwrap();
                prop_assert_eq!(&row[..], &all[o * inputs..(o + 1) * inputs]);
            }
            // Against the f32 product: quantisation error only.
            for r in 0..rows {
                for o in 0..out {
                    let exact: f32 = (0..inputs).map(|k| x[r * inputs + k] * w[o * inputs + k]).sum();
                    let bound: f32 = 0.02 * (inputs as f32).sqrt() * 0.3 + 1e-4;
                    prop_assert!((reference[r * out + o] - exact).abs() <= bound, "{} vs {}", reference[r * out + o], exact);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn every_level_quantises_rows_alike(row in proptest::collection::vec(-50f32..50.0, 1..100)) {
            let mut want = vec![0u8; row.len()];
            let (s, m) = quantize_row(&row, &mut want);
            for level in Int8Level::available() {
                let mut got = vec![0u8; row.len()];
                prop_assert_eq!(quantize_row_with(level, &row, &mut got), (s, m), "{:?}", level);
                prop_assert_eq!(&got, &want, "{:?}", level);
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(QuantizedMatrix::quantize(&[1.0; 5], 2, 3).is_err());
        let q = QuantizedMatrix::quantize(&[1.0; 6], 2, 3).unwrap();
        let mut a = QuantizedRows::default();
        a.quantize(&[1.0; 8], 2, 4).unwrap();
        assert!(matmul_int8(&mut [0.0; 4], &a, &q).is_err());
        let mut b = QuantizedRows::default();
        b.quantize(&[1.0; 6], 2, 3).unwrap();
        assert!(matmul_int8(&mut [0.0; 3], &b, &q).is_err());
        let mut out = [0.0; 4];
        matmul_int8(&mut out, &b, &q).unwrap();
        assert!(out.iter().all(|v| (v - 3.0).abs() < 0.05), "{out:?}");
        assert!(q.row_into(2, &mut [0.0; 3]).is_err());
        assert!(q.row_into(0, &mut [0.0; 2]).is_err());
        assert!(matmul_int8_threads(&mut [0.0; 3], &b, &q, 2).is_err());
        assert!(matmul_int8_bias(&mut [0.0; 4], &b, &q, &[0.0; 3]).is_err());
        let back = q.dequantize();
        assert!(back.iter().all(|v| (v - 1.0).abs() < 0.01));
    }
}
