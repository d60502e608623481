//! Dense f32 products for a few rows (a query's tokens) against weights packed once.
//!
//! A general GEMM packs its right-hand side on every call: for a 20-token query that packing
//! reads and rewrites every weight matrix of the model (42 MB for MiniLM) to multiply it by a
//! handful of rows. Here the weights (`[out x in]`, PyTorch's layout) are packed once, when the
//! model loads, into panels of [`PANEL`] output columns: panel `p` holds, for each input `k`,
//! the 16 weights `w[16p + lane][k]` side by side (zeros past `out`). The kernel streams a
//! panel once per block of up to six rows, keeping the block's 6 x 16 accumulators in
//! registers: one vector load and six broadcast FMAs per input. AVX-512 and AVX2 + FMA paths
//! are chosen at run time; the scalar path is their twin and the fallback.

use crate::{Error, Result};

/// Output columns per panel: one AVX-512 register of f32.
pub const PANEL: usize = 16;
/// Rows per register block.
const ROWS: usize = 6;

/// A `[out x in]` weight matrix packed into panels of [`PANEL`] output columns.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    out: usize,
    inp: usize,
    data: Vec<f32>,
}

impl PackedMatrix {
    /// Packs `w` (`out` rows of `inp` weights, row-major).
    pub fn pack(w: &[f32], out: usize, inp: usize) -> Result<Self> {
        if out.checked_mul(inp) != Some(w.len()) {
            return Err(Error::DimensionMismatch { expected: out.saturating_mul(inp), got: w.len() });
        }
        let panels = out.div_ceil(PANEL);
        let mut data = vec![0f32; panels * inp * PANEL];
        for (o, row) in w.chunks_exact(inp.max(1)).enumerate().take(out) {
            let (p, lane) = (o / PANEL, o % PANEL);
            let panel = &mut data[p * inp * PANEL..(p + 1) * inp * PANEL];
            for (k, &v) in row.iter().enumerate() {
                panel[k * PANEL + lane] = v;
            }
        }
        Ok(PackedMatrix { out, inp, data })
    }

    /// Output columns.
    pub fn out(&self) -> usize {
        self.out
    }

    /// Inputs per row.
    pub fn inp(&self) -> usize {
        self.inp
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.inp * PANEL..(p + 1) * self.inp * PANEL]
    }
}

/// `dst[rows x out] = x[rows x in] * w^T (+ bias)`.
pub fn matmul_packed(dst: &mut [f32], x: &[f32], rows: usize, w: &PackedMatrix, bias: Option<&[f32]>) -> Result<()> {
    let (out, inp) = (w.out, w.inp);
    if x.len() != rows * inp {
        return Err(Error::DimensionMismatch { expected: rows * inp, got: x.len() });
    }
    if dst.len() != rows * out {
        return Err(Error::DimensionMismatch { expected: rows * out, got: dst.len() });
    }
    if let Some(b) = bias {
        if b.len() != out {
            return Err(Error::DimensionMismatch { expected: out, got: b.len() });
        }
    }
    if rows == 0 || out == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above); the shapes were checked.
            unsafe { x86::matmul_avx512(dst, x, rows, w, bias) };
            return Ok(());
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above); the shapes were checked.
            unsafe { x86::matmul_avx2(dst, x, rows, w, bias) };
            return Ok(());
        }
    }
    matmul_packed_scalar(dst, x, rows, w, bias);
    Ok(())
}

/// The scalar twin of the SIMD paths (same panel walk, same summation order per lane).
pub fn matmul_packed_scalar(dst: &mut [f32], x: &[f32], rows: usize, w: &PackedMatrix, bias: Option<&[f32]>) {
    let (out, inp) = (w.out, w.inp);
    for p in 0..out.div_ceil(PANEL) {
        let panel = w.panel(p);
        let cols = PANEL.min(out - p * PANEL);
        for r in 0..rows {
            let xr = &x[r * inp..(r + 1) * inp];
            let mut acc = [0f32; PANEL];
            for (k, &xv) in xr.iter().enumerate() {
                for (a, &wv) in acc.iter_mut().zip(&panel[k * PANEL..(k + 1) * PANEL]) {
                    *a = xv.mul_add(wv, *a);
                }
            }
            for (c, &a) in acc.iter().enumerate().take(cols) {
                let col = p * PANEL + c;
                dst[r * out + col] = a + bias.map_or(0.0, |b| b[col]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PackedMatrix, PANEL, ROWS};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F; `x` is `rows x w.inp`, `dst` is `rows x w.out`, `bias`
    /// (if any) holds `w.out` values (checked by the caller).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn matmul_avx512(
        dst: &mut [f32],
        x: &[f32],
        rows: usize,
        w: &PackedMatrix,
        bias: Option<&[f32]>,
    ) {
        let (out, inp) = (w.out, w.inp);
        for p in 0..out.div_ceil(PANEL) {
            let panel = w.panel(p).as_ptr();
            let cols = PANEL.min(out - p * PANEL);
            let mask: __mmask16 = if cols == PANEL { 0xffff } else { (1u16 << cols) - 1 };
            let b = match bias {
                Some(b) => _mm512_maskz_loadu_ps(mask, b.as_ptr().add(p * PANEL)),
                None => _mm512_setzero_ps(),
            };
            let mut r = 0;
            while r < rows {
                let n = ROWS.min(rows - r);
                let xs = x.as_ptr().add(r * inp);
                let d = dst.as_mut_ptr().add(r * out + p * PANEL);
                match n {
                    6 => block512::<6>(panel, xs, inp, b, d, out, mask),
                    5 => block512::<5>(panel, xs, inp, b, d, out, mask),
                    4 => block512::<4>(panel, xs, inp, b, d, out, mask),
                    3 => block512::<3>(panel, xs, inp, b, d, out, mask),
                    2 => block512::<2>(panel, xs, inp, b, d, out, mask),
                    _ => block512::<1>(panel, xs, inp, b, d, out, mask),
                }
                r += n;
            }
        }
    }

    /// `N` rows of `xs` (`inp` apart) against one panel; row `i`'s 16 results (masked) go to
    /// `d + i * out`. The accumulators stay in registers (`N` is a constant).
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block512<const N: usize>(
        panel: *const f32,
        xs: *const f32,
        inp: usize,
        b: __m512,
        d: *mut f32,
        out: usize,
        mask: __mmask16,
    ) {
        let mut acc = [b; N];
        for k in 0..inp {
            let wv = _mm512_loadu_ps(panel.add(k * PANEL));
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*xs.add(i * inp + k)), wv, *a);
            }
        }
        for (i, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(d.add(i * out), mask, *a);
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA; shapes as for [`matmul_avx512`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn matmul_avx2(dst: &mut [f32], x: &[f32], rows: usize, w: &PackedMatrix, bias: Option<&[f32]>) {
        let (out, inp) = (w.out, w.inp);
        for p in 0..out.div_ceil(PANEL) {
            let panel = w.panel(p).as_ptr();
            let cols = PANEL.min(out - p * PANEL);
            let mut bias16 = [0f32; PANEL];
            if let Some(b) = bias {
                bias16[..cols].copy_from_slice(&b[p * PANEL..p * PANEL + cols]);
            }
            let b = (_mm256_loadu_ps(bias16.as_ptr()), _mm256_loadu_ps(bias16.as_ptr().add(8)));
            let mut r = 0;
            while r < rows {
                let n = ROWS.min(rows - r);
                let xs = x.as_ptr().add(r * inp);
                let d = dst.as_mut_ptr().add(r * out + p * PANEL);
                match n {
                    6 => block256::<6>(panel, xs, inp, b, d, out, cols),
                    5 => block256::<5>(panel, xs, inp, b, d, out, cols),
                    4 => block256::<4>(panel, xs, inp, b, d, out, cols),
                    3 => block256::<3>(panel, xs, inp, b, d, out, cols),
                    2 => block256::<2>(panel, xs, inp, b, d, out, cols),
                    _ => block256::<1>(panel, xs, inp, b, d, out, cols),
                }
                r += n;
            }
        }
    }

    /// The AVX2 twin of [`block512`]: each 16-wide result as two 8-wide halves; the first
    /// `cols` of row `i` go to `d + i * out`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block256<const N: usize>(
        panel: *const f32,
        xs: *const f32,
        inp: usize,
        b: (__m256, __m256),
        d: *mut f32,
        out: usize,
        cols: usize,
    ) {
        let mut acc = [b; N];
        for k in 0..inp {
            let w0 = _mm256_loadu_ps(panel.add(k * PANEL));
            let w1 = _mm256_loadu_ps(panel.add(k * PANEL + 8));
            for (i, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(*xs.add(i * inp + k));
                *a = (_mm256_fmadd_ps(xv, w0, a.0), _mm256_fmadd_ps(xv, w1, a.1));
            }
        }
        let mut tail = [0f32; PANEL];
        for (i, a) in acc.iter().enumerate() {
            let row = d.add(i * out);
            if cols == PANEL {
                _mm256_storeu_ps(row, a.0);
                _mm256_storeu_ps(row.add(8), a.1);
            } else {
                _mm256_storeu_ps(tail.as_mut_ptr(), a.0);
                _mm256_storeu_ps(tail.as_mut_ptr().add(8), a.1);
                std::ptr::copy_nonoverlapping(tail.as_ptr(), row, cols);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::{matmul_reference, MatRef};
    use proptest::prelude::*;

    #[test]
    fn mismatched_shapes_are_errors() {
        assert!(PackedMatrix::pack(&[0.0; 10], 3, 4).is_err());
        let w = PackedMatrix::pack(&[0.0; 12], 3, 4).unwrap();
        assert!(matmul_packed(&mut [0.0; 6], &[0.0; 7], 2, &w, None).is_err());
        assert!(matmul_packed(&mut [0.0; 5], &[0.0; 8], 2, &w, None).is_err());
        assert!(matmul_packed(&mut [0.0; 6], &[0.0; 8], 2, &w, Some(&[0.0; 2])).is_err());
    }

    proptest! {
        #[test]
        fn packed_products_match_the_reference(
            rows in 1usize..20, out in 1usize..50, inp in 1usize..70, with_bias: bool, seed in 0u32..1000,
        ) {
            let val = |i: usize| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0;
            let x: Vec<f32> = (0..rows * inp).map(val).collect();
            let w: Vec<f32> = (0..out * inp).map(|i| val(i + 13)).collect();
            let b: Vec<f32> = (0..out).map(|i| val(i + 7)).collect();
            let mut want = matmul_reference(
                MatRef::row_major(&x, rows, inp).unwrap(),
                MatRef::row_major(&w, out, inp).unwrap().t(),
                1.0,
            );
            if with_bias {
                for (i, v) in want.iter_mut().enumerate() {
                    *v += b[i % out];
                }
            }
            let packed = PackedMatrix::pack(&w, out, inp).unwrap();
            let bias = with_bias.then_some(b.as_slice());
            let mut got = vec![f32::NAN; rows * out];
            matmul_packed(&mut got, &x, rows, &packed, bias).unwrap();
            let mut twin = vec![f32::NAN; rows * out];
            matmul_packed_scalar(&mut twin, &x, rows, &packed, bias);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // The AVX2 path too, on a machine whose dispatch picks AVX-512.
                let mut avx2 = vec![f32::NAN; rows * out];
                // SAFETY: AVX2 and FMA were detected; the shapes are those checked above.
                unsafe { x86::matmul_avx2(&mut avx2, &x, rows, &packed, bias) };
                for (a, w) in avx2.iter().zip(&want) {
                    prop_assert!((a - w).abs() <= 1e-4 * (1.0 + w.abs()), "avx2 {} vs {}", a, w);
                }
            }
            for ((g, t), w) in got.iter().zip(&twin).zip(&want) {
                prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{} vs {}", g, w);
                prop_assert!((t - w).abs() <= 1e-4 * (1.0 + w.abs()), "{} vs {}", t, w);
            }
        }
    }
}
