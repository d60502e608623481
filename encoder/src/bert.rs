//! The transformer forward pass on candle, with pooling and normalisation.

use crate::model_dir::{ModelDir, Pooling};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use crate::native::{NativeBert, Parallelism};
use crate::weights::{BertShape, BertWeights};

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
}

impl Model {
    pub(crate) fn load(dir: &ModelDir, backend: Backend, threads: usize, parallelism: Parallelism) -> Result<Self> {
        let shape = BertShape::from_config(&dir.config);
        match (backend, shape) {
            (Backend::Candle, _) => Ok(Model::Candle(CandleBert::load(dir)?)),
            (Backend::Native, Err(why)) => {
                Err(Error::Model(format!("{}: the native forward pass does not support {why}", dir.name)))
            }
            (Backend::Auto, Err(why)) => {
                tracing::info!(model = %dir.name, reason = %why, "using candle's forward pass");
                Ok(Model::Candle(CandleBert::load(dir)?))
            }
            (Backend::Native | Backend::Auto, Ok(shape)) => {
                let weights = BertWeights::load(&dir.weights(), shape)?;
                Ok(Model::Native(NativeBert::new(weights, dir.pooling, threads, parallelism)))
            }
        }
    }

    pub(crate) fn dim(&self) -> usize {
        match self {
            Model::Candle(m) => m.dim(),
            Model::Native(m) => m.dim(),
        }
    }

    pub(crate) fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        match self {
            Model::Candle(m) => m.forward(seqs),
            Model::Native(m) => m.forward(seqs),
        }
    }
}
