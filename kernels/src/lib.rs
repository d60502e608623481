//! Numeric kernels for Sousuo.
//!
//! Every kernel has a scalar reference ("CPU twin") and faster variants chosen at run time
//! (never `target-cpu=native`): AVX-512 or AVX2+FMA on x86-64, and, behind the `cuda`
//! feature, a CUDA version compiled at run time through NVRTC. Property tests hold each
//! fast variant to its scalar twin.

#![warn(missing_docs)]

pub mod blockq;
pub mod dot8;
mod error;
pub mod int8;
pub mod mapped;
pub mod matmul;
pub mod ops;
pub mod packed;
mod split;
pub mod topk;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
pub mod cuda_bert;

pub use error::{Error, Result};

/// Every CUDA C source of the crate, by file name.
#[cfg(feature = "cuda")]
pub const CUDA_SOURCES: [(&str, &str); 2] = [("topk.cu", cuda::TOPK_SOURCE), ("bert.cu", cuda_bert::BERT_SOURCE)];
pub use topk::{dot, top_k_dot, top_k_dot_scalar, Hit, SimdLevel};

/// Whether this build carries the CUDA kernels (the `cuda` cargo feature).
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");
