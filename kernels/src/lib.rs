//! Numeric kernels for Sousuo.
//!
//! Every kernel has a scalar reference ("CPU twin") and faster variants chosen at run time
//! (never `target-cpu=native`): AVX-512 or AVX2+FMA on x86-64, and, behind the `cuda`
//! feature, a CUDA version compiled at run time through NVRTC. Property tests hold each
//! fast variant to its scalar twin.

pub mod attention;
pub mod blockq;
mod error;
pub mod int8;
pub mod matmul;
pub mod ops;
mod split;
pub mod topk;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
pub mod cuda_bert;

pub use error::{Error, Result};
pub use topk::{top_k_dot, top_k_dot_scalar, Hit, SimdLevel};

/// Whether this build carries the CUDA kernels (the `cuda` cargo feature).
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");
