//! CUDA kernels, compiled at run time with NVRTC (no CUDA toolkit needed to build).
//!
//! cudarc loads the driver and NVRTC libraries dynamically; without them its calls panic
//! rather than fail, so every entry point checks that the libraries are present first and
//! returns [`Error::CudaUnavailable`] instead.

use crate::topk::{select_top_k, Hit};
use crate::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// The CUDA C source of the top-k scoring kernel, embedded in the binary.
pub const TOPK_SOURCE: &str = include_str!("../cuda/topk.cu");

/// Checks that the CUDA driver and NVRTC can be loaded and that GPU `ordinal` exists.
pub fn probe(ordinal: usize) -> Result<()> {
    libraries_present()?;
    let count = std::panic::catch_unwind(CudaContext::device_count)
        .map_err(|_| Error::CudaUnavailable("the CUDA driver could not be initialised".into()))?
        .map_err(|e| Error::CudaUnavailable(format!("the CUDA driver reports no devices: {e}")))?;
    if ordinal as i32 >= count {
        return Err(Error::CudaUnavailable(format!("no GPU cuda:{ordinal} ({count} found)")));
    }
    Ok(())
}

/// Whether NVRTC can be loaded (it compiles kernels; no GPU needed for that).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library and reports whether it loaded.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles CUDA C to PTX with NVRTC, or says why it cannot.
pub fn compile(source: &str) -> Result<cudarc::nvrtc::Ptx> {
    if !nvrtc_present() {
        return Err(Error::CudaUnavailable(
            "libnvrtc was not found; install the CUDA runtime libraries (nvrtc) or add them to LD_LIBRARY_PATH".into(),
        ));
    }
    cudarc::nvrtc::compile_ptx(source).map_err(|e| Error::Cuda(format!("NVRTC: {e}")))
}

fn libraries_present() -> Result<()> {
    // SAFETY: only tries to dlopen the driver library and reports whether it loaded.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    match (driver, nvrtc_present()) {
        (true, true) => Ok(()),
        (false, _) => Err(Error::CudaUnavailable(
            "libcuda (the NVIDIA driver) was not found; install the driver or add its directory to LD_LIBRARY_PATH"
                .into(),
        )),
        (true, false) => Err(Error::CudaUnavailable(
            "libnvrtc was not found; install the CUDA runtime libraries (nvrtc) or add them to LD_LIBRARY_PATH".into(),
        )),
    }
}

/// Exact top-k by dot product on a GPU: the CUDA twin of [`crate::top_k_dot`].
pub struct CudaTopK {
    stream: Arc<CudaStream>,
    scores: CudaFunction,
}

impl CudaTopK {
    /// Compiles the kernel for GPU `ordinal`.
    pub fn new(ordinal: usize) -> Result<Self> {
        probe(ordinal)?;
        let ctx = CudaContext::new(ordinal).map_err(cuda_err)?;
        let ptx = compile(TOPK_SOURCE)?;
        let module = ctx.load_module(ptx).map_err(cuda_err)?;
        let scores = module.load_function("dot_scores").map_err(cuda_err)?;
        Ok(CudaTopK { stream: ctx.default_stream(), scores })
    }

    /// Top `k` rows of `matrix` (`dim` columns) by dot product with `query`, best first.
    pub fn top_k(&self, matrix: &[f32], dim: usize, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        if query.len() != dim {
            return Err(Error::DimensionMismatch { expected: dim, got: query.len() });
        }
        if dim == 0 || !matrix.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch { expected: dim, got: matrix.len() });
        }
        let n = matrix.len() / dim;
        if n == 0 {
            return Ok(Vec::new());
        }
        let (n32, d32) = (i32::try_from(n), i32::try_from(dim));
        let (Ok(n32), Ok(d32)) = (n32, d32) else {
            return Err(Error::Cuda(format!("matrix of {n} x {dim} is too large for one launch")));
        };
        let m = self.stream.clone_htod(matrix).map_err(cuda_err)?;
        let q = self.stream.clone_htod(query).map_err(cuda_err)?;
        let mut out = self.stream.alloc_zeros::<f32>(n).map_err(cuda_err)?;
        let warps_per_block = 8u32;
        let cfg = LaunchConfig {
            grid_dim: ((n as u32).div_ceil(warps_per_block), 1, 1),
            block_dim: (32 * warps_per_block, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = self.stream.launch_builder(&self.scores);
        launch.arg(&m).arg(&q).arg(&mut out).arg(&n32).arg(&d32);
        // SAFETY: the kernel reads n*dim floats of `m`, dim of `q` and writes n of `out`,
        // all allocated above with exactly those sizes; the grid covers n rows.
        unsafe { launch.launch(cfg) }.map_err(cuda_err)?;
        let scores = self.stream.clone_dtoh(&out).map_err(cuda_err)?;
        Ok(select_top_k(&scores, k))
    }
}

pub(crate) fn cuda_err(e: impl std::fmt::Display) -> Error {
    Error::Cuda(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels compile wherever NVRTC is found, GPU or not. `scripts/test` fetches NVRTC
    /// from PyPI and sets SOUSUO_REQUIRE_NVRTC, so CI always compiles them.
    #[test]
    fn every_kernel_source_compiles_with_nvrtc() {
        if !nvrtc_present() {
            assert!(
                std::env::var_os("SOUSUO_REQUIRE_NVRTC").is_none(),
                "SOUSUO_REQUIRE_NVRTC is set but libnvrtc is not on LD_LIBRARY_PATH (scripts/fetch-nvrtc)"
            );
            eprintln!("NOTE: libnvrtc not found, CUDA sources not compiled (scripts/fetch-nvrtc gets it)");
            return;
        }
        for (name, source) in crate::CUDA_SOURCES {
            let ptx = compile(source).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!ptx.to_src().is_empty(), "{name}: empty PTX");
        }
        // The attention kernel is compiled per model with its head width fixed.
        for dh in [16, 64, 128] {
            let ptx = compile(&format!("#define ATT_HEAD_DIM {dh}\n{}", crate::cuda_bert::BERT_SOURCE));
            assert!(ptx.is_ok(), "bert.cu with ATT_HEAD_DIM {dh}: {:?}", ptx.err());
        }
        // A syntax error is reported, not a panic.
        assert!(matches!(compile("__global__ void broken( {"), Err(Error::Cuda(_))));
    }

    #[test]
    fn without_a_gpu_the_error_is_clear() {
        match CudaTopK::new(0) {
            Ok(gpu) => {
                // A machine with a GPU: hold the kernel to its CPU twin.
                let m: Vec<f32> = (0..300 * 37).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
                let q: Vec<f32> = (0..37).map(|i| (i as f32 / 37.0) - 0.3).collect();
                let want = crate::top_k_dot_scalar(&m, 37, &q, 10).unwrap();
                let got = gpu.top_k(&m, 37, &q, 10).unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.score - w.score).abs() < 1e-4);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("CUDA"), "{msg}");
            }
        }
    }
}
