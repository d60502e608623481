//! The transformer forward pass on candle, with pooling and normalisation.

use crate::model_dir::{ModelDir, Pooling};
use crate::native::{NativeBert, Parallelism, Precision};
use crate::weights::{BertShape, BertWeights};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;

/// A loaded BERT-family model. Owned by the encoder's worker thread.
pub(crate) struct CandleBert {
    model: BertModel,
    pooling: Pooling,
    dim: usize,
    device: Device,
}

impl CandleBert {
    pub(crate) fn load(dir: &ModelDir) -> Result<Self> {
        let device = Device::Cpu;
        let weights = dir.weights();
        let vb = read_weights(&weights, &device)?;
        let model = BertModel::load(vb, &dir.config)
            .map_err(|e| Error::BadModelFile { path: weights.clone(), reason: e.to_string() })?;
        Ok(CandleBert { model, pooling: dir.pooling, dim: dir.config.hidden_size, device })
    }

    /// candle's model over given weights (the reference for tests and benchmarks).
    pub(crate) fn from_weights(weights: &BertWeights, pooling: Pooling) -> Result<Self> {
        let device = Device::Cpu;
        let vb = VarBuilder::from_tensors(weights.to_tensors()?, DType::F32, &device);
        let model = BertModel::load(vb, &weights.shape.to_config())?;
        Ok(CandleBert { model, pooling, dim: weights.shape.hidden, device })
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Embeds one padded batch: `seqs` are token ids, padded here to the longest.
    /// Returns `seqs.len() * dim` floats, each row L2-normalised.
    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        let n = seqs.len();
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (i, s) in seqs.iter().enumerate() {
            ids[i * len..i * len + s.len()].copy_from_slice(s);
            mask[i * len..i * len + s.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
                sum.broadcast_div(&count)?
            }
        };
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let out = pooled.broadcast_div(&norm)?;
        Ok(out.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// Loads safetensors weights by reading the file: memory-mapping would need `unsafe`, which
/// stays in `kernels`, and at 90 MB the read costs a few tens of milliseconds.
fn read_weights(path: &std::path::Path, device: &Device) -> Result<VarBuilder<'static>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
        .map_err(|e| Error::BadModelFile { path: path.to_path_buf(), reason: e.to_string() })
}

/// Which forward pass runs a model on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Sousuo's own forward pass when the model's config allows it, else candle's.
    #[default]
    Auto,
    /// Sousuo's own forward pass (packed tokens, fused kernels); an error for configs it lacks.
    Native,
    /// candle-transformers' `BertModel` (the reference implementation).
    Candle,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Backend::Auto),
            "native" => Ok(Backend::Native),
            "candle" => Ok(Backend::Candle),
            _ => Err(Error::Model(format!("unknown backend {s:?}: use auto, native or candle"))),
        }
    }
}

/// The model the worker thread owns.
pub(crate) enum Model {
    Candle(CandleBert),
    Native(NativeBert),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaModel),
}

impl Model {
    pub(crate) fn load(
        dir: &ModelDir,
        device: crate::Device,
        backend: Backend,
        threads: usize,
        parallelism: Parallelism,
        precision: Precision,
    ) -> Result<Self> {
        let shape = BertShape::from_config(&dir.config);
        if precision != Precision::F32 && backend == Backend::Candle {
            return Err(Error::Model(format!("precision {precision} needs the native backend, not candle")));
        }
        if let crate::Device::Cuda(ordinal) = device {
            if precision != Precision::F32 {
                return Err(Error::Device(format!(
                    "precision {precision} runs on the CPU only: pass --precision f32 with a GPU"
                )));
            }
            let shape =
                shape.map_err(|why| Error::Device(format!("{}: the CUDA encoder does not support {why}", dir.name)))?;
            let weights = BertWeights::load(&dir.weights(), shape)?;
            return Model::cuda(ordinal, &weights, dir.pooling);
        }
        match (backend, shape) {
            (Backend::Candle, _) => Ok(Model::Candle(CandleBert::load(dir)?)),
            (Backend::Auto, Err(why)) if precision == Precision::F32 => {
                tracing::info!(model = %dir.name, reason = %why, "using candle's forward pass");
                Ok(Model::Candle(CandleBert::load(dir)?))
            }
            (Backend::Native | Backend::Auto, Err(why)) => {
                Err(Error::Model(format!("{}: the native forward pass does not support {why}", dir.name)))
            }
            (Backend::Native | Backend::Auto, Ok(shape)) => {
                let weights = BertWeights::load(&dir.weights(), shape)?;
                Ok(Model::Native(NativeBert::new(weights, dir.pooling, threads, parallelism, precision)?))
            }
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda(ordinal: usize, weights: &BertWeights, pooling: Pooling) -> Result<Self> {
        Ok(Model::Cuda(crate::cuda::CudaModel::new(ordinal, weights, pooling)?))
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda(_ordinal: usize, _weights: &BertWeights, _pooling: Pooling) -> Result<Self> {
        Err(Error::Device(sousuo_kernels::Error::NotCompiledWithCuda.to_string()))
    }

    pub(crate) fn dim(&self) -> usize {
        match self {
            Model::Candle(m) => m.dim(),
            Model::Native(m) => m.dim(),
            #[cfg(feature = "cuda")]
            Model::Cuda(m) => m.dim(),
        }
    }

    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.forward_batches(&[seqs.to_vec()], |_, rows| out = rows)?;
        Ok(out)
    }

    /// Runs several batches, handing each one's rows to `done` in order. On a GPU the next
    /// batch is packed and queued while the current one computes (two in flight).
    pub(crate) fn forward_batches(&self, batches: &[Vec<&[u32]>], mut done: impl FnMut(usize, Vec<f32>)) -> Result<()> {
        match self {
            Model::Candle(m) => {
                for (i, b) in batches.iter().enumerate() {
                    done(i, m.forward(b)?);
                }
            }
            Model::Native(m) => {
                for (i, rows) in m.forward_many(batches)?.into_iter().enumerate() {
                    done(i, rows);
                }
            }
            #[cfg(feature = "cuda")]
            Model::Cuda(m) => {
                let mut in_flight = std::collections::VecDeque::new();
                for (i, b) in batches.iter().enumerate() {
                    in_flight.push_back((i, m.enqueue(b)?));
                    if in_flight.len() > 1 {
                        if let Some((j, p)) = in_flight.pop_front() {
                            done(j, p.wait()?);
                        }
                    }
                }
                for (j, p) in in_flight {
                    done(j, p.wait()?);
                }
            }
        }
        Ok(())
    }
}

/// Which forward pass a [`RawModel`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    /// candle-transformers' `BertModel` on the CPU (the reference).
    Candle,
    /// Sousuo's CPU forward pass on `threads` threads (0: all of rayon's pool).
    Native {
        /// Threads of rayon's pool (0: all of them).
        threads: usize,
        /// How a batch is spread over the threads.
        parallelism: Parallelism,
        /// The arithmetic of the dense layers.
        precision: Precision,
    },
    /// Sousuo's CUDA forward pass on GPU `ordinal` (builds with the `cuda` feature).
    Cuda(usize),
}

/// A model without tokenizer or worker thread: token ids in, L2-normalised sentence vectors
/// out. For benchmarks and tests that run several forward passes on the same inputs.
pub struct RawModel {
    model: Model,
}

impl RawModel {
    /// A model running the given weights with `pooling`, on the forward pass `kind`.
    pub fn new(weights: &BertWeights, pooling: Pooling, kind: RawKind) -> Result<Self> {
        let model = match kind {
            RawKind::Candle => Model::Candle(CandleBert::from_weights(weights, pooling)?),
            RawKind::Native { threads, parallelism, precision } => {
                Model::Native(NativeBert::new(weights.clone(), pooling, threads, parallelism, precision)?)
            }
            RawKind::Cuda(ordinal) => {
                crate::Device::Cuda(ordinal).resolve()?;
                Model::cuda(ordinal, weights, pooling)?
            }
        };
        Ok(RawModel { model })
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.model.dim()
    }

    /// One batch, `seqs.len() x dim` values.
    pub fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        self.model.forward(seqs)
    }

    /// Several batches, pipelined on a GPU; `done(i, rows)` gets each batch's rows in order.
    pub fn forward_batches(&self, batches: &[Vec<&[u32]>], done: impl FnMut(usize, Vec<f32>)) -> Result<()> {
        self.model.forward_batches(batches, done)
    }
}
