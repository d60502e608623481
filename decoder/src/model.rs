//! Loading a decoder: the GGUF header, the choice of forward pass, the tokenizer and chat
//! template from the metadata, and the weights (requantised once and cached).

use crate::llama::{Family, LlamaConfig, NativeLlama};
use crate::requant::{needs_requant, prepare_gguf};
use crate::template::ChatTemplate;
use crate::tokenizer::DecoderTokenizer;
use crate::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};
use std::fs::File;
use std::path::Path;
use std::str::FromStr;

/// Which forward pass runs the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Sousuo's own pass when the model fits it (llama without experts, Qwen 2 and 3), else
    /// candle.
    #[default]
    Auto,
    /// Sousuo's own pass ([`NativeLlama`]); an error for models it does not implement.
    Native,
    /// candle-transformers' quantized llama, Qwen 2 or Qwen 3 (slow Q4/Q5 types converted to
    /// Q8_0 first).
    Candle,
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Backend::Auto),
            "native" => Ok(Backend::Native),
            "candle" => Ok(Backend::Candle),
            other => Err(Error::BadParameter {
                name: "decoder backend",
                reason: format!("{other:?} is not one of auto, native, candle"),
            }),
        }
    }
}

/// The loaded model, as the worker thread runs it.
pub(crate) enum Model {
    Native(Box<NativeLlama>, Vec<f32>),
    Candle(Box<CandleModel>),
}

/// candle-transformers' model of the file's architecture.
pub(crate) enum CandleModel {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
}

/// What loading a GGUF file gives: the weights and what the handle keeps.
pub(crate) struct Loaded {
    pub model: Model,
    pub tokenizer: DecoderTokenizer,
    pub template: ChatTemplate,
    pub context_length: usize,
}

fn model_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Model(format!("{}: {e}", path.display()))
}

fn open(path: &Path) -> Result<(File, Content)> {
    let mut file = File::open(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let ct = crate::read_gguf(&mut file).map_err(|e| model_err(path, format!("not a readable GGUF file: {e}")))?;
    crate::llama::check_tensors(&ct, &mut file).map_err(|e| model_err(path, e))?;
    Ok((file, ct))
}

/// Loads `path` on `backend`; `requant_dir` caches requantised weights.
pub(crate) fn load(path: &Path, backend: Backend, requant_dir: Option<&Path>) -> Result<Loaded> {
    let (mut file, ct) = open(path)?;
    let family = Family::from_gguf(&ct).map_err(|e| match e {
        Error::Unsupported(what) => Error::Unsupported(format!("{}: {what}", path.display())),
        other => other,
    })?;
    let native = match backend {
        Backend::Candle => false,
        Backend::Native => {
            LlamaConfig::from_gguf(&ct)?;
            true
        }
        Backend::Auto => match LlamaConfig::from_gguf(&ct) {
            Ok(_) => true,
            Err(e) => {
                tracing::info!("{}: {e}; running it through candle", path.display());
                false
            }
        },
    };
    // The tokenizer first: loading candle's weights consumes the metadata.
    let tokenizer = DecoderTokenizer::from_gguf(&ct)?;
    let name = |id: Option<u32>| id.and_then(|i| tokenizer.inner.id_to_token(i)).unwrap_or_default();
    let template = ChatTemplate::new(
        ct.metadata.get("tokenizer.chat_template").and_then(|v| v.to_string().ok().cloned()),
        name(tokenizer.bos_id),
        name(tokenizer.stop_ids.first().copied()),
    )?;
    let context_length =
        ct.metadata.get(&format!("{}.context_length", family.key())).and_then(|v| v.to_u32().ok()).unwrap_or(2048)
            as usize;
    let model = if native {
        let threads = sousuo_common::threads::resolve(0);
        Model::Native(Box::new(NativeLlama::load(path, &ct, &mut file, threads, requant_dir)?), Vec::new())
    } else {
        load_candle(path, family, ct, file, requant_dir)?
    };
    Ok(Loaded { model, tokenizer, template, context_length })
}

/// candle's quantized model of `family`, from the file's Q8_0 conversion when it holds types
/// candle runs without SIMD and a cache directory is given.
fn load_candle(path: &Path, family: Family, ct: Content, file: File, requant_dir: Option<&Path>) -> Result<Model> {
    let (ct, mut file, from) = match requant_dir.filter(|_| needs_requant(&ct)) {
        Some(dir) => {
            let q8 = prepare_gguf(path, dir)?;
            let (f, ct) = open(&q8)?;
            (ct, f, q8)
        }
        None => {
            if needs_requant(&ct) {
                tracing::warn!("{} holds Q4/Q5 weights, which candle runs without SIMD: slow", path.display());
            }
            (ct, file, path.to_path_buf())
        }
    };
    let cpu = &Device::Cpu;
    let weights = match family {
        Family::Llama => quantized_llama::ModelWeights::from_gguf(ct, &mut file, cpu).map(CandleModel::Llama),
        Family::Qwen2 => quantized_qwen2::ModelWeights::from_gguf(ct, &mut file, cpu).map(CandleModel::Qwen2),
        Family::Qwen3 => quantized_qwen3::ModelWeights::from_gguf(ct, &mut file, cpu).map(CandleModel::Qwen3),
    }
    .map_err(|e| model_err(&from, format!("cannot load the weights: {e}")))?;
    Ok(Model::Candle(Box::new(weights)))
}

impl Model {
    /// Runs `tokens` at `pos` (tokens already cached) and returns the last position's logits.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        let err = |e: candle_core::Error| Error::Generation(e.to_string());
        match self {
            Model::Native(m, logits) => {
                m.forward(tokens, pos, logits)?;
                Tensor::from_slice(logits, logits.len(), &Device::Cpu).map_err(err)
            }
            Model::Candle(m) => {
                let input = Tensor::new(tokens, &Device::Cpu).and_then(|t| t.unsqueeze(0)).map_err(err)?;
                let logits = match m.as_mut() {
                    CandleModel::Llama(m) => m.forward(&input, pos),
                    CandleModel::Qwen2(m) => m.forward(&input, pos),
                    CandleModel::Qwen3(m) => m.forward(&input, pos),
                };
                logits.and_then(|l| l.squeeze(0)).and_then(|l| l.to_dtype(candle_core::DType::F32)).map_err(err)
            }
        }
    }

    /// The log-probability of `continuation` after the tokens cached before `pos`, whose last
    /// logits are `last` (the continuation's tokens are run at `pos`, replacing what the cache
    /// held from there).
    pub fn log_prob(&mut self, last: &[f32], continuation: &[u32], pos: usize) -> Result<f32> {
        let Some((&first, rest)) = continuation.split_first() else { return Ok(0.0) };
        let mut total = log_softmax_at(last, first);
        if rest.is_empty() {
            return Ok(total);
        }
        let fed = &continuation[..continuation.len() - 1];
        match self {
            Model::Native(m, logits) => {
                m.forward_all(fed, pos, logits)?;
                let vocab = m.config().vocab;
                for (row, &next) in logits.chunks_exact(vocab).zip(rest) {
                    total += log_softmax_at(row, next);
                }
            }
            Model::Candle(_) => {
                // candle's models give the last position's logits: one token at a time.
                for (i, (&t, &next)) in fed.iter().zip(rest).enumerate() {
                    let row =
                        self.forward(&[t], pos + i)?.to_vec1::<f32>().map_err(|e| Error::Generation(e.to_string()))?;
                    total += log_softmax_at(&row, next);
                }
            }
        }
        Ok(total)
    }

    pub fn reserve(&mut self, positions: usize) {
        if let Model::Native(m, _) = self {
            m.reserve(positions);
        }
    }

    pub fn clear(&mut self) {
        match self {
            Model::Native(m, _) => m.clear(),
            Model::Candle(m) => match m.as_mut() {
                CandleModel::Llama(m) => m.clear_kv_cache(),
                CandleModel::Qwen2(m) => m.clear_kv_cache(),
                CandleModel::Qwen3(m) => m.clear_kv_cache(),
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Model::Native(..) => "native",
            Model::Candle(_) => "candle",
        }
    }
}

/// `log softmax(logits)[id]` (negative infinity for an id outside the logits).
fn log_softmax_at(logits: &[f32], id: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    logits.get(id as usize).map_or(f32::NEG_INFINITY, |l| l - max - sum.ln())
}
