//! Exact (brute-force) top-k by dot product over an `n x d` row-major f32 matrix.
//!
//! Used to re-score candidates and to measure how much HNSW recall the approximate search
//! gives up. On normalised vectors the dot product is the cosine similarity.

use crate::{Error, Result};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One scored row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Row index in the matrix.
    pub index: usize,
    /// Dot product of the row with the query.
    pub score: f32,
}

/// The instruction set a SIMD kernel runs with, detected at run time (ordered: each level
/// implies the ones before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Plain Rust.
    Scalar,
    /// AVX2 with FMA.
    Avx2Fma,
    /// AVX-512F.
    Avx512,
}

impl SimdLevel {
    /// The best level this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return SimdLevel::Avx2Fma;
            }
        }
        SimdLevel::Scalar
    }

    /// Whether this CPU can run `level` (no allocation: kernels ask on every call).
    pub fn supported(level: SimdLevel) -> bool {
        level <= Self::detect()
    }

    /// Every level this CPU can run, scalar first (for tests and benchmarks).
    pub fn available() -> Vec<Self> {
        let best = Self::detect();
        let mut levels = vec![SimdLevel::Scalar];
        if matches!(best, SimdLevel::Avx2Fma | SimdLevel::Avx512) {
            levels.push(SimdLevel::Avx2Fma);
        }
        if best == SimdLevel::Avx512 {
            levels.push(SimdLevel::Avx512);
        }
        levels
    }
}

/// Top `k` rows of `matrix` (row-major, `dim` columns) by dot product with `query`,
/// best first, using the fastest instruction set the CPU has.
pub fn top_k_dot(matrix: &[f32], dim: usize, query: &[f32], k: usize) -> Result<Vec<Hit>> {
    top_k_dot_with(SimdLevel::detect(), matrix, dim, query, k)
}

/// The scalar reference of [`top_k_dot`].
pub fn top_k_dot_scalar(matrix: &[f32], dim: usize, query: &[f32], k: usize) -> Result<Vec<Hit>> {
    top_k_dot_with(SimdLevel::Scalar, matrix, dim, query, k)
}

/// [`top_k_dot`] at a chosen level; a level the CPU lacks falls back to the best it has.
pub fn top_k_dot_with(level: SimdLevel, matrix: &[f32], dim: usize, query: &[f32], k: usize) -> Result<Vec<Hit>> {
    check_shape(matrix, dim, query)?;
    let level = if SimdLevel::supported(level) { level } else { SimdLevel::detect() };
    let mut heap = TopK::new(k);
    if dim == 0 {
        return Ok(heap.into_sorted());
    }
    for (index, row) in matrix.chunks_exact(dim).enumerate() {
        heap.push(Hit { index, score: dot_with(level, row, query) });
    }
    Ok(heap.into_sorted())
}

/// Scores of every row (the first half of top-k, exposed for the CUDA twin's tests).
pub fn scores_scalar(matrix: &[f32], dim: usize, query: &[f32]) -> Result<Vec<f32>> {
    check_shape(matrix, dim, query)?;
    if dim == 0 {
        return Ok(Vec::new());
    }
    Ok(matrix.chunks_exact(dim).map(|row| dot_scalar(row, query)).collect())
}

/// Picks the top `k` of precomputed scores, best first, ties broken by lower index.
pub fn select_top_k(scores: &[f32], k: usize) -> Vec<Hit> {
    let mut heap = TopK::new(k);
    for (index, &score) in scores.iter().enumerate() {
        heap.push(Hit { index, score });
    }
    heap.into_sorted()
}

fn check_shape(matrix: &[f32], dim: usize, query: &[f32]) -> Result<()> {
    if query.len() != dim {
        return Err(Error::DimensionMismatch { expected: dim, got: query.len() });
    }
    if dim > 0 && !matrix.len().is_multiple_of(dim) {
        return Err(Error::DimensionMismatch { expected: matrix.len().div_ceil(dim) * dim, got: matrix.len() });
    }
    Ok(())
}

/// The dot product of two equal-length vectors at the fastest level this CPU has.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with(SimdLevel::detect(), a, b)
}

/// Dot product at a level the caller has checked the CPU supports.
fn dot_with(level: SimdLevel, a: &[f32], b: &[f32]) -> f32 {
    match level {
        SimdLevel::Scalar => dot_scalar(a, b),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `top_k_dot_with` only passes levels listed by `SimdLevel::available`,
        // which checked the CPU features at run time.
        SimdLevel::Avx2Fma => unsafe { x86::dot_avx2(a, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, avx512f was detected.
        SimdLevel::Avx512 => unsafe { x86::dot_avx512(a, b) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => dot_scalar(a, b),
    }
}

/// The reference dot product: a plain sequential sum.
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` and `b` must have the same length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let chunks = n / 8;
        let mut acc = _mm256_setzero_ps();
        for i in 0..chunks {
            // SAFETY: i * 8 + 8 <= n, so both loads stay inside the slices.
            let (va, vb) = unsafe { (_mm256_loadu_ps(a.as_ptr().add(i * 8)), _mm256_loadu_ps(b.as_ptr().add(i * 8))) };
            acc = _mm256_fmadd_ps(va, vb, acc);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds exactly 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let tail: f32 = a[chunks * 8..n].iter().zip(&b[chunks * 8..n]).map(|(x, y)| x * y).sum();
        lanes.iter().sum::<f32>() + tail
    }

    /// # Safety
    /// The CPU must support AVX-512F; `a` and `b` must have the same length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let chunks = n / 16;
        let mut acc = _mm512_setzero_ps();
        for i in 0..chunks {
            // SAFETY: i * 16 + 16 <= n, so both loads stay inside the slices.
            let (va, vb) =
                unsafe { (_mm512_loadu_ps(a.as_ptr().add(i * 16)), _mm512_loadu_ps(b.as_ptr().add(i * 16))) };
            acc = _mm512_fmadd_ps(va, vb, acc);
        }
        let tail: f32 = a[chunks * 16..n].iter().zip(&b[chunks * 16..n]).map(|(x, y)| x * y).sum();
        _mm512_reduce_add_ps(acc) + tail
    }
}

/// A bounded min-heap keeping the `k` best hits.
struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

/// Heap order: the worst hit (lowest score, then highest index) on top.
struct Worst(Hit);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        // `better` says Greater when self ranks after other: the worst hit is the heap's max.
        better(&self.0, &other.0)
    }
}

/// `Less` when `a` ranks before `b`: higher score first, NaN last, lower index on ties.
fn better(a: &Hit, b: &Hit) -> Ordering {
    let sa = if a.score.is_nan() { f32::NEG_INFINITY } else { a.score };
    let sb = if b.score.is_nan() { f32::NEG_INFINITY } else { b.score };
    sb.total_cmp(&sa).then(a.index.cmp(&b.index))
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1 << 16)) }
    }

    fn push(&mut self, hit: Hit) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Worst(hit));
        } else if let Some(worst) = self.heap.peek() {
            if better(&hit, &worst.0) == Ordering::Less {
                self.heap.pop();
                self.heap.push(Worst(hit));
            }
        }
    }

    fn into_sorted(self) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self.heap.into_iter().map(|w| w.0).collect();
        hits.sort_by(better);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_the_best_rows_in_order() {
        let m = [1.0, 0.0, 0.0, 1.0, 0.7, 0.7, -1.0, 0.0];
        let hits = top_k_dot(&m, 2, &[1.0, 0.0], 3).unwrap();
        let idx: Vec<usize> = hits.iter().map(|h| h.index).collect();
        assert_eq!(idx, vec![0, 2, 1]);
        assert!((hits[1].score - 0.7).abs() < 1e-6);
    }

    #[test]
    fn k_larger_than_n_and_zero() {
        let m = [1.0, 2.0, 3.0];
        assert_eq!(top_k_dot(&m, 1, &[1.0], 10).unwrap().len(), 3);
        assert!(top_k_dot(&m, 1, &[1.0], 0).unwrap().is_empty());
    }

    #[test]
    fn shape_errors_are_reported() {
        assert!(matches!(top_k_dot(&[1.0, 2.0, 3.0], 2, &[1.0, 2.0], 1), Err(Error::DimensionMismatch { .. })));
        assert!(matches!(top_k_dot(&[1.0, 2.0], 2, &[1.0], 1), Err(Error::DimensionMismatch { expected: 2, got: 1 })));
    }

    #[test]
    fn nan_rows_rank_last() {
        let m = [f32::NAN, 0.5, 0.1];
        let hits = top_k_dot(&m, 1, &[1.0], 3).unwrap();
        assert_eq!(hits[0].index, 1);
        assert_eq!(hits[2].index, 0);
    }

    fn matrix_and_query() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>, usize)> {
        (1usize..70, 0usize..60, 0usize..20).prop_flat_map(|(dim, n, k)| {
            (
                Just(dim),
                proptest::collection::vec(-1.0f32..1.0, n * dim),
                proptest::collection::vec(-1.0f32..1.0, dim),
                Just(k),
            )
        })
    }

    proptest! {
        #[test]
        fn every_simd_level_matches_scalar((dim, m, q, k) in matrix_and_query()) {
            let reference = top_k_dot_scalar(&m, dim, &q, k).unwrap();
            for level in SimdLevel::available() {
                let got = top_k_dot_with(level, &m, dim, &q, k).unwrap();
                prop_assert_eq!(got.len(), reference.len());
                for (g, r) in got.iter().zip(&reference) {
                    // Summation order differs between lanes: allow rounding, and accept a
                    // swapped index only where the two scores are within rounding of each other.
                    prop_assert!((g.score - r.score).abs() <= 1e-4, "{:?} vs {:?}", g, r);
                    if g.index != r.index {
                        let exact = dot_scalar(&m[g.index * dim..(g.index + 1) * dim], &q);
                        prop_assert!((exact - r.score).abs() <= 1e-4);
                    }
                }
            }
        }

        #[test]
        fn select_top_k_matches_sorting(scores in proptest::collection::vec(-10.0f32..10.0, 0..200), k in 0usize..50) {
            let got = select_top_k(&scores, k);
            let mut all: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let want: Vec<usize> = all.iter().take(k).map(|x| x.0).collect();
            prop_assert_eq!(got.iter().map(|h| h.index).collect::<Vec<_>>(), want);
        }
    }
}
