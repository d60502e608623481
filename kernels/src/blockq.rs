//! Block-quantised products for the decoder: weights as unsigned bytes with a scale and a
//! minimum per 32 inputs of each output channel (`w ~ d * q + m`), activations as signed bytes
//! with a scale per 32 inputs of each row (`x ~ s * q`), the scheme of llama.cpp's Q4_1 x Q8_1.
//!
//! Why not [`crate::int8`]'s one scale per channel and per token: a language model's rows hold
//! outliers, and one scale over a whole row loses the small values (measured on SmolLM2: the
//! top-1 token moved at ~11% of positions; with blocks it tracks the exact model like llama.cpp's
//! formats do). Q4_1 weights fit this layout exactly up to the 8-bit grid (their 16 levels per
//! block lie within its 256), so the shipped model is not requantised to something coarser.
//!
//! Per block of 32 inputs the integer dot product (`vpdpbusd`: weights unsigned, activations
//! signed) is exact; it is scaled into an f32 accumulator: `acc += idot * (d * s)`, then
//! `acc += m * (s * sum(q_x))`. Every level runs these two fused multiply-adds in the same
//! order, so results are bit-identical across levels (the tests check).

use crate::int8::Int8Level;
use crate::split::{panel_ranges, Out};
use crate::{Error, Result};
use std::io::{Read, Write};

/// Inputs per block.
pub const BLOCK: usize = 32;
/// Output channels per packed block.
const NB: usize = 16;
/// Channel blocks per micro-kernel panel (32 channels).
const NBLK: usize = 2;
/// Rows of the micro-kernel.
const MR: usize = 4;

/// A `[out x in]` weight matrix, block-quantised and packed.
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    out: usize,
    inputs: usize,
    /// `inputs` rounded up to whole blocks.
    kp: usize,
    /// `out` rounded up to whole panels.
    n_pad: usize,
    /// Per 16-channel block, per group of 4 inputs: `[16 channels][4 inputs]` bytes.
    packed: Vec<u8>,
    /// Per 16-channel block, per input block: 16 scales then 16 minimums.
    dm: Vec<f32>,
}

impl BlockMatrix {
    /// Quantises `w` (`out x inputs`, row-major, PyTorch's linear layout).
    pub fn quantize(w: &[f32], out: usize, inputs: usize) -> Result<Self> {
        if w.len() != out * inputs || out == 0 || inputs == 0 {
            return Err(Error::DimensionMismatch { expected: out * inputs, got: w.len() });
        }
        let kp = inputs.div_ceil(BLOCK) * BLOCK;
        let nb = kp / BLOCK;
        let n_pad = out.div_ceil(NB * NBLK) * NB * NBLK;
        let mut packed = vec![0u8; n_pad * kp];
        let mut dm = vec![0f32; n_pad / NB * nb * 2 * NB];
        for o in 0..out {
            let row = &w[o * inputs..(o + 1) * inputs];
            let (blk, lane) = (o / NB, o % NB);
            for (b, block) in row.chunks(BLOCK).enumerate() {
                let min = block.iter().fold(f32::INFINITY, |m, v| m.min(*v));
                let max = block.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                let d = if max > min { (max - min) / 255.0 } else { 0.0 };
                let at = (blk * nb + b) * 2 * NB;
                dm[at + lane] = d;
                dm[at + NB + lane] = min;
                for (i, v) in block.iter().enumerate() {
                    let k = b * BLOCK + i;
                    let q = if d > 0.0 { ((v - min) / d).round().clamp(0.0, 255.0) as u8 } else { 0 };
                    packed[blk * kp * NB + (k / 4) * NB * 4 + lane * 4 + k % 4] = q;
                }
            }
        }
        Ok(BlockMatrix { out, inputs, kp, n_pad, packed, dm })
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
        let (blk, lane, nb) = (o / NB, o % NB, self.kp / BLOCK);
        for (k, v) in out.iter_mut().enumerate() {
            let q = self.packed[blk * self.kp * NB + (k / 4) * NB * 4 + lane * 4 + k % 4];
            let at = (blk * nb + k / BLOCK) * 2 * NB;
            *v = (q as f32).mul_add(self.dm[at + lane], self.dm[at + NB + lane]);
        }
        Ok(())
    }

    /// Writes the matrix (little-endian; read back with [`Self::read`]), so that a model's
    /// requantised weights can be cached on disk.
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        for v in [self.out, self.inputs] {
            w.write_all(&(v as u64).to_le_bytes())?;
        }
        w.write_all(&self.packed)?;
        let dm: Vec<u8> = self.dm.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&dm)
    }

    /// Reads a matrix written by [`Self::write`] that must be `out x inputs`: the shape is
    /// checked before anything is allocated, so a damaged file is an error, not a panic or a
    /// huge allocation.
    pub fn read(r: &mut (impl Read + ?Sized), out: usize, inputs: usize) -> Result<Self> {
        let corrupt = |what: String| Error::Corrupt(format!("block matrix: {what}"));
        let io = |e: std::io::Error| corrupt(e.to_string());
        let mut header = [0u8; 16];
        r.read_exact(&mut header).map_err(io)?;
        let word = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let (o, i) = (word(&header[..8]), word(&header[8..]));
        if (o, i) != (out as u64, inputs as u64) || out == 0 || inputs == 0 {
            return Err(corrupt(format!("{o} x {i} where {out} x {inputs} was expected")));
        }
        let kp = inputs.div_ceil(BLOCK) * BLOCK;
        let n_pad = out.div_ceil(NB * NBLK) * NB * NBLK;
        let mut packed = vec![0u8; n_pad * kp];
        r.read_exact(&mut packed).map_err(io)?;
        let mut bytes = vec![0u8; n_pad / NB * (kp / BLOCK) * 2 * NB * 4];
        r.read_exact(&mut bytes).map_err(io)?;
        let dm: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if dm.iter().any(|v| !v.is_finite()) {
            return Err(corrupt("non-finite scale".into()));
        }
        Ok(BlockMatrix { out, inputs, kp, n_pad, packed, dm })
    }

    /// The dequantised weights (for tests).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.out * self.inputs];
        for (o, row) in w.chunks_exact_mut(self.inputs).enumerate() {
            // In range by construction.
            let _ = self.row_into(o, row);
        }
        w
    }
}

/// Rows of activations quantised to signed bytes per block of 32, padded to the micro-kernel.
#[derive(Debug, Default)]
pub struct BlockRows {
    rows: usize,
    cols: usize,
    kp: usize,
    data: Vec<i8>,
    /// Per row and block: the scale `s`.
    scale: Vec<f32>,
    /// Per row and block: `s * sum(q)` (the weights' minimums' share).
    sum: Vec<f32>,
}

impl BlockRows {
    /// Quantises `x` (`rows x cols`), reusing this buffer's memory.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) -> Result<()> {
        if x.len() != rows * cols || cols == 0 {
            return Err(Error::DimensionMismatch { expected: rows * cols, got: x.len() });
        }
        let kp = cols.div_ceil(BLOCK) * BLOCK;
        let nb = kp / BLOCK;
        let padded = rows.div_ceil(MR) * MR;
        self.rows = rows;
        self.cols = cols;
        self.kp = kp;
        self.data.clear();
        self.data.resize(padded * kp, 0);
        self.scale.clear();
        self.scale.resize(padded * nb, 0.0);
        self.sum.clear();
        self.sum.resize(padded * nb, 0.0);
        let level = Int8Level::detect();
        for (r, row) in x.chunks_exact(cols).enumerate() {
            let dst = &mut self.data[r * kp..r * kp + cols];
            let (scale, sum) = (&mut self.scale[r * nb..(r + 1) * nb], &mut self.sum[r * nb..(r + 1) * nb]);
            match level {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `detect` found AVX-512F/BW on this CPU.
                Int8Level::Avx512Vnni => unsafe { x86::quantize_row_avx512(row, dst, scale, sum) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `detect` found AVX2.
                Int8Level::Avx2 => unsafe { x86::quantize_row_avx2(row, dst, scale, sum) },
                _ => quantize_row(row, dst, scale, sum),
            }
        }
        Ok(())
    }
}

/// Symmetric quantisation of one row per block (round to nearest through the float bits, so
/// that it vectorises).
#[inline(always)]
fn quantize_row(row: &[f32], dst: &mut [i8], scale: &mut [f32], sum: &mut [f32]) {
    for (((x, q), s), t) in row.chunks(BLOCK).zip(dst.chunks_mut(BLOCK)).zip(scale).zip(sum) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let mut total = 0i32;
        for (q, v) in q.iter_mut().zip(x) {
            // 1.5 * 2^23 moves the rounded value into the low mantissa bits.
            let r = (v * inv).clamp(-127.0, 127.0) + 12_582_912.0;
            let i = (r.to_bits() as i32).wrapping_sub(0x4B40_0000);
            *q = i as i8;
            total += i;
        }
        *s = d;
        *t = d * total as f32;
    }
}

/// `dst[rows x out] = a * w^T` on up to `threads` threads of rayon's current pool (each a
/// contiguous run of 32-channel panels, every row). Results do not depend on `threads`.
pub fn matmul_block(dst: &mut [f32], a: &BlockRows, w: &BlockMatrix, threads: usize) -> Result<()> {
    matmul_block_with(Int8Level::detect(), dst, a, w, threads)
}

/// [`matmul_block`] at a chosen level (a level the CPU lacks falls back to the best it has).
pub fn matmul_block_with(
    level: Int8Level,
    dst: &mut [f32],
    a: &BlockRows,
    w: &BlockMatrix,
    threads: usize,
) -> Result<()> {
    if a.cols != w.inputs {
        return Err(Error::DimensionMismatch { expected: w.inputs, got: a.cols });
    }
    if dst.len() != a.rows * w.out {
        return Err(Error::DimensionMismatch { expected: a.rows * w.out, got: dst.len() });
    }
    let level = if level <= Int8Level::detect() { level } else { Int8Level::detect() };
    let out = Out(dst.as_mut_ptr());
    // SAFETY: the extent of `dst` was checked; `panel_ranges` hands out disjoint panel ranges,
    // so each task writes its own columns of every row, and returns when all are done, while
    // `dst` is still borrowed.
    panel_ranges(w.n_pad / (NB * NBLK), threads, |range| unsafe { product(level, out, a, w, range) });
    Ok(())
}

/// # Safety
/// `dst` must point at `a.rows * w.out` writable values, and no other code may touch the
/// columns of `panels` while this runs.
unsafe fn product(level: Int8Level, dst: Out, a: &BlockRows, w: &BlockMatrix, panels: std::ops::Range<usize>) {
    let (kp, nb) = (w.kp, w.kp / BLOCK);
    let mut acc = [[0f32; NB * NBLK]; MR];
    let chunk_rows = MR * 16;
    let padded_rows = a.rows.div_ceil(MR) * MR;
    for r0 in (0..padded_rows).step_by(chunk_rows) {
        let r_end = (r0 + chunk_rows).min(padded_rows);
        for panel_index in panels.clone() {
            let n0 = panel_index * NB * NBLK;
            let panel = &w.packed[n0 * kp..(n0 + NB * NBLK) * kp];
            let dm = &w.dm[n0 / NB * nb * 2 * NB..(n0 / NB + NBLK) * nb * 2 * NB];
            for m0 in (r0..r_end).step_by(MR) {
                let live = (a.rows - m0).min(MR);
                let t = Tile {
                    rows: &a.data[m0 * kp..(m0 + MR) * kp],
                    scale: &a.scale[m0 * nb..(m0 + MR) * nb],
                    sum: &a.sum[m0 * nb..(m0 + MR) * nb],
                    panel,
                    dm,
                    kp,
                };
                match level {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the level was detected; every slice of the tile was cut to the
                    // extents the kernel reads (rows and weights padded to whole tiles).
                    Int8Level::Avx512Vnni => unsafe { x86::tile_vnni_rows(live, &t, &mut acc) },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 was detected.
                    Int8Level::Avx2 => unsafe { x86::tile_avx2(&t, &mut acc) },
                    _ => tile(&t, &mut acc),
                }
                let n_end = (n0 + NB * NBLK).min(w.out);
                if n0 >= n_end {
                    continue;
                }
                for (i, acc_row) in acc.iter().enumerate().take(live) {
                    let r = m0 + i;
                    // SAFETY: r < a.rows and n0..n_end <= w.out: inside `dst`, in this call's
                    // own columns.
                    let out = unsafe { std::slice::from_raw_parts_mut(dst.0.add(r * w.out + n0), n_end - n0) };
                    out.copy_from_slice(&acc_row[..n_end - n0]);
                }
            }
        }
    }
}

/// One micro-kernel's operands: MR rows of activations and one 32-channel weight panel.
struct Tile<'a> {
    rows: &'a [i8],
    scale: &'a [f32],
    sum: &'a [f32],
    panel: &'a [u8],
    dm: &'a [f32],
    kp: usize,
}

/// The portable micro-kernel (MR rows by 32 channels), the twin of the VNNI one.
#[inline(always)]
fn tile(t: &Tile<'_>, acc: &mut [[f32; NB * NBLK]; MR]) {
    let (kp, nb) = (t.kp, t.kp / BLOCK);
    for (r, acc_row) in acc.iter_mut().enumerate() {
        acc_row.fill(0.0);
        for c in 0..NBLK {
            let block = &t.panel[c * kp * NB..(c + 1) * kp * NB];
            for lane in 0..NB {
                let mut f = 0f32;
                for b in 0..nb {
                    let mut dot = 0i32;
                    for k in b * BLOCK..(b + 1) * BLOCK {
                        let wq = block[(k / 4) * NB * 4 + lane * 4 + k % 4] as i32;
                        dot += wq * t.rows[r * kp + k] as i32;
                    }
                    let at = (c * nb + b) * 2 * NB;
                    let (d, m) = (t.dm[at + lane], t.dm[at + NB + lane]);
                    f = (dot as f32).mul_add(d * t.scale[r * nb + b], f);
                    f = m.mul_add(t.sum[r * nb + b], f);
                }
                acc_row[c * NB + lane] = f;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Tile, BLOCK, MR, NB, NBLK};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_row_avx2(row: &[f32], dst: &mut [i8], scale: &mut [f32], sum: &mut [f32]) {
        super::quantize_row(row, dst, scale, sum)
    }

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub unsafe fn quantize_row_avx512(row: &[f32], dst: &mut [i8], scale: &mut [f32], sum: &mut [f32]) {
        super::quantize_row(row, dst, scale, sum)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_avx2(t: &Tile<'_>, acc: &mut [[f32; NB * NBLK]; MR]) {
        super::tile(t, acc)
    }

    /// [`tile_vnni`] for the `live` (1..=4) first rows: decoding one token does one row's work.
    ///
    /// # Safety
    /// As for `tile_vnni`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
    pub unsafe fn tile_vnni_rows(live: usize, t: &Tile<'_>, acc: &mut [[f32; NB * NBLK]; MR]) {
        // SAFETY: the caller's contract, unchanged.
        unsafe {
            match live {
                1 => tile_vnni::<1>(t, acc),
                2 => tile_vnni::<2>(t, acc),
                3 => tile_vnni::<3>(t, acc),
                _ => tile_vnni::<MR>(t, acc),
            }
        }
    }

    /// R rows x 32 channels. Per block of 32 inputs: 8 groups of (2 weight loads, R
    /// broadcasts, 2R `vpdpbusd`), then the block's scales fold the integer sums into f32.
    ///
    /// # Safety
    /// The CPU must support AVX-512F/BW/VNNI; the tile's slices must hold `MR * kp` row bytes,
    /// `MR * kp / 32` scales and sums, `2 * kp * 16` weight bytes and `2 * kp / 32 * 32`
    /// scale/minimum values, `kp` a multiple of 32.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
    unsafe fn tile_vnni<const R: usize>(t: &Tile<'_>, acc: &mut [[f32; NB * NBLK]; MR]) {
        let (kp, nb) = (t.kp, t.kp / BLOCK);
        debug_assert!(t.rows.len() >= R * kp && t.panel.len() >= NBLK * kp * NB);
        debug_assert!(t.scale.len() >= R * nb && t.dm.len() >= NBLK * nb * 2 * NB);
        let mut f = [[_mm512_setzero_ps(); NBLK]; R];
        let (x, p, dm) = (t.rows.as_ptr(), t.panel.as_ptr(), t.dm.as_ptr());
        for b in 0..nb {
            let mut i = [[_mm512_setzero_si512(); NBLK]; R];
            for g in b * BLOCK / 4..(b + 1) * BLOCK / 4 {
                // SAFETY: g < kp / 4: each weight load reads 64 bytes at c * kp * 16 + g * 64
                // and each row read 4 bytes at r * kp + 4g, inside the slices.
                unsafe {
                    let w0 = _mm512_loadu_si512(p.add(g * NB * 4) as *const _);
                    let w1 = _mm512_loadu_si512(p.add(kp * NB + g * NB * 4) as *const _);
                    for (r, ir) in i.iter_mut().enumerate() {
                        let xv = _mm512_set1_epi32((x.add(r * kp + g * 4) as *const i32).read_unaligned());
                        ir[0] = _mm512_dpbusd_epi32(ir[0], w0, xv);
                        ir[1] = _mm512_dpbusd_epi32(ir[1], w1, xv);
                    }
                }
            }
            // SAFETY: block b's scales and minimums of both channel blocks, and row r's scale
            // and sum for block b, are inside the slices (see the contract).
            unsafe {
                let d = [_mm512_loadu_ps(dm.add(b * 2 * NB)), _mm512_loadu_ps(dm.add((nb + b) * 2 * NB))];
                let m = [_mm512_loadu_ps(dm.add(b * 2 * NB + NB)), _mm512_loadu_ps(dm.add((nb + b) * 2 * NB + NB))];
                for r in 0..R {
                    let s = _mm512_set1_ps(*t.scale.get_unchecked(r * nb + b));
                    let q = _mm512_set1_ps(*t.sum.get_unchecked(r * nb + b));
                    for c in 0..NBLK {
                        f[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[r][c]), _mm512_mul_ps(d[c], s), f[r][c]);
                        f[r][c] = _mm512_fmadd_ps(m[c], q, f[r][c]);
                    }
                }
            }
        }
        for (fr, out) in f.iter().zip(acc.iter_mut()) {
            for (c, v) in fr.iter().enumerate() {
                // SAFETY: each store writes 16 f32 into out[c * 16..c * 16 + 16].
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(c * NB), *v) };
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
        fn every_level_gives_the_same_result_and_tracks_f32(
            rows in 1usize..11, out in 1usize..80, inputs in 1usize..100, seed in 0u32..1000,
        ) {
            let val = |i: usize| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 9) % 2001) as f32 / 1000.0 - 1.0;
            // An outlier per row: what per-row scales lose and blocks keep.
            let x: Vec<f32> = (0..rows * inputs).map(|i| if i % 37 == 5 { 20.0 } else { val(i) }).collect();
            let w: Vec<f32> = (0..out * inputs).map(|i| val(i + 99) * 0.3).collect();
            let q = BlockMatrix::quantize(&w, out, inputs).unwrap();
            let mut a = BlockRows::default();
            a.quantize(&x, rows, inputs).unwrap();
            let mut reference = vec![0f32; rows * out];
            matmul_block_with(Int8Level::Portable, &mut reference, &a, &q, 1).unwrap();
            for level in Int8Level::available() {
                for threads in [1, 3] {
                    let mut got = vec![0f32; rows * out];
                    matmul_block_with(level, &mut got, &a, &q, threads).unwrap();
                    prop_assert_eq!(&got, &reference, "{:?}, {} threads", level, threads);
                }
            }
            let back = q.dequantize();
            for (b, w) in back.iter().zip(&w) {
                prop_assert!((b - w).abs() <= 0.6 / 255.0 + 1e-6, "{} vs {}", b, w);
            }
            for r in 0..rows {
                for o in 0..out {
                    let row = &x[r * inputs..(r + 1) * inputs];
                    let exact: f32 = row.iter().zip(&w[o * inputs..]).map(|(x, w)| x * w).sum();
                    // Each block's error: its largest |x| / 254 times |w| <= 0.3, plus the weights'.
                    let bound: f32 = row.chunks(BLOCK).map(|c| c.iter().fold(0f32, |m, v| m.max(v.abs()))).sum::<f32>()
                        * 0.3 / 254.0 * (BLOCK as f32).sqrt() * 2.0 + 0.01;
                    prop_assert!((reference[r * out + o] - exact).abs() <= bound, "{} vs {} (bound {})", reference[r * out + o], exact, bound);
                }
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(BlockMatrix::quantize(&[1.0; 5], 2, 3).is_err());
        let q = BlockMatrix::quantize(&[1.0, 2.0, 3.0, 1.0, 1.0, 1.0], 2, 3).unwrap();
        let mut a = BlockRows::default();
        a.quantize(&[1.0; 8], 2, 4).unwrap();
        assert!(matmul_block(&mut [0.0; 4], &a, &q, 1).is_err());
        let mut b = BlockRows::default();
        b.quantize(&[1.0; 6], 2, 3).unwrap();
        assert!(matmul_block(&mut [0.0; 3], &b, &q, 1).is_err());
        let mut out = [0.0; 4];
        matmul_block(&mut out, &b, &q, 1).unwrap();
        assert!((out[0] - 6.0).abs() < 0.05 && (out[1] - 3.0).abs() < 0.05, "{out:?}");
        assert!(q.row_into(2, &mut [0.0; 3]).is_err());
        assert!(q.row_into(0, &mut [0.0; 2]).is_err());
        let mut buf = Vec::new();
        q.write(&mut buf).unwrap();
        buf.push(7);
        let mut r = &buf[..];
        let back = BlockMatrix::read(&mut r, 2, 3).unwrap();
        assert_eq!((r, back.dequantize()), (&[7u8][..], q.dequantize()));
        assert!(BlockMatrix::read(&mut &buf[..buf.len() - 2], 2, 3).is_err());
        assert!(BlockMatrix::read(&mut &buf[..], 3, 2).is_err());
        assert!(BlockMatrix::read(&mut &[0u8; 16][..], 2, 3).is_err());
        let mut row = [0.0; 3];
        q.row_into(0, &mut row).unwrap();
        assert!(row.iter().zip([1.0, 2.0, 3.0]).all(|(a, b)| (a - b).abs() < 0.01), "{row:?}");
    }
}
