/// Errors from the kernels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The matrix length is not a multiple of the row dimension, or the query has another width.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The width expected.
        expected: usize,
        /// The width found.
        got: usize,
    },
    /// Serialised kernel data (a cache file) is truncated or inconsistent.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The binary was built without the `cuda` feature.
    #[error("this binary was built without CUDA support: rebuild with `cargo build --release --features cuda`")]
    NotCompiledWithCuda,
    /// No CUDA driver, NVRTC library or GPU could be found at run time.
    #[error("CUDA is not available: {0}")]
    CudaUnavailable(String),
    /// A CUDA call failed.
    #[error("CUDA error: {0}")]
    Cuda(String),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The checks of a quantised matrix's `row_into`: row `o` of `rows`, into `out` of `inputs`.
pub(crate) fn check_row(o: usize, rows: usize, out: &[f32], inputs: usize) -> Result<()> {
    if o >= rows {
        return Err(Error::DimensionMismatch { expected: rows, got: o });
    }
    if out.len() != inputs {
        return Err(Error::DimensionMismatch { expected: inputs, got: out.len() });
    }
    Ok(())
}
