//! Dense f32 matrix products on strided views, through the `gemm` crate.
//!
//! `gemm` picks its micro-kernel at run time; its `x86-v4` feature (enabled by this crate, and
//! by feature unification for candle too) adds the AVX-512 kernels, used only when the CPU has
//! AVX-512F. The views here check every shape and extent so that the one `unsafe` call is sound.

use crate::{Error, Result};

/// A read-only strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A mutable row-major view with a row stride (columns contiguous), so no two elements alias.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
}

fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(rs)?.checked_add((cols - 1).checked_mul(cs)?)?.checked_add(1)
}

fn too_small(need: Option<usize>, got: usize) -> Error {
    Error::DimensionMismatch { expected: need.unwrap_or(usize::MAX), got }
}

impl<'a> MatRef<'a> {
    /// A strided view; fails when the view reaches past `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Result<Self> {
        let need = extent(rows, cols, row_stride, col_stride);
        match need {
            Some(n) if n <= data.len() => Ok(MatRef { data, rows, cols, rs: row_stride, cs: col_stride }),
            _ => Err(too_small(need, data.len())),
        }
    }

    /// A dense row-major `rows x cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Element `(i, j)`; panics outside the view.
    pub fn at(&self, i: usize, j: usize) -> f32 {
        assert!(i < self.rows && j < self.cols, "({i}, {j}) outside a {}x{} view", self.rows, self.cols);
        self.data[i * self.rs + j * self.cs]
    }
}

impl<'a> MatMut<'a> {
    /// A row-major view with rows `row_stride` apart (`row_stride >= cols`).
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Result<Self> {
        if rows > 1 && row_stride < cols {
            return Err(Error::DimensionMismatch { expected: cols, got: row_stride });
        }
        let need = extent(rows, cols, row_stride, 1);
        match need {
            Some(n) if n <= data.len() => Ok(MatMut { data, rows, cols, rs: row_stride }),
            _ => Err(too_small(need, data.len())),
        }
    }

    /// A dense row-major `rows x cols` view.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols)
    }
}

/// `dst = (accumulate ? dst : 0) + scale * lhs * rhs`, on `threads` threads of rayon's pool
/// (1: the caller's thread only).
pub fn matmul(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    scale: f32,
    accumulate: bool,
    threads: usize,
) -> Result<()> {
    if lhs.rows != dst.rows {
        return Err(Error::DimensionMismatch { expected: dst.rows, got: lhs.rows });
    }
    if rhs.cols != dst.cols {
        return Err(Error::DimensionMismatch { expected: dst.cols, got: rhs.cols });
    }
    if lhs.cols != rhs.rows {
        return Err(Error::DimensionMismatch { expected: lhs.cols, got: rhs.rows });
    }
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst.data[r * dst.rs..r * dst.rs + n].fill(0.0);
            }
        }
        return Ok(());
    }
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the constructors checked that every (i, j) of each view, at its strides, lies
    // inside its slice; the shapes agree (checked above); `dst` is borrowed mutably, so it
    // aliases neither input, and its row-major layout with `rs >= cols` maps distinct
    // elements to distinct addresses, so parallel writes never collide.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// The reference product (f64 accumulation), for tests.
pub fn matmul_reference(lhs: MatRef<'_>, rhs: MatRef<'_>, scale: f32) -> Vec<f32> {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|p| lhs.at(i, p) as f64 * rhs.at(p, j) as f64).sum();
            out[i * n + j] = (s * scale as f64) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn views_that_reach_past_their_data_are_refused() {
        let d = [0f32; 10];
        assert!(MatRef::new(&d, 3, 4, 4, 1).is_err());
        assert!(MatRef::new(&d, 2, 5, 5, 1).is_ok());
        let mut e = [0f32; 10];
        assert!(MatMut::new(&mut e, 2, 5, 4).is_err());
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = [1f32; 6];
        let b = [1f32; 6];
        let mut c = [0f32; 4];
        let r = matmul(
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            MatRef::row_major(&a, 2, 3).unwrap(),
            MatRef::row_major(&b, 2, 3).unwrap(),
            1.0,
            false,
            1,
        );
        assert!(r.is_err());
    }

    proptest! {
        #[test]
        fn strided_products_match_the_reference(
            m in 1usize..40, n in 1usize..40, k in 0usize..70, transpose_rhs: bool, accumulate: bool,
            threads in 1usize..3, seed in 0u32..1000,
        ) {
            let val = |i: usize| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0;
            let a: Vec<f32> = (0..m * (k + 3)).map(val).collect();
            let b: Vec<f32> = (0..k.max(1) * n).map(|i| val(i + 7)).collect();
            // lhs with a row stride wider than its columns, as a head's slice of packed QKV.
            let lhs = MatRef::new(&a, m, k, k + 3, 1).unwrap();
            let rhs = if transpose_rhs {
                MatRef::row_major(&b, n, k).unwrap().t()
            } else {
                MatRef::row_major(&b, k, n).unwrap()
            };
            let want = matmul_reference(lhs, rhs, 0.5);
            let mut c = vec![1f32; m * n];
            matmul(MatMut::row_major(&mut c, m, n).unwrap(), lhs, rhs, 0.5, accumulate, threads).unwrap();
            for (g, w) in c.iter().zip(&want) {
                let w = if accumulate { w + 1.0 } else { *w };
                prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{} vs {}", g, w);
            }
        }
    }
}
