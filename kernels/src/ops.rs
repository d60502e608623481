//! The element-wise and row-wise operators of a BERT forward pass, fused where a layer allows:
//! bias + GELU, bias + residual + LayerNorm, LayerNorm, row softmax, mean pooling + L2 norm.
//!
//! Each operator is written once as plain Rust whose loops the compiler can vectorise (lane
//! arrays for reductions, branch-free polynomial `exp` and `erf`), then compiled three times:
//! as is (the scalar twin, any x86-64 or other CPU), and inside `#[target_feature]` wrappers for
//! AVX2+FMA and AVX-512, chosen at run time. The CUDA kernels in `cuda/bert.cu` implement the
//! same formulas; property tests hold every compiled version to an f64 reference.

use crate::topk::SimdLevel;
use crate::{Error, Result};
use std::sync::OnceLock;

const LANES: usize = 16;

/// The level the operators run at on this CPU (detected once).
pub fn level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(SimdLevel::detect)
}

fn usable(level: SimdLevel) -> SimdLevel {
    if SimdLevel::supported(level) {
        level
    } else {
        self::level()
    }
}

fn check_rows(x: usize, cols: usize) -> Result<usize> {
    if cols == 0 || !x.is_multiple_of(cols) {
        return Err(Error::DimensionMismatch { expected: x.div_ceil(cols.max(1)) * cols, got: x });
    }
    Ok(x / cols)
}

fn check_len(what: usize, want: usize) -> Result<()> {
    if what != want {
        return Err(Error::DimensionMismatch { expected: want, got: what });
    }
    Ok(())
}

/// Generates, for each listed operator of `generic`, an AVX2+FMA and an AVX-512 compilation.
macro_rules! versions {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        #[cfg(target_arch = "x86_64")]
        mod avx512 {
            use super::generic;
            $(
                /// # Safety
                /// The CPU must support AVX-512F/VL, AVX2 and FMA.
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                pub(super) unsafe fn $name($($arg: $ty),*) { generic::$name($($arg),*) }
            )*
        }
        #[cfg(target_arch = "x86_64")]
        mod avx2 {
            use super::generic;
            $(
                /// # Safety
                /// The CPU must support AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                pub(super) unsafe fn $name($($arg: $ty),*) { generic::$name($($arg),*) }
            )*
        }
    };
}

/// Calls the compilation of `generic::$name` for `$level` (which `usable` has checked).
macro_rules! dispatch {
    ($level:expr, $name:ident($($arg:expr),*)) => {
        match $level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `usable` only returns levels whose CPU features were detected.
            SimdLevel::Avx512 => unsafe { avx512::$name($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            SimdLevel::Avx2Fma => unsafe { avx2::$name($($arg),*) },
            _ => generic::$name($($arg),*),
        }
    };
}

versions! {
    layer_norm(x: &mut [f32], cols: usize, gamma: &[f32], beta: &[f32], eps: f32);
    bias_residual_layer_norm(x: &mut [f32], residual: &[f32], bias: &[f32], gamma: &[f32], beta: &[f32], eps: f32);
    bias_gelu(x: &mut [f32], bias: &[f32]);
    add_bias(x: &mut [f32], bias: &[f32]);
    softmax(x: &mut [f32], cols: usize);
    exp_rows(x: &mut [f32], cols: usize, inv_sums: &mut [f32]);
    mean_pool_l2(hidden: &[f32], cols: usize, out: &mut [f32]);
}

/// In place, each row of `x` (`cols` wide): `LayerNorm(x) * gamma + beta`.
pub fn layer_norm(x: &mut [f32], cols: usize, gamma: &[f32], beta: &[f32], eps: f32) -> Result<()> {
    layer_norm_with(level(), x, cols, gamma, beta, eps)
}

/// [`layer_norm`] at a given SIMD level (tests compare levels).
pub fn layer_norm_with(
    level: SimdLevel,
    x: &mut [f32],
    cols: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<()> {
    check_rows(x.len(), cols)?;
    check_len(gamma.len(), cols)?;
    check_len(beta.len(), cols)?;
    dispatch!(usable(level), layer_norm(x, cols, gamma, beta, eps));
    Ok(())
}

/// In place, each row: `x = LayerNorm(x + bias + residual) * gamma + beta` (a BERT sub-layer's
/// output: the dense layer's product, its bias, the skip connection, the norm).
pub fn bias_residual_layer_norm(
    x: &mut [f32],
    residual: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<()> {
    bias_residual_layer_norm_with(level(), x, residual, bias, gamma, beta, eps)
}

/// [`bias_residual_layer_norm`] at a given SIMD level.
pub fn bias_residual_layer_norm_with(
    level: SimdLevel,
    x: &mut [f32],
    residual: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<()> {
    check_rows(x.len(), bias.len())?;
    check_len(residual.len(), x.len())?;
    check_len(gamma.len(), bias.len())?;
    check_len(beta.len(), bias.len())?;
    dispatch!(usable(level), bias_residual_layer_norm(x, residual, bias, gamma, beta, eps));
    Ok(())
}

/// In place, each row: `x = gelu(x + bias)` with the exact (erf) GELU.
pub fn bias_gelu(x: &mut [f32], bias: &[f32]) -> Result<()> {
    bias_gelu_with(level(), x, bias)
}

/// [`bias_gelu`] at a given SIMD level.
pub fn bias_gelu_with(level: SimdLevel, x: &mut [f32], bias: &[f32]) -> Result<()> {
    check_rows(x.len(), bias.len())?;
    dispatch!(usable(level), bias_gelu(x, bias));
    Ok(())
}

/// In place, each row: `x += bias`.
pub fn add_bias(x: &mut [f32], bias: &[f32]) -> Result<()> {
    check_rows(x.len(), bias.len())?;
    dispatch!(level(), add_bias(x, bias));
    Ok(())
}

/// In place, a softmax over each row of `cols` values.
pub fn softmax(x: &mut [f32], cols: usize) -> Result<()> {
    softmax_with(level(), x, cols)
}

/// [`softmax`] at a given SIMD level.
pub fn softmax_with(level: SimdLevel, x: &mut [f32], cols: usize) -> Result<()> {
    check_rows(x.len(), cols)?;
    dispatch!(usable(level), softmax(x, cols));
    Ok(())
}

/// The unnormalised half of a softmax, in place: each row becomes `exp(x - max(row))`, and
/// `inv_sums[r]` gets `1 / sum(row)`. Attention multiplies by the values first and scales the
/// (head-dim wide) result rows by `inv_sums` instead of the (sequence wide) score rows.
pub fn exp_rows(x: &mut [f32], cols: usize, inv_sums: &mut [f32]) -> Result<()> {
    exp_rows_with(level(), x, cols, inv_sums)
}

/// [`exp_rows`] at a given SIMD level.
pub fn exp_rows_with(level: SimdLevel, x: &mut [f32], cols: usize, inv_sums: &mut [f32]) -> Result<()> {
    let rows = check_rows(x.len(), cols)?;
    check_len(inv_sums.len(), rows)?;
    dispatch!(usable(level), exp_rows(x, cols, inv_sums));
    Ok(())
}

/// The mean of the rows of `hidden` (one sequence's token vectors), L2-normalised, into `out`.
pub fn mean_pool_l2(hidden: &[f32], cols: usize, out: &mut [f32]) -> Result<()> {
    mean_pool_l2_with(level(), hidden, cols, out)
}

/// [`mean_pool_l2`] at a given SIMD level.
pub fn mean_pool_l2_with(level: SimdLevel, hidden: &[f32], cols: usize, out: &mut [f32]) -> Result<()> {
    check_rows(hidden.len(), cols)?;
    check_len(out.len(), cols)?;
    dispatch!(usable(level), mean_pool_l2(hidden, cols, out));
    Ok(())
}

/// `exp(x)` in f32, branch-free (Cephes' polynomial; about 1 ulp), vectorisable.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // Round x / ln 2 to the nearest integer n with the 1.5 * 2^23 trick: the sum's low
    // mantissa bits then hold n itself, so 2^n is built with integer ops only (a float to int
    // cast would not vectorise).
    let t = x.mul_add(std::f32::consts::LOG2_E, 12_582_912.0);
    let n = t - 12_582_912.0;
    let r = n.mul_add(-0.693_359_4, x);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = p.mul_add(r * r, r) + 1.0;
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    y * scale
}

/// `erf(x)` in f32, branch-free: the rational approximation used by Eigen and XLA (error
/// around 1e-7 on [-4, 4], saturating outside).
#[inline(always)]
pub fn erf_approx(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p.mul_add(x2, 2.770_681_4e-8);
    p = p.mul_add(x2, -2.101_024e-6);
    p = p.mul_add(x2, -5.692_506_4e-5);
    p = p.mul_add(x2, -7.349_906_3e-4);
    p = p.mul_add(x2, -2.9546e-3);
    p = p.mul_add(x2, -1.609_603_3e-2);
    let mut q = -1.456_607_2e-5f32;
    q = q.mul_add(x2, -2.133_740_6e-4);
    q = q.mul_add(x2, -1.682_827e-3);
    q = q.mul_add(x2, -7.373_329_2e-3);
    q = q.mul_add(x2, -1.426_474e-2);
    x * p / q
}

/// The exact GELU: `x * (1 + erf(x / sqrt 2)) / 2`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_approx(x * std::f32::consts::FRAC_1_SQRT_2))
}

mod generic {
    use super::{exp_approx, gelu, LANES};

    #[inline(always)]
    fn sum(x: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = x.chunks_exact(LANES);
        for c in &mut chunks {
            for i in 0..LANES {
                acc[i] += c[i];
            }
        }
        let tail: f32 = chunks.remainder().iter().sum();
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    fn squared_deviation(x: &[f32], mean: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = x.chunks_exact(LANES);
        for c in &mut chunks {
            for i in 0..LANES {
                let d = c[i] - mean;
                acc[i] = d.mul_add(d, acc[i]);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    fn max(x: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let mut chunks = x.chunks_exact(LANES);
        for c in &mut chunks {
            for i in 0..LANES {
                acc[i] = acc[i].max(c[i]);
            }
        }
        let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        acc.iter().fold(tail, |a, &b| a.max(b))
    }

    #[inline(always)]
    fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let n = row.len() as f32;
        let mean = sum(row) / n;
        let var = squared_deviation(row, mean) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = ((*v - mean) * inv).mul_add(*g, *b);
        }
    }

    #[inline(always)]
    pub(super) fn layer_norm(x: &mut [f32], cols: usize, gamma: &[f32], beta: &[f32], eps: f32) {
        for row in x.chunks_exact_mut(cols) {
            normalize_row(row, gamma, beta, eps);
        }
    }

    #[inline(always)]
    pub(super) fn bias_residual_layer_norm(
        x: &mut [f32],
        residual: &[f32],
        bias: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) {
        let cols = bias.len();
        for (row, res) in x.chunks_exact_mut(cols).zip(residual.chunks_exact(cols)) {
            for ((v, r), b) in row.iter_mut().zip(res).zip(bias) {
                *v += b + r;
            }
            normalize_row(row, gamma, beta, eps);
        }
    }

    #[inline(always)]
    pub(super) fn bias_gelu(x: &mut [f32], bias: &[f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = gelu(*v + b);
            }
        }
    }

    #[inline(always)]
    pub(super) fn add_bias(x: &mut [f32], bias: &[f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }

    #[inline(always)]
    pub(super) fn softmax(x: &mut [f32], cols: usize) {
        for row in x.chunks_exact_mut(cols) {
            let m = max(row);
            for v in row.iter_mut() {
                *v = exp_approx(*v - m);
            }
            let inv = 1.0 / sum(row);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }

    #[inline(always)]
    pub(super) fn exp_rows(x: &mut [f32], cols: usize, inv_sums: &mut [f32]) {
        for (row, inv) in x.chunks_exact_mut(cols).zip(inv_sums.iter_mut()) {
            let m = max(row);
            let mut acc = [0f32; LANES];
            let mut chunks = row.chunks_exact_mut(LANES);
            for c in &mut chunks {
                for i in 0..LANES {
                    let e = exp_approx(c[i] - m);
                    c[i] = e;
                    acc[i] += e;
                }
            }
            let mut tail = 0.0;
            for v in chunks.into_remainder() {
                *v = exp_approx(*v - m);
                tail += *v;
            }
            *inv = 1.0 / (acc.iter().sum::<f32>() + tail);
        }
    }

    #[inline(always)]
    pub(super) fn mean_pool_l2(hidden: &[f32], cols: usize, out: &mut [f32]) {
        out.fill(0.0);
        let rows = hidden.len() / cols;
        for row in hidden.chunks_exact(cols) {
            for (o, v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        let inv_rows = 1.0 / (rows.max(1) as f32);
        for o in out.iter_mut() {
            *o *= inv_rows;
        }
        let mut acc = [0f32; LANES];
        let mut chunks = out.chunks_exact(LANES);
        for c in &mut chunks {
            for i in 0..LANES {
                acc[i] = c[i].mul_add(c[i], acc[i]);
            }
        }
        let norm2 = acc.iter().sum::<f32>() + chunks.remainder().iter().map(|v| v * v).sum::<f32>();
        let inv = 1.0 / norm2.sqrt().max(1e-12);
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
}

/// f64 references of the operators, for the tests of this crate, of the encoder and of the
/// CUDA kernels.
pub mod reference {
    /// `erf` by its Taylor series (|x| <= 4; saturated beyond), in f64.
    pub fn erf(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let mut term = x;
        let mut total = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            let add = term / (2 * n + 1) as f64;
            total += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        total * 2.0 / std::f64::consts::PI.sqrt()
    }

    /// GELU (erf form) in f64.
    pub fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }

    /// Layer norm of one row in f64.
    pub fn layer_norm(row: &[f64], gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        row.iter().zip(gamma).zip(beta).map(|((v, g), b)| (v - mean) * inv * *g as f64 + *b as f64).collect()
    }

    /// Softmax of one row in f64.
    pub fn softmax(row: &[f64]) -> Vec<f64> {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(got: f32, want: f64, tol: f64) -> bool {
        (got as f64 - want).abs() <= tol * (1.0 + want.abs())
    }

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in -4000..=4000 {
            let x = i as f32 / 100.0;
            let want = (x as f64).exp();
            let got = exp_approx(x) as f64;
            assert!((got - want).abs() <= 4e-7 * want, "exp({x}) = {got}, want {want}");
            let e = erf_approx(x / 10.0) as f64;
            let want = reference::erf(x as f64 / 10.0);
            assert!((e - want).abs() <= 2e-6, "erf({}) = {e}, want {want}", x / 10.0);
        }
        assert_eq!(exp_approx(-1000.0), exp_approx(-87.3));
        assert!(exp_approx(1000.0).is_finite());
    }

    #[test]
    fn lengths_are_checked() {
        let mut x = vec![0f32; 10];
        assert!(layer_norm(&mut x, 3, &[1.0; 3], &[0.0; 3], 1e-12).is_err());
        assert!(layer_norm(&mut x, 5, &[1.0; 4], &[0.0; 5], 1e-12).is_err());
        assert!(bias_residual_layer_norm(&mut x, &[0.0; 9], &[0.0; 5], &[1.0; 5], &[0.0; 5], 1e-5).is_err());
        assert!(mean_pool_l2(&x, 5, &mut [0.0; 4]).is_err());
        assert!(softmax(&mut x, 0).is_err());
    }

    fn rows() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)> {
        (1usize..6, 1usize..70).prop_flat_map(|(r, c)| {
            (
                Just(c),
                proptest::collection::vec(-6.0f32..6.0, r * c),
                proptest::collection::vec(-2.0f32..2.0, r * c),
                proptest::collection::vec(-2.0f32..2.0, c),
                proptest::collection::vec(0.5f32..1.5, c),
            )
        })
    }

    proptest! {
        #[test]
        fn fused_layer_norm_matches_reference((cols, x, res, bias, gamma) in rows()) {
            let beta: Vec<f32> = bias.iter().map(|b| b * 0.3).collect();
            for level in SimdLevel::available() {
                let mut got = x.clone();
                bias_residual_layer_norm_with(level, &mut got, &res, &bias, &gamma, &beta, 1e-12).unwrap();
                for (r, (row, rrow)) in x.chunks(cols).zip(res.chunks(cols)).enumerate() {
                    let pre: Vec<f64> = row.iter().zip(rrow).zip(&bias).map(|((v, r), b)| (*v + *b + *r) as f64).collect();
                    let want = reference::layer_norm(&pre, &gamma, &beta, 1e-12);
                    for (g, w) in got[r * cols..(r + 1) * cols].iter().zip(&want) {
                        prop_assert!(close(*g, *w, 2e-4), "{:?}: {} vs {}", level, g, w);
                    }
                }
                let mut plain = x.clone();
                layer_norm_with(level, &mut plain, cols, &gamma, &beta, 1e-12).unwrap();
                for (r, row) in x.chunks(cols).enumerate() {
                    let pre: Vec<f64> = row.iter().map(|v| *v as f64).collect();
                    let want = reference::layer_norm(&pre, &gamma, &beta, 1e-12);
                    for (g, w) in plain[r * cols..(r + 1) * cols].iter().zip(&want) {
                        prop_assert!(close(*g, *w, 2e-4), "{:?}: {} vs {}", level, g, w);
                    }
                }
            }
        }

        #[test]
        fn bias_gelu_matches_reference((cols, x, _res, bias, _g) in rows()) {
            for level in SimdLevel::available() {
                let mut got = x.clone();
                bias_gelu_with(level, &mut got, &bias).unwrap();
                for (i, g) in got.iter().enumerate() {
                    let want = reference::gelu((x[i] + bias[i % cols]) as f64);
                    prop_assert!((*g as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()), "{:?}: {} vs {}", level, g, want);
                }
            }
        }

        #[test]
        fn softmax_matches_reference((cols, x, _res, _b, _g) in rows()) {
            for level in SimdLevel::available() {
                let mut got: Vec<f32> = x.iter().map(|v| v * 5.0).collect();
                softmax_with(level, &mut got, cols).unwrap();
                for (r, row) in x.chunks(cols).enumerate() {
                    let want = reference::softmax(&row.iter().map(|v| *v as f64 * 5.0).collect::<Vec<_>>());
                    for (g, w) in got[r * cols..(r + 1) * cols].iter().zip(&want) {
                        prop_assert!((*g as f64 - w).abs() <= 1e-6, "{:?}: {} vs {}", level, g, w);
                    }
                }
            }
        }

        #[test]
        fn exp_rows_times_inverse_sums_is_the_softmax((cols, x, _res, _b, _g) in rows()) {
            let rows = x.len() / cols;
            for level in SimdLevel::available() {
                let mut got: Vec<f32> = x.iter().map(|v| v * 5.0).collect();
                let mut inv = vec![0f32; rows];
                exp_rows_with(level, &mut got, cols, &mut inv).unwrap();
                for (r, row) in x.chunks(cols).enumerate() {
                    let want = reference::softmax(&row.iter().map(|v| *v as f64 * 5.0).collect::<Vec<_>>());
                    for (g, w) in got[r * cols..(r + 1) * cols].iter().zip(&want) {
                        prop_assert!(((g * inv[r]) as f64 - w).abs() <= 1e-6, "{:?}: {} vs {}", level, g * inv[r], w);
                    }
                }
            }
            prop_assert!(exp_rows(&mut [0.0; 6], 3, &mut [0.0; 1]).is_err());
        }

        #[test]
        fn mean_pool_matches_reference((cols, x, _res, _b, _g) in rows()) {
            for level in SimdLevel::available() {
                let mut got = vec![0f32; cols];
                mean_pool_l2_with(level, &x, cols, &mut got).unwrap();
                let rows = x.len() / cols;
                let mean: Vec<f64> = (0..cols).map(|c| (0..rows).map(|r| x[r * cols + c] as f64).sum::<f64>() / rows as f64).collect();
                let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
                for (g, m) in got.iter().zip(&mean) {
                    prop_assert!((*g as f64 - m / norm).abs() <= 1e-5, "{:?}: {} vs {}", level, g, m / norm);
                }
            }
        }
    }
}
