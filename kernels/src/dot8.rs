//! Dot products of int8 vectors: the vector index walks its graph over scalar-quantised
//! copies of the embeddings (a quarter of the f32 bytes to read per distance) and rescores the
//! candidates it keeps in f32.

/// Quantises `x` to int8 with one symmetric scale (`x ~= code * scale`); returns the scale.
/// A zero vector, or one with a non-finite coordinate, gets scale 0 and all-zero codes.
pub fn quantize_i8(x: &[f32], out: &mut [i8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| if v.is_finite() && m.is_finite() { m.max(v.abs()) } else { f32::NAN });
    if max == 0.0 || !max.is_finite() {
        out.iter_mut().for_each(|c| *c = 0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (c, v) in out.iter_mut().zip(x) {
        *c = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// The dot product of two int8 vectors of equal length (exact: i32 accumulation).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: avx512bw (and so avx512f) was detected at run time.
            return unsafe { x86::dot_i8_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: avx2 was detected at run time.
            return unsafe { x86::dot_i8_avx2(a, b) };
        }
    }
    dot_i8_scalar(a, b)
}

/// The scalar reference of [`dot_i8`].
pub fn dot_i8_scalar(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let chunks = n / 16;
        let mut acc = _mm256_setzero_si256();
        for i in 0..chunks {
            // SAFETY: i * 16 + 16 <= n: both 16-byte loads stay inside the slices.
            let (va, vb) = unsafe {
                (
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(a.as_ptr().add(i * 16).cast())),
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(b.as_ptr().add(i * 16).cast())),
                )
            };
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
        }
        let mut lanes = [0i32; 8];
        // SAFETY: `lanes` holds exactly 8 i32.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
        lanes.iter().sum::<i32>() + super::dot_i8_scalar(&a[chunks * 16..n], &b[chunks * 16..n])
    }

    /// # Safety
    /// The CPU must support AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn dot_i8_avx512(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let chunks = n / 32;
        let mut acc = _mm512_setzero_si512();
        for i in 0..chunks {
            // SAFETY: i * 32 + 32 <= n: both 32-byte loads stay inside the slices.
            let (va, vb) = unsafe {
                (
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(a.as_ptr().add(i * 32).cast())),
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(b.as_ptr().add(i * 32).cast())),
                )
            };
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(va, vb));
        }
        _mm512_reduce_add_epi32(acc) + super::dot_i8_scalar(&a[chunks * 32..n], &b[chunks * 32..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn simd_equals_scalar(v in proptest::collection::vec((any::<i8>(), any::<i8>()), 0..700)) {
            let (a, b): (Vec<i8>, Vec<i8>) = v.into_iter().unzip();
            prop_assert_eq!(dot_i8(&a, &b), dot_i8_scalar(&a, &b));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: avx2 detected.
                prop_assert_eq!(unsafe { x86::dot_i8_avx2(&a, &b) }, dot_i8_scalar(&a, &b));
            }
        }

        #[test]
        fn quantised_dot_tracks_f32(v in proptest::collection::vec((-1f32..1.0, -1f32..1.0), 1..400)) {
            let (a, b): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
            let (mut ca, mut cb) = (vec![0i8; a.len()], vec![0i8; b.len()]);
            let (sa, sb) = (quantize_i8(&a, &mut ca), quantize_i8(&b, &mut cb));
            let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let approx = dot_i8(&ca, &cb) as f32 * sa * sb;
            // Each coordinate is off by at most half a step of its vector's scale.
            let bound = 0.5 * (sa * b.iter().map(|x| x.abs()).sum::<f32>() + sb * a.iter().map(|x| x.abs()).sum::<f32>())
                + 0.25 * sa * sb * a.len() as f32 + 1e-5;
            prop_assert!((exact - approx).abs() <= bound, "{exact} vs {approx} (bound {bound})");
        }
    }

    #[test]
    fn zero_and_non_finite_vectors_quantise_to_zero() {
        let mut c = [1i8; 3];
        assert_eq!(quantize_i8(&[0.0, 0.0, 0.0], &mut c), 0.0);
        assert_eq!(c, [0, 0, 0]);
        assert_eq!(quantize_i8(&[f32::NAN, 1.0, 0.0], &mut c), 0.0);
    }
}
